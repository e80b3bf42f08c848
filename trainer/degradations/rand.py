"""Small helpers for drawing from an explicit `torch.Generator` (never global state)."""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(lo: float, hi: float, n: int, g: torch.Generator) -> Tensor:
    """n draws, uniform in [lo, hi), float64, on the CPU (parameters are small)."""
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64, device=g.device).cpu()


def choice(n_options: int, n: int, g: torch.Generator) -> Tensor:
    """n indices drawn uniformly from range(n_options)."""
    return torch.randint(0, n_options, (n,), generator=g, device=g.device).cpu()


def categorical(probs: tuple[float, ...], n: int, g: torch.Generator) -> Tensor:
    """n indices drawn with the given probabilities (inverse CDF of one uniform each)."""
    cdf = torch.cumsum(torch.tensor(probs, dtype=torch.float64), 0)
    u = torch.rand(n, generator=g, dtype=torch.float64, device=g.device).cpu() * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_max(len(probs) - 1)


def bernoulli(p: float, n: int, g: torch.Generator) -> Tensor:
    """n booleans, each true with probability p."""
    return torch.rand(n, generator=g, dtype=torch.float64, device=g.device).cpu() < p


def sample_generators(g: torch.Generator, n: int, device: torch.device) -> list[torch.Generator]:
    """One generator per sample on `device`, seeded from `g`: a sample's noise then depends on
    nothing but its own seed (see noise.py)."""
    seeds = torch.randint(0, 2**62, (n,), generator=g, device=g.device).tolist()
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
