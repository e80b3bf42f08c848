"""Per-sample random parameters of a stage and of the final step, drawn before any pixel work.

Drawing everything up front (a fixed number of draws per sample, whatever the outcome) keeps
a seed's results independent of image sizes and content, and lets the caller inspect exactly
what was applied (the preview grid shows the kernels).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from .config import RESIZE_MODES, FinalConfig, StageConfig
from .kernels import KernelDraw, draw_kernels, draw_sinc
from .rand import bernoulli, categorical, choice, uniform

UP, DOWN, KEEP = 0, 1, 2
_D = TypeVar("_D")


@dataclass(frozen=True)
class StageDraw:
    """What one stage does to each sample (tensors of shape (n,), on the CPU).

    direction: UP/DOWN/KEEP; mode indexes RESIZE_MODES; sigma in 8-bit units; quality is
    None when the stage has no JPEG.
    """

    kernel: KernelDraw
    blur: Tensor
    direction: Tensor
    scale: Tensor
    mode: Tensor
    gaussian: Tensor
    sigma: Tensor
    poisson_scale: Tensor
    gray: Tensor
    quality: Tensor | None


@dataclass(frozen=True)
class FinalDraw:
    """The final step per sample: order, resize mode, sinc kernel (or pulse), JPEG quality
    (None: no JPEG)."""

    resize_first: Tensor
    mode: Tensor
    kernel: KernelDraw
    quality: Tensor | None


def draw_modes(modes: tuple[str, ...], n: int, g: torch.Generator) -> Tensor:
    """Resize modes drawn uniformly from `modes`, as indices into RESIZE_MODES."""
    table = torch.tensor([RESIZE_MODES.index(m) for m in modes])
    return table[choice(len(modes), n, g)]


def draw_quality(rng: tuple[float, float], n: int, g: torch.Generator) -> Tensor:
    """Integer JPEG qualities, uniform over ceil(low)..floor(high) (a real encoder's quality
    is an integer; the reference draws a float and scales its tables continuously)."""
    lo, hi = math.ceil(rng[0]), math.floor(rng[1])
    return lo + choice(hi - lo + 1, n, g)


def draw_stage(cfg: StageConfig, n: int, g: torch.Generator) -> StageDraw:
    """Draw one stage's parameters for `n` samples from `cfg`."""
    kernel = draw_kernels(cfg.kernel, n, g)
    blur = bernoulli(cfg.blur_prob, n, g)
    direction = categorical(cfg.resize_probs, n, g)
    up = uniform(1.0, cfg.resize_range[1], n, g)
    down = uniform(cfg.resize_range[0], 1.0, n, g)
    scale = torch.where(direction == UP, up, torch.where(direction == DOWN, down, torch.ones_like(up)))
    mode = draw_modes(cfg.resize_modes, n, g)
    gaussian = bernoulli(cfg.gaussian_noise_prob, n, g)
    sigma = uniform(*cfg.noise_range, n, g)
    poisson_scale = uniform(*cfg.poisson_scale_range, n, g)
    gray = bernoulli(cfg.gray_noise_prob, n, g)
    quality = None if cfg.jpeg_range is None else draw_quality(cfg.jpeg_range, n, g)
    return StageDraw(kernel, blur, direction, scale, mode, gaussian, sigma, poisson_scale, gray, quality)


def draw_final(cfg: FinalConfig, n: int, g: torch.Generator) -> FinalDraw:
    """Draw the final step's parameters for `n` samples from `cfg`."""
    resize_first = bernoulli(cfg.resize_first_prob, n, g)
    mode = draw_modes(cfg.resize_modes, n, g)
    kernel = draw_sinc(cfg.kernel_range, cfg.cutoff_range, cfg.sinc_prob, n, g)
    quality = None if cfg.jpeg_range is None else draw_quality(cfg.jpeg_range, n, g)
    return FinalDraw(resize_first, mode, kernel, quality)


def take(draw: _D, idx: Tensor) -> _D:
    """The same draw restricted to samples `idx` (nested draws included)."""
    changes = {}
    for f in dataclasses.fields(draw):  # type: ignore[arg-type]
        v = getattr(draw, f.name)
        changes[f.name] = take(v, idx) if dataclasses.is_dataclass(v) else (None if v is None else v[idx])
    return dataclasses.replace(draw, **changes)  # type: ignore[type-var]
