"""PNG save time and size at zlib level 1 (our default) vs 6 (Pillow's, our old default).

The image is what the runtime writes: a 2048x2048 upscaled photo (scikit-image's astronaut, 512x512,
resized x4 with Lanczos, i.e. smooth like a super-resolved output). Each level writes through the
project's atomic writer (`save_image`) into a temporary folder, so the timing includes the file
system. Levels run side by side in one session so their ratio is comparable on a busy machine.

Run explicitly: `python -m pytest bench/bench_png_level.py -s` (~15 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

from realesr_portable.image.io import Picture, save_image

SIDE = 2048
RESULTS: dict[int, tuple[float, int]] = {}


@pytest.fixture(scope="module")
def picture() -> Picture:
    with Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png") as im:
        big = im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return Picture(color=np.asarray(big).copy())


@pytest.mark.parametrize("level", [1, 6])
def test_png_save(benchmark, picture: Picture, level: int, tmp_path: Path) -> None:
    path = tmp_path / f"out{level}.png"
    benchmark.pedantic(save_image, args=(path, picture, "PNG"), kwargs={"png_level": level}, rounds=3,
                       warmup_rounds=1)
    size = path.stat().st_size
    benchmark.extra_info.update(level=level, bytes=size, side=SIDE)
    RESULTS[level] = (benchmark.stats.stats.median, size)
    if len(RESULTS) == 2:
        (t1, s1), (t6, s6) = RESULTS[1], RESULTS[6]
        print(f"\nPNG {SIDE}x{SIDE}: level 1 {t1:.3f} s {s1 / 2**20:.2f} MiB | level 6 {t6:.3f} s "
              f"{s6 / 2**20:.2f} MiB | time 6/1 {t6 / t1:.2f}x, size 1/6 {s1 / s6:.2f}x")
