"""How far tiles of a graph that reads the whole image are from one whole run: measured, stated.

Why: tiling is exact for local layers (the halos of graph/analysis.py). A global operation
(global pooling in squeeze-excitation blocks, attention over all pixels) sees only its tile, so
tiles of such a net differ from the whole run by an amount no halo removes. The runtime runs
those parts whole where memory allows; when the user asks for tiles, or the memory budget cuts
an image into pieces, this measures the largest difference on a probe picture so the one-line
note states a number instead of a promise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..image.scale import resize
from .engine import Engine, Options

PROBE_TILES = 3  # the probe is this many tiles wide and high, so it has interior seams
MAX_PROBE = 192


def probe_picture(side: int) -> np.ndarray:
    """A deterministic picture with smooth areas, edges and texture (what seams show on)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / max(side - 1, 1)
    rng = np.random.default_rng(0)
    base = np.stack([x, y, 1 - (x + y) / 2], axis=-1) * 200 + 20
    base[(x * 7).astype(int) % 2 == 1] += 25  # stripes: edges across tiles
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def global_layers(engine: Engine) -> tuple[str, ...]:
    """The layers of the engine's graph that read the whole image (none for a backend without one)."""
    graph = getattr(engine.sessions[0], "graph", None)
    return graph.global_layers() if graph is not None else ()


def _difference(engine: Engine, options: Options, picture: np.ndarray, tile: int, pieces: bool) -> int:
    """Largest difference in levels between one whole run of `picture` and `tile`-px tiles (user
    tiles, or memory super-tiles when `pieces`)."""
    plain = replace(options, tta=False)
    whole = engine.run_model(picture, replace(plain, tile=0), pieces=0).astype(np.int32)
    tiled = (engine.run_model(picture, plain, pieces=tile) if pieces
             else engine.run_model(picture, replace(plain, tile=tile))).astype(np.int32)
    return int(np.abs(whole - tiled).max())


def _bound(engine: Engine, options: Options, tile: int, pieces: bool) -> tuple[int, int]:
    """(largest difference in 8-bit levels, probe side) between one whole run and `tile`-px
    tiles (user tiles, or memory super-tiles when `pieces`) on a probe three tiles wide."""
    align = max(1, engine.spec.size_multiple)
    side = -(-min(PROBE_TILES * tile, MAX_PROBE) // align) * align
    return _difference(engine, options, probe_picture(side), max(1, side // PROBE_TILES) if pieces else tile,
                       pieces), side


def as_8bit(image: np.ndarray) -> np.ndarray:
    """uint8 as is, uint16 by its high byte, float [0, 1] scaled: the levels the note counts in."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def reduced(image: np.ndarray, pieces: int) -> tuple[np.ndarray, int]:
    """The image at most MAX_PROBE px a side (8-bit) and its pieces' side at that size: the same
    grid of pieces over the same content. Global pooling makes the seams depend on how much the
    content changes from piece to piece, which a synthetic probe underrates (14 levels stated
    where a cat photo's pieces differed by 55)."""
    h, w = image.shape[:2]
    ratio = min(1.0, MAX_PROBE / max(h, w))
    small = as_8bit(image)
    if ratio < 1.0:
        small = resize(small, (max(1, round(w * ratio)), max(1, round(h * ratio))), "bicubic")
    return small, max(1, round(pieces * ratio))


def seam_note(engine: Engine, options: Options, image: np.ndarray | None = None) -> str | None:
    """One line for a graph with global layers run in tiles: the measured largest difference (in
    8-bit levels) between those tiles and one whole run. Tiles are the user's (`-t`, measured on a
    probe at load), or the pieces the memory budget cuts `image` into (measured on the image
    itself, reduced to the probe's size when larger, and on the probe). None when the run is
    whole or the tiles come out the same."""
    names = global_layers(engine)
    if not names:
        return None
    if options.tile:
        bound, side = _bound(engine, options, options.tile, pieces=False)
        if bound == 0:
            return None
        return (f"{engine.spec.name} reads the whole image ({len(names)} global layers, e.g. {names[0]}): "
                f"-t {options.tile} tiles differ from one whole run by up to {bound} levels "
                f"(measured on a {side}x{side} probe; an image whose content changes more across it "
                "can differ more); -t 0 runs it whole")
    if image is None:
        return None
    pieces = engine.pieces(image.shape[:2], options)
    if not pieces:
        return None
    if pieces not in engine.seam_bounds:  # threads may measure it twice: harmless
        engine.seam_bounds[pieces] = _bound(engine, options, pieces, pieces=True)
    probe_bound, side = engine.seam_bounds[pieces]
    small, small_pieces = reduced(image, pieces)
    own = _difference(engine, options, small, small_pieces, pieces=True)
    bound = max(own, probe_bound)
    if bound == 0:
        return None
    exact = small.shape[:2] == image.shape[:2]  # the very pieces of this run: a bound, not an estimate
    where = "this image" if exact else f"this image reduced to {small.shape[1]}x{small.shape[0]}"
    return (f"{engine.spec.name} reads the whole image ({len(names)} global layers, e.g. {names[0]}) and the "
            f"memory budget cuts images of this size into {pieces}-px pieces: pieces differ from one "
            f"whole run by {'up to' if exact else 'about'} {bound} levels (measured on {where} and on a "
            f"{side}x{side} probe); a larger --max-memory runs it whole")
