"""SRVGGNetCompact as a family: recognised from its keys or its ncnn graph, written to ncnn, its receptive field.

In ncnn it is a chain of convolutions with activations ending in PixelShuffle plus a nearest
Interp of the input; the official animevideov3 x2/x3 graphs append a bicubic resize of the x4
output, reported as `ArchInfo.output_resize`. Its receptive field is small and exact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..family import ArchFamily, ArchInfo, NcnnWeights, StateDict, UnsupportedModelError, shape_of
from ..ncnn_graph import INTERP_BICUBIC, INTERP_NEAREST, NcnnGraph
from ..ncnn_read import float_param, fused_slope, layers_of, put_conv
from .module import ACT_TYPES, LEAKY_SLOPE, SRVGGNetCompact

NAME = "SRVGGNetCompact"
_KEY = re.compile(r"body\.(\d+)\.(weight|bias)$")


def receptive_radius(params: Mapping[str, Any]) -> int:
    """num_conv + 2 convolutions of 3x3 at input resolution: exact."""
    return int(params["num_conv"]) + 2


def detect(sd: StateDict) -> ArchInfo | None:
    if "body.0.weight" not in sd or not all(_KEY.match(k) for k in sd):
        return None
    indices = {k: int(_KEY.match(k).group(1)) for k in sd}  # type: ignore[union-attr]
    convs = sorted(indices[k] for k, v in sd.items() if k.endswith("weight") and v.dim() == 4)
    acts = sorted(indices[k] for k, v in sd.items() if k.endswith("weight") and v.dim() == 1)
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
        raise UnsupportedModelError(f"looks like SRVGGNetCompact but its convs sit at body indices {convs[:8]}")
    num_feat, in_ch = shape_of(sd, "body.0.weight")[:2]
    last_out = shape_of(sd, f"body.{convs[-1]}.weight")[0]
    upscale = math.isqrt(max(last_out // in_ch, 1))
    if upscale * upscale * in_ch != last_out:
        raise UnsupportedModelError(
            f"looks like SRVGGNetCompact but its last conv has {last_out} outputs, not {in_ch} x upscale^2"
        )
    notes: tuple[str, ...] = ()
    if acts:
        act_type = "prelu"
    else:
        act_type = "relu"
        notes = ("activations carry no weights: relu and leakyrelu look alike; assumed relu",)
    params = {"num_in_ch": in_ch, "num_out_ch": in_ch, "num_feat": num_feat, "num_conv": len(convs) - 2,
              "upscale": upscale, "act_type": act_type}
    return ArchInfo(NAME, params, notes, family=FAMILY)


def write_ncnn(g: NcnnGraph, sd: StateDict, params: Mapping[str, Any]) -> str:
    act = str(params.get("act_type", "prelu"))
    if act not in ACT_TYPES:
        raise UnsupportedModelError(f"SRVGGNetCompact act_type {act!r} cannot be written")
    upscale = int(params["upscale"])
    h = g.input
    last = 2 * int(params["num_conv"]) + 2
    for index in range(0, last, 2):
        if act == "prelu":
            h = g.prelu(g.conv(h, sd, f"body.{index}"), sd[f"body.{index + 1}.weight"])
        else:
            h = g.conv(h, sd, f"body.{index}", act, LEAKY_SLOPE)
    h = g.add("PixelShuffle", "pixelshuffle", [g.conv(h, sd, f"body.{last}")], {0: str(upscale), 1: "0"})
    return g.add_blobs(h, g.nearest(g.input, upscale))


def _activation(param, convs: list) -> str:
    """prelu, relu or leakyrelu (slope 0.1, as upstream), whether fused into the convs or not."""
    hidden = convs[:-1]
    prelus = layers_of(param, "PReLU")
    relus = layers_of(param, "ReLU")
    fused = {conv.int_param(9) for conv in hidden}
    if prelus and len(prelus) == len(hidden) and fused == {0}:
        return "prelu"
    if not prelus and fused == {0} and len(relus) == len(hidden):
        slopes = {float_param(layer, 0, 0.0) for layer in relus}
    elif not prelus and not relus and fused == {1}:
        slopes = {0.0}
    elif not prelus and not relus and fused == {2}:
        slopes = {fused_slope(conv) for conv in hidden}
    else:
        slopes = set()
    if slopes == {0.0}:
        return "relu"
    if slopes == {LEAKY_SLOPE}:
        return "leakyrelu"
    raise UnsupportedModelError(
        f"SRVGG-like graph: {len(hidden)} hidden convs with {len(prelus)} PReLU, {len(relus)} ReLU, "
        f"fused activations {sorted(fused)}: not PReLU, ReLU or LeakyReLU(0.1) after every conv"
    )


def _output_resize(param, upscale: int) -> float:
    """An Interp fed by the residual sum (not by the input) resizes the net's output afterwards."""
    resize = 1.0
    for layer in layers_of(param, "Interp"):
        if layer.int_param(0) == INTERP_NEAREST:
            if float_param(layer, 1, 1.0) != upscale or float_param(layer, 2, 1.0) != upscale:
                raise UnsupportedModelError(f"layer {layer.name}: nearest upsampling of the input is not x{upscale}")
            continue
        if layer.int_param(0) != INTERP_BICUBIC:
            raise UnsupportedModelError(f"layer {layer.name}: only a bicubic output resize is supported")
        resize = float_param(layer, 1, 1.0)
        if float_param(layer, 2, resize) != resize:
            raise UnsupportedModelError(f"layer {layer.name}: anisotropic output resize is not supported")
    return resize


def match_ncnn(param, weights: NcnnWeights) -> tuple[ArchInfo, dict[str, torch.Tensor]] | None:
    """SRVGGNetCompact's weights from a plain conv chain ending in one PixelShuffle; None otherwise."""
    convs = layers_of(param, "Convolution")
    shuffles = layers_of(param, "PixelShuffle")
    if len(shuffles) != 1 or layers_of(param, "Concat") or len(convs) < 2:
        return None
    upscale = shuffles[0].int_param(0)
    act_type = _activation(param, convs)
    sd: dict[str, torch.Tensor] = {}
    for index, conv in enumerate(convs):
        put_conv(sd, f"body.{2 * index}", conv, weights)
    num_feat = sd["body.0.weight"].shape[0]
    if act_type == "prelu":
        for index, layer in enumerate(layers_of(param, "PReLU")):
            slopes = torch.from_numpy(weights[layer.name][0].copy())
            sd[f"body.{2 * index + 1}.weight"] = slopes.expand(num_feat).clone() if slopes.numel() == 1 else slopes
    in_ch = sd["body.0.weight"].shape[1]
    params = {"num_in_ch": in_ch, "num_out_ch": in_ch, "num_feat": num_feat, "num_conv": len(convs) - 2,
              "upscale": upscale, "act_type": act_type}
    return ArchInfo(NAME, params, output_resize=_output_resize(param, upscale), family=FAMILY), sd


FAMILY = ArchFamily(
    name=NAME,
    module=SRVGGNetCompact,
    detect=detect,
    scale_arg="upscale",
    receptive_radius=receptive_radius,
    write_ncnn=write_ncnn,
    match_ncnn=match_ncnn,
    ncnn_layers=frozenset({"Convolution", "PReLU", "ReLU", "BinaryOp", "Interp", "PixelShuffle"}),
)
