"""Shape rules: a layer's output shapes from its parameters and input shapes, or its one-line refusal.

Why a module of its own: these rules are what keeps ncnn from reading out of bounds (a weight
count that does not fit the input channels, a crop past the edge), the longest part of the layer
table; each entry of layers.py names its rule here as `<type>_shape`. deploy/src/layers.cpp holds
the same rules for the C++ validator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .params import MAX_BLOBS_PER_LAYER, Params, conv_kernel, conv_pads, fail


@dataclass(frozen=True)
class Shape:
    """A blob's channels, height and width (ncnn's c, h, w); `dims` 1 for a flat vector of `c`
    values (what global pooling and InnerProduct make), else 3."""

    c: int
    h: int
    w: int
    dims: int = 3


ShapeRule = Callable[[Params, list[Shape], str], list[Shape]]


def same_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    return [ins[0]]


def split_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    return ins[:1] * MAX_BLOBS_PER_LAYER  # trimmed to the layer's top count by the caller


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


def conv_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    (x,) = ins
    out, group = _grouped(p, x, name)
    kw, kh, dw, dh, sw, sh = conv_kernel(p)
    _weight_count(p, x, name, out * (x.c // group) * kw * kh)
    _activation(p, name)
    pl, pt, pr, pb = conv_pads(p)
    w = _conv_out(x.w, kw, dw, sw, pl, pr)
    h = _conv_out(x.h, kh, dh, sh, pt, pb)
    if w < 1 or h < 1:
        raise fail(name, f"a {x.w}x{x.h} input leaves no output pixel (kernel {kw}x{kh}, stride {sw}x{sh})")
    return [Shape(out, h, w)]


def prelu_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    slopes = p.i(0, 0)
    if slopes not in (1, ins[0].c):
        raise fail(name, f"{slopes} slopes for a {ins[0].c}-channel input (1 or {ins[0].c} expected)")
    return ins


def batchnorm_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if p.i(0, 0) != ins[0].c:
        raise fail(name, f"statistics for {p.i(0, 0)} channels on a {ins[0].c}-channel input")
    return ins


def clip_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if p.f(0, -math.inf) > p.f(1, math.inf):
        raise fail(name, "clip minimum above its maximum")
    return ins


def concat_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if any((s.h, s.w) != (ins[0].h, ins[0].w) for s in ins):
        raise fail(name, "inputs of different sizes cannot be concatenated along channels")
    return [Shape(sum(s.c for s in ins), ins[0].h, ins[0].w)]


def eltwise_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    coeffs = p.arrays.get(1, [])
    if coeffs and len(coeffs) != len(ins):
        raise fail(name, f"{len(coeffs)} coefficients for {len(ins)} inputs")
    if any(s != ins[0] for s in ins):
        raise fail(name, f"inputs of different shapes {[(s.c, s.h, s.w) for s in ins]}")
    return ins[:1]


def binary_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
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


def interp_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = ins[0]
    if p.i(0, 0) not in (1, 2, 3):
        raise fail(name, "Interp needs 0= (resize type) 1, 2 or 3")
    oh, ow = p.i(3, 0), p.i(4, 0)
    if oh == 0 or ow == 0:
        oh, ow = int(x.h * p.f(1, 1.0)), int(x.w * p.f(2, 1.0))
    if oh < 1 or ow < 1:
        raise fail(name, f"resizes a {x.w}x{x.h} input to {ow}x{oh}")
    return [Shape(x.c, oh, ow)]


def pixelshuffle_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, r = ins[0], p.i(0, 1)
    if x.c % (r * r):
        raise fail(name, f"upscale factor {r} needs channels divisible by {r * r}, got {x.c}")
    return [Shape(x.c // (r * r), x.h * r, x.w * r)]


def reorg_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, s = ins[0], p.i(0, 1)
    if x.h % s or x.w % s:
        raise fail(name, f"stride {s} does not divide a {x.w}x{x.h} input")
    return [Shape(x.c * s * s, x.h // s, x.w // s)]


def _image(x: Shape, name: str) -> Shape:
    if x.dims != 3:
        raise fail(name, "needs an image blob, got a flat vector")
    return x


def memorydata_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    w, h, c = p.i(0, 0), p.i(1, 0), p.i(2, 0)
    if min(w, h, c) < 1:
        raise fail(name, "MemoryData needs 0= (w), 1= (h) and 2= (c) of at least 1 (only 3-D constants)")
    return [Shape(c, h, w)]


def deconv_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = _image(ins[0], name)
    out, group = _grouped(p, x, name)
    kw, kh, dw, dh, sw, sh = conv_kernel(p)
    _weight_count(p, x, name, out * (x.c // group) * kw * kh)
    _activation(p, name)
    pl, pt, pr, pb = conv_pads(p)
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


def crop_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
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


def pool_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
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


def innerproduct_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = ins[0]
    values = x.c * x.h * x.w
    if p.i(2, 0) != p.i(0, 0) * values:
        raise fail(name, f"weight count {p.i(2, 0)} does not fit {values} inputs ({p.i(0, 0)} outputs)")
    _activation(p, name)
    return [Shape(p.i(0, 0), 1, 1, dims=1)]


def padding_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x = _image(ins[0], name)
    top, bottom, left, right = p.i(0, 0), p.i(1, 0), p.i(2, 0), p.i(3, 0)
    if p.i(6, 0) not in (0, x.c):
        raise fail(name, f"{p.i(6, 0)} per-channel pad values for {x.c} channels")
    if p.i(4, 0) == 2 and (max(top, bottom) >= x.h or max(left, right) >= x.w):
        raise fail(name, f"reflect padding of {max(top, bottom, left, right)} needs a larger input than {x.w}x{x.h}")
    return [Shape(x.c, x.h + top + bottom, x.w + left + right)]


def reshape_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
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


def permute_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
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


def slice_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
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


def softmax_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    _axis(p, ins[0], 0, name)
    return ins[:1]


def layernorm_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    x, size = ins[0], p.i(0, 0)
    allowed = (x.c,) if x.dims == 1 else (x.w, x.w * x.h)
    if size not in allowed:
        raise fail(name, f"affine size {size} is none of {allowed} for a {(x.c, x.h, x.w)} blob")
    return ins[:1]

