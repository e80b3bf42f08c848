"""CPU throughput of tiled vs untiled inference (ncnn, official models, real photo).

Run: `python -m pytest bench/bench_runtime_tiling.py`. Tiles are the segment engine's (each
segment of the net tiled with its exact halo); `extra_info` records the schedule (segments,
tiles) and `us_per_output_px`, the cost a user sees. Checks the automatic tile (cost model)
against fixed tiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_portable.device.select import cpu_device
from realesr_portable.run.engine import Engine, Options
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.session import Session
UNTILED = 1 << 20  # larger than any image: one tile per segment


def _photo(size: int) -> np.ndarray:
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    top, left = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    return {name: Engine([Session(resolve_model(name), cpu_device())])
            for name in ("realesr-animevideov3-x4", "realesrgan-x4plus-anime")}


@pytest.mark.parametrize("tile", [0, 64, 128, 256, UNTILED], ids=["auto", "t64", "t128", "t256", "untiled"])
@pytest.mark.parametrize("name,size", [("realesr-animevideov3-x4", 256), ("realesrgan-x4plus-anime", 256)])
def test_cpu_throughput(benchmark, engines, name: str, size: int, tile: int) -> None:
    engine = engines[name]
    src = _photo(size)
    out = benchmark.pedantic(engine.run_model, args=(src, Options(tile=tile)), rounds=2, iterations=1, warmup_rounds=0)
    assert out.shape == (size * 4, size * 4, 3)
    seconds = benchmark.stats.stats.median
    workers = engine.sessions[0].workers
    schedule = engine.sessions[0].segmenter.schedule(size + 10, size + 10, engine.budget / 2 / workers, tile, workers=workers)
    benchmark.extra_info.update(
        model=name, tile=tile, image=f"{size}x{size}", segments=len(schedule),
        tiles=sorted({t for _, t in schedule}), us_per_output_px=seconds / (size * size) * 1e6,
    )
