"""Cut a network into segments at full-resolution hand-overs and give each its exact halo.

Why: a deep net (RRDBNet: 23 blocks) has a receptive field of ~90 px, so whole-net tiles need
~90 px of context each. A single block needs ~15. Running the net segment by segment, each over
the whole (super-)tile in tiles that carry only that segment's own halo, and keeping the feature
maps between segments, gives output equal to the untiled run by construction at a fraction of
the padded area. Cuts are found in the graph: positions where every blob still needed later has
the input's resolution; no architecture names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..graph.analysis import Graph
from ..graph.geometry_rules import ONE
from .memory import CPU_FP32, MemoryModel

Halo = tuple[int, int, int, int]  # top, bottom, left, right, in net-input pixels
BYTES = 4  # stored features are float32 arrays on the host
EXTRACT_MACS = 3.0e7  # fixed cost of one extractor call (~1 ms), in multiply-adds


@dataclass(frozen=True)
class Segment:
    """Layers start+1..stop: reads `inputs` (blobs live at the start cut), extracts `outputs`
    (one blob per stored value). `halo` None: an opaque layer inside, run it whole."""

    start: int
    stop: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # What a runner feeds: each stored value once, as the blob the inputs copy (a Split's input),
    # and ncnn shares it among the Split's tops. Feeding each top apart cost one more copy of the
    # tile per top: five per call in x4plus's dense blocks, a fifth of a tiled run's time.
    feeds: tuple[str, ...]
    halo: Halo | None
    align: int  # tile edges inside the segment fall on multiples of this
    macs: float  # multiply-adds per net-input pixel
    bytes_px: float  # working memory per net-input pixel of a tile
    scale: int  # resolution of the outputs relative to the input


def _last_use(graph: Graph, outputs: tuple[str, ...]) -> dict[str, float]:
    last: dict[str, float] = {}
    for layer in graph.layers:
        for blob in layer.tops:
            uses = graph.consumers.get(blob, [])
            last[blob] = math.inf if blob in outputs else (max(uses) if uses else -1)
    return last


def _live_sets(graph: Graph, outputs: tuple[str, ...]) -> list[list[str]]:
    last = _last_use(graph, outputs)
    live: list[str] = []
    result = []
    for index, layer in enumerate(graph.layers):
        live = [b for b in live if last[b] > index] + [t for t in layer.tops if last[t] > index]
        result.append(live)
    return result


def _area(factor) -> float:
    return float(factor[0] * factor[1]) if factor is not None else 1.0


def _values(graph: Graph, blobs: list[str]) -> float:
    """Values per input pixel of the distinct values among `blobs` (Split copies counted once)."""
    roots = {graph.root(b) for b in blobs}
    return sum((graph.channels.get(r) or 64) * _area(graph.factor.get(r)) for r in roots)


def _value_bytes(graph: Graph, blobs: list[str]) -> float:
    """Bytes per input pixel of `blobs` stored on the host between segments (float32)."""
    return _values(graph, blobs) * BYTES


def _cut_positions(graph: Graph, live: list[list[str]], window: int = 6) -> list[int]:
    """Positions after which every live blob has the input's resolution, keeping those that store
    no more than any such position within `window` layers (the cheap hand-overs)."""
    last = len(graph.layers) - 1
    full = [i for i in range(1, last)
            if live[i] and all(graph.factor.get(b) == ONE and graph.aligned.get(b, True) for b in live[i])]
    cost = {i: _value_bytes(graph, live[i]) for i in full}
    keep = [i for i in full if all(cost[i] <= cost[j] for j in range(i - window, i + window + 1) if j in cost)]
    return sorted({0, *keep, last})


def _align(graph: Graph, start: int, stop: int) -> int:
    denominators = [
        f.denominator for index in range(start + 1, stop + 1) for blob in graph.layers[index].tops
        for f in (graph.factor.get(blob) or ONE)
    ]
    return math.lcm(1, *denominators)


def _halo(graph: Graph, start: int, stop: int, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Halo | None:
    margins = graph.margins(start, stop, {blob: (0, 0, 0, 0) for blob in outputs})
    if margins is None:
        return None
    halo = [0, 0, 0, 0]
    for blob in inputs:
        factor = graph.factor.get(blob) or ONE
        m = margins.get(blob, (0, 0, 0, 0))
        for i, f in enumerate((factor[0], factor[0], factor[1], factor[1])):
            halo[i] = max(halo[i], math.ceil(m[i] / f))
    return tuple(halo)  # type: ignore[return-value]


def _segment(graph: Graph, live: list[list[str]], start: int, stop: int, work: list[float]) -> Segment:
    inside = range(start + 1, stop + 1)
    made = {t for i in inside for t in graph.layers[i].tops}
    used = {b for i in inside for b in graph.layers[i].bottoms}
    inputs = tuple(b for b in live[start] if b in used)
    roots: dict[str, str] = {}
    for blob in live[stop]:
        if blob in made:
            roots.setdefault(graph.root(blob), blob)
    outputs = tuple(roots.values())
    # a blob off the input's grid (unpadded convolution, crop) inside: tiles would not line up
    geometric = all(graph.geometry[i] is not None for i in inside) and all(graph.aligned.get(b, True) for b in made)
    halo = _halo(graph, start, stop, inputs, outputs) if geometric else None
    out_factor = graph.factor.get(outputs[0]) if outputs else ONE
    scale = 0
    if out_factor is not None and out_factor[0] == out_factor[1] and out_factor[0].denominator == 1:
        scale = int(out_factor[0])
    feeds = tuple(dict.fromkeys(graph.root(b) for b in inputs))
    return Segment(start, stop, inputs, outputs, feeds, halo, _align(graph, start, stop),
                   graph.macs_per_pixel(start, stop), max(work[i] for i in inside), scale)


def _work_bytes(graph: Graph, live: list[list[str]], memory: MemoryModel) -> list[float]:
    """Peak working memory per net-input pixel while each layer runs on the device, by the
    device's measured memory model (memory.py): the values held (live blobs and the layer's own
    bottoms, freed only after it) plus the scratch its table entry declares (graph/layers.py
    `LayerKind.scratch`: padded copies, Winograd transforms)."""
    work = []
    for index, layer in enumerate(graph.layers):
        params = graph.params[index]  # None: a layer the table refuses, no scratch known
        per_bottom, per_top = (0.0, 0.0) if params is None else graph.kinds[layer.type].scratch(params)
        scratch = per_bottom * _values(graph, list(layer.bottoms)) + per_top * _values(graph, list(layer.tops))
        work.append(memory.layer_bytes(_values(graph, [*live[index], *layer.bottoms]), scratch))
    return work


def pixel_speed(side: int) -> float:
    """Relative cost per pixel of a tile of `side` px. Small tiles can be faster per pixel
    (cache: 0.72x for 64 vs 256 px measured on one x86 CPU), but whole runs on the bench
    machine showed no gain once ncnn's threads had less work per call: taken as flat."""
    return 1.0


def _windows_cost(segment: Segment, region: tuple[int, int, int, int], tile: int,
                  call_macs: float = EXTRACT_MACS) -> float:
    """Multiply-adds of running `segment` over `region` (y0, y1, x0, x1) in tiles of `tile`:
    every interior tile edge re-computes the halo and every tile pays a fixed extractor call."""
    y0, y1, x0, x1 = region
    if segment.halo is None or tile <= 0:
        side = max(y1 - y0, x1 - x0)
        return segment.macs * (y1 - y0) * (x1 - x0) * pixel_speed(side) + call_macs
    t, b, l, r = segment.halo
    ny, nx = -(-(y1 - y0) // tile), -(-(x1 - x0) // tile)
    height = (y1 - y0) + (ny - 1) * (t + b)
    width = (x1 - x0) + (nx - 1) * (l + r)
    side = min(tile, max(y1 - y0, x1 - x0)) + max(t + b, l + r)
    return segment.macs * height * width * pixel_speed(side) + call_macs * ny * nx


MIN_TILE = 16
NEAR_BEST = 1.03  # within 3% of the fastest, the tile that needs least memory wins
# Segments that raise the resolution (an x4 head: 64 channels at 16x the pixels) run memory-bound
# in large tiles: measured on x4plus's head at 256x256, 67-px tiles took 1.3 s and 133-px tiles
# 2.0 s (+300 MiB peak), though the flat model rates the smaller ones 6% dearer. So there, least
# memory wins within a wider margin.
NEAR_BEST_UPSCALING = 1.08


def _elapsed(segment: Segment, region: tuple[int, int, int, int], tile: int, workers: int,
             call_macs: float = EXTRACT_MACS) -> float:
    """Cost as wall time: tiles are spread over `workers` (one ncnn thread each)."""
    y0, y1, x0, x1 = region
    count = 1 if tile <= 0 else -(-(y1 - y0) // tile) * -(-(x1 - x0) // tile)
    cost = _windows_cost(segment, region, tile, call_macs)
    return cost / min(workers, count) if segment.halo is not None else cost


def best_tile(segment: Segment, region: tuple[int, int, int, int], budget: float, tile: int = 0,
              workers: int = 1, call_macs: float = EXTRACT_MACS) -> tuple[int, float]:
    """(tile, cost): among tiles whose working memory fits `budget` bytes per worker (0 = one
    tile), the one needing least memory within 3% of the fastest. A user's tile is taken as is."""
    y0, y1, x0, x1 = region
    if segment.halo is None:
        return 0, _windows_cost(segment, region, 0, call_macs)
    if tile > 0:
        tile = -(-tile // segment.align) * segment.align
        return tile, _elapsed(segment, region, tile, workers, call_macs)
    side = max(y1 - y0, x1 - x0)
    options: list[tuple[float, float, int]] = []  # (cost, memory, tile)
    # balanced tiles (the region in n equal parts per axis), so no ragged last tile pays a halo
    balanced = {-(-side // n) for n in range(2, 65)}
    for t in (0, *sorted({-(-b // segment.align) * segment.align for b in balanced if b >= MIN_TILE}, reverse=True)):
        if t >= side:
            continue
        h, w = (y1 - y0, x1 - x0) if t == 0 else (min(t, y1 - y0), min(t, x1 - x0))
        hy, hx = (0, 0) if t == 0 else (sum(segment.halo[:2]), sum(segment.halo[2:]))
        memory = (h + hy) * (w + hx) * segment.bytes_px
        if memory <= budget:
            options.append((_elapsed(segment, region, t, workers, call_macs), memory, t))
    if not options:
        smallest = -(-MIN_TILE // segment.align) * segment.align
        return smallest, _elapsed(segment, region, smallest, workers, call_macs)
    cheapest = min(cost for cost, _, _ in options)
    # The least-memory margins were measured on the CPU; on a device with a dearer (calibrated) call
    # the fastest tile wins outright, so a GPU whose memory holds the image runs it whole.
    margin = (NEAR_BEST_UPSCALING if segment.scale > 1 else NEAR_BEST) if call_macs <= EXTRACT_MACS else 1.0
    cost, _, t = min((o for o in options if o[0] <= cheapest * margin), key=lambda o: o[1])
    return t, cost


class Segmenter:
    """A net's cut points, and its schedule (segments with their tiles) for one image size."""

    def __init__(self, graph: Graph, input_blob: str, output_blob: str, memory: MemoryModel = CPU_FP32) -> None:
        self.graph = graph
        self.input_blob = input_blob
        self.output_blob = output_blob
        self.live = _live_sets(graph, (output_blob,))
        self.cuts = _cut_positions(graph, self.live)
        self.stored_bytes_px = max((_value_bytes(graph, self.live[c]) for c in self.cuts[1:-1]), default=0.0)
        self._work = _work_bytes(graph, self.live, memory)
        self._segments: dict[tuple[int, int], Segment] = {}
        self._schedules: dict[tuple[int, int, float, int, bool, int], list[tuple[Segment, int]]] = {}
        if input_blob not in self.live[self.cuts[0]]:
            raise ValueError(f"the graph does not start at blob {input_blob!r}")

    def segment(self, start: int, stop: int) -> Segment:
        key = (start, stop)
        if key not in self._segments:
            self._segments[key] = _segment(self.graph, self.live, start, stop, self._work)
        return self._segments[key]

    def keep(self, position: int) -> set[str]:
        """Stored values still needed after `position`."""
        return {self.graph.root(b) for b in self.live[position]}

    def fine(self) -> list[Segment]:
        """One segment per interval between consecutive cuts (the smallest halos)."""
        return [self.segment(a, b) for a, b in zip(self.cuts, self.cuts[1:])]

    def schedule(self, height: int, width: int, budget: float, tile: int = 0, merge: bool = True,
                 workers: int = 1, call_macs: float = EXTRACT_MACS) -> list[tuple[Segment, int]]:
        """Segments and their tiles for an image: neighbours are merged while one merged segment
        costs less (fewer extractor calls) than two, within the memory budget."""
        key = (height, width, float(budget), tile, merge, workers, call_macs)
        if key not in self._schedules:
            self._schedules[key] = self._schedule(height, width, budget, tile, merge, workers, call_macs)
        return self._schedules[key]

    def _schedule(self, height: int, width: int, budget: float, tile: int, merge: bool,
                  workers: int, call_macs: float = EXTRACT_MACS) -> list[tuple[Segment, int]]:
        region = (0, height, 0, width)
        result: list[tuple[Segment, int, float]] = []
        for segment in self.fine():
            t, cost = best_tile(segment, region, budget, tile, workers, call_macs)
            if merge and result:
                prev, _, prev_cost = result[-1]
                joined = self.segment(prev.start, segment.stop)
                jt, jcost = best_tile(joined, region, budget, tile, workers, call_macs)
                if jcost <= prev_cost + cost:
                    result[-1] = (joined, jt, jcost)
                    continue
            result.append((segment, t, cost))
        return [(s, t) for s, t, _ in result]
