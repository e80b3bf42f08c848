"""How many bytes ncnn needs per net-input pixel while a layer runs, on the device that runs it.

Why a model per device: the planner cuts an image into tiles only when a tile's working memory
would not fit the budget. A flat CPU fp32 model with a large safety factor rated x4plus's x4 head
(64 channels at 16x the pixels) at 115 KB per input pixel, ~61 GB for a 960x540 frame, so a
140 GB GPU still ran it in 2x2 tiles. What a layer needs is its live values plus its own input and
output with the convolution transforms (Winograd F(6,3): ~1.8x each), in the storage precision
(fp16 on a Vulkan device by default: half the bytes), times what the allocator keeps of freed
blocks. That last factor was measured per allocator as peak RSS growth of one run (Linux
VmHWM after clear_refs) against this formula without it, on x4plus's head and one RRDB block
segment and on the whole animevideov3-x4 (tests/test_memory_model.py repeats it):

| allocator | x4plus head (96-256 px) | RRDB block (96-192 px) | animevideov3-x4 whole (256-640 px) |
|---|---|---|---|
| CPU, fp32, ncnn PoolAllocator | 0.88-1.59 | 2.32 | 1.13-1.17 |
| Vulkan (lavapipe), fp16 storage | 1.18-1.23 | 1.75 | 1.21-1.57 |

The slack is a little above the largest of its row, so the model never rates a layer below what
was measured (the RRDB block, whose growing dense concatenations leave blocks the pool cannot
reuse, sets it), and over-rates the rest by at most ~2.9x on the CPU and ~1.6x on Vulkan. On
the CPU the head's bytes per pixel fall with size (ncnn's x86 convolutions bound their
workspace), so large images are over-rated most there. A hardware GPU's driver adds alignment but ncnn sizes the
buffers; that figure is not measured yet (bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..device.precision import PrecisionOptions

TRANSFORM_FACTOR = 3.5  # Winograd F(6,3) input+output transforms: ~1.8x each of a layer's blobs


@dataclass(frozen=True)
class MemoryModel:
    """Bytes per stored activation value on the device and the allocator's measured slack."""

    value_bytes: int
    slack: float

    def layer_bytes(self, live_values: float, own_values: float) -> float:
        """Working bytes of one layer from its live values and its own bottoms + tops (values per
        net-input pixel)."""
        return (live_values + TRANSFORM_FACTOR * own_values) * self.value_bytes * self.slack


CPU_FP32 = MemoryModel(value_bytes=4, slack=2.5)
VULKAN_FP32 = MemoryModel(value_bytes=4, slack=1.9)
VULKAN_FP16 = MemoryModel(value_bytes=2, slack=1.9)


def memory_model(options: PrecisionOptions) -> MemoryModel:
    """The model for a device's precision options (plain fp32 on the CPU)."""
    if not options.use_vulkan_compute:
        return CPU_FP32
    half = options.use_fp16_storage or options.use_bf16_storage
    return VULKAN_FP16 if half else VULKAN_FP32
