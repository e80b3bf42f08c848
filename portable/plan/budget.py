"""How much memory a run may use, and how big its super-tiles are.

The default budget follows the machine: a share of the RAM available when the run starts on the
CPU, a share of the Vulkan heap budget on a GPU. `--max-memory` / `max_memory=` caps it for small
devices. Half the budget holds the feature maps kept between segments (over one super-tile), the
other half one segment tile's working memory (segments.py picks tiles to fit it).
"""

from __future__ import annotations

import math
import re

from ..device.select import Device

CPU_SHARE = 0.25  # of MemAvailable: leaves room for other programs and image buffers
GPU_SHARE = 0.5  # of the Vulkan heap budget
MIN_BUDGET = 64 << 20
MIN_SUPER_TILE = 64
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(text: str | int | float) -> int:
    """`512M`, `2G`, `1.5g`, `800MiB` or a number of bytes -> bytes (at least 64 MiB)."""
    if isinstance(text, (int, float)):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(text))
        if not match:
            raise ValueError(f"max memory {text!r}: expected a size like 512M or 2G")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < MIN_BUDGET:
        raise ValueError(f"max memory {text!r}: at least 64M is needed")
    return value


def default_budget(device: Device) -> int:
    """Bytes a run may use on `device` when the user sets no limit."""
    share = GPU_SHARE if device.is_gpu else CPU_SHARE
    return max(MIN_BUDGET, int(device.heap_budget_mb * share) << 20)


def super_tile(height: int, width: int, pre_pad: tuple[int, int, int, int], context: int, bytes_px: float,
               budget: float) -> int:
    """0 when the image's stored features fit half the budget in one piece; else the side of the
    super-tiles (each carrying `context` pixels of seam-free context per side) that do."""
    if (height + pre_pad[0] + pre_pad[1]) * (width + pre_pad[2] + pre_pad[3]) * bytes_px <= budget / 2:
        return 0
    side = int(math.sqrt(budget / 2 / bytes_px)) - 2 * context
    return max(MIN_SUPER_TILE, side)
