"""Test-time augmentation: the 8 flips/rotations of a tile, run and averaged.

Applied per tile (the padded tile is transformed, run, transformed back), so TTA keeps memory
bounded by the tile like plain inference; costs 8x the compute.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


def _forward(x: np.ndarray, k: int) -> np.ndarray:
    """Transform k (0..7) of a (C,H,W) array: k & 3 quarter turns, then a flip when k >= 4."""
    y = np.rot90(x, k & 3, axes=(1, 2))
    return y[:, :, ::-1] if k >= 4 else y


def _inverse(y: np.ndarray, k: int) -> np.ndarray:
    if k >= 4:
        y = y[:, :, ::-1]
    return np.rot90(y, -(k & 3), axes=(1, 2))


def tta_runner(run: Runner) -> Runner:
    """Wrap a tile runner so each call averages the 8 dihedral transforms."""

    def run_tta(chw: np.ndarray) -> np.ndarray:
        total = None
        for k in range(8):
            out = _inverse(run(np.ascontiguousarray(_forward(chw, k))), k)
            total = out.astype(np.float32, copy=True) if total is None else total + out
        return total / 8.0

    return run_tta
