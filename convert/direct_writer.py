"""Write ncnn `.param` text and `.bin` weights straight from a state_dict (RRDBNet, SRVGGNetCompact).

Why not pnnx for these: pnnx traces the model and its memory grows faster than linearly with RRDB
depth (about 23 GiB for the 23-block x4plus); the graphs of the two known generators are fixed, so
writing them takes a fraction of a second and a few hundred MiB. The layout follows what pnnx
produces for the same modules (blobs `in0` -> `out0`, `Reorg` for pixel-unshuffle, nearest
`Interp` by scale factor so input sizes stay dynamic, LeakyReLU fused into `Convolution`, PReLU as
its own layer), so the two routes are interchangeable and cross-checked in the tests. Residual
`x * 0.2 + y` is one `Eltwise` sum with coefficients, as in the official files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..ncnn_weights import NcnnLayer, NcnnParam, write_weights
from ..trainer.archs.rrdbnet import LRELU_SLOPE, RESIDUAL_SCALE
from ..trainer.archs.srvgg import LEAKY_SLOPE
from .detect import ArchInfo, UnsupportedModelError

INPUT_BLOB = "in0"
OUTPUT_BLOB = "out0"
_INTERP_NEAREST = 1
_INTERP_BICUBIC = 3
_BINARY_ADD = 0
_ELTWISE_SUM = 1
_ACT_RELU = 1
_ACT_LEAKY = 2

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class NcnnModel:
    """An ncnn model in memory: the `.param` text, the `.bin` bytes and its blob names."""

    param_text: str
    bin_bytes: bytes
    input_blob: str = INPUT_BLOB
    output_blob: str = OUTPUT_BLOB


def _num(value: float) -> str:
    """ncnn reads `2` as an int and `2.0` as a float: floats must carry a decimal point."""
    return repr(float(value))


class _Graph:
    """Collects layers with numbered blobs; `finish` inserts the `Split` layers ncnn needs.

    ncnn lets each blob feed exactly one consumer (in-place layers may overwrite it), so a blob
    used k times is fanned out by a `Split` right after its producer.
    """

    def __init__(self) -> None:
        self._layers: list[NcnnLayer] = [NcnnLayer("Input", INPUT_BLOB, [], [INPUT_BLOB])]
        self.weights: dict[str, list[np.ndarray]] = {}
        self._names: Counter[str] = Counter()
        self._blobs = 0

    def add(self, kind: str, prefix: str, bottoms: list[str], params: dict[int, str],
            weights: list[np.ndarray] | None = None) -> str:
        name = f"{prefix}_{self._names[prefix]}"
        self._names[prefix] += 1
        top = str(self._blobs)
        self._blobs += 1
        self._layers.append(NcnnLayer(kind, name, bottoms, [top], params))
        if weights is not None:
            self.weights[name] = weights
        return top

    def conv(self, x: str, sd: StateDict, key: str, act: str | None = None, slope: float = 0.0) -> str:
        """3x3 (any odd k) stride-1 same-padding convolution with bias, optionally with a fused activation."""
        weight = sd[f"{key}.weight"].detach().to(torch.float32).cpu()
        out_ch, _in_ch, kh, kw = weight.shape
        if kh != kw or kh % 2 == 0:
            raise UnsupportedModelError(f"{key}: only odd square kernels are written, got {kh}x{kw}")
        params = {0: str(out_ch), 1: str(kw), 4: str(kw // 2), 5: "1", 6: str(weight.numel())}
        if act == "relu":
            params[9] = str(_ACT_RELU)
        elif act == "leakyrelu":
            params[9] = str(_ACT_LEAKY)
            params[-23310] = f"1,{_num(slope)}"
        bias_t = sd.get(f"{key}.bias")
        bias = np.zeros(out_ch, np.float32) if bias_t is None else _array(bias_t)
        prefix = "convrelu" if act else "conv"
        return self.add("Convolution", prefix, [x], params, [_array(weight), bias])

    def prelu(self, x: str, slopes: torch.Tensor) -> str:
        return self.add("PReLU", "prelu", [x], {0: str(slopes.numel())}, [_array(slopes)])

    def scaled_add(self, residual: str, x: str, coeff: float) -> str:
        """`residual * coeff + x` in one layer (ncnn Eltwise sum with per-input coefficients)."""
        params = {0: str(_ELTWISE_SUM), -23301: f"2,{_num(coeff)},{_num(1.0)}"}
        return self.add("Eltwise", "add", [residual, x], params)

    def add_blobs(self, a: str, b: str) -> str:
        return self.add("BinaryOp", "add", [a, b], {0: str(_BINARY_ADD)})

    def concat(self, xs: list[str]) -> str:
        return self.add("Concat", "cat", list(xs), {0: "0"})

    def nearest(self, x: str, factor: int) -> str:
        return self.add("Interp", "upsample_nearest", [x], {0: str(_INTERP_NEAREST), 1: _num(factor), 2: _num(factor)})

    def finish(self, output: str) -> NcnnParam:
        uses = Counter(b for layer in self._layers for b in layer.bottoms)
        pending: dict[str, list[str]] = {}
        layers: list[NcnnLayer] = []
        splits = 0
        for layer in self._layers:
            bottoms = [pending[b].pop(0) if b in pending else b for b in layer.bottoms]
            tops = [OUTPUT_BLOB if t == output else t for t in layer.tops]
            layers.append(NcnnLayer(layer.type, layer.name, bottoms, tops, layer.params))
            for top in layer.tops:
                if uses[top] > 1:
                    fan = [f"{top}_{i}" for i in range(uses[top])]
                    layers.append(NcnnLayer("Split", f"splitncnn_{splits}", [top], fan, {}))
                    pending[top] = list(fan)
                    splits += 1
        if uses[output]:
            raise ValueError("the output blob must not feed another layer")
        return NcnnParam(layers)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy().reshape(-1)


def _rrdbnet(g: _Graph, sd: StateDict, params: dict) -> str:
    x = INPUT_BLOB
    unshuffle = 4 // int(params["scale"])
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


def _srvgg(g: _Graph, sd: StateDict, params: dict) -> str:
    act = str(params.get("act_type", "prelu"))
    if act not in ("prelu", "relu", "leakyrelu"):
        raise UnsupportedModelError(f"SRVGGNetCompact act_type {act!r} cannot be written")
    upscale = int(params["upscale"])
    h = INPUT_BLOB
    last = 2 * int(params["num_conv"]) + 2
    for index in range(0, last, 2):
        if act == "prelu":
            h = g.prelu(g.conv(h, sd, f"body.{index}"), sd[f"body.{index + 1}.weight"])
        else:
            h = g.conv(h, sd, f"body.{index}", act, LEAKY_SLOPE)
    h = g.add("PixelShuffle", "pixelshuffle", [g.conv(h, sd, f"body.{last}")], {0: str(upscale), 1: "0"})
    return g.add_blobs(h, g.nearest(INPUT_BLOB, upscale))


def write_ncnn(info: ArchInfo, state_dict: StateDict, fp16: bool = True) -> NcnnModel:
    """The ncnn graph and weights for a known generator; fp16 conv weights unless `fp16=False`.

    A bicubic `Interp` is appended when `info.output_resize` is not 1 (see `torch_post`).

    Raises UnsupportedModelError for architectures without a direct writer (use pnnx for those).
    """
    builders = {"RRDBNet": _rrdbnet, "SRVGGNetCompact": _srvgg}
    if info.name not in builders:
        raise UnsupportedModelError(f"no direct ncnn writer for {info.name}; export it through pnnx")
    graph = _Graph()
    try:
        output = builders[info.name](graph, state_dict, info.params)
    except KeyError as err:
        raise UnsupportedModelError(f"{info.name}: state_dict lacks {err.args[0]}") from None
    if info.output_resize != 1.0:  # official animevideov3 x2/x3: the x4 net, then a bicubic resize
        factor = _num(info.output_resize)
        output = graph.add("Interp", "resize", [output], {0: str(_INTERP_BICUBIC), 1: factor, 2: factor})
    param = graph.finish(output)
    return NcnnModel(param.to_text(), write_weights(param, graph.weights, fp16))


def torch_post(info: ArchInfo) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The torch equivalent of what `write_ncnn` appends after the network, or None."""
    if info.output_resize == 1.0:
        return None
    factor = float(info.output_resize)
    return lambda y: F.interpolate(y, scale_factor=factor, mode="bicubic", align_corners=False)
