"""Resizing after the net: outscale != model scale, and the bicubic alpha channel.

The network always runs at its own scale; any other requested scale is reached by resizing its
output (Lanczos), never by mis-tiling. Pillow resizes 8-bit planes directly and 16-bit or float
planes through its 32-bit float mode, one plane at a time.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

METHODS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


def target_size(width: int, height: int, outscale: float) -> tuple[int, int]:
    """Output (width, height) for a float scale, to the nearest pixel with halves up (round() took
    halves to even: 15 x 1.5 gave 22 but 15 x 2.5 gave 38); never below one pixel."""
    return max(1, math.floor(width * outscale + 0.5)), max(1, math.floor(height * outscale + 0.5))


def resize_plane(plane: np.ndarray, size: tuple[int, int], method: str = "lanczos") -> np.ndarray:
    """Resize one (H,W) plane of uint8, uint16 or float32 to `size` = (width, height)."""
    if (plane.shape[1], plane.shape[0]) == size:
        return plane
    resample = METHODS[method]
    if plane.dtype == np.uint8:
        return np.asarray(Image.fromarray(plane, "L").resize(size, resample))
    out = np.asarray(Image.fromarray(plane.astype(np.float32), "F").resize(size, resample))
    if plane.dtype == np.uint16:
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    return np.clip(out, 0.0, 1.0).astype(plane.dtype)


def resize(image: np.ndarray, size: tuple[int, int], method: str = "lanczos") -> np.ndarray:
    """Resize (H,W) or (H,W,C) to `size` = (width, height)."""
    if image.ndim == 2:
        return resize_plane(image, size, method)
    if image.shape[1::-1] == size:
        return image
    if image.dtype == np.uint8 and image.shape[2] == 3:
        return np.asarray(Image.fromarray(image, "RGB").resize(size, METHODS[method]))
    return np.stack([resize_plane(image[..., c], size, method) for c in range(image.shape[2])], axis=-1)
