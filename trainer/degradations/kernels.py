"""Random blur kernels, drawn and built for a whole batch at once.

Each sample gets its own type, size, sigmas, angle, beta, or a sinc cutoff. All kernels are
built on one centred 21x21 grid (a size-k kernel is the same function masked to its central
k x k window, which equals building it at size k and zero-padding to 21 as the reference does)
and normalised to sum 1. The closed forms, with the quadratic form
q = p^T Sigma^-1 p, Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T, p = (x, y) (x = column):

- Gaussian:             exp(-q / 2)
- generalized Gaussian: exp(-q^beta / 2)
- plateau:              1 / (1 + q^beta)
- sinc (circular low-pass, cutoff w): w J1(w r) / (2 pi r), value w^2 / (4 pi) at r = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .config import KERNEL_TYPES, KernelConfig
from .rand import bernoulli, categorical, choice, uniform

PAD_TO = 21
_TINY = 1e-20


@dataclass(frozen=True)
class KernelDraw:
    """Per-sample kernel parameters (all tensors of shape (n,), on the CPU).

    type_index indexes `KERNEL_TYPES`; where `sinc` is true the Gaussian-family fields are
    unused and `cutoff` applies.
    """

    size: Tensor
    type_index: Tensor
    sigma_x: Tensor
    sigma_y: Tensor
    theta: Tensor
    beta: Tensor
    sinc: Tensor
    cutoff: Tensor

    def __len__(self) -> int:
        return int(self.size.numel())


def _odd_sizes(rng: tuple[int, int], n: int, g: torch.Generator) -> Tensor:
    lo, hi = rng
    return lo + 2 * choice((hi - lo) // 2 + 1, n, g)


def _beta(rng: tuple[float, float], n: int, g: torch.Generator) -> Tensor:
    """As the reference: 50/50 a beta below 1 (uniform lo..1) or above 1 (uniform 1..hi)."""
    below = bernoulli(0.5, n, g)
    low = uniform(rng[0], 1.0, n, g)
    high = uniform(1.0, rng[1], n, g)
    return torch.where(below, low, high)


def draw_kernels(cfg: KernelConfig, n: int, g: torch.Generator) -> KernelDraw:
    """Draw `n` kernels' parameters from `cfg` (a fixed number of draws, whatever the outcome)."""
    size = _odd_sizes(cfg.kernel_range, n, g)
    sinc = bernoulli(cfg.sinc_prob, n, g)
    chosen = categorical(cfg.kernel_probs, n, g)
    type_index = torch.tensor([KERNEL_TYPES.index(t) for t in cfg.kernel_types])[chosen]
    sigma_x = uniform(*cfg.sigma_range, n, g)
    sigma_y = uniform(*cfg.sigma_range, n, g)
    theta = uniform(*cfg.rotation_range, n, g)
    beta_g = _beta(cfg.betag_range, n, g)
    beta_p = _beta(cfg.betap_range, n, g)
    cut_small = uniform(*cfg.sinc_cutoff_small, n, g)
    cut_large = uniform(*cfg.sinc_cutoff_large, n, g)

    iso = torch.tensor([not t.endswith("aniso") for t in KERNEL_TYPES])[type_index]
    generalized = torch.tensor([t.startswith("generalized") for t in KERNEL_TYPES])[type_index]
    plateau = torch.tensor([t.startswith("plateau") for t in KERNEL_TYPES])[type_index]
    sigma_y = torch.where(iso, sigma_x, sigma_y)
    theta = torch.where(iso, torch.zeros_like(theta), theta)
    beta = torch.where(generalized, beta_g, torch.where(plateau, beta_p, torch.ones_like(beta_g)))
    cutoff = torch.where(size < cfg.sinc_small_below, cut_small, cut_large)
    return KernelDraw(size, type_index, sigma_x, sigma_y, theta, beta, sinc, cutoff)


def draw_sinc(
    kernel_range: tuple[int, int], cutoff_range: tuple[float, float], prob: float, n: int,
    g: torch.Generator,
) -> KernelDraw:
    """The final step's kernels: a sinc with probability `prob`, else no filter (a pulse)."""
    size = _odd_sizes(kernel_range, n, g)
    sinc = bernoulli(prob, n, g)
    cutoff = uniform(*cutoff_range, n, g)
    zeros = torch.zeros(n, dtype=torch.float64)
    return KernelDraw(size, torch.full((n,), -1), zeros, zeros, zeros, zeros, sinc, cutoff)


def _grid(pad_to: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    ax = torch.arange(pad_to, dtype=dtype) - (pad_to // 2)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def quadratic_form(sigma_x: Tensor, sigma_y: Tensor, theta: Tensor, pad_to: int = PAD_TO) -> Tensor:
    """q = p^T Sigma^-1 p on the centred grid, per sample: (n, pad_to, pad_to)."""
    xx, yy = _grid(pad_to, sigma_x.dtype)
    c = torch.cos(theta)[:, None, None]
    s = torch.sin(theta)[:, None, None]
    u = c * xx + s * yy
    v = -s * xx + c * yy
    return (u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2


def circular_lowpass(cutoff: Tensor, pad_to: int = PAD_TO) -> Tensor:
    """Unnormalised sinc kernels w J1(w r) / (2 pi r), (n, pad_to, pad_to)."""
    xx, yy = _grid(pad_to, cutoff.dtype)
    r = torch.sqrt(xx**2 + yy**2)
    w = cutoff[:, None, None]
    r_safe = torch.where(r == 0, torch.ones_like(r), r)
    k = w * torch.special.bessel_j1(w * r_safe) / (2 * math.pi * r_safe)
    return torch.where(r == 0, w**2 / (4 * math.pi), k)


def size_mask(size: Tensor, pad_to: int = PAD_TO) -> Tensor:
    """(n, pad_to, pad_to) bool: inside each sample's central size x size window."""
    xx, yy = _grid(pad_to, torch.float64)
    half = (size // 2).to(torch.float64)[:, None, None]
    return (xx.abs() <= half) & (yy.abs() <= half)


def make_kernels(draw: KernelDraw, pad_to: int = PAD_TO) -> Tensor:
    """Build the drawn kernels: (n, pad_to, pad_to) float64 on the CPU, each summing to 1.

    Samples with a type_index of -1 and no sinc get a unit pulse (no filtering).
    """
    q = quadratic_form(draw.sigma_x.clamp_min(1e-6), draw.sigma_y.clamp_min(1e-6), draw.theta, pad_to)
    tidx = draw.type_index[:, None, None]
    gen = torch.tensor([t.startswith("generalized") for t in KERNEL_TYPES])
    plat = torch.tensor([t.startswith("plateau") for t in KERNEL_TYPES])
    safe = tidx.clamp_min(0)
    qb = q ** draw.beta[:, None, None]
    gauss = torch.where(gen[safe], torch.exp(-0.5 * qb), torch.exp(-0.5 * q))
    k = torch.where(plat[safe], 1.0 / (qb + 1.0), gauss)
    pulse = torch.zeros_like(k)
    pulse[:, pad_to // 2, pad_to // 2] = 1.0
    k = torch.where(tidx < 0, pulse, k)
    k = torch.where(draw.sinc[:, None, None], circular_lowpass(draw.cutoff, pad_to), k)
    k = torch.where(size_mask(draw.size, pad_to), k, torch.zeros_like(k))
    k = k / k.sum(dim=(1, 2), keepdim=True)
    # Weights this small are invisible in float32 results, but as float32 denormals they made
    # the CPU convolution up to 10x slower (e.g. exp(-q/2) of a sigma-0.2 Gaussian).
    return torch.where(k.abs() < _TINY, torch.zeros_like(k), k)
