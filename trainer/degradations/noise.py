"""Additive Gaussian and Poisson noise, per-sample strength, colour or gray.

Formulas follow Real-ESRGAN (basicsr `random_add_*_noise_pt`): Gaussian noise of std
sigma/255; Poisson noise on the image rounded to 8-bit levels, with the photon count per
level 2^ceil(log2(number of distinct levels in the sample)) and the result scaled; "gray"
draws one noise plane (from the luma for Poisson) shared by the three channels.

Noise is drawn per sample, from that sample's own generator and only over its valid window.
On the CPU this is the one place with a Python loop over samples, and it is deliberate: torch.poisson
consumes a data-dependent amount of randomness (rejection sampling), so drawing a batch from
one stream would make every sample's noise depend on the other samples' pixels. Each loop
iteration is vectorised over the sample's pixels; the loop overhead is microseconds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .device import to_device

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


def add_noise_batched(x: Tensor, sizes: Tensor, gaussian: Tensor, sigma: Tensor, poisson_scale: Tensor,
                      gray: Tensor, g: torch.Generator) -> Tensor:
    """`add_noise` in a few whole-batch calls from one generator `g` (on x's device): the GPU path.

    Same distributions per sample (sigma, Poisson level count, gray planes, valid windows), no
    Python loop and no host sync; both noise kinds are drawn for every sample and one is kept
    (cheaper on a GPU than splitting the batch). The price: one stream for the batch, so a
    sample's Poisson noise may depend on the other samples' pixels (rejection sampling) - the
    per-sample path keeps them apart; a seed still reproduces a batch.
    """
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    hw = to_device(sizes, x)
    valid = ((rows < hw[:, 0, None, None]) & (cols < hw[:, 1, None, None]))[:, None]  # (B, 1, H, W)
    per = lambda t: to_device(t, x, x.dtype).view(b, 1, 1, 1)  # noqa: E731
    is_gray = to_device(gray, x).view(b, 1, 1, 1)
    gauss = torch.randn((b, c, h, w), generator=g, device=x.device, dtype=x.dtype)
    gauss = torch.where(is_gray, gauss[:, :1], gauss) * (per(sigma) / 255.0)
    luma = (x * to_device(torch.tensor(_LUMA), x, x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    src = torch.where(is_gray, luma, x)  # gray samples: the luma, repeated over the channels
    levels = (src * 255.0).round_().clamp_(0, 255)
    seen = torch.zeros((b, 256), device=x.device, dtype=x.dtype)
    seen.scatter_add_(1, levels.long().flatten(1), valid.expand_as(levels).to(x.dtype).flatten(1))
    distinct = (seen > 0).sum(1).clamp_min(1).to(torch.float64)
    vals = torch.exp2(torch.ceil(torch.log2(distinct)))  # 2^ceil(log2(distinct)), exact for ints
    vals = vals.to(x.dtype).view(b, 1, 1, 1)
    rate = levels * (vals / 255.0)
    pois = (torch.poisson(rate, generator=g) - rate) * (per(poisson_scale) / vals)
    pois = torch.where(is_gray, pois[:, :1], pois)
    noise = torch.where(to_device(gaussian, x).view(b, 1, 1, 1), gauss, pois)
    return (x + noise * valid).clamp_(0, 1)
