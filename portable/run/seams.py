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


def _bound(engine: Engine, options: Options, tile: int, pieces: bool) -> tuple[int, int]:
    """(largest difference in 8-bit levels, probe side) between one whole run and `tile`-px
    tiles (user tiles, or memory super-tiles when `pieces`) on a probe three tiles wide."""
    align = max(1, engine.spec.size_multiple)
    side = -(-min(PROBE_TILES * tile, MAX_PROBE) // align) * align
    probe = probe_picture(side)
    plain = replace(options, tta=False)
    whole = engine.run_model(probe, replace(plain, tile=0), pieces=0).astype(np.int32)
    tiled = (engine.run_model(probe, plain, pieces=max(1, side // PROBE_TILES)) if pieces
             else engine.run_model(probe, plain)).astype(np.int32)
    return int(np.abs(whole - tiled).max()), side


def seam_note(engine: Engine, options: Options, shape: tuple[int, int] | None = None) -> str | None:
    """One line for a graph with global layers run in tiles: the measured largest difference (in
    8-bit levels) between those tiles and one whole run on a probe. Tiles are the user's (`-t`),
    or, for an image of `shape` (h, w), the pieces the memory budget cuts it into. None when the
    run is whole or the tiles come out the same."""
    names = global_layers(engine)
    if not names:
        return None
    if options.tile:
        bound, side = _bound(engine, options, options.tile, pieces=False)
        if bound == 0:
            return None
        return (f"{engine.spec.name} reads the whole image ({len(names)} global layers, e.g. {names[0]}): "
                f"-t {options.tile} tiles differ from one whole run by up to {bound} levels "
                f"(measured on a {side}x{side} probe); -t 0 runs it whole")
    pieces = 0 if shape is None else engine.pieces(shape, options)
    if not pieces:
        return None
    if pieces not in engine.seam_bounds:  # threads may measure it twice: harmless
        engine.seam_bounds[pieces] = _bound(engine, options, pieces, pieces=True)
    bound, side = engine.seam_bounds[pieces]
    if bound == 0:
        return None
    probe_tile = max(1, side // PROBE_TILES)
    return (f"{engine.spec.name} reads the whole image ({len(names)} global layers, e.g. {names[0]}) and the "
            f"memory budget cuts images of this size into {pieces}-px pieces: pieces differ from one "
            f"whole run by up to {bound} levels (measured with {probe_tile}-px pieces on a {side}x{side} probe); "
            "a larger --max-memory runs it whole")
