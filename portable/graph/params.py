"""A layer's `.param` parameters typed and bounded as ncnn will read them, and the one error of a bad graph.

Why a module of its own: every layer rule (shape_rules.py, geometry_rules.py, storage_rules.py),
the layer table (layers.py) and the graph-wide checks read a layer through `Params` and refuse
with `GraphError`; they all sit above this module, which knows no layer type. What ranges a type
accepts is its table entry's; how a value is typed (int, float, array) and bounded is here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

_INT = re.compile(r"^[+-]?[0-9]{1,10}$")
MAX_BLOBS_PER_LAYER = 64
MAX_ARRAY = 64
MAX_NAME = 255  # ncnn reads names with %255s
INT_ARRAY_RANGE = (-(1 << 16), (1 << 31) - 1)  # starts/ends/slices: pixels, negative from the end, INT_MAX "to the end"
FINITE = (-math.inf, math.inf)  # any finite value (inf/nan are refused separately)


class GraphError(ValueError):
    """The `.param` describes a graph ncnn would run out of bounds on (one-line message)."""


def fail(name: str, text: str) -> GraphError:
    """The one-line error of a layer check."""
    return GraphError(f"layer {name}: {text}")


class RawLayer(Protocol):
    """One `.param` line as parsed (ncnn_files.NcnnLayer): the table reads only this much."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str]


class ParamRanges(Protocol):
    """What `parse_params` reads of a table entry (layers.LayerKind): the ids a type accepts and
    their bounds."""

    @property
    def ints(self) -> Mapping[int, tuple[int, int]]: ...

    @property
    def floats(self) -> Mapping[int, tuple[float, float]]: ...

    @property
    def arrays(self) -> Mapping[int, int]: ...

    @property
    def int_arrays(self) -> Mapping[int, int]: ...


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


def conv_kernel(p: Params) -> tuple[int, int, int, int, int, int]:
    """Kernel (w, h), dilation (w, h) and stride (w, h) as ncnn defaults them."""
    kw = p.i(1, 0)
    kh, dw = p.i(11, kw), p.i(2, 1)
    return kw, kh, dw, p.i(12, dw), p.i(3, 1), p.i(13, p.i(3, 1))


def conv_pads(p: Params) -> tuple[int, int, int, int]:
    """Pads (left, top, right, bottom) as ncnn defaults them."""
    pl = p.i(4, 0)
    pt = p.i(14, pl)
    return pl, pt, p.i(15, pl), p.i(16, pt)


def _is_float_text(text: str) -> bool:
    """ncnn reads a value as a float when it has a '.' or an exponent, else as an int."""
    return any(ch in text for ch in ".eE")


def parse_params(layer: RawLayer, kind: ParamRanges) -> Params:
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
        return [_parse_float(name, key, v, FINITE) for v in values]
    for v in values:
        if not _INT.match(v) or not INT_ARRAY_RANGE[0] <= int(v) <= INT_ARRAY_RANGE[1]:
            raise fail(name, f"array {key} value {v[:20]!r} must be an integer in {INT_ARRAY_RANGE[0]}..{INT_ARRAY_RANGE[1]}")
    return [int(v) for v in values]
