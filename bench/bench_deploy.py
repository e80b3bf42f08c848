"""The C++ runner against the Python CLI (same model, image, tile, fp32, 1 thread), and under qemu.

CPU seconds of each child process (user + sys from rusage: robust on a loaded machine) are in
`extra_info["cpu_s"]`; the wall time is what pytest-benchmark measures. x86 and qemu-emulated
ARM are not comparable hardware: the qemu figure only says what the test run costs.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import _photo_crop  # noqa: E402
from deploy_support import QEMU, build_runner, model_dir  # noqa: E402
from realesr_portable.model.catalog import resolve_model  # noqa: E402

MODEL = "realesr-animevideov3-x4"
TILE = 64
# (runtime, image side): 32 px mostly measures start-up (Python imports numpy and ncnn); qemu
# only gets the small image (it emulates NEON ~100x slower than this CPU runs AVX2).
CASES = [("python", 128), ("cpp-x86", 128), ("python", 32), ("cpp-x86", 32), ("cpp-aarch64-qemu", 32)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bench")
    for size in {size for _, size in CASES}:
        Image.fromarray(_photo_crop("astronaut.png", 100, 150, size, size)).save(root / f"in{size}.png")
    param = model_dir(resolve_model(MODEL), root / "model")
    return {"param": param, "x86": build_runner("x86_64"), "arm": build_runner("aarch64"), "root": root}


def _cpu_seconds(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.parametrize("runtime,size", CASES, ids=[f"{r}-{s}px" for r, s in CASES])
def test_runner_speed(benchmark, setup: dict, runtime: str, size: int) -> None:
    out = setup["root"] / f"{runtime}-{size}.png"
    common = ["-i", str(setup["root"] / f"in{size}.png"), "-o", str(out), "-t", str(TILE), "-g", "-1", "--fp32", "--threads", "1"]
    if runtime == "python":
        cmd = [sys.executable, "-c", "import sys; from realesr_portable.cli import main; sys.exit(main())", *common, "-m", str(setup["param"]), "-q"]
    else:
        program = str(setup["x86" if runtime == "cpp-x86" else "arm"])
        cmd = ([*QEMU] if "qemu" in runtime else []) + [program, *common, "-m", str(setup["param"])]
    cpu = []
    benchmark.pedantic(lambda: cpu.append(_cpu_seconds(cmd)), rounds=2, iterations=1)
    benchmark.extra_info["cpu_s"] = min(cpu)
    print(f"\n{runtime}: {min(cpu):.2f} CPU s for {MODEL} on {size}x{size}, tile {TILE}")
    assert out.is_file()
