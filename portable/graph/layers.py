"""The one table of ncnn layer types this runtime accepts: everything known about a type, in its entry.

Why one table: the validator (check.py), the graph analysis (analysis.py, halos and resolutions),
the segment planner (plan/segments.py, through the analysis) and the `.bin` reader (weights.py)
each need per-type knowledge. Written once per consumer, the lists drifted (a type could be
"tileable" but never accepted). Here a `LayerKind` holds, per type: its parameter ids with their
type and range, its blob counts, its shape rule, its geometry (resolution factor and context, the
halo rule), its `.bin` weight layout, what it divides input sizes by, and its locality. Adding a
layer type is one entry; tests/test_layer_table.py proves every consumer follows the entry.

The C++ validator (deploy/src/layers.cpp) holds the same entries; tests/test_deploy_fuzz.py
compares the two tables entry for entry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Literal, Protocol

_INT = re.compile(r"^[+-]?[0-9]{1,10}$")
MAX_BLOBS_PER_LAYER = 64
MAX_ARRAY = 64
MAX_NAME = 255  # ncnn reads names with %255s
INT_ARRAY_RANGE = (-(1 << 16), (1 << 31) - 1)  # starts/ends/slices: pixels, negative from the end, INT_MAX "to the end"


class GraphError(ValueError):
    """The `.param` describes a graph ncnn would run out of bounds on (one-line message)."""


class RawLayer(Protocol):
    """One `.param` line as parsed (ncnn_files.NcnnLayer): the table reads only this much."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str]


@dataclass(frozen=True)
class Shape:
    """A blob's channels, height and width (ncnn's c, h, w); `dims` 1 for a flat vector of `c`
    values (what global pooling and InnerProduct make), else 3."""

    c: int
    h: int
    w: int
    dims: int = 3


@dataclass(frozen=True)
class Params:
    """One layer's parameters as ncnn will read them: ints, floats and arrays (of floats or of
    ints, as the entry says) by id."""

    ints: dict[int, int] = field(default_factory=dict)
    floats: dict[int, float] = field(default_factory=dict)
    arrays: dict[int, list[float]] = field(default_factory=dict)

    def i(self, key: int, default: int) -> int:
        return self.ints.get(key, default)

    def f(self, key: int, default: float) -> float:
        return self.floats.get(key, default)


Factor = tuple[Fraction, Fraction]  # (y, x) resolution relative to the net's input
ONE: Factor = (Fraction(1), Fraction(1))


@dataclass(frozen=True)
class Geometry:
    """How a layer maps its bottoms' pixels to its tops' (same for all bottoms and tops).

    `factor`: top resolution / bottom resolution per axis. `context`: extra bottom pixels needed
    before/after a region, (top, bottom, left, right). `lead`: top pixels added to a margin before
    it is divided (a deconvolution's reach is counted in its output pixels, so rounding once is
    exact). A top margin m becomes the bottom margin ceil((m + lead) / factor) + context.
    """

    factor: Factor = ONE
    context: tuple[int, int, int, int] = (0, 0, 0, 0)
    # The top's pixel j sits at bottom pixel j / factor and the top is exactly factor x the bottom.
    # False where the layer trims or shifts the grid (an unpadded convolution, a spatial crop, a
    # deconvolution that is not exactly s x its input): the context, relative to that anchor
    # (negative where a crop skips pixels), still gives exact halos, but such a blob is not on
    # the input's grid, so feature maps are never stored or cut there.
    aligned: bool = True
    lead: tuple[int, int, int, int] = (0, 0, 0, 0)

    def bottom_margin(self, margin: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        fy, fx = self.factor
        return tuple(math.ceil((m + a) / f) + c  # type: ignore
                     for m, a, f, c in zip(margin, self.lead, (fy, fy, fx, fx), self.context))


ShapeRule = Callable[[Params, list[Shape], str], list[Shape]]
GeometryRule = Callable[[Params, int], "Geometry | None"]  # (params, number of bottoms)
WeightsRule = Callable[[Params], "list[tuple[int, bool]] | None"]  # None: storage not supported
Locality = Literal["pointwise", "local", "global"]
LocalityRule = Callable[[Params], Locality]
ScratchRule = Callable[[Params], "tuple[float, float]"]  # scratch values per bottom value, per top value


def _pointwise(p: Params, bottoms: int) -> Geometry:
    return Geometry()


def _opaque(p: Params, bottoms: int) -> None:
    return None


def _no_weights(p: Params) -> list[tuple[int, bool]]:
    return []


def _one(p: Params) -> int:
    return 1


def _no_scratch(p: Params) -> tuple[float, float]:
    return 0.0, 0.0


def _always(locality: Locality) -> LocalityRule:
    return lambda p: locality


@dataclass(frozen=True)
class LayerKind:
    """What ncnn accepts for one layer type, and what it does to pixels and the `.bin`.

    ints/floats: parameter id -> inclusive (low, high); arrays / int_arrays: array id -> longest
    length (of floats / of ints). bottoms/tops: inclusive (min, max) blob counts. shape: output
    shapes from input shapes; flat: it also takes flat (1-D) blobs, else image blobs only.
    geometry: resolution factor and context (None: not tileable). weights: (count, tagged)
    arrays stored in the `.bin`, in order. divisor: what the layer divides input sizes by.
    locality: pointwise, local (a window) or global (reads the whole image), from the params.
    copies: every top carries the bottom's value unchanged (the planner stores it once).
    scratch: the values ncnn allocates beside the blobs while the layer runs, per value of its
    bottoms and of its tops (plan/memory.py turns them into bytes).
    """

    shape: ShapeRule
    ints: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    floats: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    arrays: Mapping[int, int] = field(default_factory=dict)
    bottoms: tuple[int, int] = (1, 1)
    tops: tuple[int, int] = (1, 1)
    geometry: GeometryRule = _pointwise
    weights: WeightsRule = _no_weights
    divisor: Callable[[Params], int] = _one
    locality: LocalityRule = _always("pointwise")
    int_arrays: Mapping[int, int] = field(default_factory=dict)
    flat: bool = False
    copies: bool = False  # every top is a copy of the one bottom (Split)
    scratch: ScratchRule = _no_scratch


def fail(name: str, text: str) -> GraphError:
    """The one-line error of a layer check."""
    return GraphError(f"layer {name}: {text}")


# ---- shape rules -------------------------------------------------------------------------------

def _same(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    return [ins[0]]


def _split(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    return ins[:1] * MAX_BLOBS_PER_LAYER  # trimmed to the layer's top count by the caller


def _kernel(p: Params) -> tuple[int, int, int, int, int, int]:
    kw = p.i(1, 0)
    kh, dw = p.i(11, kw), p.i(2, 1)
    return kw, kh, dw, p.i(12, dw), p.i(3, 1), p.i(13, p.i(3, 1))


def _pads(p: Params) -> tuple[int, int, int, int]:
    """Pads (left, top, right, bottom) as ncnn defaults them."""
    pl = p.i(4, 0)
    pt = p.i(14, pl)
    return pl, pt, p.i(15, pl), p.i(16, pt)


def _conv_out(size: int, kernel: int, dilation: int, stride: int, pad_a: int, pad_b: int) -> int:
    if pad_a in (-233, -234):  # SAME_UPPER / SAME_LOWER: ncnn pads to ceil(size / stride)
        return -(-size // stride)
    return (size + pad_a + pad_b - (dilation * (kernel - 1) + 1)) // stride + 1


_ACTIVATION_PARAMS = {0: 0, 1: 0, 2: 1, 3: 2, 4: 0, 5: 0, 6: 2}  # ncnn's fused activations


def _activation(p: Params, name: str) -> None:
    act, n_act = p.i(9, 0), len(p.arrays.get(10, []))
    if n_act != _ACTIVATION_PARAMS[act]:
        raise fail(name, f"activation {act} needs {_ACTIVATION_PARAMS[act]} parameter(s) in -23310, got {n_act}")


def _weight_count(p: Params, x: Shape, name: str, expected: int) -> None:
    kw, kh = p.i(1, 0), p.i(11, p.i(1, 0))
    if p.i(6, 0) != expected:
        raise fail(name, f"weight count {p.i(6, 0)} does not fit {x.c} input channels "
                         f"({p.i(0, 0)} outputs, {kw}x{kh} kernel: {expected} weights)")


def _grouped(p: Params, x: Shape, name: str) -> tuple[int, int]:
    out, group = p.i(0, 0), p.i(7, 1)
    kw, kh = p.i(1, 0), p.i(11, p.i(1, 0))
    if out < 1 or kw < 1 or kh < 1:
        raise fail(name, "a convolution needs 0= (outputs) and 1= (kernel) of at least 1")
    if x.c % group or out % group:
        raise fail(name, f"group {group} does not divide {x.c} input / {out} output channels")
    return out, group


def _conv(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    (x,) = ins
    out, group = _grouped(p, x, name)
    kw, kh, dw, dh, sw, sh = _kernel(p)
    _weight_count(p, x, name, out * (x.c // group) * kw * kh)
    _activation(p, name)
    pl, pt, pr, pb = _pads(p)
    w = _conv_out(x.w, kw, dw, sw, pl, pr)
    h = _conv_out(x.h, kh, dh, sh, pt, pb)
    if w < 1 or h < 1:
        raise fail(name, f"a {x.w}x{x.h} input leaves no output pixel (kernel {kw}x{kh}, stride {sw}x{sh})")
    return [Shape(out, h, w)]


def _prelu(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    slopes = p.i(0, 0)
    if slopes not in (1, ins[0].c):
        raise fail(name, f"{slopes} slopes for a {ins[0].c}-channel input (1 or {ins[0].c} expected)")
    return ins


def _batchnorm(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if p.i(0, 0) != ins[0].c:
        raise fail(name, f"statistics for {p.i(0, 0)} channels on a {ins[0].c}-channel input")
    return ins


def _clip(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if p.f(0, -math.inf) > p.f(1, math.inf):
        raise fail(name, "clip minimum above its maximum")
    return ins


def _concat(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if any((s.h, s.w) != (ins[0].h, ins[0].w) for s in ins):
        raise fail(name, "inputs of different sizes cannot be concatenated along channels")
    return [Shape(sum(s.c for s in ins), ins[0].h, ins[0].w)]


def _eltwise(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    coeffs = p.arrays.get(1, [])
    if coeffs and len(coeffs) != len(ins):
        raise fail(name, f"{len(coeffs)} coefficients for {len(ins)} inputs")
    if any(s != ins[0] for s in ins):
        raise fail(name, f"inputs of different shapes {[(s.c, s.h, s.w) for s in ins]}")
    return ins[:1]


def _binary(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    with_scalar = p.i(1, 0)
    if len(ins) != (1 if with_scalar else 2):
        raise fail(name, f"{len(ins)} input(s) with with_scalar={with_scalar}")
    if with_scalar:
        return ins
    a, b = ins
    if a == b or (b.h, b.w) == (1, 1) and b.c in (1, a.c):
        return [a]
    if (a.h, a.w) == (1, 1) and a.c in (1, b.c):
        return [b]
    raise fail(name, f"inputs of shapes {(a.c, a.h, a.w)} and {(b.c, b.h, b.w)} do not broadcast")


def _interp(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = ins[0]
    if p.i(0, 0) not in (1, 2, 3):
        raise fail(name, "Interp needs 0= (resize type) 1, 2 or 3")
    oh, ow = p.i(3, 0), p.i(4, 0)
    if oh == 0 or ow == 0:
        oh, ow = int(x.h * p.f(1, 1.0)), int(x.w * p.f(2, 1.0))
    if oh < 1 or ow < 1:
        raise fail(name, f"resizes a {x.w}x{x.h} input to {ow}x{oh}")
    return [Shape(x.c, oh, ow)]


def _pixelshuffle(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, r = ins[0], p.i(0, 1)
    if x.c % (r * r):
        raise fail(name, f"upscale factor {r} needs channels divisible by {r * r}, got {x.c}")
    return [Shape(x.c // (r * r), x.h * r, x.w * r)]


def _reorg(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, s = ins[0], p.i(0, 1)
    if x.h % s or x.w % s:
        raise fail(name, f"stride {s} does not divide a {x.w}x{x.h} input")
    return [Shape(x.c * s * s, x.h // s, x.w // s)]


def _image(x: Shape, name: str) -> Shape:
    if x.dims != 3:
        raise fail(name, "needs an image blob, got a flat vector")
    return x


def _memorydata(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    w, h, c = p.i(0, 0), p.i(1, 0), p.i(2, 0)
    if min(w, h, c) < 1:
        raise fail(name, "MemoryData needs 0= (w), 1= (h) and 2= (c) of at least 1 (only 3-D constants)")
    return [Shape(c, h, w)]


def _deconv(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = _image(ins[0], name)
    out, group = _grouped(p, x, name)
    kw, kh, dw, dh, sw, sh = _kernel(p)
    _weight_count(p, x, name, out * (x.c // group) * kw * kh)
    _activation(p, name)
    pl, pt, pr, pb = _pads(p)
    opw = p.i(18, 0)
    oph = p.i(19, opw)
    w = (x.w - 1) * sw + dw * (kw - 1) + 1 + opw - pl - pr
    h = (x.h - 1) * sh + dh * (kh - 1) + 1 + oph - pt - pb
    if w < 1 or h < 1:
        raise fail(name, f"a {x.w}x{x.h} input leaves no output pixel (kernel {kw}x{kh}, pads {pl},{pt},{pr},{pb})")
    return [Shape(out, h, w)]


def _crop_range(start: int, end: int, size: int, axis: str, name: str) -> tuple[int, int]:
    """ncnn's numpy-style crop of one axis: (offset, length); -233 means the axis' own bound."""
    start = 0 if start == -233 else start
    end = size if end == -233 else end
    offset = start if start >= 0 else size + start
    length = min(size, end if end > 0 else size + end) - offset
    if offset < 0 or length < 1 or offset + length > size:
        raise fail(name, f"crops {axis} {start}..{end} of a {size}-pixel axis")
    return offset, length


def _crop(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = _image(ins[0], name)
    starts, ends, axes = p.arrays.get(9, []), p.arrays.get(10, []), p.arrays.get(11, [])
    if not starts or len(ends) != len(starts) or (axes and len(axes) != len(starts)) or (not axes and len(starts) != 3):
        raise fail(name, "Crop needs -23309 (starts) and -23310 (ends) of one length, and -23311 (axes) of it or 3 of each")
    sizes = {0: x.c, 1: x.h, 2: x.w}
    for i, start in enumerate(starts):
        axis = int(axes[i]) if axes else i
        axis = axis + 3 if axis < 0 else axis
        if axis not in sizes:
            raise fail(name, f"crop axis {int(axes[i])} is not one of an image's 3")
        sizes[axis] = _crop_range(int(start), int(ends[i]), sizes[axis], "cyx"[axis], name)[1]
    return [Shape(sizes[0], sizes[1], sizes[2])]


def _pool(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = _image(ins[0], name)
    if p.i(4, 0):
        return [Shape(x.c, 1, 1, dims=1)]  # global pooling: one value per channel, a flat vector
    kw = p.i(1, 0)
    kh, sw = p.i(11, kw), p.i(2, 1)
    sh, pl = p.i(12, sw), p.i(3, 0)
    pr, pt = p.i(14, pl), p.i(13, pl)
    pb = p.i(15, pt)
    if kw < 1 or kh < 1:
        raise fail(name, "a non-global Pooling needs 1= (kernel) of at least 1")
    sizes = []
    for size, k, stride, lo, hi in ((x.h, kh, sh, pt, pb), (x.w, kw, sw, pl, pr)):
        span = size + lo + hi - k
        if span < 0:
            raise fail(name, f"a {x.w}x{x.h} input is smaller than the {kw}x{kh} window")
        sizes.append(-(-span // stride) + 1 if p.i(5, 0) == 0 else span // stride + 1)
    return [Shape(x.c, sizes[0], sizes[1])]


def _innerproduct(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = ins[0]
    values = x.c * x.h * x.w
    if p.i(2, 0) != p.i(0, 0) * values:
        raise fail(name, f"weight count {p.i(2, 0)} does not fit {values} inputs ({p.i(0, 0)} outputs)")
    _activation(p, name)
    return [Shape(p.i(0, 0), 1, 1, dims=1)]


def _padding(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = _image(ins[0], name)
    top, bottom, left, right = p.i(0, 0), p.i(1, 0), p.i(2, 0), p.i(3, 0)
    if p.i(6, 0) not in (0, x.c):
        raise fail(name, f"{p.i(6, 0)} per-channel pad values for {x.c} channels")
    if p.i(4, 0) == 2 and (max(top, bottom) >= x.h or max(left, right) >= x.w):
        raise fail(name, f"reflect padding of {max(top, bottom, left, right)} needs a larger input than {x.w}x{x.h}")
    return [Shape(x.c, x.h + top + bottom, x.w + left + right)]


def _reshape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = ins[0]
    total = x.c * x.h * x.w
    wanted = [p.i(0, -233)] if p.i(1, -233) == -233 else [p.i(2, -233), p.i(1, -233), p.i(0, -233)]
    if len(wanted) == 3 and -233 in wanted:
        raise fail(name, "Reshape to 2-D is not supported (give 0=, 1= and 2=, or 0= only)")
    own = (x.c, x.h, x.w)
    dims = []
    for axis, value in enumerate(wanted):
        if value == 0 and len(wanted) == 3 and x.dims == 3:
            value = own[axis]
        elif value != -1 and value < 1:
            raise fail(name, f"Reshape size {value} is not a size, 0 (keep) on an image or -1 (infer)")
        dims.append(value)
    if dims.count(-1) > 1:
        raise fail(name, "Reshape infers at most one size (-1)")
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if total % known:
            raise fail(name, f"{total} values do not reshape to {wanted}")
        dims[dims.index(-1)] = total // known
    if math.prod(dims) != total:
        raise fail(name, f"{total} values do not reshape to {dims}")
    return [Shape(dims[0], 1, 1, dims=1)] if len(dims) == 1 else [Shape(*dims)]


_PERMUTE = {0: (0, 1, 2), 1: (0, 2, 1), 2: (1, 0, 2), 3: (1, 2, 0), 4: (2, 0, 1), 5: (2, 1, 0)}  # out (c, h, w) from in axes


def _permute(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = _image(ins[0], name)
    axes = (x.c, x.h, x.w)
    c, h, w = (axes[i] for i in _PERMUTE[p.i(0, 0)])
    return [Shape(c, h, w)]


def _axis(p: Params, x: Shape, key: int, name: str) -> int:
    """A 3-D axis (0 channels, 1 height, 2 width) from ncnn's possibly negative one."""
    axis = p.i(key, 0)
    if x.dims == 1:
        if axis not in (0, -1):
            raise fail(name, f"axis {axis} of a flat vector")
        return 0
    return axis + 3 if axis < 0 else axis


def _slice(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = ins[0]
    axis = _axis(p, x, 1, name)
    slices = [int(v) for v in p.arrays.get(0, [])]
    size = (x.c, x.h, x.w)[axis]
    if not slices or any(v != -233 and v < 1 for v in slices):
        raise fail(name, "Slice needs -23300 (slice sizes) of at least 1 each, or -233 (an equal share)")
    outs, taken = [], 0
    for i, v in enumerate(slices):
        part = (size - taken) // (len(slices) - i) if v == -233 else v
        if part < 1 or taken + part > size:
            raise fail(name, f"slices {slices} do not fit a {size}-long axis")
        taken += part
        dims = [x.c, x.h, x.w]
        dims[axis] = part
        outs.append(Shape(*dims, dims=x.dims))
    return outs


def _softmax(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    _axis(p, ins[0], 0, name)
    return ins[:1]


def _layernorm(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, size = ins[0], p.i(0, 0)
    allowed = (x.c,) if x.dims == 1 else (x.w, x.w * x.h)
    if size not in allowed:
        raise fail(name, f"affine size {size} is none of {allowed} for a {(x.c, x.h, x.w)} blob")
    return ins[:1]


# ---- geometry (halo) rules ---------------------------------------------------------------------

def _conv_geometry(p: Params, bottoms: int) -> Geometry | None:
    """Top pixel j reads bottom pixels j*s - pad .. j*s - pad + d*(k-1): anchored at j*s, so a
    top region ending at J (exclusive) reads up to s*J - s + 1 - pad + d*(k-1) (exclusive)."""
    kw, kh, dw, dh, sw, sh = _kernel(p)
    pl, pt, pr, pb = _pads(p)
    if min(pl, pt, pr, pb) < 0 or bottoms != 1:
        return None  # SAME-style automatic padding or dynamic weights: not tracked
    # shape preserving up to the stride (out = in / s for in a multiple of s), else the grid shifts
    aligned = all(1 - s <= lo + hi - d * (k - 1) <= 0
                  for k, d, s, lo, hi in ((kh, dh, sh, pt, pb), (kw, dw, sw, pl, pr)))
    return Geometry((Fraction(1, sh), Fraction(1, sw)),
                    (pt, dh * (kh - 1) - pt - sh + 1, pl, dw * (kw - 1) - pl - sw + 1), aligned)


_INTERP_CONTEXT = {1: 0, 2: 1, 3: 2}  # nearest, bilinear, bicubic: source pixels beyond the nearest


def _interp_geometry(p: Params, bottoms: int) -> Geometry | None:
    if bottoms != 1 or p.i(3, 0) or p.i(4, 0):
        return None  # fixed output size or size taken from another blob
    context = _INTERP_CONTEXT.get(p.i(0, 0))
    fy = Fraction(p.f(1, 1.0)).limit_denominator(64)
    fx = Fraction(p.f(2, 1.0)).limit_denominator(64)
    if context is None or fy <= 0 or fx <= 0:
        return None
    # Downscaling reads taps spread over 1/f source pixels: one more pixel each side covers them.
    cy, cx = context + (fy < 1), context + (fx < 1)
    return Geometry((fy, fx), (cy, cy, cx, cx))


def _shuffle_geometry(p: Params, bottoms: int) -> Geometry | None:
    r = p.i(0, 1)
    return Geometry((Fraction(r), Fraction(r))) if not p.i(1, 0) else None


def _reorg_geometry(p: Params, bottoms: int) -> Geometry | None:
    s = p.i(0, 1)
    return Geometry((Fraction(1, s), Fraction(1, s))) if not p.i(1, 0) else None


def _deconv_geometry(p: Params, bottoms: int) -> Geometry | None:
    """Bottom pixel i writes top pixels i*s - pad .. i*s - pad + d*(k-1), so top pixel j (anchored
    at j/s) gathers bottom pixels ceil((j + pad - d*(k-1))/s) .. floor((j + pad)/s): a top margin
    m needs ceil((m + d*(k-1) - pad - s + 1)/s) bottom pixels before and ceil((m + pad)/s) after."""
    kw, kh, dw, dh, sw, sh = _kernel(p)
    pl, pt, pr, pb = _pads(p)
    opw = p.i(18, 0)
    oph = p.i(19, opw)
    if bottoms != 1:
        return None
    # out = in * s exactly, else the grid is trimmed or grown
    aligned = all(d * (k - 1) + 1 - lo - hi + extra == s
                  for k, d, s, lo, hi, extra in ((kh, dh, sh, pt, pb, oph), (kw, dw, sw, pl, pr, opw)))
    lead = (dh * (kh - 1) - pt - sh + 1, pt, dw * (kw - 1) - pl - sw + 1, pl)
    return Geometry((Fraction(sh), Fraction(sw)), (0, 0, 0, 0), aligned, lead)


def _channel_axis(key: int) -> GeometryRule:
    """Pointwise when the layer works along channels (axis 0 / -3), else not tileable."""
    return lambda p, bottoms: Geometry() if p.i(key, 0) in (0, -3) else None


_TO_THE_END = (-233, 0)  # crop ends that keep the axis to its end (a negative one trims it)


def _crop_geometry(p: Params, bottoms: int) -> Geometry | None:
    """A channel crop moves no pixel; a spatial crop whose start is a fixed offset and whose end is
    counted from the axis' end shifts the grid by the start: top pixel j is bottom pixel j + start.
    A start counted from the end, or a fixed end, depends on the input size: not tileable."""
    starts, ends = p.arrays.get(9, []), p.arrays.get(10, [])
    axes = p.arrays.get(11, []) or list(range(len(starts)))
    if not starts or len(ends) != len(starts) or len(axes) != len(starts):
        return None
    offset = {1: 0, 2: 0}  # h, w
    for axis, start, end in zip(axes, starts, ends):
        axis = int(axis) + 3 if axis < 0 else int(axis)
        if axis == 0:
            continue
        start = 0 if start == -233 else int(start)
        if axis not in offset or start < 0 or not (end <= 0 or end >= INT_ARRAY_RANGE[1]):
            return None
        offset[axis] = start
    oy, ox = offset[1], offset[2]
    shifts = any(offset.values()) or any(int(a) % 3 and e not in _TO_THE_END + (INT_ARRAY_RANGE[1],)
                                         for a, e in zip(axes, ends))
    return Geometry(ONE, (-oy, oy, -ox, ox), not shifts)


def _padding_geometry(p: Params, bottoms: int) -> Geometry | None:
    return Geometry() if not any(p.i(k, 0) for k in (0, 1, 2, 3)) else None


def _pool_locality(p: Params) -> Locality:
    return "global" if p.i(4, 0) else "local"


def _axis_locality(key: int) -> LocalityRule:
    return lambda p: "pointwise" if p.i(key, 0) in (0, -3) else "global"


# ---- .bin layouts ------------------------------------------------------------------------------

def _conv_weights(p: Params) -> list[tuple[int, bool]] | None:
    if p.i(8, 0):
        return None  # int8-quantised weights
    return [(p.i(6, 0), True)] + ([(p.i(0, 0), False)] if p.i(5, 0) else [])


def _conv_scratch(p: Params) -> tuple[float, float]:
    """A spatial kernel: ncnn pads a copy of the input (1x) and a 3x3 kernel runs Winograd F(6,3)
    on transformed copies of input and output (~1.8x each); a 1x1 kernel multiplies the blobs as
    they are (measured: tests/test_memory_model.py). Deconvolutions and depthwise kernels take the
    same rule, not measured separately."""
    kw = p.i(1, 0)
    return (2.8, 1.8) if max(kw, p.i(11, kw)) > 1 else (0.0, 0.0)


def _per_channel(arrays: int) -> WeightsRule:
    return lambda p: [(p.i(0, 0), False)] * arrays


def _conv_divisor(p: Params) -> int:
    return p.i(3, 1)


def _innerproduct_weights(p: Params) -> list[tuple[int, bool]] | None:
    if p.i(8, 0):
        return None
    return [(p.i(2, 0), True)] + ([(p.i(0, 0), False)] if p.i(1, 0) else [])


def _memorydata_weights(p: Params) -> list[tuple[int, bool]]:
    return [(p.i(0, 0) * p.i(1, 0) * p.i(2, 0), p.i(21, 1) == 0)]


def _padding_weights(p: Params) -> list[tuple[int, bool]]:
    return [(p.i(6, 0), False)] if p.i(6, 0) else []


def _layernorm_weights(p: Params) -> list[tuple[int, bool]]:
    return [(p.i(0, 0), False)] * 2 if p.i(2, 1) else []


# ---- the table ---------------------------------------------------------------------------------

_SIZE = (0, 1 << 16)
_CONV_INTS = {0: (1, 8192), 1: (1, 31), 11: (1, 31), 2: (1, 16), 12: (1, 16), 3: (1, 16), 13: (1, 16),
              4: (-234, 256), 14: (-234, 256), 15: (-234, 256), 16: (-234, 256), 5: (0, 1), 6: (1, 1 << 30),
              8: (0, 0), 9: (0, 6), 19: (0, 0)}
_FINITE = (-math.inf, math.inf)  # any finite value (inf/nan are refused separately)
_PAD = (0, 256)
_DECONV_INTS = {0: (1, 8192), 1: (1, 31), 11: (1, 31), 2: (1, 16), 12: (1, 16), 3: (1, 16), 13: (1, 16),
                4: _PAD, 14: _PAD, 15: _PAD, 16: _PAD, 18: (0, 16), 19: (0, 16), 5: (0, 1), 6: (1, 1 << 30),
                9: (0, 6)}
_DECONV = dict(shape=_deconv, arrays={10: 2}, geometry=_deconv_geometry, weights=_conv_weights,
               locality=_always("local"), scratch=_conv_scratch)
_CONV = dict(shape=_conv, floats={18: _FINITE}, arrays={10: 2}, geometry=_conv_geometry, weights=_conv_weights,
             divisor=_conv_divisor, locality=_always("local"), scratch=_conv_scratch)

LAYER_KINDS: Mapping[str, LayerKind] = MappingProxyType({
    "Input": LayerKind(_same, ints={0: _SIZE, 1: _SIZE, 11: _SIZE, 2: _SIZE}, bottoms=(0, 0)),
    "Convolution": LayerKind(ints=_CONV_INTS, **_CONV),  # type: ignore[arg-type]
    "ConvolutionDepthWise": LayerKind(ints={**_CONV_INTS, 7: (1, 8192)}, **_CONV),  # type: ignore[arg-type]
    "PReLU": LayerKind(_prelu, ints={0: (1, 8192)}, weights=_per_channel(1)),
    "ReLU": LayerKind(_same, floats={0: _FINITE}, flat=True),
    "Sigmoid": LayerKind(_same, flat=True),
    "TanH": LayerKind(_same, flat=True),
    "Clip": LayerKind(_clip, floats={0: _FINITE, 1: _FINITE}, flat=True),
    "Noop": LayerKind(_same, flat=True),
    "Dropout": LayerKind(_same, floats={0: _FINITE}, flat=True),
    "BatchNorm": LayerKind(_batchnorm, ints={0: (1, 8192)}, floats={1: _FINITE}, weights=_per_channel(4)),
    "Split": LayerKind(_split, tops=(1, MAX_BLOBS_PER_LAYER), copies=True, flat=True),
    "Concat": LayerKind(_concat, ints={0: (0, 0)}, bottoms=(1, MAX_BLOBS_PER_LAYER)),
    "Eltwise": LayerKind(_eltwise, ints={0: (0, 2)}, arrays={1: MAX_BLOBS_PER_LAYER}, bottoms=(2, MAX_BLOBS_PER_LAYER),
                         flat=True),
    "BinaryOp": LayerKind(_binary, ints={0: (0, 11), 1: (0, 1)}, floats={2: _FINITE}, bottoms=(1, 2), flat=True),
    "Interp": LayerKind(_interp, ints={0: (1, 3), 3: _SIZE, 4: _SIZE, 5: (0, 0), 6: (0, 1)},
                        floats={1: (1 / 16, 16.0), 2: (1 / 16, 16.0)}, geometry=_interp_geometry, locality=_always("local")),
    "PixelShuffle": LayerKind(_pixelshuffle, ints={0: (1, 16), 1: (0, 1)}, geometry=_shuffle_geometry),
    "MemoryData": LayerKind(_memorydata, ints={0: _SIZE, 1: _SIZE, 2: (0, 8192), 21: (0, 1)}, bottoms=(0, 0),
                            weights=_memorydata_weights),
    "Swish": LayerKind(_same, flat=True),
    "GELU": LayerKind(_same, ints={0: (0, 1)}, flat=True),
    "HardSwish": LayerKind(_same, floats={0: _FINITE, 1: _FINITE}, flat=True),
    "Mish": LayerKind(_same, flat=True),
    "Deconvolution": LayerKind(ints=_DECONV_INTS, **_DECONV),  # type: ignore[arg-type]
    "DeconvolutionDepthWise": LayerKind(ints={**_DECONV_INTS, 7: (1, 8192)}, **_DECONV),  # type: ignore[arg-type]
    "Crop": LayerKind(_crop, int_arrays={9: 3, 10: 3, 11: 3}, geometry=_crop_geometry, locality=_always("local")),
    "Pooling": LayerKind(_pool, ints={0: (0, 1), 1: (1, 31), 11: (1, 31), 2: (1, 16), 12: (1, 16), 3: _PAD, 13: _PAD,
                                      14: _PAD, 15: _PAD, 4: (0, 1), 5: (0, 1), 6: (0, 1), 7: (0, 0)},
                         geometry=lambda p, bottoms: None, locality=_pool_locality,
                         divisor=lambda p: 1 if p.i(4, 0) else p.i(2, 1)),
    "InnerProduct": LayerKind(_innerproduct, ints={0: (1, 8192), 1: (0, 1), 2: (1, 1 << 30), 8: (0, 0), 9: (0, 6)},
                              arrays={10: 2}, geometry=lambda p, bottoms: None, weights=_innerproduct_weights,
                              locality=_always("global"), flat=True),
    "Padding": LayerKind(_padding, ints={0: _PAD, 1: _PAD, 2: _PAD, 3: _PAD, 4: (0, 2), 6: (0, 8192)},
                         floats={5: _FINITE}, geometry=_padding_geometry, weights=_padding_weights,
                         locality=_always("local")),
    "Reshape": LayerKind(_reshape, ints={0: (-233, 1 << 24), 1: (-233, 1 << 16), 2: (-233, 1 << 16)},
                         geometry=lambda p, bottoms: None, locality=_always("global"), flat=True),
    "Permute": LayerKind(_permute, ints={0: (0, 5)}, geometry=lambda p, bottoms: None, locality=_always("global")),
    "Slice": LayerKind(_slice, ints={1: (-3, 2)}, int_arrays={0: MAX_BLOBS_PER_LAYER}, tops=(1, MAX_BLOBS_PER_LAYER),
                       geometry=_channel_axis(1), locality=_axis_locality(1), flat=True),
    "Softmax": LayerKind(_softmax, ints={0: (-3, 2), 1: (0, 1)}, geometry=_channel_axis(0),
                         locality=_axis_locality(0), flat=True),
    "LayerNorm": LayerKind(_layernorm, ints={0: (1, 1 << 24), 2: (0, 1)}, floats={1: (0.0, 1.0)},
                           geometry=lambda p, bottoms: None, weights=_layernorm_weights, locality=_always("global"),
                           flat=True),
    "Reorg": LayerKind(_reorg, ints={0: (1, 16), 1: (0, 1)}, geometry=_reorg_geometry,
                       divisor=lambda p: p.i(0, 1)),
})


# ---- typing one layer by its entry -------------------------------------------------------------

def _is_float_text(text: str) -> bool:
    """ncnn reads a value as a float when it has a '.' or an exponent, else as an int."""
    return any(ch in text for ch in ".eE")


def parse_params(layer: RawLayer, kind: LayerKind) -> Params:
    """The layer's parameters typed as ncnn will read them; GraphError for any id, type or range
    ncnn would misread (an int param written as a float is read as its bit pattern)."""
    params = Params()
    for key, raw in layer.params.items():
        if key <= -23300:
            array_id = -key - 23300
            if array_id in kind.int_arrays:
                params.arrays[array_id] = _parse_array(layer.name, key, raw, kind.int_arrays[array_id], ints=True)
            elif array_id in kind.arrays:
                params.arrays[array_id] = _parse_array(layer.name, key, raw, kind.arrays[array_id])
            else:
                raise fail(layer.name, f"{layer.type} takes no array {key}")
        elif key in kind.ints:
            if not _INT.match(raw):
                raise fail(layer.name, f"param {key}={raw[:20]!r} must be an integer")
            lo, hi = kind.ints[key]
            if not lo <= int(raw) <= hi:
                raise fail(layer.name, f"param {key}={raw[:20]} is outside {lo}..{hi}")
            params.ints[key] = int(raw)
        elif key in kind.floats:
            params.floats[key] = _parse_float(layer.name, key, raw, kind.floats[key])
        else:
            raise fail(layer.name, f"{layer.type} takes no parameter {key}")
    for key in (14, 15, 16, 4):  # pads: a number of pixels, or -233/-234 ("same") on the first
        value = params.ints.get(key)
        if value is not None and value < 0 and not (key == 4 and value in (-233, -234)):
            raise fail(layer.name, f"param {key}={value} is not a padding")
    return params


def _parse_float(name: str, key: int, raw: str, bounds: tuple[float, float]) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise fail(name, f"param {key}={raw[:20]!r} is not a number") from None
    if not _is_float_text(raw) or not math.isfinite(value):
        raise fail(name, f"param {key}={raw[:20]!r} must be a finite float written with a '.' or an exponent")
    if not bounds[0] <= value <= bounds[1]:
        raise fail(name, f"param {key}={raw[:20]} is outside {bounds[0]:g}..{bounds[1]:g}")
    return value


def _parse_array(name: str, key: int, raw: str, longest: int, ints: bool = False) -> list[float]:
    head, _, rest = raw.partition(",")
    if not _INT.match(head) or not 0 <= int(head) <= longest:
        raise fail(name, f"array {key} count {head[:20]!r} is not in 0..{longest}")
    values = [v for v in rest.split(",") if v] if rest else []
    if len(values) != int(head):
        raise fail(name, f"array {key} declares {head} values but holds {len(values)}")
    if not ints:
        return [_parse_float(name, key, v, _FINITE) for v in values]
    for v in values:
        if not _INT.match(v) or not INT_ARRAY_RANGE[0] <= int(v) <= INT_ARRAY_RANGE[1]:
            raise fail(name, f"array {key} value {v[:20]!r} must be an integer in {INT_ARRAY_RANGE[0]}..{INT_ARRAY_RANGE[1]}")
    return [int(v) for v in values]


def kind_of(layer: RawLayer, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> LayerKind:
    """The layer's entry; GraphError for a type the table does not hold."""
    kind = kinds.get(layer.type)
    if kind is None:
        raise fail(layer.name, f"unknown layer type {layer.type[:40]!r} (known: {', '.join(sorted(kinds))})")
    return kind


def typed(layer: RawLayer, kinds: Mapping[str, LayerKind] = LAYER_KINDS) -> Params:
    """A layer's parameters after every check that does not depend on shapes: known type, name
    lengths, blob counts, parameter ids, types and ranges."""
    kind = kind_of(layer, kinds)
    for blob in (layer.name, *layer.bottoms, *layer.tops):
        if len(blob) > MAX_NAME:
            raise fail(layer.name[:40], f"name longer than {MAX_NAME} characters")
    for label, count, (lo, hi) in (("inputs", len(layer.bottoms), kind.bottoms), ("outputs", len(layer.tops), kind.tops)):
        if not lo <= count <= hi:
            raise fail(layer.name, f"{layer.type} takes {lo}..{hi} {label}, got {count}")
    return parse_params(layer, kind)


def output_shapes(kind: LayerKind, params: Params, ins: list[Shape], name: str) -> list[Shape]:
    """The layer's output shapes by its entry; an image-only entry refuses flat (1-D) inputs."""
    if not kind.flat and any(x.dims != 3 for x in ins):
        raise fail(name, "needs image blobs, got a flat vector")
    return kind.shape(params, ins, name)
