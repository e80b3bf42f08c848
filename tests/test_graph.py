"""Receptive-field halos from hand-made `.param` graphs, and that the halo really is exact: a
small random-weight net run in tiles with its computed halo equals the untiled run, and one
pixel less breaks it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realesr_portable.device.select import cpu_device
from realesr_portable.graph.analysis import Graph
from realesr_portable.model.catalog import ModelFiles
from realesr_portable.graph.ncnn_files import NcnnParam, write_weights
from realesr_portable.plan.segments import Segmenter
from realesr_portable.run.segrun import run_segments
from realesr_portable.run.session import Session
from realesr_portable.model.spec import ModelSpec


def conv(name: str, src: str, dst: str, cin: int, cout: int, k: int = 3, d: int = 1, act: bool = True) -> str:
    pad = d * (k - 1) // 2
    extra = " 9=2 -23310=1,2.000000e-01" if act else ""
    return f"Convolution {name} 1 1 {src} {dst} 0={cout} 1={k} 2={d} 4={pad} 5=1 6={cin * cout * k * k}{extra}"


def param(*lines: str) -> str:
    layers = ["Input in 0 1 data", *lines]
    blobs = {b for line in layers for b in line.split()[4:] if "=" not in b}
    return "\n".join(["7767517", f"{len(layers)} {len(blobs)}", *layers]) + "\n"


def halo(text: str) -> tuple[int, int, int, int] | None:
    graph = Graph.from_text(text)
    segments = Segmenter(graph, "data", "output").schedule(64, 64, 1e12, tile=0, merge=False)
    whole = Segmenter(graph, "data", "output").segment(0, len(graph.layers) - 1)
    assert len(segments) >= 1
    return whole.halo


CHAIN = param(conv("c1", "data", "a", 3, 4), conv("c2", "a", "b", 4, 4), conv("c3", "b", "output", 4, 3, act=False))
DILATED = param(conv("c1", "data", "a", 3, 4, d=2), conv("c2", "a", "output", 4, 3, k=5, act=False))
RESIDUAL = param(
    conv("c1", "data", "a", 3, 4),
    "Split s1 1 2 a a0 a1",
    conv("c2", "a0", "b", 4, 4),
    conv("c3", "b", "c", 4, 4),
    "BinaryOp add 2 1 a1 c d",
    conv("c4", "d", "output", 4, 3, act=False),
)
CONCAT = param(
    "Split s0 1 2 data x0 x1",
    conv("c1", "x0", "a", 3, 4, k=5),
    conv("c2", "x1", "b", 3, 4, k=1),
    "Concat cat 2 1 a b c 0=0",
    conv("c3", "c", "output", 8, 3, act=False),
)


def upsample(mode: int) -> str:
    return param(
        conv("c1", "data", "a", 3, 4),
        f"Interp up 1 1 a b 0={mode} 1=2.000000e+00 2=2.000000e+00",
        conv("c2", "b", "c", 4, 4),
        conv("c3", "c", "output", 4, 3, act=False),
    )


SHUFFLE = param(conv("c1", "data", "a", 3, 12), "PixelShuffle ps 1 1 a b 0=2", conv("c2", "b", "output", 3, 3, act=False))
STRIDED = param("Convolution c1 1 1 data a 0=4 1=3 3=2 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01",
                conv("c2", "a", "b", 4, 12), "PixelShuffle ps 1 1 b output 0=2")
REORG = param("Reorg r 1 1 data a 0=2", conv("c1", "a", "b", 12, 8), "PixelShuffle ps 1 1 b output 0=2")


@pytest.mark.parametrize("text,expected", [
    (CHAIN, (3, 3, 3, 3)),
    (DILATED, (4, 4, 4, 4)),  # dilation 2 of a 3x3 reaches 2, a 5x5 another 2
    (RESIDUAL, (4, 4, 4, 4)),  # the longer branch decides
    (CONCAT, (3, 3, 3, 3)),  # 5x5 branch (2) + 1, the 1x1 branch is narrower
    (upsample(1), (2, 2, 2, 2)),  # 2 px at 2x are 1 px at 1x, + the first conv
    (upsample(2), (3, 3, 3, 3)),  # bilinear reads one more source pixel
    (SHUFFLE, (2, 2, 2, 2)),
    (REORG, (2, 2, 2, 2)),  # 1 px at half resolution is 2 px at full (tiles aligned to 2)
])
def test_halo_of_hand_made_graphs(text: str, expected) -> None:
    assert halo(text) == expected


def test_unknown_layer_is_not_tileable_and_factors_follow_resampling() -> None:
    text = param(conv("c1", "data", "a", 3, 4), "Crop cr 1 1 a b -23309=1,1", conv("c2", "b", "output", 4, 3))
    assert halo(text) is None
    graph = Graph.from_text(upsample(1))
    assert graph.factor["b"] == (2, 2) and graph.factor["output"] == (2, 2) and graph.channels["output"] == 3
    reorg = Graph.from_text(REORG)
    assert reorg.factor["a"] == (0.5, 0.5) and reorg.channels["a"] == 12
    assert Segmenter(reorg, "data", "output").segment(0, 3).align == 2


def test_cuts_fall_where_every_live_blob_has_full_resolution() -> None:
    graph = Graph.from_text(RESIDUAL)
    segmenter = Segmenter(graph, "data", "output")
    assert segmenter.cuts[0] == 0 and segmenter.cuts[-1] == len(graph.layers) - 1
    for position in segmenter.cuts[1:-1]:
        assert all(graph.factor[b] == (1, 1) for b in segmenter.live[position])
    # between c2 and c3 two values are live (the skip and the branch): a cut there feeds both
    inner = graph.layers.index(next(layer for layer in graph.layers if layer.name == "c2"))
    assert {graph.root(b) for b in segmenter.live[inner]} == {"a", "b"}
    up = Segmenter(Graph.from_text(upsample(1)), "data", "output")
    assert all(up.graph.factor[b] == (1, 1) for c in up.cuts[1:-1] for b in up.live[c])
    assert max(up.cuts[1:-1], default=0) < 2  # nothing after the upsampling is a cut


def _random_net(tmp_path: Path, text: str, scale: int) -> Session:
    parsed = NcnnParam.parse(text)
    rng = np.random.default_rng(5)
    weights = {}
    for layer in parsed.layers:
        if layer.type == "Convolution":
            count, cout = layer.int_param(6), layer.int_param(0)
            weights[layer.name] = [rng.normal(0, 0.3, count).astype(np.float32), rng.normal(0, 0.5, cout).astype(np.float32)]
    (tmp_path / "net.param").write_text(text)
    (tmp_path / "net.bin").write_bytes(write_weights(parsed, weights, fp16=False))
    spec = ModelSpec(name="net", scale=scale, input_blob="data", output_blob="output")
    return Session(ModelFiles(tmp_path / "net.param", tmp_path / "net.bin", spec, "path"), cpu_device(), fp32=True, threads=1)


@pytest.mark.parametrize("text,scale", [(RESIDUAL, 1), (upsample(2), 2), (DILATED, 1), (SHUFFLE, 2)])
def test_tiles_with_the_computed_halo_equal_the_untiled_run(tmp_path: Path, text: str, scale: int) -> None:
    session = _random_net(tmp_path, text, scale)
    segmenter = session.segmenter
    assert segmenter is not None
    chw = np.random.default_rng(6).random((3, 23, 19), dtype=np.float32)
    whole = session.run(chw)
    box = (0, 23, 0, 19)
    for merge in (True, False):
        schedule = segmenter.schedule(23, 19, 1e12, tile=5, merge=merge)
        out = run_segments(schedule, [session.extract], segmenter.graph.root, segmenter.keep, chw, "data", box)["output"]
        assert np.abs(out - whole).max() < 1e-5
    # one pixel of halo less and the tiles no longer agree: the halo is not generous for nothing
    (seg, tile), = segmenter.schedule(23, 19, 1e12, tile=5, merge=True)
    thin = type(seg)(**{**seg.__dict__, "halo": tuple(h - 1 for h in seg.halo)})
    out = run_segments([(thin, 5)], [session.extract], segmenter.graph.root, segmenter.keep, chw, "data", box)["output"]
    assert np.abs(out - whole).max() > 1e-3


def test_a_strided_convolution_reads_only_what_its_stride_reaches(tmp_path: Path) -> None:
    """A stride-2 3x3 convolution (pad 1) computing top pixels J0..J1-1 reads bottom pixels 2*J0-1
    .. 2*J1-1: one pixel of context before, none after (3 and 2 px for the net: the 3x3 after it
    adds one half-resolution pixel each side); tiles with that halo equal the untiled run, and
    none after breaks them (the old rule, s - 1 more after, asked 4)."""
    session = _random_net(tmp_path, STRIDED, 1)
    segmenter = session.segmenter
    assert segmenter is not None and segmenter.segment(0, len(segmenter.graph.layers) - 1).halo == (3, 2, 3, 2)
    assert segmenter.graph.geometry[1].context == (1, 0, 1, 0)
    chw = np.random.default_rng(8).random((3, 24, 20), dtype=np.float32)
    whole = session.run(chw)
    for tile in (4, 6, 10):
        schedule = segmenter.schedule(24, 20, 1e12, tile=tile, merge=True)
        out = run_segments(schedule, [session.extract], segmenter.graph.root, segmenter.keep, chw, "data",
                           (0, 24, 0, 20))["output"]
        assert np.abs(out - whole).max() < 1e-5, tile
    (seg, _), = segmenter.schedule(24, 20, 1e12, tile=6, merge=True)
    thin = type(seg)(**{**seg.__dict__, "halo": (3, 0, 3, 0)})  # no context after: the 3x3 at half resolution misses it
    out = run_segments([(thin, 6)], [session.extract], segmenter.graph.root, segmenter.keep, chw, "data",
                       (0, 24, 0, 20))["output"]
    assert np.abs(out - whole).max() > 1e-3
