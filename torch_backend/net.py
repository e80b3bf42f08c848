"""The torch module for a model: an ncnn graph recognised by convert's importer, its weights
(the file's, or `--dn` blended bytes, so both backends blend identically) loaded strictly; or a
`.pth`/`.safetensors` whose architecture `convert` detects (its families, then spandrel)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..archs.errors import UnsupportedModelError
from ..archs.family import ArchInfo, build_model
from ..convert.detect import load_model
from ..convert.direct_writer import NcnnModel
from ..convert.importer import import_ncnn_data, source_forward
from ..convert.sidecar import build_spec
from ..convert.weights_io import WeightsError, load_state_dict
from ..graph.ncnn_files import NcnnFormatError
from ..model.catalog import ModelFiles
from ..run.backend import BackendError

Forward = Callable[[torch.Tensor], torch.Tensor]


def load_net(model: ModelFiles, weights: bytes | None = None) -> tuple[nn.Module, Forward]:
    """(module in eval mode on the CPU, forward incl. the graph's output resize) for `model`.

    BackendError (one line) when the files cannot be read or the graph is no family the importer maps.
    """
    label = model.param.name
    try:
        text = model.param.read_text(encoding="utf-8")
        blob = weights if weights is not None else model.bin.read_bytes()
    except (OSError, UnicodeDecodeError) as exc:
        raise BackendError(f"the torch backend cannot read {label} ({exc})") from None
    try:
        info, state_dict = import_ncnn_data(text, blob, label)
    except (NcnnFormatError, UnsupportedModelError) as exc:
        raise BackendError(f"the torch backend cannot map this model: {exc}") from None
    spec = model.spec
    scale = info.scale * info.output_resize
    if abs(scale - spec.scale) > 1e-6 or (info.in_channels, info.out_channels) != (spec.in_channels, spec.out_channels):
        raise BackendError(f"the torch backend cannot map this model: {label} imports as {info.describe()} "
                           f"(x{scale:g}), its spec says x{spec.scale}")
    net = build_model(info)
    net.load_state_dict(state_dict, strict=True)
    net.eval().requires_grad_(False)
    return net, lambda x: source_forward(info, net, x)


def load_weights_net(path: Path) -> tuple[ArchInfo, nn.Module]:
    """(architecture, module in eval mode on the CPU) of a weights file, loaded safely
    (`weights_only=True` or safetensors); BackendError (one line) when it cannot be mapped."""
    try:
        info, net = load_model(load_state_dict(path))
    except (WeightsError, UnsupportedModelError) as exc:
        raise BackendError(f"the torch backend cannot map this model: {exc}") from None
    if not info.family.is_generator:
        raise BackendError(f"the torch backend cannot map this model: {path.name} is a {info.name}, "
                           "not an image-to-image generator")
    net.requires_grad_(False)
    return info, net


def weights_files(path: Path, info: ArchInfo, tile_pad: int) -> ModelFiles:
    """A weights file as the runtime's `ModelFiles`, with the spec `convert` would write for it."""
    spec = build_spec(info, path.stem, NcnnModel("", b""), False, tile_pad, source=f"{path.name} (PyTorch weights)")
    return ModelFiles(path, path, spec, "path")
