"""Automatic tile size (`-t 0`).

On a GPU the tile follows the Vulkan heap budget (the budget steps of realesrgan-ncnn-vulkan,
scaled by how much memory a tile of that architecture needs). On the CPU bigger is not faster:
ncnn runs x4plus faster per pixel at 64x64 than at 200x200 here (DESIGN.md), so the tile is the
measured per-pixel throughput optimum for the architecture, capped by the free RAM.
"""

from __future__ import annotations

from .devices import Device
from .spec import ModelSpec

# Measured on the CPU with ncnn (bench/bench_runtime_tiling.py): seconds per input pixel, padding
# included, is lowest at these tile sides.
CPU_OPTIMUM = {"RRDBNet": 64, "SRVGGNetCompact": 256}
# Peak working memory per padded input pixel (bytes), measured from ncnn's peak RSS growth with
# the tile (x4plus: 0.56 GiB at 64x64, 1.2 GiB at 128x128 -> ~56 KB/px).
BYTES_PER_PIXEL = {"RRDBNet": 60_000, "SRVGGNetCompact": 6_000}
_DEFAULT_BPP = 60_000
_GPU_STEPS = ((1900, 200), (550, 100), (190, 64), (0, 32))  # heap MiB -> RRDBNet tile side
_CANDIDATES = (512, 400, 384, 320, 256, 200, 192, 160, 128, 100, 96, 64, 48, 32)


def _fits(tile: int, pad: int, budget_mb: float, bpp: int) -> bool:
    side = tile + 2 * pad
    return side * side * bpp <= budget_mb * (1 << 20)


def auto_tile(spec: ModelSpec, device: Device, ram_fraction: float = 0.5) -> int:
    """Tile side for this model on this device; at least 32."""
    bpp = BYTES_PER_PIXEL.get(spec.arch, _DEFAULT_BPP)
    if device.is_gpu:
        rrdb_tile = next(t for mb, t in _GPU_STEPS if device.heap_budget_mb > mb)
        # Architectures lighter per pixel than RRDBNet get a proportionally larger side.
        factor = (_DEFAULT_BPP / bpp) ** 0.5
        return max(32, min(512, int(rrdb_tile * factor) // 4 * 4))
    budget = device.heap_budget_mb * ram_fraction
    optimum = CPU_OPTIMUM.get(spec.arch, 64)
    for tile in _CANDIDATES:
        if tile <= optimum and _fits(tile, spec.tile_pad, budget, bpp):
            return tile
    return 32
