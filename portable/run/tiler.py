"""Super-tiles: images whose features do not fit the memory budget, cut in large pieces.

Each tile is read with `pad` pixels of real context on every side where it has neighbours and
only its centre is written out. Outside the image the context is a mirrored pre-pad of
`pre_pad` pixels per side (default `pad`), the same whether the image is one tile or many, so the
borders do not depend on the tiling. Only one padded tile is converted to float at a time and
the output is written straight into the final integer array, so memory is bounded by the tile.
A tile that fails (out of memory) is split into four and retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..plan.segments import MIN_TILE
from .session import TileError


class NonFiniteOutputError(UserError, ArithmeticError):
    """The net returned NaN or inf (fp16 overflow, broken weights): never written as pixels."""


# A runner gets a padded (C,H,W) float32 tile and the box (top, left, height, width) of it that is
# wanted, and returns only that box's output, (C, height*s, width*s): a split model can then run
# its high-resolution head on the box alone. The result is handed over: `TileJob.write` converts
# it in place, so a runner never returns an array it keeps.
Box = tuple[int, int, int, int]
Runner = Callable[[np.ndarray, Box], np.ndarray]


def crop_runner(run: Callable[[np.ndarray], np.ndarray], scale: int) -> Runner:
    """Make a whole-tile function (C,H,W) -> (C,H*s,W*s) into a runner for a box."""

    def run_box(chw: np.ndarray, box: Box) -> np.ndarray:
        top, left, height, width = box
        out = run(chw)
        return out[:, top * scale : (top + height) * scale, left * scale : (left + width) * scale]

    return run_box


@dataclass(frozen=True)
class Window:
    """Output-free description of one tile: rows y0:y1, columns x0:x1 of the input image."""

    y0: int
    y1: int
    x0: int
    x1: int


def reflect_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Indices start..stop-1 mirrored into 0..size-1 (edge pixel not repeated, any distance)."""
    idx = np.arange(start, stop)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def windows(height: int, width: int, tile: int) -> list[list[Window]]:
    """Tiles as rows of windows (strips); `tile <= 0` or larger than the image means one tile."""
    th = height if tile <= 0 else min(tile, height)
    tw = width if tile <= 0 else min(tile, width)
    return [
        [Window(y, min(y + th, height), x, min(x + tw, width)) for x in range(0, width, tw)]
        for y in range(0, height, th)
    ]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class TileJob:
    """Everything fixed for one image: the source, the output and how to convert between them."""

    src: np.ndarray  # (H,W,C) uint8/uint16/float32
    out: np.ndarray  # (H*s,W*s,C) uint8/uint16/float32, written in place
    scale: int
    pad: int
    size_multiple: int
    src_max: float  # 255, 65535 or 1.0 (float input already in [0,1])
    out_max: float
    value_range: tuple[float, float] = (0.0, 1.0)
    pre_pad: tuple[int, int, int, int] | None = None  # mirrored top, bottom, left, right; None: `pad`

    def indices(self, win: Window) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Source rows and columns of a window's padded tile (mirrored outside the image), plus
        its top/left padding; a device engine gathers them where it runs the net."""
        h, w = self.src.shape[:2]
        et, eb, el, er = (self.pad,) * 4 if self.pre_pad is None else self.pre_pad
        # the padded image spans -et..h+eb, -el..w+er; a piece reaches `pad` into its neighbours
        y0 = -et if win.y0 == 0 else max(win.y0 - self.pad, -et)
        x0 = -el if win.x0 == 0 else max(win.x0 - self.pad, -el)
        y1 = h + eb if win.y1 == h else min(win.y1 + self.pad, h + eb)
        x1 = w + er if win.x1 == w else min(win.x1 + self.pad, w + er)
        y1 = _round_up(y1 - y0, self.size_multiple) + y0
        x1 = _round_up(x1 - x0, self.size_multiple) + x0
        top, left = win.y0 - y0, win.x0 - x0
        return reflect_indices(y0, y1, h), reflect_indices(x0, x1, w), top, left

    def read(self, win: Window) -> tuple[np.ndarray, int, int]:
        """The padded (C,h,w) float tile for a window, plus its top/left padding."""
        rows, cols, top, left = self.indices(win)
        patch = self.src[rows[:, None], cols[None, :]]
        chw = patch.transpose(2, 0, 1).astype(np.float32)
        lo, hi = self.value_range
        chw *= (hi - lo) / self.src_max
        if lo:
            chw += lo
        return chw, top, left

    def check(self, win: Window, shape: tuple[int, ...]) -> None:
        """A runner's output for `win` must be (C, h*s, w*s); TileError otherwise."""
        s = self.scale
        expected = (self.out.shape[2], (win.y1 - win.y0) * s, (win.x1 - win.x0) * s)
        if shape != expected:
            raise TileError(f"runner returned {shape}, expected {expected}")

    def write(self, win: Window, crop: np.ndarray) -> None:
        """Store a window's output (C, h*s, w*s), clipped and rounded, in the output array.

        A runner hands over its result (see `Runner`), so it is converted in place: a new array
        of the output's size costs the first image more in page faults than the arithmetic."""
        self.check(win, tuple(crop.shape))
        s = self.scale
        lo, hi = self.value_range
        gain = np.float32(self.out_max / (hi - lo))
        pixels = crop if crop.dtype == np.float32 and crop.flags.writeable else crop.astype(np.float32)
        if lo:
            pixels -= lo
        pixels *= gain
        # clip and rint would turn NaN/inf into plausible pixels; a sum finds them without a mask
        if not np.isfinite(pixels.sum(dtype=np.float64)):
            raise non_finite(win)
        np.clip(pixels, 0.0, self.out_max, out=pixels)
        if self.out.dtype != np.float32:
            np.rint(pixels, out=pixels)
        self.out[win.y0 * s : win.y1 * s, win.x0 * s : win.x1 * s] = pixels.transpose(1, 2, 0)


def non_finite(win: Window) -> NonFiniteOutputError:
    """The error for a tile whose output holds NaN/inf (every job's `write` checks before converting)."""
    return NonFiniteOutputError(f"the model produced NaN/inf on the tile at ({win.x0}, {win.y0}); "
                                "its activations overflow or its weights are broken")


def _split(win: Window) -> list[Window]:
    ym = (win.y0 + win.y1) // 2
    xm = (win.x0 + win.x1) // 2
    parts = [Window(a, b, c, d) for a, b in ((win.y0, ym), (ym, win.y1)) for c, d in ((win.x0, xm), (xm, win.x1))]
    return [p for p in parts if p.y1 > p.y0 and p.x1 > p.x0]


def run_window(job: TileJob, run: Runner, win: Window) -> int:
    """Process one window; on failure split it in four and retry. Returns how many splits it took."""
    try:
        chw, top, left = job.read(win)
        result = run(chw, (top, left, win.y1 - win.y0, win.x1 - win.x0))
        del chw
        job.write(win, result)
        return 0
    except (TileError, MemoryError) as exc:
        if max(win.y1 - win.y0, win.x1 - win.x0) <= MIN_TILE:
            raise TileError(f"{exc} (even at {MIN_TILE}x{MIN_TILE})") from None
        return 1 + sum(run_window(job, run, part) for part in _split(win))


def upscale_tiled(
    job: TileJob,
    run: Runner,
    tile: int,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Run every tile of `job` through `run`, strip by strip. Returns the retry count.

    Why one runner: several devices share an image by graph segments (run/segrun.py), not by tiles."""
    h, w = job.src.shape[:2]
    strips = windows(h, w, tile)
    total = sum(len(s) for s in strips)
    done = retries = 0
    for strip in strips:
        for win in strip:
            retries += run_window(job, run, win)
            done += 1
            if progress is not None:
                progress(done, total)
    return retries
