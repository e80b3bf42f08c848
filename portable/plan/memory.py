"""How many bytes ncnn needs per net-input pixel while a layer runs, on the device that runs it.

Why a model per device: the planner cuts an image into tiles only when a tile's working memory
would not fit the budget. A flat CPU fp32 model with a large safety factor rated x4plus's x4 head
(64 channels at 16x the pixels) at 115 KB per input pixel, ~61 GB for a 960x540 frame, so a
140 GB GPU still ran it in 2x2 tiles.
What a layer needs is the values held while it runs (the live blobs and its own bottoms) plus the
scratch ncnn allocates beside them (a spatial convolution: a padded copy of its input and the
Winograd F(6,3) transforms of input and output, declared per layer type in the layer table), in
the storage precision (fp16 on a Vulkan device by default: half the bytes), times what the
allocator keeps of freed blocks. That last factor (the slack) was measured per allocator as peak
RSS growth of one run (Linux VmHWM after clear_refs) against this formula without it
(tests/test_memory_model.py repeats it; 2026-12-05):

| allocator | x4plus head (96-192 px) | RRDB block (96-128 px) | animevideov3-x4 (256-512 px) | SPAN x4 / x2 (96-384 px) |
|---|---|---|---|---|
| CPU, fp32, ncnn PoolAllocator | 1.32-1.78 | 3.64 | 1.49-1.51 | 2.07-2.29 / 2.22 |
| Vulkan (lavapipe), fp16 storage | 1.43 | 2.49 | 1.57 | 1.96 / 1.09 |

The slack is a little above the largest of its row, so the model never rates a layer below what
was measured (the RRDB block, whose growing dense concatenations leave blocks the pool cannot
reuse, sets it), and over-rates the rest by at most ~2.9x on the CPU and ~2.4x on Vulkan. On
the CPU the head's bytes per pixel fall with size (ncnn's x86 convolutions bound their
workspace), so large images are over-rated most there. A hardware GPU's driver adds alignment but
ncnn sizes the buffers; that figure is not measured yet (bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..device.precision import PrecisionOptions


@dataclass(frozen=True)
class MemoryModel:
    """Bytes per stored activation value on the device and the allocator's measured slack."""

    value_bytes: int
    slack: float

    def layer_bytes(self, held_values: float, scratch_values: float) -> float:
        """Working bytes of one layer from the values held while it runs (live blobs and its own
        bottoms) and the scratch it allocates beside them (values per net-input pixel)."""
        return (held_values + scratch_values) * self.value_bytes * self.slack


CPU_FP32 = MemoryModel(value_bytes=4, slack=3.8)
VULKAN_FP32 = MemoryModel(value_bytes=4, slack=2.6)
VULKAN_FP16 = MemoryModel(value_bytes=2, slack=2.6)


def memory_model(options: PrecisionOptions) -> MemoryModel:
    """The model for a device's precision options (plain fp32 on the CPU)."""
    if not options.use_vulkan_compute:
        return CPU_FP32
    half = options.use_fp16_storage or options.use_bf16_storage
    return VULKAN_FP16 if half else VULKAN_FP32
