"""The `.param` graph as a typed DAG: resolution, channels and receptive field of every blob.

Why: exact tiling needs, for any stretch of layers, how many pixels of context its inputs must
carry so that an output region comes out as in the untiled run. That follows from each layer's
geometry (kernel, dilation, stride, padding, interpolation), never from an architecture name.
A layer type not known here is "opaque": any stretch containing it cannot be tiled and runs whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .ncnn_files import NcnnLayer, NcnnParam

# Layers whose output pixel depends only on the same pixel of their inputs (radius 0).
POINTWISE = frozenset({
    "Input", "Split", "ReLU", "PReLU", "Sigmoid", "TanH", "Clip", "Swish", "HardSigmoid", "HardSwish",
    "Mish", "ELU", "GELU", "SELU", "Softplus", "BatchNorm", "Scale", "Bias", "Dropout", "Noop",
    "UnaryOp", "BinaryOp", "Eltwise", "Power", "Exp", "Log", "AbsVal", "Threshold", "Concat",
})
CONV = frozenset({"Convolution", "ConvolutionDepthWise", "Convolution1D"})
DECONV = frozenset({"Deconvolution", "DeconvolutionDepthWise"})
_INTERP_CONTEXT = {1: 0, 2: 1, 3: 2}  # nearest, bilinear, bicubic: source pixels beyond the nearest

Factor = tuple[Fraction, Fraction]  # (y, x) resolution relative to the net's input
ONE: Factor = (Fraction(1), Fraction(1))


@dataclass(frozen=True)
class Geometry:
    """How a layer maps its bottoms' pixels to its tops' (same for all bottoms and tops).

    `factor`: top resolution / bottom resolution per axis. `context`: extra bottom pixels needed
    before/after a region, (top, bottom, left, right). A top margin m becomes the bottom margin
    ceil(m / factor) + context on each side.
    """

    factor: Factor = ONE
    context: tuple[int, int, int, int] = (0, 0, 0, 0)

    def bottom_margin(self, margin: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        fy, fx = self.factor
        return tuple(math.ceil(m / f) + c for m, f, c in zip(margin, (fy, fy, fx, fx), self.context))  # type: ignore


def _window(layer: NcnnLayer) -> tuple[int, ...]:
    """Kernel, dilation, stride (height then width) and pads (left, top, right, bottom)."""
    kw, dw, sw, pl = layer.int_param(1, 1), layer.int_param(2, 1), layer.int_param(3, 1), layer.int_param(4, 0)
    pt = layer.int_param(14, pl)
    return (layer.int_param(11, kw), kw, layer.int_param(12, dw), dw, layer.int_param(13, sw), sw,
            pl, pt, layer.int_param(15, pl), layer.int_param(16, pt))


def _conv(layer: NcnnLayer) -> Geometry | None:
    kh, kw, dh, dw, sh, sw, pl, pt, pr, pb = _window(layer)
    if min(pl, pt, pr, pb) < 0 or layer.type == "Convolution1D" or len(layer.bottoms) != 1:
        return None  # SAME-style automatic padding, 1-D or dynamic weights: not tracked
    for k, d, s, lo, hi in ((kh, dh, sh, pt, pb), (kw, dw, sw, pl, pr)):
        # shape preserving up to the stride: out = in / s for in a multiple of s
        if not 1 - s <= lo + hi - d * (k - 1) <= 0:
            return None
    return Geometry((Fraction(1, sh), Fraction(1, sw)),
                    (pt, dh * (kh - 1) - pt + sh - 1, pl, dw * (kw - 1) - pl + sw - 1))


def _deconv(layer: NcnnLayer) -> Geometry | None:
    kh, kw, dh, dw, sh, sw, pl, pt, pr, pb = _window(layer)
    ow = layer.int_param(18, 0)
    oh = layer.int_param(19, ow)
    if min(pl, pt, pr, pb) < 0 or len(layer.bottoms) != 1:
        return None
    for k, d, s, lo, hi, extra in ((kh, dh, sh, pt, pb, oh), (kw, dw, sw, pl, pr, ow)):
        if d * (k - 1) + 1 - lo - hi + extra != s:  # out = in * s exactly
            return None
    cy = math.ceil(dh * (kh - 1) / sh) + 1
    cx = math.ceil(dw * (kw - 1) / sw) + 1
    return Geometry((Fraction(sh), Fraction(sw)), (cy, cy, cx, cx))


def _interp(layer: NcnnLayer) -> Geometry | None:
    if len(layer.bottoms) != 1 or layer.int_param(3, 0) or layer.int_param(4, 0):
        return None  # fixed output size or size taken from another blob
    context = _INTERP_CONTEXT.get(layer.int_param(0, 0))
    try:
        fy = Fraction(layer.params.get(1, "1")).limit_denominator(64)
        fx = Fraction(layer.params.get(2, "1")).limit_denominator(64)
    except ValueError:
        return None
    if context is None or fy <= 0 or fx <= 0:
        return None
    # Downscaling reads taps spread over 1/f source pixels: one more pixel each side covers them.
    cy, cx = context + (fy < 1), context + (fx < 1)
    return Geometry((fy, fx), (cy, cy, cx, cx))


def layer_geometry(layer: NcnnLayer) -> Geometry | None:
    """The geometry of one layer, or None when it is not known to be tileable."""
    if layer.type in POINTWISE:
        if layer.type == "Concat" and layer.int_param(0, 0) != 0:
            return None  # concatenation along height/width moves pixels
        return Geometry()
    if layer.type in CONV:
        return _conv(layer)
    if layer.type in DECONV:
        return _deconv(layer)
    if layer.type == "Interp":
        return _interp(layer)
    if layer.type == "PixelShuffle":
        r = layer.int_param(0, 1)
        return Geometry((Fraction(r), Fraction(r))) if r >= 1 and not layer.int_param(1, 0) else None
    if layer.type == "Reorg":
        s = layer.int_param(0, 1)
        return Geometry((Fraction(1, s), Fraction(1, s))) if s >= 1 and not layer.int_param(1, 0) else None
    return None


def _channels(layer: NcnnLayer, bottoms: list[int | None], in_channels: int) -> int | None:
    if layer.type == "Input":
        return in_channels
    if layer.type in CONV or layer.type in DECONV:
        return layer.int_param(0, 0) or None
    if layer.type == "Concat":
        return None if None in bottoms else sum(bottoms)  # type: ignore[arg-type]
    if layer.type == "PixelShuffle" and bottoms and bottoms[0]:
        return bottoms[0] // layer.int_param(0, 1) ** 2
    if layer.type == "Reorg" and bottoms and bottoms[0]:
        return bottoms[0] * layer.int_param(0, 1) ** 2
    if layer.type in POINTWISE or layer.type == "Interp":
        known = [c for c in bottoms if c]
        return max(known) if known else None
    return None


class Graph:
    """A `.param` as a DAG in file (topological) order, with per-blob resolution and channels.

    `factor[blob]` is None downstream of an opaque layer or where inputs disagree in resolution.
    """

    def __init__(self, param: NcnnParam, in_channels: int = 3) -> None:
        self.layers = param.layers
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        self.geometry: list[Geometry | None] = []
        self.factor: dict[str, Factor | None] = {}
        self.channels: dict[str, int | None] = {}
        for index, layer in enumerate(self.layers):
            for blob in layer.bottoms:
                self.consumers.setdefault(blob, []).append(index)
            geometry = layer_geometry(layer)
            factors = {self.factor.get(b) for b in layer.bottoms}
            if len(factors) > 1 or None in factors and layer.bottoms:
                geometry = None  # mixed resolutions (broadcasting) or unknown input
            self.geometry.append(geometry)
            base = ONE if not layer.bottoms else next(iter(factors))
            out = None if geometry is None or base is None else (base[0] * geometry.factor[0], base[1] * geometry.factor[1])
            chans = _channels(layer, [self.channels.get(b) for b in layer.bottoms], in_channels)
            for blob in layer.tops:
                self.producer[blob] = index
                self.factor[blob] = out
                self.channels[blob] = chans

    @classmethod
    def from_text(cls, text: str, in_channels: int = 3) -> "Graph":
        return cls(NcnnParam.parse(text), in_channels)

    def root(self, blob: str) -> str:
        """The blob whose value `blob` carries (Split outputs are copies of the Split's input)."""
        while blob in self.producer and self.layers[self.producer[blob]].type == "Split":
            blob = self.layers[self.producer[blob]].bottoms[0]
        return blob

    def live(self, position: int, outputs: tuple[str, ...]) -> list[str]:
        """Blobs made at or before layer `position` and still needed after it (or net outputs)."""
        return [
            blob for index in range(position + 1) for blob in self.layers[index].tops
            if any(c > position for c in self.consumers.get(blob, [])) or blob in outputs
        ]

    def margins(self, start: int, stop: int, need: dict[str, tuple[int, int, int, int]]) -> dict[str, tuple[int, int, int, int]] | None:
        """Margins (top, bottom, left, right), in each blob's own pixels, that layers start+1..stop
        need on their blobs so that the regions of `need` (blob -> margin) come out exact.
        None when one of those layers is opaque."""
        margin = dict(need)
        for index in range(stop, start, -1):
            layer = self.layers[index]
            wanted = [margin[t] for t in layer.tops if t in margin]
            if not wanted:
                continue
            geometry = self.geometry[index]
            if geometry is None:
                return None
            top_margin = tuple(max(m[i] for m in wanted) for i in range(4))
            below = geometry.bottom_margin(top_margin)  # type: ignore[arg-type]
            for blob in layer.bottoms:
                old = margin.get(blob, (0, 0, 0, 0))
                margin[blob] = tuple(max(a, b) for a, b in zip(old, below))  # type: ignore[assignment]
        return margin

    def macs_per_pixel(self, start: int, stop: int) -> float:
        """Multiply-adds per net-input pixel of layers start+1..stop (convolutions only): the work."""
        total = 0.0
        for index in range(start + 1, stop + 1):
            layer = self.layers[index]
            if layer.type not in CONV and layer.type not in DECONV:
                continue
            weights = layer.int_param(6, 0)
            blob = layer.tops[0] if layer.type in CONV else layer.bottoms[0]
            f = self.factor.get(blob) or ONE
            total += weights * float(f[0] * f[1])
        return total
