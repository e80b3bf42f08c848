"""CPU throughput of tiled vs untiled inference (ncnn, official models, real photo).

Run: `python -m pytest bench/bench_runtime_tiling.py`. Each case records the padded pixels it
computed, so `extra_info["us_per_padded_px"]` compares tiling overhead beyond the padding itself
(the issue asks for tiled within 5% of untiled once padded area is accounted for) and
`us_per_output_px` the cost a user sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_portable.devices import cpu_device
from realesr_portable.engine import Engine, Options
from realesr_portable.models import resolve_model
from realesr_portable.session import Session
from realesr_portable.tiler import windows

UNTILED = 1 << 20  # larger than any image: one tile


def _photo(size: int) -> np.ndarray:
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def _padded_pixels(height: int, width: int, tile: int, pad: int) -> int:
    return sum((w.y1 - w.y0 + 2 * pad) * (w.x1 - w.x0 + 2 * pad) for row in windows(height, width, tile) for w in row)


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    return {name: Engine([Session(resolve_model(name), cpu_device())])
            for name in ("realesr-animevideov3-x4", "realesrgan-x4plus-anime")}


@pytest.mark.parametrize("tile", [64, 128, 256, UNTILED], ids=["t64", "t128", "t256", "untiled"])
@pytest.mark.parametrize("name,size", [("realesr-animevideov3-x4", 256), ("realesrgan-x4plus-anime", 256)])
def test_cpu_throughput(benchmark, engines, name: str, size: int, tile: int) -> None:
    engine = engines[name]
    src = _photo(size)
    out = benchmark.pedantic(engine.run_model, args=(src, Options(tile=tile)), rounds=2, iterations=1, warmup_rounds=0)
    assert out.shape == (size * 4, size * 4, 3)
    padded = _padded_pixels(size, size, tile, engine.spec.tile_pad)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(
        model=name, tile=tile if tile != UNTILED else 0, pad=engine.spec.tile_pad, image=f"{size}x{size}",
        padded_px=padded, us_per_padded_px=seconds / padded * 1e6, us_per_output_px=seconds / (size * size) * 1e6,
        low_memory_conv=engine.sessions[0].low_memory,
    )
