"""Typed configuration of the high-order degradation model.

One `StageConfig` describes one degradation stage (blur -> resize -> noise -> optional JPEG);
the Real-ESRGAN recipe runs the same stage function twice with two parameter sets, then a
`FinalConfig` step (resize back + sinc and JPEG, in random order). `DegradationConfig.x4plus()`
is the Real-ESRGAN x4plus recipe; `from_dict`/`from_yaml` read overrides on top of that preset
through the training config's own checker (`trainer/typed_dict.py`): unknown keys are rejected by
name with a did-you-mean hint, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..typed_dict import ConfigError, build, read_yaml, to_plain

__all__ = ["ConfigError", "DegradationConfig", "FinalConfig", "KernelConfig", "StageConfig", "USMConfig"]

KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
RESIZE_MODES = ("area", "bilinear", "bicubic")
_MAX_KERNEL = 21
_MAX_RESIZE = 4.0  # a stage's upscale: x4 already makes a 1024 px GT a 4096 px canvas per sample
_MAX_USM_RADIUS = 1000  # the recipe uses 50; 1e8 ran for minutes building the blur matrices




def _check_range(name: str, rng: tuple[float, float], lo: float, hi: float) -> None:
    if len(rng) != 2 or not (lo <= rng[0] <= rng[1] <= hi):
        raise ConfigError(f"{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {rng}")


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {p}")


def _check_probs(name: str, probs: tuple[float, ...], n: int) -> None:
    if len(probs) != n or not all(p >= 0 for p in probs) or not abs(sum(probs) - 1.0) <= 1e-6:  # NaN fails
        raise ConfigError(f"{name} must be {n} non-negative probabilities summing to 1, got {probs}")


def _check_jpeg(name: str, rng: tuple[float, float] | None) -> None:
    if rng is None:
        return
    _check_range(name, rng, 1.0, 100.0)
    if math.ceil(rng[0]) > math.floor(rng[1]):
        raise ConfigError(f"{name} must contain an integer quality, got {rng}")


def _check_kernel_range(name: str, rng: tuple[int, int]) -> None:
    ok = len(rng) == 2 and all(int(k) == k and k % 2 == 1 for k in rng)
    if not ok or not 3 <= rng[0] <= rng[1] <= _MAX_KERNEL:
        raise ConfigError(f"{name} must be two odd sizes 3 <= low <= high <= {_MAX_KERNEL}, got {rng}")


def _check_modes(name: str, modes: tuple[str, ...]) -> None:
    bad = [m for m in modes if m not in RESIZE_MODES]
    if not modes or bad:
        raise ConfigError(f"{name}: unknown resize mode(s) {bad or modes}; choose from {RESIZE_MODES}")


@dataclass(frozen=True)
class KernelConfig:
    """Random blur kernels: Gaussian family (6 types) or, with `sinc_prob`, a 2-D sinc.

    kernel_range: odd sizes drawn uniformly from low..high (7..21).
    kernel_types / kernel_probs: type names from `KERNEL_TYPES` and their probabilities.
    sigma_range: sigma_x and sigma_y (pixels). rotation_range: angle of aniso kernels (radians).
    betag_range / betap_range: shape of the generalized Gaussian / plateau kernels.
    sinc_prob: probability of a sinc (circular low-pass) kernel instead;
    its cutoff is drawn from sinc_cutoff_small below `sinc_small_below` px, else sinc_cutoff_large.
    """

    kernel_range: tuple[int, int] = (7, 21)
    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma_range: tuple[float, float] = (0.2, 3.0)
    rotation_range: tuple[float, float] = (-math.pi, math.pi)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    sinc_cutoff_small: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_cutoff_large: tuple[float, float] = (math.pi / 5, math.pi)
    sinc_small_below: int = 13

    def validate(self, where: str) -> None:
        _check_kernel_range(f"{where}.kernel_range", self.kernel_range)
        bad = [t for t in self.kernel_types if t not in KERNEL_TYPES]
        if bad or not self.kernel_types:
            raise ConfigError(f"{where}.kernel_types: unknown type(s) {bad}; choose from {KERNEL_TYPES}")
        _check_probs(f"{where}.kernel_probs", self.kernel_probs, len(self.kernel_types))
        _check_range(f"{where}.sigma_range", self.sigma_range, 1e-3, 100.0)
        _check_range(f"{where}.rotation_range", self.rotation_range, -2 * math.pi, 2 * math.pi)
        _check_range(f"{where}.betag_range", self.betag_range, 1e-3, 100.0)
        _check_range(f"{where}.betap_range", self.betap_range, 1e-3, 100.0)
        if not self.betag_range[0] <= 1.0 <= self.betag_range[1]:
            raise ConfigError(f"{where}.betag_range must contain 1 (beta is drawn below/above 1 50/50)")
        if not self.betap_range[0] <= 1.0 <= self.betap_range[1]:
            raise ConfigError(f"{where}.betap_range must contain 1 (beta is drawn below/above 1 50/50)")
        _check_prob(f"{where}.sinc_prob", self.sinc_prob)
        _check_range(f"{where}.sinc_cutoff_small", self.sinc_cutoff_small, 1e-3, math.pi)
        _check_range(f"{where}.sinc_cutoff_large", self.sinc_cutoff_large, 1e-3, math.pi)


@dataclass(frozen=True)
class StageConfig:
    """One degradation stage: blur (prob `blur_prob`) -> resize -> noise -> JPEG (if jpeg_range).

    resize_probs: probabilities of (up, down, keep); up draws a scale in [1, high], down in
    [low, 1] from resize_range; the new size is int(base * scale), base being the stage's
    reference size (the input for stage 1, GT/scale for stage 2, as in Real-ESRGAN).
    resize_modes: drawn uniformly. gaussian_noise_prob: Gaussian (sigma in noise_range, 8-bit
    units) else Poisson (scale in poisson_scale_range); gray_noise_prob: same noise on all
    channels. jpeg_range: quality range, or None for no JPEG inside this stage.
    """

    blur_prob: float = 1.0
    kernel: KernelConfig = field(default_factory=KernelConfig)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] | None = (30.0, 95.0)

    def validate(self, where: str) -> None:
        _check_prob(f"{where}.blur_prob", self.blur_prob)
        self.kernel.validate(f"{where}.kernel")
        _check_probs(f"{where}.resize_probs", self.resize_probs, 3)
        _check_range(f"{where}.resize_range", self.resize_range, 1e-3, _MAX_RESIZE)
        if not self.resize_range[0] <= 1.0 <= self.resize_range[1]:
            raise ConfigError(f"{where}.resize_range must contain 1 (down below 1, up above 1)")
        _check_modes(f"{where}.resize_modes", self.resize_modes)
        _check_prob(f"{where}.gaussian_noise_prob", self.gaussian_noise_prob)
        _check_range(f"{where}.noise_range", self.noise_range, 0.0, 255.0)
        _check_range(f"{where}.poisson_scale_range", self.poisson_scale_range, 0.0, 1e3)
        _check_prob(f"{where}.gray_noise_prob", self.gray_noise_prob)
        _check_jpeg(f"{where}.jpeg_range", self.jpeg_range)


@dataclass(frozen=True)
class FinalConfig:
    """The last step: [resize to GT/scale + sinc, then JPEG] or [JPEG, then resize + sinc].

    resize_first_prob: probability of the first order (0.5). sinc_prob: probability of a sinc
    filter (else none); its size from kernel_range, cutoff from cutoff_range. jpeg_range:
    quality range, or None for no final JPEG.
    """

    resize_first_prob: float = 0.5
    resize_modes: tuple[str, ...] = RESIZE_MODES
    sinc_prob: float = 0.8
    kernel_range: tuple[int, int] = (7, 21)
    cutoff_range: tuple[float, float] = (math.pi / 3, math.pi)
    jpeg_range: tuple[float, float] | None = (30.0, 95.0)

    def validate(self, where: str) -> None:
        _check_prob(f"{where}.resize_first_prob", self.resize_first_prob)
        _check_modes(f"{where}.resize_modes", self.resize_modes)
        _check_prob(f"{where}.sinc_prob", self.sinc_prob)
        _check_kernel_range(f"{where}.kernel_range", self.kernel_range)
        _check_range(f"{where}.cutoff_range", self.cutoff_range, 1e-3, math.pi)
        _check_jpeg(f"{where}.jpeg_range", self.jpeg_range)


_MAX_USM_WEIGHT = 100.0  # Real-ESRGAN uses 0.5; beyond this the GT is noise


@dataclass(frozen=True)
class USMConfig:
    """Unsharp mask of the GT: weight of the residual, Gaussian radius (cv2 style: size
    radius+1 if even, sigma from the size), threshold on |residual| in 8-bit levels."""

    weight: float = 0.5
    radius: int = 50
    threshold: float = 10.0

    def validate(self, where: str) -> None:
        ok = 1 <= self.radius <= _MAX_USM_RADIUS and 0 <= self.weight <= _MAX_USM_WEIGHT and 0 <= self.threshold < math.inf
        if not ok:  # written so that NaN fails too; weight 1e300 once overflowed float32 mid-run
            raise ConfigError(f"{where}: need 1 <= radius <= {_MAX_USM_RADIUS}, 0 <= weight <= {_MAX_USM_WEIGHT:g} "
                              f"and threshold >= 0, got {self}")


@dataclass(frozen=True)
class DegradationConfig:
    """The whole high-order model: `first` and `second` stage, `final` step, GT `usm`."""

    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(default_factory=StageConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    usm: USMConfig = field(default_factory=USMConfig)

    def __post_init__(self) -> None:
        for name in ("first", "second", "final", "usm"):
            getattr(self, name).validate(name)

    @classmethod
    def x4plus(cls) -> DegradationConfig:
        """The Real-ESRGAN x4plus recipe (train_realesrgan_x4plus.yml)."""
        second = StageConfig(
            blur_prob=0.8,
            kernel=KernelConfig(sigma_range=(0.2, 1.5)),
            resize_probs=(0.3, 0.4, 0.3),
            resize_range=(0.3, 1.2),
            noise_range=(1.0, 25.0),
            poisson_scale_range=(0.05, 2.5),
            jpeg_range=None,  # the second stage's JPEG is part of the final step
        )
        return cls(first=StageConfig(), second=second, final=FinalConfig(), usm=USMConfig())

    @classmethod
    def from_dict(cls, d: dict[str, Any], prefix: str = "degradation") -> DegradationConfig:
        """Overrides on top of `x4plus()`; nested dicts per section; unknown keys raise (with a
        did-you-mean hint), named as in a training config (`degradation.first.noise_range`)."""
        return build(cls, d, f"{prefix}.", base=cls.x4plus())

    @classmethod
    def from_yaml(cls, path: str | Path) -> DegradationConfig:
        """Read a YAML mapping (optionally under a top-level `degradation:` key)."""
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        if len(data) == 1 and set(data) <= {"degradation", "degradations"}:
            data = next(iter(data.values())) or {}
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), the inverse of `from_dict`."""
        return to_plain(self)
