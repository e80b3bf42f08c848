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
    """Noise for (B, C, H, W) images: std sigma[b] / 255, one plane for all C where gray[b].

    Draws a colour field for every sample and, if any sample is gray, a plane for every
    sample (normal draws are cheap; a fixed draw count keeps the stream simple).
    """
    b, c, h, w = shape
    std = (sigma / 255.0).to(device=device, dtype=dtype).view(b, 1, 1, 1)
    noise = torch.randn(shape, generator=g, device=device, dtype=dtype)
    if bool(gray.any()):
        plane = torch.randn((b, 1, h, w), generator=g, device=device, dtype=dtype)
        noise = torch.where(gray.to(device).view(b, 1, 1, 1), plane, noise)
    return noise.mul_(std)


def _level_count(levels: Tensor, valid: Tensor) -> Tensor:
    """Distinct 8-bit levels per sample over its valid pixels: (B,) float.

    levels: (B, C, H, W) integral floats in 0..255; valid: (B, 1, H, W) bool.
    """
    b = levels.shape[0]
    lv = torch.where(valid, levels, torch.full_like(levels, 256.0)).long().reshape(b, -1)
    seen = torch.zeros(b, 257, device=levels.device, dtype=torch.bool).scatter_(1, lv, True)
    return seen[:, :256].sum(1).clamp_min(1).to(levels.dtype)


def _poisson(img: Tensor, valid: Tensor, g: torch.Generator) -> Tensor:
    """Poisson noise of img rounded to 8-bit levels, with the level-count photon scale."""
    levels = (img * 255.0).round_().clamp_(0, 255)
    vals = torch.exp2(torch.ceil(torch.log2(_level_count(levels, valid)))).view(-1, 1, 1, 1)
    rate = levels * (vals / 255.0)
    return torch.poisson(rate, generator=g).sub_(rate).div_(vals)


def poisson_noise(img: Tensor, scale: Tensor, gray: Tensor, valid: Tensor, g: torch.Generator) -> Tensor:
    """Poisson noise for img (B, C, H, W), times scale[b]; gray[b]: from the luma, shared.

    valid: (B, 1, H, W) bool, the pixels that count as the sample's content.
    """
    b, c, h, w = img.shape
    gray = gray.to(img.device)
    scale = scale.to(device=img.device, dtype=img.dtype).view(b, 1, 1, 1)
    if not bool(gray.any()):
        return _poisson(img, valid, g).mul_(scale)
    luma = torch.tensor(_LUMA, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
    if bool(gray.all()):
        return _poisson((img * luma).sum(1, keepdim=True), valid, g).mul_(scale).expand(b, c, h, w)
    noise = torch.empty_like(img)
    noise[~gray] = _poisson(img[~gray], valid[~gray], g)
    noise[gray] = _poisson((img[gray] * luma).sum(1, keepdim=True), valid[gray], g).expand(-1, c, h, w)
    return noise.mul_(scale)
