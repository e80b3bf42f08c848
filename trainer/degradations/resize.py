"""Per-sample resize (area / bilinear / bicubic) of a canvas, each sample to its own size.

PyTorch's `F.interpolate` resizes a whole batch to one size with one mode. Here every sample
has its own input size, output size and mode, so each axis is resampled by a per-sample
matrix (B, out, in) built from the same formulas as PyTorch's kernels (`size=` semantics,
align_corners=False, no antialias, bicubic A = -0.75 with clamped taps, area = adaptive
average pooling) and applied with two batched matmuls. All three modes are separable, so the
result equals `F.interpolate(x[b:b+1, :, :h, :w], size=(h', w'), mode=...)` per sample.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .config import RESIZE_MODES
from .device import to_device

_A = -0.75  # PyTorch's (and OpenCV's) bicubic convolution coefficient


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Weights of taps i-1, i, i+1, i+2 for fractional offsets t: (..., 4)."""
    d = np.stack([t + 1, t, 1 - t, 2 - t], axis=-1)  # distances to the four taps
    near = ((_A + 2) * d - (_A + 3)) * d * d + 1  # |d| <= 1
    far = ((_A * d - 5 * _A) * d + 8 * _A) * d - 4 * _A  # 1 < |d| < 2
    return np.where(np.abs(d) <= 1, near, far)


def _taps(n_in: np.ndarray, n_out: np.ndarray, mode: np.ndarray, out_len: int,
          ) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (B, out_len, T) of every output position, from PyTorch's
    formulas for each sample's mode (only the modes present are computed). Small index
    arithmetic, so numpy (a tenth of torch's per-call overhead)."""
    b = n_in.shape[0]
    dst = np.arange(out_len, dtype=np.float64)[None, :, None]
    scale = (n_in / n_out)[:, None, None]
    last = (n_in - 1)[:, None, None]
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if (mode == 1).any():  # bilinear: source clamped at 0, second tap clamped to the edge
        src = np.maximum((dst + 0.5) * scale - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(np.int64), last)
        lam = np.clip(src - i0, 0, 1)
        parts[1] = (np.minimum(i0 + np.arange(2), last), np.concatenate([1 - lam, lam], -1))
    if (mode == 2).any():  # bicubic: taps i-1..i+2 clamped to the edge
        src = (dst + 0.5) * scale - 0.5
        i = np.floor(src)
        idx = np.clip(i.astype(np.int64) + np.arange(-1, 3), 0, last)
        parts[2] = (idx, _cubic_weights((src - i)[..., 0]))
    if (mode == 0).any():  # area = adaptive average pooling: [floor(i n/m), ceil((i+1) n/m))
        di = np.arange(out_len, dtype=np.int64)[None, :, None]
        start = (di * n_in[:, None, None]) // n_out[:, None, None]
        end = ((di + 1) * n_in[:, None, None] + n_out[:, None, None] - 1) // n_out[:, None, None]
        count = np.maximum(end - start, 1)
        t = np.arange(int(count.max()))
        parts[0] = (np.minimum(start + t, last), (t < count) / count)
    width = max(p[0].shape[-1] for p in parts.values())
    idx = np.zeros((b, out_len, width), dtype=np.int64)
    w = np.zeros((b, out_len, width), dtype=np.float64)
    for m, (pi, pw) in parts.items():
        sel = mode == m
        idx[sel, :, : pi.shape[-1]] = np.broadcast_to(pi, (b, out_len, pi.shape[-1]))[sel]
        w[sel, :, : pw.shape[-1]] = np.broadcast_to(pw, (b, out_len, pw.shape[-1]))[sel]
    w *= np.arange(out_len)[None, :, None] < n_out[:, None, None]
    return idx, w


def resize_matrix(n_in: Tensor, n_out: Tensor, mode: Tensor, in_len: int, out_len: int) -> Tensor:
    """(B, out_len, in_len) float64: row i of sample b resamples a length-n_in[b] signal to
    position i of a length-n_out[b] one with mode RESIZE_MODES[mode[b]]; rows >= n_out are 0."""
    idx, w = _taps(n_in.cpu().numpy(), n_out.cpu().numpy(), mode.cpu().numpy(), out_len)
    b = idx.shape[0]
    rows = np.arange(b)[:, None, None] * out_len + np.arange(out_len)[None, :, None]
    flat = (rows * in_len + idx).reshape(-1)  # scatter-add of the taps (edge taps repeat)
    m = np.bincount(flat, weights=w.reshape(-1), minlength=b * out_len * in_len)
    return torch.from_numpy(m.reshape(b, out_len, in_len))


def resize(x: Tensor, sizes: Tensor, out_sizes: Tensor, modes: Tensor) -> Tensor:
    """Resize sample b's valid window sizes[b] to out_sizes[b] with RESIZE_MODES[modes[b]].

    x: (B, C, H, W) canvas; sizes, out_sizes: (B, 2) long; modes: (B,) long.
    Returns a canvas (B, C, max out h, max out w).
    """
    h_out = int(out_sizes[:, 0].max())
    w_out = int(out_sizes[:, 1].max())
    mh = resize_matrix(sizes[:, 0], out_sizes[:, 0], modes, x.shape[-2], h_out)
    mw = resize_matrix(sizes[:, 1], out_sizes[:, 1], modes, x.shape[-1], w_out)
    mh = to_device(mh, x, x.dtype)[:, None]
    mw = to_device(mw, x, x.dtype)[:, None].transpose(-1, -2)
    h, w = x.shape[-2:]
    if h_out * h * w + h_out * w * w_out <= h * w * w_out + h_out * h * w_out:
        return torch.matmul(torch.matmul(mh, x), mw)
    return torch.matmul(mh, torch.matmul(x, mw))


def mode_index(name: str) -> int:
    """Index of a resize mode name in RESIZE_MODES."""
    return RESIZE_MODES.index(name)
