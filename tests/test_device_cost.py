"""The device-aware planner (issue 16 item 2): per-call cost measured per device and cached; a
device whose memory holds the image runs it in one tile, a small one in tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realesr_portable.device import select as dev
from realesr_portable.model.catalog import resolve_model
from realesr_portable.plan import cost as costmod
from realesr_portable.plan.cost import DeviceCost, cache_key, device_cost, load_cost, measure, save_cost
from realesr_portable.plan.segments import EXTRACT_MACS
from realesr_portable.run.session import Session


def test_measure_fits_call_and_pixel_costs() -> None:
    """A fake device whose calls cost 5 ms + 1 us per pixel (sleeps): the fit recovers both."""
    import time

    cost = measure(lambda side: time.sleep(0.005 + side * side * 1e-6), sides=(16, 64), runs=2)
    assert cost.call_s == pytest.approx(0.005, abs=0.003)
    assert cost.pixel_s == pytest.approx(1e-6, rel=0.5)
    assert cost.call_macs(1000.0) == pytest.approx(cost.call_s / (cost.pixel_s / 1000.0))


def test_cache_round_trip_and_corruption(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REALESR_PORTABLE_CACHE", str(tmp_path))
    key = cache_key(b"model bytes", "NVIDIA H200", "fp16 storage, fp32 arithmetic")
    assert key != cache_key(b"model bytes", "NVIDIA H200", "fp32")
    assert key != cache_key(b"other model", "NVIDIA H200", "fp16 storage, fp32 arithmetic")
    calls = []

    def run(side: int) -> None:
        calls.append(side)

    first = device_cost(key, run)
    path = tmp_path / "calibration" / f"{key}.json"
    assert path.is_file() and calls
    calls.clear()
    assert device_cost(key, run) == first and not calls  # cached: no second calibration
    for junk in (b"{not json", b'{"version": 1, "call_s": "x"}', b'{"version": 1, "call_s": -1, "pixel_s": 0}', b"[]"):
        path.write_bytes(junk)
        assert load_cost(path) is None
        device_cost(key, run)
        assert calls, "a corrupt cache file must be ignored and measured again"
        assert load_cost(path) is not None  # and rewritten
        calls.clear()
    assert not list(path.parent.glob("*.tmp*")) and len(list(path.parent.iterdir())) == 1
    save_cost(path, DeviceCost(0.01, 2e-9))
    assert load_cost(path) == DeviceCost(0.01, 2e-9)


def _segmenter(name: str):
    return Session(resolve_model(name), dev.cpu_device(), fp32=True).segmenter


@pytest.mark.parametrize("name", ["realesr-animevideov3-x4", "realesrgan-x4plus"])
def test_large_gpu_runs_whole_image_small_gpu_tiles(name: str) -> None:
    """Simulated devices: a 140 GB GPU whose calls cost 100x the CPU's (measured order on an H200)
    gets one tile per segment for a 960x540 frame; a 512 MiB GPU must tile it."""
    segmenter = _segmenter(name)
    h, w = 540, 960
    gpu_call = 100 * EXTRACT_MACS
    # Whole when the (CPU-calibrated) memory estimate fits: x4plus's head needs ~59 GB by it at 540p.
    huge = segmenter.schedule(h, w, 70e9, call_macs=gpu_call)
    assert [tile for _, tile in huge] == [0]  # one piece, one tile
    large = segmenter.schedule(h, w, 35e9, call_macs=gpu_call)
    assert large[0][1] == 0  # the trunk (all of SRVGG; RRDBNet's 23 blocks) whole
    assert all(tile == 0 or tile >= 480 for _, tile in large)  # at most 2x2 tiles for x4plus's head
    # The CPU's cost model at the same memory would tile x4plus's head more finely.
    if name == "realesrgan-x4plus":
        cpu_head = segmenter.schedule(h, w, 35e9)[-1][1]
        assert 0 < cpu_head < 480
    small = segmenter.schedule(h, w, 512e6 / 2 / 2, call_macs=gpu_call)
    assert any(tile > 0 for _, tile in small)
    if name == "realesrgan-x4plus":
        assert len(small) > 1  # features between segments: in segments, not one whole net


def test_cpu_keeps_its_constant_and_lavapipe_is_calibrated_once(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REALESR_PORTABLE_CACHE", str(tmp_path))  # nothing calibrated yet
    cpu = Session(resolve_model("realesr-animevideov3-x2"), dev.cpu_device())
    assert cpu.call_macs() == EXTRACT_MACS
    soft = [d for d in dev.vulkan_devices() if d.is_software]
    assert soft, "no software Vulkan device: install mesa-vulkan-drivers (lavapipe)"
    vk = Session(resolve_model("realesr-animevideov3-x2"), soft[0])
    measured = []
    real = costmod.measure
    monkeypatch.setattr(costmod, "measure", lambda run: measured.append(1) or real(run))
    first = vk.call_macs()
    assert first > 0 and np.isfinite(first)
    again = Session(resolve_model("realesr-animevideov3-x2"), soft[0])
    assert again.call_macs() == pytest.approx(first) and len(measured) == 1  # from the disk cache
    assert len(list((tmp_path / "calibration").glob("*.json"))) == 1


def test_software_vulkan_budget_is_host_ram() -> None:
    """lavapipe reports a 1 GiB heap but allocates host RAM: its budget follows the RAM, so a
    256x144 frame is not cut into tiles for a memory limit it does not have."""
    for device in dev.vulkan_devices():
        if device.is_software:
            assert device.heap_budget_mb >= min(dev.available_ram_mb(), 2048) * 0.5
