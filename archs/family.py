"""What an architecture family must say about itself, and the `ArchInfo` naming one concrete network.

Why one record per family: detection, the ncnn writer, the ncnn importer, the receptive field and
the trainer's constructor all need to know the same architecture. Each family folder fills one
`ArchFamily`; convert/ and trainer/ ask the list in `families.py` (or a list a caller passes,
e.g. a test's toy architecture) instead of branching on names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .errors import UnsupportedModelError

if TYPE_CHECKING:
    from ..graph.ncnn_files import NcnnParam
    from .ncnn_graph import NcnnGraph

StateDict = Mapping[str, torch.Tensor]
NcnnWeights = dict[str, list[np.ndarray]]


@dataclass(frozen=True)
class ArchFamily:
    """One generator (or discriminator) family and everything the project knows about it.

    Args:
        name: the name in configs, sidecars (`arch`) and messages, e.g. `RRDBNet`.
        module: the torch constructor; keyword arguments are the family's hyper-parameters.
        detect: state_dict -> ArchInfo, or None when the keys are not this family's. May raise
            UnsupportedModelError when the keys are its own but unusable.
        scale_arg: the constructor argument holding the upscale factor; None for networks that
            are not image-to-image generators (discriminators: never exported).
        size_multiple: params -> the divisor input H and W need (pixel-unshuffle, strides).
        receptive_radius: params -> input pixels per side that can reach an output pixel.
        measure_pad: the radius is a loose bound; measure the seam-free tile padding instead.
        write_ncnn: (graph, state_dict, params) -> output blob, building the graph layer by layer.
        match_ncnn: (graph, weights) -> ArchInfo with a state_dict, or None when not this family.
        ncnn_layers: layer types `write_ncnn` produces (and `match_ncnn` accepts).
        rename_keys: state_dict -> state_dict with this family's key names (old layouts); applied
            to every loaded checkpoint, so it must leave other families' keys alone.
        foreign: a module from another package (spandrel). It is built on the CPU (it may make
            tensors in `__init__`, so no meta-device shortcut) and its ncnn export is verified
            by PSNR (pnnx rewrites ops such as LayerNorm whose arithmetic differs from torch's
            beyond 1e-4, and fused weights cannot be mapped back onto the module's parameters).
        child_import: called in a child process before the family's modules are unpickled there
            (pnnx's export), for classes whose package needs help to import (spandrel).
    """

    name: str
    module: Callable[..., nn.Module]
    detect: Callable[[StateDict], ArchInfo | None]
    scale_arg: str | None = None
    size_multiple: Callable[[Mapping[str, Any]], int] = lambda params: 1
    receptive_radius: Callable[[Mapping[str, Any]], int] | None = None
    measure_pad: bool = False
    write_ncnn: Callable[[NcnnGraph, StateDict, Mapping[str, Any]], str] | None = None
    match_ncnn: Callable[[NcnnParam, NcnnWeights], tuple[ArchInfo, dict[str, torch.Tensor]] | None] | None = None
    ncnn_layers: frozenset[str] = frozenset()
    rename_keys: Callable[[StateDict], StateDict] | None = None
    foreign: bool = False
    child_import: Callable[[], object] | None = None

    @property
    def is_generator(self) -> bool:
        return self.scale_arg is not None


@dataclass(frozen=True)
class ArchInfo:
    """An architecture name plus its constructor arguments (`build_model` turns it into a module).

    Args:
        name: the family's name (`RRDBNet`, `SRVGGNetCompact`, `UNetDiscriminatorSN`, ...).
        params: constructor keyword arguments, complete (defaults spelled out).
        notes: hyper-parameters that the weights cannot reveal and were assumed.
        output_resize: a bicubic resize the source graph applies after the network (the
            official animevideov3 x2/x3 ncnn files are the x4 net then x0.5 / x0.75); 1.0 if none.
        family: the family record (`families.arch_info` finds a built-in one by name).
    """

    name: str
    params: dict[str, Any]
    notes: tuple[str, ...] = field(default=())
    output_resize: float = 1.0
    family: ArchFamily = field(kw_only=True, compare=False, repr=False)

    @property
    def scale(self) -> int:
        """The network's own upscale factor (before any `output_resize`); 1 for discriminators."""
        arg = self.family.scale_arg
        return int(self.params.get(arg, 1)) if arg else 1

    @property
    def in_channels(self) -> int:
        return int(self.params.get("num_in_ch", 3))

    @property
    def out_channels(self) -> int:
        return int(self.params.get("num_out_ch", 3 if self.family.is_generator else 1))

    @property
    def size_multiple(self) -> int:
        """Input H and W must divide by this (e.g. pixel-unshuffle RRDBNets: x2 -> 2, x1 -> 4)."""
        return int(self.family.size_multiple(self.params))

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})"


def build_model(info: ArchInfo) -> nn.Module:
    """A freshly initialised module for `info` (load the weights with `strict=True` afterwards)."""
    return info.family.module(**info.params)


def shape_of(sd: StateDict, key: str) -> tuple[int, ...]:
    return tuple(sd[key].shape)


def describe_mismatch(expected: Mapping[str, torch.Size | tuple[int, ...]], sd: StateDict) -> str:
    """One line naming missing keys, unexpected keys and shape mismatches; empty when they agree."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {list(sd[k].shape)} (expected {list(s)})" for k, s in expected.items()
             if k in sd and shape_of(sd, k) != tuple(s)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) e.g. {', '.join(unexpected[:3])}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es) e.g. {'; '.join(wrong[:2])}")
    return "; ".join(problems)


def check_state_dict(info: ArchInfo, sd: StateDict) -> None:
    """Every key and shape must match a shape-only instance of `info`; else UnsupportedModelError."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in build_model(info).state_dict().items()}
    problems = describe_mismatch(expected, sd)
    if problems:
        raise UnsupportedModelError(f"looks like {info.describe()} but: {problems}")


def names(families: Sequence[ArchFamily]) -> str:
    return ", ".join(f.name for f in families)
