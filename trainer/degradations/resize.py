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


def _taps(n_in: Tensor, n_out: Tensor, mode: Tensor, out_len: int) -> tuple[Tensor, Tensor]:
    """Source indices and weights (B, out_len, T) of every output position, all three modes
    computed from PyTorch's formulas and the drawn one kept per sample."""
    dst = torch.arange(out_len, dtype=torch.float64)[None, :]
    scale = n_in.to(torch.float64)[:, None] / n_out.to(torch.float64)[:, None]
    last = (n_in - 1)[:, None]
    zero = torch.zeros_like(last)

    # bilinear: area_pixel_compute_source_index, clamped at 0; second tap clamped to the edge
    src = ((dst + 0.5) * scale - 0.5).clamp_min(0)
    i0 = torch.minimum(src.floor().long(), last)
    lam = (src - i0).clamp(0, 1)
    bil_i = [i0, torch.minimum(i0 + 1, last)]
    bil_w = [1 - lam, lam]

    # bicubic: taps i-1..i+2 clamped to the edge, no clamp of the source position
    src = (dst + 0.5) * scale - 0.5
    i = src.floor()
    cub_w = _cubic_weights(src - i)
    cub_i = [torch.clamp(i.long() + d, zero, last) for d in (-1, 0, 1, 2)]

    # area = adaptive average pooling: window [floor(i n / m), ceil((i + 1) n / m))
    di = torch.arange(out_len, dtype=torch.long)[None, :]
    start = (di * n_in[:, None]) // n_out[:, None]
    end = ((di + 1) * n_in[:, None] + n_out[:, None] - 1) // n_out[:, None]
    count = (end - start).clamp_min(1)
    n_area = max(int(count.max()), 4)
    area_i = [torch.minimum(start + t, last) for t in range(n_area)]
    area_w = [(t < count).to(torch.float64) / count for t in range(n_area)]

    pad_i = [zero.expand_as(i0)] * (n_area - 2)
    pad_w = [torch.zeros_like(lam)] * (n_area - 2)
    idx = torch.stack(area_i, -1), torch.stack(bil_i + pad_i, -1), torch.stack(cub_i + pad_i[2:], -1)
    wts = torch.stack(area_w, -1), torch.stack(bil_w + pad_w, -1), torch.stack(cub_w + pad_w[2:], -1)
    m = mode[:, None, None]
    valid = (di < n_out[:, None])[..., None]
    pick_i = torch.where(m == 0, idx[0], torch.where(m == 1, idx[1], idx[2]))
    pick_w = torch.where(m == 0, wts[0], torch.where(m == 1, wts[1], wts[2])) * valid
    return pick_i, pick_w


def resize_matrix(n_in: Tensor, n_out: Tensor, mode: Tensor, in_len: int, out_len: int) -> Tensor:
    """(B, out_len, in_len) float64: row i of sample b resamples a length-n_in[b] signal to
    position i of a length-n_out[b] one with mode RESIZE_MODES[mode[b]]; rows >= n_out are 0."""
    idx, w = _taps(n_in, n_out, mode, out_len)
    m = torch.zeros(idx.shape[0], out_len, in_len, dtype=torch.float64)
    return m.scatter_add_(2, idx, w)


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
