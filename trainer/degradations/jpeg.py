"""Baseline JPEG round trip (encode + decode) in torch, per-sample quality, batched.

Why this implementation: Real-ESRGAN uses basicsr's DiffJPEG, a torch re-implementation
whose quality factor and chroma up-sampling differ from real JPEG files. Running Pillow per
sample would be exact but costs a Python loop, a device round trip, and 8-bit input. This
module follows what libjpeg (hence Pillow, OpenCV) does, step by step, in batched tensor ops:

1. edge-replicate each sample to whole 16x16 MCUs (libjpeg's edge expansion);
2. RGB -> YCbCr (JFIF/BT.601 full range), rounded to 8-bit samples as an encoder sees them;
3. 4:2:0 chroma subsampling by 2x2 averaging (libjpeg's h2v2 downsample);
4. level shift by 128, orthonormal 8x8 DCT-II (equal to JPEG's 1/4 C(u) C(v) scaling);
5. the standard luma/chroma tables of ITU-T T.81 Annex K, indexed [v][u] (row = vertical
   frequency, as stored in the file in natural order), scaled by libjpeg's
   `jpeg_quality_scaling` (q < 50: 5000/q, else 200 - 2q; (t * s + 50) / 100 clamped to
   1..255) - quality is an integer, as in a real encoder;
6. quantize (round coefficient / step), dequantize, inverse DCT, round to 8-bit samples;
7. chroma up-sampling by libjpeg's "fancy" triangular filter (weights 3/4, 1/4 = bilinear x2
   with clamped edges), YCbCr -> RGB, round and clamp to 0..255.

What differs from libjpeg: the DCT runs in floating point instead of libjpeg's scaled integer
"islow" arithmetic, and a few integer roundings with alternating bias are plain rounding.
`tests/test_degradations_jpeg.py` measures the result against Pillow at several qualities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .device import to_device
from .filters import full_sizes, replicate_fill
from .resize import resize_matrix

_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4

_RGB_TO_YCC = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)
_YCC_TO_RGB = (
    (1.0, 0.0, 1.402),
    (1.0, -0.344136286, -0.714136286),
    (1.0, 1.772, 0.0),
)
_YCC_TO_RGB_OFFSET = tuple(-128.0 * (row[1] + row[2]) for row in _YCC_TO_RGB)  # Cb, Cr centred


def quant_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """libjpeg's tables for integer qualities (B,): luma and chroma, each (B, 8, 8) float64."""
    q = quality.cpu().to(torch.float64).clamp(1, 100)
    scale = torch.where(q < 50, torch.floor(5000.0 / q), 200.0 - 2.0 * q)[:, None, None, None]
    base = torch.tensor([_LUMA_TABLE, _CHROMA_TABLE], dtype=torch.float64)[None]
    t = torch.floor((base * scale + 50.0) / 100.0).clamp(1, 255)
    return t[:, 0], t[:, 1]


def dct_matrix(dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal 8-point DCT-II: D[u, x] = c(u) cos((2x + 1) u pi / 16)."""
    u = torch.arange(8, dtype=torch.float64)[:, None]
    x = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos((2 * x + 1) * u * math.pi / 16) * math.sqrt(2 / 8)
    d[0] = math.sqrt(1 / 8)
    return d.to(dtype)


def _color(x: Tensor, matrix: tuple[tuple[float, ...], ...], scale: float,
           offset: tuple[float, ...]) -> Tensor:
    """(B, 3, H, W) -> scale * matrix @ pixel + offset, as one batched matmul."""
    b, c, h, w = x.shape
    m = to_device(torch.tensor(matrix, dtype=torch.float64) * scale, x, x.dtype)
    off = to_device(torch.tensor(offset, dtype=torch.float64), x, x.dtype).view(1, 3, 1)
    return torch.baddbmm(off.expand(b, 3, h * w), m.expand(b, 3, 3), x.reshape(b, c, h * w)).view(b, 3, h, w)


def _code_plane(plane: Tensor, table: Tensor, kron: Tensor) -> Tensor:
    """Quantize-dequantize 8-bit planes (B, C, H, W), H and W multiples of 8.

    The 2-D DCT of an 8x8 block is one 64x64 matrix (D kron D) on the flattened block, so the
    whole plane is two GEMMs; the level shift of 128 is the DC offset 8 * 128.
    """
    b, c, h, w = plane.shape
    blocks = plane.view(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(b, -1, 64)
    coef = blocks @ kron.T
    coef[..., 0] -= 1024.0
    step = to_device(table, plane, plane.dtype).view(b, 1, 64)
    coef = coef.div_(step).round_().mul_(step)
    coef[..., 0] += 1024.0
    out = (coef @ kron).view(b, c, h // 8, w // 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)
    return out.round_().clamp_(0, 255)


def _fill(x: Tensor, sizes: Tensor, hp: int, wp: int) -> Tensor:
    h, w = x.shape[-2:]
    if bool((sizes[:, 0] == h).all()) and bool((sizes[:, 1] == w).all()):
        return F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
    return replicate_fill(x, sizes, hp, wp)


def _upsample_matrix(n: Tensor, length: int, like: Tensor) -> Tensor:
    """libjpeg's fancy up-sampling (3/4, 1/4 of the two nearest chroma samples, edges
    clamped at each sample's own chroma size n) as a (B, 2 length, length) matrix."""
    bilinear = torch.ones(n.shape[0], dtype=torch.long)
    return to_device(resize_matrix(n, 2 * n, bilinear, length, 2 * length), like, like.dtype)


def jpeg(x: Tensor, quality: Tensor, sizes: Tensor | None = None) -> Tensor:
    """JPEG-compress and decode RGB images in [0, 1] at per-sample integer `quality`.

    x: (B, 3, H, W) (values outside [0, 1] are clipped first); quality: (B,) in 1..100;
    sizes: optional (B, 2) valid windows of a canvas (see filters.py). Returns the decoded
    images in [0, 1] on 8-bit levels, same shape, device and dtype; x is not modified.
    """
    b, c, h, w = x.shape
    if c != 3:
        raise ValueError(f"jpeg expects RGB images (B, 3, H, W), got {tuple(x.shape)}")
    if sizes is None:
        sizes = full_sizes(x)
    hp, wp = 16 * math.ceil(h / 16), 16 * math.ceil(w / 16)
    img = _fill(x.clamp(0, 1), sizes, hp, wp)
    ycc = _color(img, _RGB_TO_YCC, 255.0, (0.0, 128.0, 128.0)).round_().clamp_(0, 255)
    luma_t, chroma_t = quant_tables(quality)
    d = dct_matrix(torch.float64)
    kron = to_device(torch.kron(d, d), x, x.dtype)  # (64, 64): vec(D X D^T)
    y = _code_plane(ycc[:, :1], luma_t, kron)
    chroma = _code_plane(F.avg_pool2d(ycc[:, 1:], 2).round_(), chroma_t, kron)
    ch = (sizes + 1) // 2  # each sample's own chroma window
    mh = _upsample_matrix(ch[:, 0], hp // 2, x)[:, None]
    mw = _upsample_matrix(ch[:, 1], wp // 2, x)[:, None].transpose(-1, -2)
    chroma = (mh @ chroma @ mw).round_()
    rgb = _color(torch.cat([y, chroma], dim=1), _YCC_TO_RGB, 1.0, _YCC_TO_RGB_OFFSET)
    return rgb[:, :, :h, :w].round().clamp_(0, 255).div_(255.0)
