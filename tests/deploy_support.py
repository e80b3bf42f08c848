"""Shared pieces of the C++ runner tests: building it, model folders, and both runtimes' outputs."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from realesr_portable.device.select import cpu_device
from realesr_portable.run.engine import Engine, Options
from realesr_portable.model.catalog import ModelFiles
from realesr_portable.run.session import Session

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "deploy" / "build.sh"
QEMU = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]


def build_runner(arch: str) -> Path:
    """Build (or find cached) ncnn + the runner for `arch`; the script prints the program last."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--arch", arch], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    program = Path(proc.stdout.strip().splitlines()[-1])
    assert program.is_file(), program
    return program


def model_dir(files: ModelFiles, folder: Path) -> Path:
    """NAME.param/.bin beside a NAME.json sidecar written from the Python spec; returns the .param."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = files.spec.name
    param = folder / f"{stem}.param"
    param.write_bytes(files.param.read_bytes())
    (folder / f"{stem}.bin").write_bytes(files.bin.read_bytes())
    files.spec.save(folder / f"{stem}.json")
    return param


def with_tile_pad(files: ModelFiles, pad: int) -> ModelFiles:
    """The same weights with another declared padding (both runtimes then use that padding)."""
    return replace(files, spec=replace(files.spec, tile_pad=pad))


def python_upscale(files: ModelFiles, image: np.ndarray, tile: int) -> np.ndarray:
    """The Python runtime's output on the CPU in fp32, tile size `tile` (1 thread: the machine is shared)."""
    return Engine([Session(files, cpu_device(), fp32=True, threads=1)]).run_model(image, Options(tile=tile))


def run_cli(program: Path, args: list[str | Path], emulate: bool = False, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run the C++ program (under qemu-aarch64 when `emulate`)."""
    cmd = ([*QEMU] if emulate else []) + [str(program), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def cpp_upscale(program: Path, param: Path, image: np.ndarray, tile: int, work: Path,
                gpu: int = -1, emulate: bool = False) -> np.ndarray:
    """The C++ runner's output for `image` (fp32, 1 thread), read back from its PNG."""
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / "in.png", work / f"out-{gpu}-{int(emulate)}.png"
    Image.fromarray(image).save(src)
    args = ["-i", src, "-o", dst, "-m", param, "-t", tile, "-g", gpu, "--fp32", "--threads", 1]
    proc = run_cli(program, args, emulate)
    assert proc.returncode == 0, proc.stderr
    with Image.open(dst) as im:
        return np.asarray(im)


def level_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(max difference in levels, number of differing channel values)."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(diff.max()), int(np.count_nonzero(diff))
