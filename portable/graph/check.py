"""Validate an ncnn graph before ncnn sees it, so an edited `.param` is refused with one line.

Why: ncnn trusts its `.param`. A PReLU with 64 slopes on a 3-channel blob, a convolution whose
weight count does not match its input channels, `4=2147483647` (pad), a float written where ncnn
reads an int, an unknown layer type, or `19=1` (weights from a second input) make it read out of
bounds: SIGSEGV or SIGFPE, no message, and the Python process (CLI or `Upscaler`) dies with it.
A child process per model load was measured as the alternative (see the README); checking the
graph here costs about a millisecond and protects running as well as loading.

What is checked: every layer type is one this runtime knows, with only the parameter ids that
type accepts, each an int or a float as ncnn reads it and within a sane range; blobs are
produced once, before they are read, read once (ncnn needs a Split to share one), and counted
as the header says; shapes (channels and size) are carried through the graph from the input's
channels on a small probe size, so every layer sees the channel count its weights were made for,
and the output must be the spec's scale and channel count on every path.

`LAYER_KINDS` is a plain table: per layer type its parameters, its shape rule and the context
(input pixels per side) it reads, which a receptive-field (halo) computation can share.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .ncnn_files import NcnnFormatError, NcnnLayer, NcnnParam

_INT = re.compile(r"^[+-]?[0-9]{1,10}$")
MAX_BLOBS_PER_LAYER = 64
MAX_ARRAY = 64
MAX_VALUES_PER_PIXEL = 1 << 20  # activations per input pixel at any blob (x4plus's head: 1024)
MAX_NAME = 255  # ncnn reads names with %255s


class GraphError(ValueError):
    """The `.param` describes a graph ncnn would run out of bounds on (one-line message)."""


@dataclass(frozen=True)
class Shape:
    """A blob's channels, height and width (ncnn's c, h, w)."""

    c: int
    h: int
    w: int


@dataclass(frozen=True)
class Params:
    """One layer's parameters as ncnn will read them: ints, floats and arrays by id."""

    ints: dict[int, int] = field(default_factory=dict)
    floats: dict[int, float] = field(default_factory=dict)
    arrays: dict[int, list[float]] = field(default_factory=dict)

    def i(self, key: int, default: int) -> int:
        return self.ints.get(key, default)

    def f(self, key: int, default: float) -> float:
        return self.floats.get(key, default)


ShapeRule = Callable[[Params, list[Shape], str], list[Shape]]


@dataclass(frozen=True)
class LayerKind:
    """What ncnn accepts for one layer type.

    ints/floats: parameter id -> inclusive (low, high); arrays: array id -> longest length.
    bottoms/tops: inclusive (min, max) blob counts. shape: output shapes from input shapes.
    context: input pixels read beyond each output pixel's own, per side (0 for pointwise layers).
    """

    shape: ShapeRule
    ints: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    floats: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    arrays: Mapping[int, int] = field(default_factory=dict)
    bottoms: tuple[int, int] = (1, 1)
    tops: tuple[int, int] = (1, 1)
    context: Callable[[Params], int] = field(default=lambda p: 0)


def _fail(name: str, text: str) -> GraphError:
    return GraphError(f"layer {name}: {text}")


def _same(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    return [ins[0]]


def _split(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    return ins[:1] * MAX_BLOBS_PER_LAYER  # trimmed to the layer's top count by the caller


def _kernel(p: Params) -> tuple[int, int, int, int, int, int]:
    kw = p.i(1, 0)
    kh, dw = p.i(11, kw), p.i(2, 1)
    return kw, kh, dw, p.i(12, dw), p.i(3, 1), p.i(13, p.i(3, 1))


def _conv_out(size: int, kernel: int, dilation: int, stride: int, pad_a: int, pad_b: int) -> int:
    if pad_a in (-233, -234):  # SAME_UPPER / SAME_LOWER: ncnn pads to ceil(size / stride)
        return -(-size // stride)
    return (size + pad_a + pad_b - (dilation * (kernel - 1) + 1)) // stride + 1


def _conv(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    (x,) = ins
    out = p.i(0, 0)
    group = p.i(7, 1)
    kw, kh, dw, dh, sw, sh = _kernel(p)
    if out < 1 or kw < 1 or kh < 1:
        raise _fail(name, "a convolution needs 0= (outputs) and 1= (kernel) of at least 1")
    if x.c % group or out % group:
        raise _fail(name, f"group {group} does not divide {x.c} input / {out} output channels")
    expected = out * (x.c // group) * kw * kh
    if p.i(6, 0) != expected:
        raise _fail(name, f"weight count {p.i(6, 0)} does not fit {x.c} input channels "
                          f"({out} outputs, {kw}x{kh} kernel: {expected} weights)")
    act, n_act = p.i(9, 0), len(p.arrays.get(10, []))
    if n_act != _ACTIVATION_PARAMS[act]:
        raise _fail(name, f"activation {act} needs {_ACTIVATION_PARAMS[act]} parameter(s) in -23310, got {n_act}")
    pl = p.i(4, 0)
    pt = p.i(14, pl)
    w = _conv_out(x.w, kw, dw, sw, pl, p.i(15, pl))
    h = _conv_out(x.h, kh, dh, sh, pt, p.i(16, pt))
    if w < 1 or h < 1:
        raise _fail(name, f"a {x.w}x{x.h} input leaves no output pixel (kernel {kw}x{kh}, stride {sw}x{sh})")
    return [Shape(out, h, w)]


def _conv_context(p: Params) -> int:
    kw, kh, dw, dh, _, _ = _kernel(p)
    return max(dw * (kw - 1), dh * (kh - 1)) // 2


def _prelu(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    slopes = p.i(0, 0)
    if slopes not in (1, ins[0].c):
        raise _fail(name, f"{slopes} slopes for a {ins[0].c}-channel input (1 or {ins[0].c} expected)")
    return ins


def _batchnorm(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if p.i(0, 0) != ins[0].c:
        raise _fail(name, f"statistics for {p.i(0, 0)} channels on a {ins[0].c}-channel input")
    return ins


def _clip(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if p.f(0, -math.inf) > p.f(1, math.inf):
        raise _fail(name, "clip minimum above its maximum")
    return ins


def _concat(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if any((s.h, s.w) != (ins[0].h, ins[0].w) for s in ins):
        raise _fail(name, "inputs of different sizes cannot be concatenated along channels")
    return [Shape(sum(s.c for s in ins), ins[0].h, ins[0].w)]


def _eltwise(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    coeffs = p.arrays.get(1, [])
    if coeffs and len(coeffs) != len(ins):
        raise _fail(name, f"{len(coeffs)} coefficients for {len(ins)} inputs")
    if any(s != ins[0] for s in ins):
        raise _fail(name, f"inputs of different shapes {[(s.c, s.h, s.w) for s in ins]}")
    return ins[:1]


def _binary(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    with_scalar = p.i(1, 0)
    if len(ins) != (1 if with_scalar else 2):
        raise _fail(name, f"{len(ins)} input(s) with with_scalar={with_scalar}")
    if with_scalar:
        return ins
    a, b = ins
    if a == b or (b.h, b.w) == (1, 1) and b.c in (1, a.c):
        return [a]
    if (a.h, a.w) == (1, 1) and a.c in (1, b.c):
        return [b]
    raise _fail(name, f"inputs of shapes {(a.c, a.h, a.w)} and {(b.c, b.h, b.w)} do not broadcast")


def _interp(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = ins[0]
    if p.i(0, 0) not in (1, 2, 3):
        raise _fail(name, "Interp needs 0= (resize type) 1, 2 or 3")
    oh, ow = p.i(3, 0), p.i(4, 0)
    if oh == 0 or ow == 0:
        oh, ow = int(x.h * p.f(1, 1.0)), int(x.w * p.f(2, 1.0))
    if oh < 1 or ow < 1:
        raise _fail(name, f"resizes a {x.w}x{x.h} input to {ow}x{oh}")
    return [Shape(x.c, oh, ow)]


def _pixelshuffle(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, r = ins[0], p.i(0, 1)
    if x.c % (r * r):
        raise _fail(name, f"upscale factor {r} needs channels divisible by {r * r}, got {x.c}")
    return [Shape(x.c // (r * r), x.h * r, x.w * r)]


def _reorg(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, s = ins[0], p.i(0, 1)
    if x.h % s or x.w % s:
        raise _fail(name, f"stride {s} does not divide a {x.w}x{x.h} input")
    return [Shape(x.c * s * s, x.h // s, x.w // s)]


_ACTIVATION_PARAMS = {0: 0, 1: 0, 2: 1, 3: 2, 4: 0, 5: 0, 6: 2}  # ncnn's fused activations
_SIZE = (0, 1 << 16)
_CONV_INTS = {0: (1, 8192), 1: (1, 31), 11: (1, 31), 2: (1, 16), 12: (1, 16), 3: (1, 16), 13: (1, 16),
              4: (-234, 256), 14: (-234, 256), 15: (-234, 256), 16: (-234, 256), 5: (0, 1), 6: (1, 1 << 30),
              8: (0, 0), 9: (0, 6), 19: (0, 0)}
_FINITE = (-math.inf, math.inf)  # any finite value (inf/nan are refused separately)

LAYER_KINDS: Mapping[str, LayerKind] = MappingProxyType({
    "Input": LayerKind(_same, ints={0: _SIZE, 1: _SIZE, 11: _SIZE, 2: _SIZE}, bottoms=(0, 0)),
    "Convolution": LayerKind(_conv, ints=_CONV_INTS, floats={18: _FINITE}, arrays={10: 2}, context=_conv_context),
    "ConvolutionDepthWise": LayerKind(_conv, ints={**_CONV_INTS, 7: (1, 8192)}, floats={18: _FINITE},
                                      arrays={10: 2}, context=_conv_context),
    "PReLU": LayerKind(_prelu, ints={0: (1, 8192)}),
    "ReLU": LayerKind(_same, floats={0: _FINITE}),
    "Sigmoid": LayerKind(_same),
    "TanH": LayerKind(_same),
    "Clip": LayerKind(_clip, floats={0: _FINITE, 1: _FINITE}),
    "Noop": LayerKind(_same),
    "Dropout": LayerKind(_same, floats={0: _FINITE}),
    "BatchNorm": LayerKind(_batchnorm, ints={0: (1, 8192)}, floats={1: _FINITE}),
    "Split": LayerKind(_split, tops=(1, MAX_BLOBS_PER_LAYER)),
    "Concat": LayerKind(_concat, ints={0: (0, 0)}, bottoms=(1, MAX_BLOBS_PER_LAYER)),
    "Eltwise": LayerKind(_eltwise, ints={0: (0, 2)}, arrays={1: MAX_BLOBS_PER_LAYER}, bottoms=(2, MAX_BLOBS_PER_LAYER)),
    "BinaryOp": LayerKind(_binary, ints={0: (0, 11), 1: (0, 1)}, floats={2: _FINITE}, bottoms=(1, 2)),
    "Interp": LayerKind(_interp, ints={0: (1, 3), 3: _SIZE, 4: _SIZE, 5: (0, 0), 6: (0, 1)},
                        floats={1: (1 / 16, 16.0), 2: (1 / 16, 16.0)}, context=lambda p: p.i(0, 1) - 1),
    "PixelShuffle": LayerKind(_pixelshuffle, ints={0: (1, 16), 1: (0, 1)}),
    "Reorg": LayerKind(_reorg, ints={0: (1, 16), 1: (0, 1)}),
})


def _is_float_text(text: str) -> bool:
    """ncnn reads a value as a float when it has a '.' or an exponent, else as an int."""
    return any(ch in text for ch in ".eE")


def parse_params(layer: NcnnLayer, kind: LayerKind) -> Params:
    """The layer's parameters typed as ncnn will read them; GraphError for any id, type or range
    ncnn would misread (an int param written as a float is read as its bit pattern)."""
    params = Params()
    for key, raw in layer.params.items():
        if key <= -23300:
            array_id = -key - 23300
            if array_id not in kind.arrays:
                raise _fail(layer.name, f"{layer.type} takes no array {key}")
            params.arrays[array_id] = _parse_array(layer.name, key, raw, kind.arrays[array_id])
        elif key in kind.ints:
            if not _INT.match(raw):
                raise _fail(layer.name, f"param {key}={raw[:20]!r} must be an integer")
            lo, hi = kind.ints[key]
            if not lo <= int(raw) <= hi:
                raise _fail(layer.name, f"param {key}={raw[:20]} is outside {lo}..{hi}")
            params.ints[key] = int(raw)
        elif key in kind.floats:
            params.floats[key] = _parse_float(layer.name, key, raw, kind.floats[key])
        else:
            raise _fail(layer.name, f"{layer.type} takes no parameter {key}")
    for key in (14, 15, 16, 4):  # pads: a number of pixels, or -233/-234 ("same") on the first
        value = params.ints.get(key)
        if value is not None and value < 0 and not (key == 4 and value in (-233, -234)):
            raise _fail(layer.name, f"param {key}={value} is not a padding")
    return params


def _parse_float(name: str, key: int, raw: str, bounds: tuple[float, float]) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _fail(name, f"param {key}={raw[:20]!r} is not a number") from None
    if not _is_float_text(raw) or not math.isfinite(value):
        raise _fail(name, f"param {key}={raw[:20]!r} must be a finite float written with a '.' or an exponent")
    if not bounds[0] <= value <= bounds[1]:
        raise _fail(name, f"param {key}={raw[:20]} is outside {bounds[0]:g}..{bounds[1]:g}")
    return value


def _parse_array(name: str, key: int, raw: str, longest: int) -> list[float]:
    head, _, rest = raw.partition(",")
    if not _INT.match(head) or not 0 <= int(head) <= longest:
        raise _fail(name, f"array {key} count {head[:20]!r} is not in 0..{longest}")
    values = [v for v in rest.split(",") if v] if rest else []
    if len(values) != int(head):
        raise _fail(name, f"array {key} declares {head} values but holds {len(values)}")
    return [_parse_float(name, key, v, _FINITE) for v in values]


def _header_blob_count(text: str) -> int:
    lines = [line for line in text.splitlines() if line.strip()]
    return int(lines[1].split()[1])  # NcnnParam.parse already checked this line


def probe_sides(tile_pad: int, size_multiple: int) -> tuple[int, int]:
    """Input sides to check: the smallest padded tile the tiler can make (a 1 px image), and a
    larger one, so a graph that is right at one size only (valid convs, odd resizes) shows."""
    smallest = -(-(1 + 2 * tile_pad) // size_multiple) * size_multiple
    return smallest, smallest + 3 * size_multiple


def check_graph(param_text: str, in_channels: int, input_blob: str, output_blob: str,
                scale: int | None = None, out_channels: int | None = None,
                sides: tuple[int, ...] = (8, 11)) -> Shape:
    """Refuse a graph ncnn would crash on; returns the output shape for an input of `sides[0]` px.

    With `scale`/`out_channels` the output must be that many channels at that scale for every
    probe side (the sidecar's claim, checked before any tile runs, whichever path runs it).
    """
    try:
        param = NcnnParam.parse(param_text)
    except NcnnFormatError as exc:
        raise GraphError(str(exc)) from None
    inputs = [layer for layer in param.layers if layer.type == "Input"]
    if [layer.tops for layer in inputs] != [[input_blob]]:
        raise GraphError(f"the graph needs exactly one Input layer producing {input_blob!r}")
    # Sides the graph itself divides (pixel-unshuffle, strides): a sidecar that forgets its
    # size_multiple gets wrong-sized tiles refused at run time, not a crash; probe valid sizes.
    multiple = math.lcm(*(_divisor(layer) for layer in param.layers))
    sides = tuple(-(-side // multiple) * multiple for side in sides)
    typed = [(layer, _typed(layer)) for layer in param.layers]  # ids, types, ranges: once
    declared = _header_blob_count(param_text)
    results = [_check_at(typed, declared, side, in_channels, output_blob, scale, out_channels) for side in sides]
    return results[0]


def _typed(layer: NcnnLayer) -> Params:
    """A layer's parameters after the checks that do not depend on shapes."""
    kind = LAYER_KINDS.get(layer.type)
    if kind is None:
        raise _fail(layer.name, f"unknown layer type {layer.type[:40]!r} (known: {', '.join(sorted(LAYER_KINDS))})")
    for blob in (layer.name, *layer.bottoms, *layer.tops):
        if len(blob) > MAX_NAME:
            raise _fail(layer.name[:40], f"name longer than {MAX_NAME} characters")
    for label, count, (lo, hi) in (("inputs", len(layer.bottoms), kind.bottoms), ("outputs", len(layer.tops), kind.tops)):
        if not lo <= count <= hi:
            raise _fail(layer.name, f"{layer.type} takes {lo}..{hi} {label}, got {count}")
    return parse_params(layer, kind)


def _divisor(layer: NcnnLayer) -> int:
    """How much a layer divides its input size by (1 for most); garbage values count as 1 here."""
    key = {"Reorg": 0, "Convolution": 3, "ConvolutionDepthWise": 3}.get(layer.type)
    raw = layer.params.get(key, "1") if key is not None else "1"
    return int(raw) if _INT.match(raw) and 1 <= int(raw) <= 16 else 1


def _check_at(typed: list[tuple[NcnnLayer, Params]], declared: int, side: int, in_channels: int, output_blob: str,
              scale: int | None, out_channels: int | None) -> Shape:
    shapes: dict[str, Shape] = {}
    consumed: set[str] = set()
    for layer, params in typed:
        _check_layer(layer, params, shapes, consumed, in_channels, side)
    if not len(shapes) <= declared <= 4 * len(shapes) + 64:  # ncnn sizes its blob table from the header
        raise GraphError(f"the header declares {declared} blobs but the layers make {len(shapes)}")
    out = shapes.get(output_blob)
    if out is None:
        raise GraphError(f"output blob {output_blob!r} is not made by any layer")
    if scale is not None and (out.h, out.w) != (side * scale, side * scale):
        raise GraphError(f"the graph turns a {side}x{side} input into {out.w}x{out.h}, not x{scale} as the sidecar says")
    if out_channels is not None and out.c != out_channels:
        raise GraphError(f"the graph outputs {out.c} channels, the sidecar says {out_channels}")
    return out


def _check_layer(layer: NcnnLayer, params: Params, shapes: dict[str, Shape], consumed: set[str],
                 in_channels: int, side: int) -> None:
    kind = LAYER_KINDS[layer.type]
    ins = []
    for blob in layer.bottoms:
        if blob not in shapes:
            raise _fail(layer.name, f"reads blob {blob!r} before any layer makes it")
        if blob in consumed:
            raise _fail(layer.name, f"blob {blob!r} is read twice (ncnn needs a Split to share a blob)")
        consumed.add(blob)
        ins.append(shapes[blob])
    if layer.type == "Input":
        if params.i(2, 0) not in (0, in_channels):
            raise _fail(layer.name, f"input of {params.i(2, 0)} channels, the model spec says {in_channels}")
        outs = [Shape(in_channels, side, side)]
    else:
        outs = kind.shape(params, ins, layer.name)[: len(layer.tops)]
    for blob, shape in zip(layer.tops, outs):
        if blob in shapes:
            raise _fail(layer.name, f"blob {blob!r} is made twice")
        if shape.c * shape.h * shape.w > MAX_VALUES_PER_PIXEL * side * side:
            raise _fail(layer.name, f"blob {blob!r} would hold {shape.c}x{shape.h}x{shape.w} values for a {side}x{side} input")
        shapes[blob] = shape
