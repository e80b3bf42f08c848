"""Read an ncnn graph's weights back into torch tensors: the tools each family's `match_ncnn` uses.

ncnn stores conv weights OIHW, flat; `ncnn_weights.read_weights` decodes them in file order.
"""

from __future__ import annotations

import numpy as np
import torch

from ..graph.ncnn_files import NcnnFormatError, NcnnLayer, NcnnParam
from .errors import UnsupportedModelError


def layers_of(param: NcnnParam, kind: str) -> list[NcnnLayer]:
    """The graph's layers of one type, in file (= execution) order."""
    return [layer for layer in param.layers if layer.type == kind]


def conv_tensors(layer: NcnnLayer, arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def put_conv(sd: dict[str, torch.Tensor], prefix: str, layer: NcnnLayer, weights: dict[str, list[np.ndarray]]) -> None:
    weight, bias = conv_tensors(layer, weights.get(layer.name, []))
    sd[f"{prefix}.weight"] = weight
    if bias is None:  # our convs all have a bias; an ncnn conv without one has a zero bias
        bias = torch.zeros(weight.shape[0])
    sd[f"{prefix}.bias"] = bias


def float_param(layer: NcnnLayer, key: int, default: float) -> float:
    raw = layer.params.get(key)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        raise NcnnFormatError(f"layer {layer.name}: param {key}={raw!r} is not a number") from None


def fused_slope(conv: NcnnLayer) -> float:
    """Slope of a LeakyReLU fused into a Convolution (`9=2 -23310=1,slope`)."""
    count, _, value = conv.params.get(-23310, "").partition(",")
    try:
        return float(value) if count == "1" else 0.0
    except ValueError:
        raise NcnnFormatError(f"layer {conv.name}: bad activation parameter {conv.params[-23310]!r}") from None
