"""Run a net segment by segment over one (super-)tile, each segment in tiles with its exact halo.

Why exact: a segment tile reads its inputs over the wanted region grown by the segment's halo,
clipped to the super-tile. Where the clip hits the super-tile's edge the tile stops there, so
every convolution pads with zeros exactly as in the untiled run (zero-padding a feature map is
not the same: biases would leak into the padding); interior edges carry the halo, and what the
zero padding spoils there is cut away. The feature maps between segments are kept whole, only
over the region later segments still need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import Lock

import numpy as np

from ..plan.segments import Segment
from .session import TileError

# extract(feed: blob -> (C,h,w) float32, outputs) -> arrays in the order of `outputs`
Extract = Callable[[dict[str, np.ndarray], Sequence[str]], list[np.ndarray]]
Region = tuple[int, int, int, int]  # y0, y1, x0, x1 in net-input pixels


def grow(region: Region, halo: tuple[int, int, int, int], height: int, width: int, align: int) -> Region:
    y0, y1, x0, x1 = region
    t, b, l, r = halo
    down = lambda v: max(0, v - v % align)  # noqa: E731
    up = lambda v, n: min(n, -(-v // align) * align)  # noqa: E731
    return down(y0 - t), up(y1 + b, height), down(x0 - l), up(x1 + r, width)


def tiles(region: Region, tile: int) -> list[Region]:
    y0, y1, x0, x1 = region
    if tile <= 0:
        return [region]
    return [(y, min(y + tile, y1), x, min(x + tile, x1)) for y in range(y0, y1, tile) for x in range(x0, x1, tile)]


def regions(schedule: Sequence[tuple[Segment, int]], box: Region, height: int, width: int) -> list[Region]:
    """The region each segment must compute so that the last one covers `box`."""
    result = [box]
    for segment, _ in reversed(schedule[1:]):
        halo = segment.halo if segment.halo is not None else (height, height, width, width)
        result.append(grow(result[-1], halo, height, width, segment.align))
    return result[::-1]


def steps(schedule: Sequence[tuple[Segment, int]], box: Region, height: int,
          width: int) -> list[tuple[Segment, list[tuple[Region, Region]]]]:
    """Each segment with its windows in row-major order: (the core a tile fills, the region it
    reads: the core grown by the segment's halo), in net-input pixels. The one tiling that both
    the host runner below and the device-resident one (resident.py) execute."""
    result = []
    for (segment, tile), region in zip(schedule, regions(schedule, box, height, width)):
        if segment.halo is None:
            region, tile = (0, height, 0, width), 0
        halo = segment.halo or (0, 0, 0, 0)
        result.append((segment, [(w, grow(w, halo, height, width, segment.align)) for w in tiles(region, tile)]))
    return result


def run_segments(
    schedule: Sequence[tuple[Segment, int]],
    extracts: Sequence[Extract],
    root: Callable[[str], str],
    keep: Callable[[int], set[str]],
    chw: np.ndarray,
    input_blob: str,
    box: Region,
) -> dict[str, np.ndarray]:
    """Run the schedule on `chw` (the net's input, (C,H,W) float32) and return the stored values
    after the last segment (root blob -> array at its own resolution; filled over `box`)."""
    height, width = chw.shape[1:]
    stored: dict[str, np.ndarray] = {root(input_blob): chw}
    for segment, windows in steps(schedule, box, height, width):
        outputs: dict[str, np.ndarray] = {}
        lock = Lock()
        alone = len(windows) == 1

        def one(extract: Extract, window: tuple[Region, Region], segment: Segment = segment, outputs=outputs,
                lock=lock, alone: bool = alone) -> None:
            (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) = window
            feed = {b: stored[b][:, cy0:cy1, cx0:cx1] for b in segment.feeds}
            results = extract(feed, segment.outputs)
            f = segment.scale
            # the only window, and it computed the whole map (another window's copy of the same
            # pixels may differ in the last bits under fp16 storage: each window keeps its own box)
            whole = alone and (cy0, cy1, cx0, cx1) == (0, height, 0, width)
            for blob, result in zip(segment.outputs, results):
                if result.shape[1:] != ((cy1 - cy0) * f, (cx1 - cx0) * f):
                    raise TileError(f"segment output {blob!r} is {result.shape}, expected x{f} of {cy1 - cy0}x{cx1 - cx0}")
                if whole:  # store it as is: no second full-size map and copy (50 MB for a 512px x4 image)
                    outputs[root(blob)] = result
                    continue
                with lock:
                    if root(blob) not in outputs:
                        outputs[root(blob)] = np.empty((result.shape[0], height * f, width * f), np.float32)
                outputs[root(blob)][:, y0 * f : y1 * f, x0 * f : x1 * f] = result[
                    :, (y0 - cy0) * f : (y1 - cy0) * f, (x0 - cx0) * f : (x1 - cx0) * f
                ]

        if len(extracts) == 1 or len(windows) == 1:
            for window in windows:
                one(extracts[0], window)
        else:
            _share(windows, extracts, one)
        survivors = keep(segment.stop)
        stored = {k: v for k, v in stored.items() if k in survivors}
        stored.update(outputs)
    return stored


def _share(windows: list[tuple[Region, Region]], extracts: Sequence[Extract], one) -> None:
    """Several devices: each worker takes the next window."""
    lock = Lock()
    cursor = iter(windows)

    def worker(extract: Extract) -> None:
        while True:
            with lock:
                window = next(cursor, None)
            if window is None:
                return
            one(extract, window)

    with ThreadPoolExecutor(max_workers=len(extracts)) as pool:
        for future in [pool.submit(worker, e) for e in extracts]:
            future.result()
