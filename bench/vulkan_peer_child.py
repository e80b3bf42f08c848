"""One Vulkan run in its own process: `python bench/vulkan_peer_child.py KIND SIZE [GPU]`, prints one
JSON line. KIND: `ours` (the runtime on Vulkan device GPU, default options) or `sr-vulkan` (the
PyPI package built from Real-ESRGAN-ncnn-vulkan, same device, its automatic tile), both running
realesr-animevideov3 x4 on the astronaut photo's centred SIZE x SIZE crop.

sr-vulkan is a measuring stick only (`pip install sr-vulkan`), never a dependency. Its time is
from `add` to the finished image (it decodes and encodes PNG itself); ours from `upscale` of the
decoded array, so ours is charged nothing it does not do.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from speed_child import photo  # noqa: E402


def ours(src, gpu: int) -> tuple[float, float, tuple[int, ...]]:
    from realesr_portable.api import Upscaler

    start = time.perf_counter()
    up = Upscaler("realesr-animevideov3-x4", gpu=gpu)
    loaded = time.perf_counter()
    out = up.upscale(src)
    return loaded - start, time.perf_counter() - loaded, out.shape


def sr_vulkan(src, gpu: int) -> tuple[float, float, tuple[int, ...]]:
    from sr_vulkan import sr_vulkan as sr

    start = time.perf_counter()
    if sr.init() < 0:
        raise SystemExit("sr-vulkan found no Vulkan device")
    if sr.initSet(gpuId=gpu) < 0:
        raise SystemExit(f"sr-vulkan could not use device {gpu}: {sr.getLastError()}")
    buffer = io.BytesIO()
    Image.fromarray(src).save(buffer, "PNG")
    loaded = time.perf_counter()
    if sr.add(buffer.getvalue(), sr.MODEL_REALESRGAN_ANIMAVIDEOV3_UP4X, 1, 4) <= 0:  # 4th: scale
        raise SystemExit(f"sr-vulkan refused the task: {sr.getLastError()}")
    result = sr.load(0)
    done = time.perf_counter()
    data = result[0] if isinstance(result, tuple) else result
    with Image.open(io.BytesIO(data)) as im:
        shape = (im.height, im.width, len(im.getbands()))
    sr.stop()
    return loaded - start, done - loaded, shape


if __name__ == "__main__":
    kind, size = sys.argv[1], int(sys.argv[2])
    gpu = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    load_s, compute_s, shape = (ours if kind == "ours" else sr_vulkan)(photo(size), gpu)
    assert shape[:2] == (4 * size, 4 * size), shape
    print(json.dumps({"kind": kind, "size": size, "gpu": gpu, "load_s": load_s, "compute_s": compute_s}))
