"""Automatic tile size (`-t 0`) from a per-architecture memory model and measured speed.

Memory per padded input pixel was measured from peak RSS growth with the tile
(bench/bench_runtime_memory.py): an RRDBNet trunk with direct convolution (the CPU default for
split RRDBNets, see session.py) ~8 KB/px, with Winograd ~17 KB/px; SRVGGNetCompact ~2.4 KB/px.
RRDBNets need 64-88 px of padding for seam-free tiles, so on these nets a bigger tile is faster
per useful pixel until memory runs out; SRVGG tiles gain nothing per pixel beyond ~256 px on
this CPU. The CPU working budget is half the free RAM, at most 1 GiB, so peak RSS stays ~1.5 GiB.
"""

from __future__ import annotations

import math

from .devices import Device
from .spec import ModelSpec

CPU_BUDGET_MB = 1024
GPU_BUDGET_FRACTION = 0.5
BYTES_PER_PIXEL_CPU = {"RRDBNet": 8_000, "SRVGGNetCompact": 2_500}
BYTES_PER_PIXEL_GPU = {"RRDBNet": 17_000, "SRVGGNetCompact": 2_500}
_DEFAULT_BPP = 60_000  # an unknown architecture: assume the unsplit x4plus figure (57 KB/px)
CPU_OPTIMUM = {"RRDBNet": 512, "SRVGGNetCompact": 256}  # per-pixel speed stops improving here
_CANDIDATES = (512, 448, 400, 384, 352, 320, 288, 256, 224, 200, 192, 176, 160, 144, 128, 112, 96, 80, 64, 48, 32)
MIN_AUTO_TILE = 32


def _working_mb(tile: int, pad: int, bytes_per_pixel: int) -> float:
    side = tile + 2 * pad
    return side * side * bytes_per_pixel / (1 << 20)


def auto_tile(spec: ModelSpec, device: Device) -> int:
    """The largest candidate tile whose working memory fits the device budget (at least 32)."""
    if device.is_gpu:
        budget = device.heap_budget_mb * GPU_BUDGET_FRACTION
        bpp = BYTES_PER_PIXEL_GPU.get(spec.arch, _DEFAULT_BPP)
        limit = max(_CANDIDATES)
    else:
        budget = min(device.heap_budget_mb * 0.5, CPU_BUDGET_MB)
        bpp = BYTES_PER_PIXEL_CPU.get(spec.arch, _DEFAULT_BPP)
        limit = CPU_OPTIMUM.get(spec.arch, 64)
    for tile in _CANDIDATES:
        if tile <= limit and _working_mb(tile, spec.tile_pad, bpp) <= budget:
            return tile
    return MIN_AUTO_TILE


def balanced(tile: int, height: int, width: int) -> int:
    """Shrink a tile so the image splits into equal tiles (same count, less wasted padding)."""
    if tile <= 0:
        return tile
    per_axis = [math.ceil(n / math.ceil(n / tile)) for n in (height, width)]
    return max(per_axis)
