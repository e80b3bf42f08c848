"""Geometry rules: how a layer maps its bottoms' pixels to its tops' (resolution factor, context,
grid alignment), how far it reads (its locality), and what it divides input sizes by.

Why a module of its own: the graph analysis (analysis.py) turns these rules into halos and cut
points, and the segment planner (plan/segments.py) tiles by them; a rule here that is too small
makes tiles with seams, so each derivation sits beside its rule. Each entry of layers.py names its
rules here (`<type>_geometry`, `<type>_locality`, `<type>_divisor`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from .params import INT_ARRAY_RANGE, Params, conv_kernel, conv_pads

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
        if fy == 1 and fx == 1:  # most layers: integer margins, no Fraction arithmetic (the planner's hot path)
            return tuple(m + a + c for m, a, c in zip(margin, self.lead, self.context))  # type: ignore
        return tuple(math.ceil((m + a) / f) + c  # type: ignore
                     for m, a, f, c in zip(margin, self.lead, (fy, fy, fx, fx), self.context))


GeometryRule = Callable[[Params, int], "Geometry | None"]  # (params, number of bottoms)
Locality = Literal["pointwise", "local", "global"]
LocalityRule = Callable[[Params], Locality]


def pointwise_geometry(p: Params, bottoms: int) -> Geometry:
    """Each top pixel from the same bottom pixel: the default of an entry."""
    return Geometry()


def opaque_geometry(p: Params, bottoms: int) -> None:
    """Not tileable: the layer reads the whole blob or changes its layout."""
    return None


def undivided(p: Params) -> int:
    """Any input size fits: the default divisor of an entry."""
    return 1


def always(locality: Locality) -> LocalityRule:
    return lambda p: locality


def conv_geometry(p: Params, bottoms: int) -> Geometry | None:
    """Top pixel j reads bottom pixels j*s - pad .. j*s - pad + d*(k-1): anchored at j*s, so a
    top region ending at J (exclusive) reads up to s*J - s + 1 - pad + d*(k-1) (exclusive)."""
    kw, kh, dw, dh, sw, sh = conv_kernel(p)
    pl, pt, pr, pb = conv_pads(p)
    if min(pl, pt, pr, pb) < 0 or bottoms != 1:
        return None  # SAME-style automatic padding or dynamic weights: not tracked
    # shape preserving up to the stride (out = in / s for in a multiple of s), else the grid shifts
    aligned = all(1 - s <= lo + hi - d * (k - 1) <= 0
                  for k, d, s, lo, hi in ((kh, dh, sh, pt, pb), (kw, dw, sw, pl, pr)))
    return Geometry((Fraction(1, sh), Fraction(1, sw)),
                    (pt, dh * (kh - 1) - pt - sh + 1, pl, dw * (kw - 1) - pl - sw + 1), aligned)


_INTERP_CONTEXT = {1: 0, 2: 1, 3: 2}  # nearest, bilinear, bicubic: source pixels beyond the nearest


def interp_geometry(p: Params, bottoms: int) -> Geometry | None:
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


def shuffle_geometry(p: Params, bottoms: int) -> Geometry | None:
    r = p.i(0, 1)
    return Geometry((Fraction(r), Fraction(r))) if not p.i(1, 0) else None


def reorg_geometry(p: Params, bottoms: int) -> Geometry | None:
    s = p.i(0, 1)
    return Geometry((Fraction(1, s), Fraction(1, s))) if not p.i(1, 0) else None


def deconv_geometry(p: Params, bottoms: int) -> Geometry | None:
    """Bottom pixel i writes top pixels i*s - pad .. i*s - pad + d*(k-1), so top pixel j (anchored
    at j/s) gathers bottom pixels ceil((j + pad - d*(k-1))/s) .. floor((j + pad)/s): a top margin
    m needs ceil((m + d*(k-1) - pad - s + 1)/s) bottom pixels before and ceil((m + pad)/s) after."""
    kw, kh, dw, dh, sw, sh = conv_kernel(p)
    pl, pt, pr, pb = conv_pads(p)
    opw = p.i(18, 0)
    oph = p.i(19, opw)
    if bottoms != 1:
        return None
    # out = in * s exactly, else the grid is trimmed or grown
    aligned = all(d * (k - 1) + 1 - lo - hi + extra == s
                  for k, d, s, lo, hi, extra in ((kh, dh, sh, pt, pb, oph), (kw, dw, sw, pl, pr, opw)))
    lead = (dh * (kh - 1) - pt - sh + 1, pt, dw * (kw - 1) - pl - sw + 1, pl)
    return Geometry((Fraction(sh), Fraction(sw)), (0, 0, 0, 0), aligned, lead)


def channel_axis(key: int) -> GeometryRule:
    """Pointwise when the layer works along channels (axis 0 / -3), else not tileable."""
    return lambda p, bottoms: Geometry() if p.i(key, 0) in (0, -3) else None


_TO_THE_END = (-233, 0)  # crop ends that keep the axis to its end (a negative one trims it)


def crop_geometry(p: Params, bottoms: int) -> Geometry | None:
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


def padding_geometry(p: Params, bottoms: int) -> Geometry | None:
    return Geometry() if not any(p.i(k, 0) for k in (0, 1, 2, 3)) else None


def pool_locality(p: Params) -> Locality:
    return "global" if p.i(4, 0) else "local"


def axis_locality(key: int) -> LocalityRule:
    return lambda p: "pointwise" if p.i(key, 0) in (0, -3) else "global"


def conv_divisor(p: Params) -> int:
    return p.i(3, 1)
