"""The segment engine on every bundled model: tiled == the untiled run of the whole net on the
pre-padded image within 1/255, for odd sizes (1xN, 17x3, not multiples of the tile) and several
tiles. x4plus only on tiny inputs (23 blocks)."""

from __future__ import annotations

import numpy as np
import pytest

from realesr_portable.device.select import cpu_device
from realesr_portable.run.engine import PRE_PAD, Engine, Options
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.segrun import run_segments
from realesr_portable.run.session import Session
from realesr_portable.run.tiler import reflect_indices

LEVEL = 1.0 / 255.0


def untiled_input(src: np.ndarray) -> np.ndarray:
    h, w = src.shape[:2]
    top, bottom, left, right = PRE_PAD
    rows, cols = reflect_indices(-top, h + bottom, h), reflect_indices(-left, w + right, w)
    return src[rows[:, None], cols[None, :]].astype(np.float32)


def untiled(session: Session, src: np.ndarray) -> np.ndarray:
    """The whole net in one extract on the mirrored pre-padded image, cropped back, clipped."""
    h, w = src.shape[:2]
    chw = np.ascontiguousarray(untiled_input(src).transpose(2, 0, 1))
    s = session.spec.scale
    top, left = PRE_PAD[0], PRE_PAD[2]
    out = session.run(chw)[:, top * s : (top + h) * s, left * s : (left + w) * s]
    return np.clip(out.transpose(1, 2, 0), 0.0, 1.0)


CASES = [
    ("realesr-animevideov3-x2", (17, 3), (0, 4, 7)),
    ("realesr-animevideov3-x3", (1, 23), (0, 5)),
    ("realesr-animevideov3-x4", (29, 37), (0, 8, 16)),
    ("realesrgan-x4plus-anime", (9, 13), (0, 8)),
    ("realesrgan-x4plus", (5, 6), (0, 16)),
]


@pytest.mark.parametrize("name,size,tiles", CASES, ids=[c[0] for c in CASES])
def test_tiled_equals_the_untiled_whole_net(photo_crop, name: str, size: tuple[int, int], tiles) -> None:
    session = Session(resolve_model(name), cpu_device(), fp32=True, threads=1)
    engine = Engine([session])
    src = photo_crop("coffee.png", 150, 200, *size).astype(np.float32) / 255.0
    reference = untiled(session, src)
    for tile in tiles:
        out = engine.run_model(src, Options(tile=tile))
        assert out.shape == reference.shape
        assert np.abs(out - reference).max() <= LEVEL, f"tile {tile}"
    # every cut used, each segment tiled with its own small halo (no merging by the cost model)
    tile = max(tiles)
    segmenter = session.segmenter
    h, w = size[0] + PRE_PAD[0] + PRE_PAD[1], size[1] + PRE_PAD[2] + PRE_PAD[3]
    schedule = segmenter.schedule(h, w, 1e12, tile=tile, merge=False)
    assert len(schedule) > 2 and all(s.halo is not None and max(s.halo) < tile for s, _ in schedule)
    chw = np.ascontiguousarray(untiled_input(src).transpose(2, 0, 1))
    box = (PRE_PAD[0], PRE_PAD[0] + size[0], PRE_PAD[2], PRE_PAD[2] + size[1])
    stored = run_segments(schedule, [session.extract], segmenter.graph.root, segmenter.keep, chw, "data", box)
    k = session.spec.scale
    fine = np.clip(stored["output"][:, box[0] * k : box[1] * k, box[2] * k : box[3] * k].transpose(1, 2, 0), 0, 1)
    assert np.abs(fine - reference).max() <= LEVEL


def test_rrdbnet_is_cut_into_its_blocks_without_naming_them() -> None:
    session = Session(resolve_model("realesrgan-x4plus-anime"), cpu_device(), fp32=True, threads=1)
    segmenter = session.segmenter
    fine = segmenter.fine()
    halos = sorted({s.halo for s in fine if s.macs > 0})
    assert (15, 15, 15, 15) not in halos and max(max(h) for h in halos) <= 6  # a block of 5 convs: 5
    # the head (upsampling) segment needs only a couple of pixels; whole-net context would be ~90
    assert fine[-1].scale == 4 and max(fine[-1].halo) <= 3
    schedule = segmenter.schedule(300, 300, 256 << 20, tile=0)
    assert len(schedule) > 2 and any(t > 0 for _, t in schedule)  # a small budget tiles it


def test_each_stored_value_is_fed_once_as_the_blob_its_copies_share() -> None:
    """A dense block's input reaches its five convolutions through a Split: the runners feed the
    Split's input once (ncnn shares it), not each of its tops (a copy of the tile per top)."""
    session = Session(resolve_model("realesrgan-x4plus-anime"), cpu_device(), fp32=True, threads=1)
    graph = session.segmenter.graph
    fine = session.segmenter.fine()
    for segment in fine:
        assert segment.feeds == tuple(dict.fromkeys(graph.root(b) for b in segment.inputs))
        assert all(graph.root(b) == b for b in segment.feeds)
    assert any(len(s.inputs) > len(s.feeds) for s in fine)  # the case the rule is for occurs
