"""Peak RSS of large CPU upscales at the automatic tile size, measured on a child process.

Run: `python -m pytest bench/bench_runtime_memory.py` (minutes: x4plus on a 1024x1024 image is
~36 tiles of 23 RRDB blocks). The targets: 2048x2048 x4 by realesr-animevideov3 and 1024x1024
by realesrgan-x4plus, each under 1.5 GiB peak RSS through the real CLI. The default budget follows
the RAM available at start (a quarter of it), so on a large machine a run may use more to run
faster: the bound is asserted where the user sets it (`--max-memory`, which covers feature maps
and tiles; the input and output images, the PNG encoder, libraries and weights come on top), and
the default's peak is recorded beside it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

LIMIT_MIB = 1.5 * 1024
CAP = "768M"  # --max-memory under which the whole process must stay below LIMIT_MIB


def _big_photo(tmp_path: Path, size: int) -> Path:
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png") as im:
        path = tmp_path / f"astronaut_{size}.png"
        im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS).save(path)
    return path


_CHILD = (
    "import resource, sys\n"
    "from realesr_portable.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _peak_rss_mib(args: list[str]) -> tuple[float, float, str]:
    """Run the CLI in a fresh child that reports its own peak RSS (ncnn's threads included)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    peak_kib = int(next(line for line in lines if line.startswith("peak_rss_kib")).split()[1])
    return peak_kib / 1024, elapsed, lines[0]


@pytest.mark.parametrize("name,size", [("realesr-animevideov3-x4", 2048), ("realesrgan-x4plus", 1024)])
@pytest.mark.parametrize("cap", [None, CAP])
def test_peak_rss_at_auto_tile(benchmark, tmp_path: Path, name: str, size: int, cap: str | None) -> None:
    src = _big_photo(tmp_path, size)
    dst = tmp_path / "out.png"
    args = ["-i", str(src), "-o", str(dst), "-n", name, "-g", "-1"] + (["--max-memory", cap] if cap else [])
    peak, elapsed, device_line = benchmark.pedantic(_peak_rss_mib, args=(args,), rounds=1, iterations=1)
    benchmark.extra_info.update(model=name, image=f"{size}x{size}", max_memory=cap or "default",
                                peak_rss_mib=round(peak), seconds=round(elapsed, 1), device_line=device_line)
    print(f"\n{name} {size}x{size} --max-memory {cap or 'default'}: peak RSS {peak:.0f} MiB, {elapsed:.1f} s")
    with Image.open(dst) as im:
        assert im.size == (size * 4, size * 4)
    if cap is not None:
        assert peak < LIMIT_MIB, f"{name} {size}x{size} at --max-memory {cap}: peak RSS {peak:.0f} MiB"
