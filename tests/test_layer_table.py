"""One table of layer types (portable/graph/layers.py), read by every consumer.

Why: the validator, the graph analysis, the segment planner and the `.bin` reader once each kept
their own per-type lists, and they drifted. Here a toy layer type that exists only in this test
is added as ONE entry: it is then validated, analysed (halo, shape), planned and its weights read;
without the entry every consumer refuses or treats it as opaque. And no consumer's source names a
layer type (beyond the graph's one Input), so none can hold a private list.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from realesr_portable.archs.families import FAMILIES
from realesr_portable.convert.importer import _GRAPH_PLUMBING
from realesr_portable.graph import analysis, check, ncnn_files
from realesr_portable.graph.analysis import Graph
from realesr_portable.graph.check import check_graph
from realesr_portable.graph.geometry_rules import Geometry
from realesr_portable.graph.layers import LAYER_KINDS, LayerKind
from realesr_portable.graph.ncnn_files import NcnnFormatError, NcnnParam, read_weights
from realesr_portable.graph.params import GraphError, Params, fail
from realesr_portable.graph.shape_rules import Shape
from realesr_portable.plan import segments
from realesr_portable.plan.segments import Segmenter
from realesr_portable.run import session


def _toy_shape(p: Params, ins: list[Shape], name: str) -> list[Shape]:
    if p.i(0, 0) != ins[0].c:
        raise fail(name, f"{p.i(0, 0)} gains for {ins[0].c} channels")
    return ins[:1]


# A per-channel gain that reads `1=` pixels each side (a box blur, say): context from a parameter,
# one untagged weight array of `0=` values, a divisor of 2 (so probe sides become even).
TOY = LayerKind(
    _toy_shape, ints={0: (1, 64), 1: (0, 5)}, floats={2: (0.0, 1.0)},
    geometry=lambda p, bottoms: Geometry(context=(p.i(1, 0),) * 4),
    weights=lambda p: [(p.i(0, 0), False)], divisor=lambda p: 2, locality=lambda p: "local",
)
KINDS = {**LAYER_KINDS, "ToyBlur": TOY}


def conv(name: str, src: str, dst: str, cin: int, cout: int) -> str:
    return f"Convolution {name} 1 1 {src} {dst} 0={cout} 1=3 4=1 5=1 6={cin * cout * 9}"


def graph_text(toy: str = "ToyBlur blur 1 1 a b 0=4 1=3 2=0.5") -> str:
    lines = ["Input in 0 1 data", conv("c1", "data", "a", 3, 4), toy, conv("c2", "b", "output", 4, 3)]
    return "\n".join(["7767517", f"{len(lines)} 4", *lines]) + "\n"


def weights_bin() -> bytes:
    rng = np.random.default_rng(0)
    parts = [np.zeros(1, "<u4").tobytes(), rng.random(108, np.float32).tobytes(), rng.random(4, np.float32).tobytes(),
             rng.random(4, np.float32).tobytes(),  # the toy's own array
             np.zeros(1, "<u4").tobytes(), rng.random(108, np.float32).tobytes(), rng.random(3, np.float32).tobytes()]
    return b"".join(parts)


def test_a_toy_entry_is_validated_by_its_parameters_and_shape_rule() -> None:
    text = graph_text()
    with pytest.raises(GraphError, match="unknown layer type 'ToyBlur'"):
        check_graph(text, 3, "data", "output", scale=1)
    out = check_graph(text, 3, "data", "output", scale=1, kinds=KINDS)
    assert (out.c, out.h) == (3, 8)
    refusals = {
        "ToyBlur blur 1 1 a b 0=4 1=9": "param 1=9 is outside 0..5",
        "ToyBlur blur 1 1 a b 0=4 2=2": "param 2='2' must be a finite float",
        "ToyBlur blur 1 1 a b 0=4 7=1": "ToyBlur takes no parameter 7",
        "ToyBlur blur 1 1 a b 0=3": "3 gains for 4 channels",
        "ToyBlur blur 2 1 a x b 0=4": "ToyBlur takes 1..1 inputs",
    }
    for line, message in refusals.items():
        with pytest.raises(GraphError, match=re.escape(message)):
            check_graph(graph_text(line), 3, "data", "output", scale=1, kinds=KINDS)


def test_a_toy_entry_is_analysed_and_planned_from_its_geometry() -> None:
    parsed = NcnnParam.parse(graph_text())
    opaque = Segmenter(Graph(parsed), "data", "output")
    assert opaque.segment(0, 3).halo is None  # without the entry: not tileable
    graph = Graph(parsed, kinds=KINDS)
    assert graph.channels["b"] == 4 and graph.factor["b"] == (1, 1)
    assert graph.probe_side % 2 == 0  # the entry's divisor
    planned = Segmenter(graph, "data", "output")
    assert planned.segment(0, 3).halo == (5, 5, 5, 5)  # 1 + the toy's 3 + 1
    assert planned.segment(1, 2).halo == (3, 3, 3, 3)


def test_a_toy_entry_places_its_weights_in_the_bin() -> None:
    parsed, data = NcnnParam.parse(graph_text()), weights_bin()
    with pytest.raises(NcnnFormatError, match="layer c2: unsupported weight storage tag"):
        read_weights(parsed, data)  # without the entry the toy's 4 floats are read as c2's tag
    weights = read_weights(parsed, data, KINDS)
    assert [a.size for a in weights["blur"]] == [4] and [a.size for a in weights["c2"]] == [108, 3]
    assert Graph(parsed, kinds=KINDS).macs_per_pixel(0, 3) == 216  # tagged arrays only


CONSUMERS = (check, analysis, ncnn_files, segments, session)


@pytest.mark.parametrize("module", CONSUMERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_no_consumer_names_a_layer_type(module) -> None:
    """Per-type knowledge lives in the table only; the graph's single Input is the one exception."""
    source = Path(module.__file__).read_text()
    named = sorted(name for name in LAYER_KINDS if name != "Input" and re.search(rf"[\"']{name}[\"']", source))
    assert not named, f"{module.__name__} names layer types {named}: put that knowledge in graph/layers.py"


def test_every_entry_is_complete() -> None:
    for name, kind in LAYER_KINDS.items():
        assert kind.locality(Params()) in ("pointwise", "local", "global"), name
        assert kind.bottoms[0] <= kind.bottoms[1] and kind.tops[0] <= kind.tops[1], name
        if kind.locality(Params()) == "pointwise":  # a pointwise layer has a geometry of factor 1, no context
            geometry = kind.geometry(Params(), 1)
            assert geometry is not None and geometry.context == (0, 0, 0, 0) and geometry.factor == (1, 1), name


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.write_ncnn is not None], ids=lambda f: f.name)
def test_every_family_writes_only_layers_the_table_accepts(family) -> None:
    """Issue 21 item 4: what convert writes for a family must load in the runtime."""
    missing = sorted((family.ncnn_layers | _GRAPH_PLUMBING) - set(LAYER_KINDS))
    assert family.ncnn_layers and not missing, f"{family.name} writes {missing}, which the runtime refuses"
