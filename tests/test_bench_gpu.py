"""bench/bench_gpu.py: its skip line where there is no hardware GPU, and its raw-ncnn runner (the
table's reference column) checked on lavapipe against our own session."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from realesr_portable.device import select as dev
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.session import Session

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_skips_with_one_line_without_a_hardware_gpu() -> None:
    if any(not d.is_software for d in dev.vulkan_devices()):
        # A hardware GPU is here: the skip path must not be taken; the lavapipe test below still runs.
        assert _bench().hardware_gpu() is not None
        return
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no hardware Vulkan GPU" in lines[0] and "skipped" in lines[0]
    assert "Traceback" not in proc.stderr


def test_raw_ncnn_runner_matches_our_session_on_lavapipe(photo_crop) -> None:
    bench = _bench()
    soft = [d for d in dev.vulkan_devices() if d.is_software]
    assert soft, "no software Vulkan device: install mesa-vulkan-drivers (lavapipe)"
    img = bench.photo(48, 32)
    assert img.shape == (32, 48, 3)
    raw = bench.run_raw_ncnn(soft[0], "realesr-animevideov3-x2", img, fp32=True)()
    chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0
    ours = Session(resolve_model("realesr-animevideov3-x2"), dev.cpu_device(), fp32=True).run(chw)
    ours8 = (np.clip(ours, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
    assert raw.shape == (64, 96, 3)
    assert np.abs(raw.astype(int) - ours8.astype(int)).max() <= 1
    assert bench.psnr(raw, ours8) > 50
