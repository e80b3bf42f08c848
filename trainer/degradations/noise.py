"""Additive Gaussian and Poisson noise, per-sample strength, colour or gray, batched.

Formulas follow Real-ESRGAN (basicsr `random_add_*_noise_pt`): Gaussian noise of std
sigma/255; Poisson noise on the image rounded to 8-bit levels, with the photon count per
level 2^ceil(log2(number of distinct levels in the sample)) and the result scaled; "gray"
draws one noise plane (from the luma for Poisson) shared by the three channels. The caller
picks Gaussian or Poisson per sample; each function only draws noise for the samples given.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LUMA = (0.299, 0.587, 0.114)


def gaussian_noise(shape: tuple[int, ...], sigma: Tensor, gray: Tensor, g: torch.Generator,
                   device: torch.device, dtype: torch.dtype) -> Tensor:
    """Noise for (B, C, H, W) images: std sigma[b] / 255, one plane for all C where gray[b]."""
    b, c, h, w = shape
    std = (sigma / 255.0).to(device=device, dtype=dtype).view(b, 1, 1, 1)
    noise = torch.empty(shape, device=device, dtype=dtype)
    color = ~gray
    n_color = int(color.sum())
    if n_color:
        noise[color.to(device)] = torch.randn((n_color, c, h, w), generator=g, device=device, dtype=dtype)
    if n_color < b:
        plane = torch.randn((b - n_color, 1, h, w), generator=g, device=device, dtype=dtype)
        noise[gray.to(device)] = plane.expand(b - n_color, c, h, w)
    return noise * std


def _level_count(img8: Tensor, valid: Tensor) -> Tensor:
    """Distinct 8-bit levels per sample over its valid pixels: (B,) float."""
    b = img8.shape[0]
    levels = (img8 * 255).round().long().clamp(0, 255).reshape(b, -1)
    weights = valid.expand_as(img8).reshape(b, -1).to(img8.dtype)
    hist = torch.zeros(b, 256, device=img8.device, dtype=img8.dtype).scatter_add_(1, levels, weights)
    return (hist > 0).sum(1).clamp_min(1).to(img8.dtype)


def _poisson(img: Tensor, valid: Tensor, g: torch.Generator) -> Tensor:
    """Poisson noise of img rounded to 8-bit levels, with the level-count photon scale."""
    img8 = (img * 255.0).round().clamp(0, 255) / 255.0
    vals = torch.exp2(torch.ceil(torch.log2(_level_count(img8, valid)))).view(-1, 1, 1, 1)
    return torch.poisson(img8 * vals, generator=g) / vals - img8


def poisson_noise(img: Tensor, scale: Tensor, gray: Tensor, valid: Tensor, g: torch.Generator) -> Tensor:
    """Poisson noise for img (B, C, H, W), times scale[b]; gray[b]: from the luma, shared.

    valid: (B, 1, H, W) bool, the pixels that count as the sample's content.
    """
    b, c, h, w = img.shape
    noise = torch.empty_like(img)
    color = ~gray.to(img.device)
    n_color = int(color.sum())
    if n_color:
        noise[color] = _poisson(img[color], valid[color], g)
    if n_color < b:
        luma = torch.tensor(_LUMA, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
        gray_img = (img[~color] * luma).sum(1, keepdim=True)
        noise[~color] = _poisson(gray_img, valid[~color], g).expand(b - n_color, c, h, w)
    return noise * scale.to(device=img.device, dtype=img.dtype).view(b, 1, 1, 1)
