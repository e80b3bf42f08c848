"""Test-time augmentation: the 8 flips/rotations of a tile, run and averaged.

Applied per tile (the padded tile is transformed, run, transformed back), so TTA keeps memory
bounded by the tile like plain inference; costs 8x the compute.
"""

from __future__ import annotations

import numpy as np

from .tiler import Box, Runner


def _forward(x: np.ndarray, k: int) -> np.ndarray:
    """Transform k (0..7) of a (C,H,W) array: k & 3 quarter turns, then a flip when k >= 4."""
    y = np.rot90(x, k & 3, axes=(1, 2))
    return y[:, :, ::-1] if k >= 4 else y


def _inverse(y: np.ndarray, k: int) -> np.ndarray:
    if k >= 4:
        y = y[:, :, ::-1]
    return np.rot90(y, -(k & 3), axes=(1, 2))


def _moved_box(shape: tuple[int, int], box: Box, k: int) -> Box:
    """Where `box` of an (H,W) tile lands after transform k."""
    mask = np.zeros((1, *shape), bool)
    top, left, height, width = box
    mask[0, top : top + height, left : left + width] = True
    rows = np.flatnonzero(_forward(mask, k)[0].any(axis=1))
    cols = np.flatnonzero(_forward(mask, k)[0].any(axis=0))
    return int(rows[0]), int(cols[0]), len(rows), len(cols)


def tta_runner(run: Runner) -> Runner:
    """Wrap a tile runner so each call averages the 8 dihedral transforms."""

    def run_tta(chw: np.ndarray, box: Box) -> np.ndarray:
        total = None
        for k in range(8):
            moved = _moved_box(chw.shape[1:], box, k)
            out = _inverse(run(np.ascontiguousarray(_forward(chw, k)), moved), k)
            total = out.astype(np.float32, copy=True) if total is None else total + out
        return total / 8.0

    return run_tta
