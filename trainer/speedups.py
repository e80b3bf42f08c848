"""The `speed` options that change how the networks run, never what they compute (beyond float
rounding): cuDNN autotuning, channels_last, torch.compile, in-place dense blocks.

Kept apart from the stages so each option is one small function that bench/bench_train_gpu.py
can switch alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..archs.rrdbnet.module import ResidualDenseBlock
from .config import SpeedConfig


def apply_backend(speed: SpeedConfig, device: torch.device) -> None:
    """Process-wide backend switches for a run on `device` (cuDNN only matters on CUDA)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = speed.enabled("cudnn_benchmark", device)


def to_format(module: nn.Module, channels_last: bool) -> nn.Module:
    """The module in NHWC memory format when asked (in place, as `Module.to` is)."""
    return module.to(memory_format=torch.channels_last) if channels_last else module


def compiled(module: nn.Module, on: bool, mode: str = "default") -> Callable[..., Any]:
    """What to call instead of `module`: its `torch.compile` wrapper (in `mode`) when on. The
    module itself stays what state dicts, EMA and DDP see, so checkpoint keys do not change."""
    return torch.compile(module, mode=mode) if on else module


def fuse_dense_blocks(net: nn.Module, on: bool) -> int:
    """Switch every dense block of `net` to in-place LeakyReLU; returns how many were switched."""
    blocks = [m for m in net.modules() if isinstance(m, ResidualDenseBlock)]
    for block in blocks:
        block.inplace_act = on
    return len(blocks)
