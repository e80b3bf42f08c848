"""Build an ncnn graph layer by layer from a state_dict: the tool each family's `write_ncnn` uses.

The layout follows what pnnx produces for the same modules (blobs `in0` -> `out0`, `Reorg` for
pixel-unshuffle, nearest `Interp` by scale factor so input sizes stay dynamic, LeakyReLU fused
into `Convolution`, PReLU as its own layer), so the direct writer and pnnx are interchangeable.
Residual `x * a + y` is one `Eltwise` sum with coefficients, as in the official files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import torch

from ..graph.ncnn_files import NcnnLayer, NcnnParam
from .errors import UnsupportedModelError

INPUT_BLOB = "in0"
OUTPUT_BLOB = "out0"
INTERP_NEAREST = 1
INTERP_BICUBIC = 3
_BINARY_ADD = 0
_ELTWISE_SUM = 1
_ACT_RELU = 1
_ACT_LEAKY = 2

StateDict = Mapping[str, torch.Tensor]


def num(value: float) -> str:
    """ncnn reads `2` as an int and `2.0` as a float: floats must carry a decimal point."""
    return repr(float(value))


def flat(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy().reshape(-1)


class NcnnGraph:
    """Collects layers with numbered blobs; `finish` inserts the `Split` layers ncnn needs.

    ncnn lets each blob feed exactly one consumer (in-place layers may overwrite it), so a blob
    used k times is fanned out by a `Split` right after its producer.
    """

    input = INPUT_BLOB

    def __init__(self) -> None:
        self._layers: list[NcnnLayer] = [NcnnLayer("Input", INPUT_BLOB, [], [INPUT_BLOB])]
        self.weights: dict[str, list[np.ndarray]] = {}
        self._names: Counter[str] = Counter()
        self._blobs = 0

    def add(self, kind: str, prefix: str, bottoms: list[str], params: dict[int, str],
            weights: list[np.ndarray] | None = None) -> str:
        """Append one layer; returns its (single) output blob."""
        name = f"{prefix}_{self._names[prefix]}"
        self._names[prefix] += 1
        top = str(self._blobs)
        self._blobs += 1
        self._layers.append(NcnnLayer(kind, name, bottoms, [top], params))
        if weights is not None:
            self.weights[name] = weights
        return top

    def conv(self, x: str, sd: StateDict, key: str, act: str | None = None, slope: float = 0.0) -> str:
        """Odd square kernel, stride-1 same-padding convolution with bias, optionally with a fused activation."""
        weight = sd[f"{key}.weight"].detach().to(torch.float32).cpu()
        out_ch, _in_ch, kh, kw = weight.shape
        if kh != kw or kh % 2 == 0:
            raise UnsupportedModelError(f"{key}: only odd square kernels are written, got {kh}x{kw}")
        params = {0: str(out_ch), 1: str(kw), 4: str(kw // 2), 5: "1", 6: str(weight.numel())}
        if act == "relu":
            params[9] = str(_ACT_RELU)
        elif act == "leakyrelu":
            params[9] = str(_ACT_LEAKY)
            params[-23310] = f"1,{num(slope)}"
        bias_t = sd.get(f"{key}.bias")
        bias = np.zeros(out_ch, np.float32) if bias_t is None else flat(bias_t)
        prefix = "convrelu" if act else "conv"
        return self.add("Convolution", prefix, [x], params, [flat(weight), bias])

    def prelu(self, x: str, slopes: torch.Tensor) -> str:
        return self.add("PReLU", "prelu", [x], {0: str(slopes.numel())}, [flat(slopes)])

    def scaled_add(self, residual: str, x: str, coeff: float) -> str:
        """`residual * coeff + x` in one layer (ncnn Eltwise sum with per-input coefficients)."""
        params = {0: str(_ELTWISE_SUM), -23301: f"2,{num(coeff)},{num(1.0)}"}
        return self.add("Eltwise", "add", [residual, x], params)

    def add_blobs(self, a: str, b: str) -> str:
        return self.add("BinaryOp", "add", [a, b], {0: str(_BINARY_ADD)})

    def concat(self, xs: list[str]) -> str:
        return self.add("Concat", "cat", list(xs), {0: "0"})

    def nearest(self, x: str, factor: int) -> str:
        return self.add("Interp", "upsample_nearest", [x], {0: str(INTERP_NEAREST), 1: num(factor), 2: num(factor)})

    def bicubic(self, x: str, factor: float) -> str:
        return self.add("Interp", "resize", [x], {0: str(INTERP_BICUBIC), 1: num(factor), 2: num(factor)})

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
