"""RRDBNet as a family: recognised from its keys or its ncnn graph, written to ncnn, its receptive field.

Hyper-parameters come off tensor shapes: feature width from conv_first's outputs, block count from
the highest `body.N`, scale from conv_first's inputs (scales 1 and 2 pixel-unshuffle the input by
4 and 2, so conv_first sees 16x / 4x the channels). In ncnn it is 15 convolutions per RRDB
(Concat/Eltwise dense blocks) plus 6 around them, weights in file order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..family import ArchFamily, ArchInfo, NcnnWeights, StateDict, UnsupportedModelError, shape_of
from ..ncnn_graph import NcnnGraph
from ..ncnn_read import layers_of, put_conv
from .legacy import rename_legacy_esrgan
from .module import LRELU_SLOPE, RESIDUAL_SCALE, RRDBNet

NAME = "RRDBNet"
_CONVS_PER_BLOCK = 15  # 3 dense blocks x 5 convs
_OUTER_CONVS = ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")


def size_multiple(params: Mapping[str, Any]) -> int:
    """Pixel-unshuffle needs H and W divisible by 4 // scale (x2 -> 2, x1 -> 4)."""
    return 4 // int(params.get("scale", 4))


def receptive_radius(params: Mapping[str, Any]) -> int:
    """Input pixels per side that can reach an output pixel (an upper bound: ~350 for x4plus)."""
    unshuffle = size_multiple(params)
    low_res_convs = 2 + 15 * int(params["num_block"])  # conv_first, dense convs, conv_body
    high_res = 2  # conv_up1 at x2, conv_up2/conv_hr/conv_last at x4: 1.25 input pixels, rounded up
    return unshuffle * low_res_convs + high_res


def detect(sd: StateDict) -> ArchInfo | None:
    if "conv_first.weight" not in sd or "body.0.rdb1.conv1.weight" not in sd:
        return None
    if "conv_up3.weight" in sd:
        raise UnsupportedModelError("RRDBNet with conv_up3 (x8 upsampler) is not supported; scales 1, 2, 4 are")
    if "conv_last.weight" not in sd:
        raise UnsupportedModelError("looks like RRDBNet but conv_last.weight is missing")
    blocks = [int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.rdb", k))]
    num_feat, first_in = shape_of(sd, "conv_first.weight")[:2]
    out_ch = shape_of(sd, "conv_last.weight")[0]
    options = [(4, 1), (2, 4), (1, 16)]
    fits = [(s, first_in // f) for s, f in options if first_in % f == 0]
    scale, in_ch = next(
        (c for c in fits if c[1] == out_ch), next((c for c in fits if c[1] in (1, 3, 4)), (4, first_in))
    )
    params = {
        "num_in_ch": in_ch,
        "num_out_ch": out_ch,
        "scale": scale,
        "num_feat": num_feat,
        "num_block": max(blocks) + 1,
        "num_grow_ch": shape_of(sd, "body.0.rdb1.conv1.weight")[0],
    }
    return ArchInfo(NAME, params, family=FAMILY)


def write_ncnn(g: NcnnGraph, sd: StateDict, params: Mapping[str, Any]) -> str:
    x = g.input
    unshuffle = size_multiple(params)
    if unshuffle > 1:
        x = g.add("Reorg", "pixelunshuffle", [x], {0: str(unshuffle), 1: "0"})
    feat = g.conv(x, sd, "conv_first")
    h = feat
    for block in range(int(params["num_block"])):
        block_in = h
        for rdb in (1, 2, 3):
            key = f"body.{block}.rdb{rdb}"
            dense = [h]
            for c in (1, 2, 3, 4):
                src = dense[0] if len(dense) == 1 else g.concat(dense)
                dense.append(g.conv(src, sd, f"{key}.conv{c}", "leakyrelu", LRELU_SLOPE))
            h = g.scaled_add(g.conv(g.concat(dense), sd, f"{key}.conv5"), h, RESIDUAL_SCALE)
        h = g.scaled_add(h, block_in, RESIDUAL_SCALE)
    feat = g.add_blobs(feat, g.conv(h, sd, "conv_body"))
    for key in ("conv_up1", "conv_up2"):
        feat = g.conv(g.nearest(feat, 2), sd, key, "leakyrelu", LRELU_SLOPE)
    return g.conv(g.conv(feat, sd, "conv_hr", "leakyrelu", LRELU_SLOPE), sd, "conv_last")


def _conv_names(num_block: int) -> list[str]:
    """Our parameter prefixes in the order the convolutions run."""
    names = ["conv_first"]
    for block in range(num_block):
        names += [f"body.{block}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in range(1, 6)]
    return names + list(_OUTER_CONVS[1:])


def match_ncnn(param, weights: NcnnWeights) -> tuple[ArchInfo, dict[str, torch.Tensor]] | None:
    """RRDBNet's weights from an ncnn graph of dense blocks; None for graphs without Concat."""
    convs = layers_of(param, "Convolution")
    extra = len(convs) - len(_OUTER_CONVS)
    if not layers_of(param, "Concat") or extra <= 0 or extra % _CONVS_PER_BLOCK:
        return None
    num_block = extra // _CONVS_PER_BLOCK
    sd: dict[str, torch.Tensor] = {}
    for prefix, conv in zip(_conv_names(num_block), convs, strict=True):
        put_conv(sd, prefix, conv, weights)
    out_ch = sd["conv_last.weight"].shape[0]
    first_in = sd["conv_first.weight"].shape[1]
    reorgs = layers_of(param, "Reorg")
    unshuffle = reorgs[0].int_param(0) if reorgs else 1
    if reorgs and (len(reorgs) > 1 or reorgs[0].int_param(1) != 0):
        # mode 0 is pixel_unshuffle's channel order (checked against ncnn in the tests)
        raise UnsupportedModelError("RRDB-like graph: only one Reorg (pixel-unshuffle order, mode 0) is supported")
    if unshuffle not in (1, 2, 4) or first_in % (unshuffle * unshuffle):
        raise UnsupportedModelError(f"RRDB-like graph: unshuffle stride {unshuffle} with {first_in} input channels")
    params = {"num_in_ch": first_in // (unshuffle * unshuffle), "num_out_ch": out_ch, "scale": 4 // unshuffle,
              "num_feat": sd["conv_first.weight"].shape[0], "num_block": num_block,
              "num_grow_ch": sd["body.0.rdb1.conv1.weight"].shape[0]}
    return ArchInfo(NAME, params, family=FAMILY), sd


FAMILY = ArchFamily(
    name=NAME,
    module=RRDBNet,
    detect=detect,
    scale_arg="scale",
    size_multiple=size_multiple,
    receptive_radius=receptive_radius,
    measure_pad=True,  # ~350 px on paper, 40-90 px that matter: measured (convert/sidecar.py)
    write_ncnn=write_ncnn,
    match_ncnn=match_ncnn,
    ncnn_layers=frozenset({"Convolution", "Concat", "Eltwise", "BinaryOp", "Interp", "Reorg"}),
    rename_keys=rename_legacy_esrgan,
)
