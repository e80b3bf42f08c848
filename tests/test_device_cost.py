"""The device-aware planner (issue 16 item 2): per-call cost measured per device and cached; a
device whose memory holds the image runs it in one tile, a small one in tiles."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from realesr_portable.device import select as dev
from realesr_portable.model.catalog import resolve_model
from realesr_portable.plan import cost as costmod
from realesr_portable.plan.cost import DeviceCost, cache_key, device_cost, load_cost, measure, save_cost
from realesr_portable.device.precision import ncnn_options
from realesr_portable.plan.budget import super_tile
from realesr_portable.plan.memory import memory_model
from realesr_portable.plan.segments import EXTRACT_MACS, Segmenter
from realesr_portable.run.engine import Engine, Options
from realesr_portable.run.session import Session


def test_measure_fits_call_and_pixel_costs() -> None:
    """A fake device whose calls cost 5 ms + 1 us per pixel (sleeps): the fit recovers both."""
    import time

    cost = measure(lambda side: time.sleep(0.005 + side * side * 1e-6), sides=(16, 64), runs=2)
    assert cost.call_s == pytest.approx(0.005, abs=0.003)
    assert cost.pixel_s == pytest.approx(1e-6, rel=0.5)
    assert cost.call_macs(1000.0) == pytest.approx(cost.call_s / (cost.pixel_s / 1000.0))
    # timing noise that makes the larger run look dearer per pixel still leaves the call a cost
    noisy = iter([0.010, 0.010, 0.010, 0.5, 0.5, 0.5])
    assert measure(lambda side: time.sleep(next(noisy)), sides=(16, 64), runs=2).call_s >= 0.001


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


def _simulated_engine(name: str, device: dev.Device) -> Engine:
    """An engine planning for `device` with the model's real graph, the device's memory model (as
    Session picks it) and a GPU call cost 100x the CPU's (the measured order on an H200)."""
    cpu = Session(resolve_model(name), dev.cpu_device(), fp32=True)
    memory = memory_model(ncnn_options(device))
    segmenter = Segmenter(cpu.graph, cpu.spec.input_blob, cpu.spec.output_blob, memory)
    simulated = SimpleNamespace(spec=cpu.spec, device=device, workers=1, segmenter=segmenter, net_bytes_px=0.0,
                                pre_pad=0, call_macs=lambda: 100 * EXTRACT_MACS)
    return Engine([simulated])  # type: ignore[list-item]


def _plan(engine: Engine, h: int, w: int) -> tuple[int, list[int]]:
    """(super-tile side, 0 = whole image; the segment tiles of one piece) as run_model plans them."""
    pieces = super_tile(h, w, engine.border, engine.spec.tile_pad, engine._stored_bytes_px(), engine.budget)
    side_h, side_w = (h, w) if not pieces else (min(h, pieces + 2 * engine.spec.tile_pad),) * 2
    top, bottom, left, right = engine.border
    session = engine.sessions[0]
    schedule = session.segmenter.schedule(side_h + top + bottom, side_w + left + right, engine.budget / 2,
                                          call_macs=session.call_macs())
    return pieces, [tile for _, tile in schedule]


# ncnn's heap budget for a 141 GB H200 without VK_EXT_memory_budget: 70% of the heap (with it:
# the free memory, more)
H200 = dev.Device(0, "Simulated H200", "discrete", 98_700)
SMALL_GPU = dev.Device(0, "Simulated 2 GB GPU", "discrete", 2048)


@pytest.mark.parametrize("name", ["realesr-animevideov3-x4", "realesrgan-x4plus"])
def test_large_gpu_runs_whole_image_small_gpu_segments(name: str) -> None:
    """A 960x540 frame: a ~140 GB GPU runs it whole (one piece, one segment, one tile: x4plus's
    x4 head needs ~16 GB at fp16 storage by the measured model); a 2 GB GPU splits it."""
    h, w = 540, 960
    large = _simulated_engine(name, H200)
    assert large.tile_size(Options(), (h, w)) == 0
    assert _plan(large, h, w) == (0, [0])
    small = _simulated_engine(name, SMALL_GPU)
    pieces, tiles = _plan(small, h, w)
    assert small.tile_size(Options(), (h, w)) > 0 and any(tiles)
    if name == "realesrgan-x4plus":
        assert pieces > 0 and len(tiles) > 1  # super-tiles, each in segments with their own tiles
    # the same frame on the CPU's fp32 model needs more than twice the GPU's fp16 bytes
    cpu = Segmenter(large.sessions[0].segmenter.graph, large.spec.input_blob, large.spec.output_blob)
    last = len(cpu.graph.layers) - 1
    assert cpu.segment(0, last).bytes_px > 2 * large.sessions[0].segmenter.segment(0, last).bytes_px


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
