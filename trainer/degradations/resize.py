"""Per-sample resize (area / bilinear / bicubic) of a canvas, each sample to its own size.

PyTorch's `F.interpolate` resizes a whole batch to one size with one mode. Here every sample
has its own input size, output size and mode, so each axis is resampled by a per-sample
matrix (B, out, in) built from the same formulas as PyTorch's kernels (`size=` semantics,
align_corners=False, no antialias, bicubic A = -0.75 with clamped taps, area = adaptive
average pooling) and applied with two batched matmuls. All three modes are separable, so the
result equals `F.interpolate(x[b:b+1, :, :h, :w], size=(h', w'), mode=...)` per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import RESIZE_MODES

_A = -0.75  # PyTorch's (and OpenCV's) bicubic convolution coefficient


def _cubic_weights(t: Tensor) -> list[Tensor]:
    def near(d: Tensor) -> Tensor:  # |d| <= 1
        return ((_A + 2) * d - (_A + 3)) * d * d + 1

    def far(d: Tensor) -> Tensor:  # 1 < |d| < 2
        return ((_A * d - 5 * _A) * d + 8 * _A) * d - 4 * _A

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _scatter(taps: list[tuple[Tensor, Tensor]], rows: int, cols: int) -> Tensor:
    idx = torch.stack([i for i, _ in taps], dim=-1)
    w = torch.stack([v for _, v in taps], dim=-1)
    m = torch.zeros(idx.shape[0], rows, cols, dtype=torch.float64)
    return m.scatter_add_(2, idx, w)


def resize_matrix(n_in: Tensor, n_out: Tensor, mode: Tensor, in_len: int, out_len: int) -> Tensor:
    """(B, out_len, in_len) float64: row i of sample b resamples a length-n_in[b] signal to
    position i of a length-n_out[b] one with mode RESIZE_MODES[mode[b]]; rows >= n_out are 0."""
    dst = torch.arange(out_len, dtype=torch.float64)[None, :]
    ni = n_in.to(torch.float64)[:, None]
    no = n_out.to(torch.float64)[:, None]
    last = (n_in - 1)[:, None]
    scale = ni / no

    # bilinear (area_pixel_compute_source_index, clamped at 0)
    src = ((dst + 0.5) * scale - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(last.expand_as(src))
    lam = (src - i0).clamp(0, 1)
    i1 = torch.minimum(i0 + 1, last)
    bilinear = _scatter([(i0, 1 - lam), (i1, lam)], out_len, in_len)

    # bicubic (taps i-1..i+2 clamped to the edge)
    src = (dst + 0.5) * scale - 0.5
    i = src.floor()
    t = src - i
    i = i.long()
    taps = [(torch.clamp(i + d, torch.zeros_like(last), last), w)
            for d, w in zip((-1, 0, 1, 2), _cubic_weights(t))]
    bicubic = _scatter(taps, out_len, in_len)

    # area (adaptive average pooling: [floor(i n/m), ceil((i+1) n/m)) )
    di = torch.arange(out_len, dtype=torch.long)[None, :]
    start = (di * n_in[:, None]) // n_out[:, None]
    end = ((di + 1) * n_in[:, None] + n_out[:, None] - 1) // n_out[:, None]
    j = torch.arange(in_len, dtype=torch.long)[None, None, :]
    inside = (j >= start[..., None]) & (j < end[..., None])
    area = inside.to(torch.float64) / (end - start).clamp_min(1)[..., None].to(torch.float64)

    m = torch.where((mode == 0)[:, None, None], area, torch.where((mode == 1)[:, None, None], bilinear, bicubic))
    valid_rows = di < n_out[:, None]
    return m * valid_rows[..., None]


def resize(x: Tensor, sizes: Tensor, out_sizes: Tensor, modes: Tensor) -> Tensor:
    """Resize sample b's valid window sizes[b] to out_sizes[b] with RESIZE_MODES[modes[b]].

    x: (B, C, H, W) canvas; sizes, out_sizes: (B, 2) long; modes: (B,) long.
    Returns a canvas (B, C, max out h, max out w).
    """
    h_out = int(out_sizes[:, 0].max())
    w_out = int(out_sizes[:, 1].max())
    mh = resize_matrix(sizes[:, 0], out_sizes[:, 0], modes, x.shape[-2], h_out)
    mw = resize_matrix(sizes[:, 1], out_sizes[:, 1], modes, x.shape[-1], w_out)
    mh = mh.to(device=x.device, dtype=x.dtype)[:, None]
    mw = mw.to(device=x.device, dtype=x.dtype)[:, None].transpose(-1, -2)
    h, w = x.shape[-2:]
    if h_out * h * w + h_out * w * w_out <= h * w * w_out + h_out * h * w_out:
        return torch.matmul(torch.matmul(mh, x), mw)
    return torch.matmul(mh, torch.matmul(x, mw))


def mode_index(name: str) -> int:
    """Index of a resize mode name in RESIZE_MODES."""
    return RESIZE_MODES.index(name)
