"""Additive Gaussian and Poisson noise, per-sample strength, colour or gray.

Formulas follow Real-ESRGAN (basicsr `random_add_*_noise_pt`): Gaussian noise of std
sigma/255; Poisson noise on the image rounded to 8-bit levels, with the photon count per
level 2^ceil(log2(number of distinct levels in the sample)) and the result scaled; "gray"
draws one noise plane (from the luma for Poisson) shared by the three channels.

Noise is drawn per sample, from that sample's own generator and only over its valid window.
This is the one place with a Python loop over samples, and it is deliberate: torch.poisson
consumes a data-dependent amount of randomness (rejection sampling), so drawing a batch from
one stream would make every sample's noise depend on the other samples' pixels. Each loop
iteration is vectorised over the sample's pixels; the loop overhead is microseconds.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LUMA = (0.299, 0.587, 0.114)


def gaussian_noise(shape: tuple[int, int, int], sigma: float, gray: bool, g: torch.Generator,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Noise (C, H, W) of std sigma / 255; gray: one plane repeated over C (an expanded view)."""
    c, h, w = shape
    n = torch.randn((1 if gray else c, h, w), generator=g, device=g.device, dtype=dtype)
    return n.mul_(sigma / 255.0).expand(c, h, w)


def poisson_noise(img: Tensor, scale: float, gray: bool, g: torch.Generator) -> Tensor:
    """Poisson noise for one image (C, H, W) in [0, 1], times `scale`; gray: from the luma."""
    c = img.shape[0]
    if gray:
        luma = torch.tensor(_LUMA, device=img.device, dtype=img.dtype).view(3, 1, 1)
        img = (img * luma).sum(0, keepdim=True)
    levels = (img * 255.0).round_().clamp_(0, 255)
    distinct = int((torch.bincount(levels.flatten().long(), minlength=256) > 0).sum())
    vals = float(2 ** (max(distinct, 1) - 1).bit_length())  # 2^ceil(log2(distinct))
    rate = levels * (vals / 255.0)
    noise = torch.poisson(rate, generator=g).sub_(rate).mul_(scale / vals)
    return noise.expand(c, *noise.shape[1:])


def add_noise(x: Tensor, sizes: Tensor, gaussian: Tensor, sigma: Tensor, poisson_scale: Tensor,
              gray: Tensor, gens: list[torch.Generator]) -> Tensor:
    """x (B, C, H, W) canvas + per-sample noise over each valid window, clipped to [0, 1].

    gaussian[b] picks Gaussian (std sigma[b]) or Poisson (poisson_scale[b]); gray[b] shares
    one noise plane over the channels; gens[b] is sample b's generator (on x's device).
    """
    noise = torch.zeros_like(x)
    params = zip(sizes.tolist(), gaussian.tolist(), sigma.tolist(), poisson_scale.tolist(), gray.tolist())
    for b, (gen, ((h, w), is_gauss, sig, pscale, is_gray)) in enumerate(zip(gens, params)):
        if is_gauss:
            n = gaussian_noise((x.shape[1], h, w), sig, is_gray, gen, x.dtype)
        else:
            n = poisson_noise(x[b, :, :h, :w], pscale, is_gray, gen)
        noise[b, :, :h, :w] = n
    return noise.add_(x).clamp_(0, 1)
