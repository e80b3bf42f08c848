"""Test-time augmentation: the 8 flips/rotations of the image, run and averaged.

Applied to the whole image (each transform gets the same borders a plain run of that transform
gets, so TTA equals the mean of eight plain runs); costs 8x the compute and one float image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _forward(x: np.ndarray, k: int) -> np.ndarray:
    """Transform k (0..7) of an (H,W,...) array: k & 3 quarter turns, then a flip when k >= 4."""
    y = np.rot90(x, k & 3, axes=(0, 1))
    return y[:, ::-1] if k >= 4 else y


def _inverse(y: np.ndarray, k: int) -> np.ndarray:
    if k >= 4:
        y = y[:, ::-1]
    return np.rot90(y, -(k & 3), axes=(0, 1))


def tta_average(run: Callable[[np.ndarray], np.ndarray], src: np.ndarray, maximum: float) -> np.ndarray:
    """Mean of `run` over the 8 transforms of `src` (values 0..maximum), computed in float."""
    unit = src.astype(np.float32) / np.float32(maximum)
    total = None
    for k in range(8):
        out = _inverse(run(np.ascontiguousarray(_forward(unit, k))), k)
        total = out.astype(np.float32, copy=True) if total is None else total + out
    result = total / 8.0 * maximum
    if src.dtype == np.float32:
        return result
    return np.rint(np.clip(result, 0, maximum)).astype(src.dtype)
