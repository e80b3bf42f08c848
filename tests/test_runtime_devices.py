"""Device choice: never a software Vulkan device automatically; explicit indexes checked; the
Vulkan code path on lavapipe matches the CPU path (fp32)."""

from __future__ import annotations

import numpy as np
import pytest

from realesr_portable.device import select as dev
from realesr_portable.device.select import Device, DeviceError, parse_gpu_option, select_devices
from realesr_portable.run.engine import Engine, Options
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.session import Session

LAVAPIPE = Device(0, "llvmpipe (LLVM 15.0.6, 256 bits)", "software", 1024)
DISCRETE = Device(1, "Some GPU", "discrete", 8000)
INTEGRATED = Device(2, "Some iGPU", "integrated", 2000)


@pytest.mark.parametrize("text,expected", [(None, None), ("auto", None), ("-1", [-1]), ("0", [0]), ("0,1", [0, 1]), (1, [1])])
def test_parse_gpu_option(text, expected) -> None:
    assert parse_gpu_option(text) == expected


@pytest.mark.parametrize("text", ["a", "0,0", "-1,0", ","])
def test_parse_gpu_option_rejects(text) -> None:
    with pytest.raises(DeviceError):
        parse_gpu_option(text)


def test_auto_never_picks_a_software_device(monkeypatch) -> None:
    monkeypatch.setattr(dev, "vulkan_devices", lambda: [LAVAPIPE])
    assert select_devices(None)[0].is_gpu is False
    monkeypatch.setattr(dev, "vulkan_devices", lambda: [LAVAPIPE, INTEGRATED, DISCRETE])
    assert select_devices("auto") == [DISCRETE]
    monkeypatch.setattr(dev, "vulkan_devices", lambda: [LAVAPIPE, INTEGRATED])
    assert select_devices(None) == [INTEGRATED]
    # Explicitly chosen, a software device is used.
    monkeypatch.setattr(dev, "vulkan_devices", lambda: [LAVAPIPE])
    assert select_devices("0") == [LAVAPIPE]
    with pytest.raises(DeviceError, match="no Vulkan device 3"):
        select_devices("3")


def test_this_machines_devices_are_classified() -> None:
    found = dev.vulkan_devices()
    for device in found:
        if any(word in device.name.lower() for word in ("llvmpipe", "lavapipe", "swiftshader")):
            assert device.is_software
    if all(d.is_software for d in found):
        assert not dev.auto_device().is_gpu
    assert dev.cpu_device().heap_budget_mb > 0


def _software_vulkan() -> Device:
    soft = [d for d in dev.vulkan_devices() if d.is_software]
    assert soft, "no software Vulkan device: install mesa-vulkan-drivers (lavapipe) to test the Vulkan path"
    return soft[0]


def test_vulkan_path_on_lavapipe_matches_cpu_fp32(photo_crop) -> None:
    files = resolve_model("realesr-animevideov3-x4")
    src = photo_crop("chelsea.png", 100, 150, 16, 20).astype(np.float32) / 255.0
    cpu = Engine([Session(files, dev.cpu_device(), fp32=True)]).run_model(src, Options(tile=0))
    vk_session = Session(files, _software_vulkan(), fp32=True)
    assert vk_session._net.opt.use_vulkan_compute  # it really ran on Vulkan
    vk = Engine([vk_session]).run_model(src, Options(tile=0))
    assert vk.shape == cpu.shape == (64, 80, 3)
    assert np.abs(vk - cpu).max() < 1e-4


def test_vulkan_fp16_default_is_close_to_fp32(photo_crop) -> None:
    files = resolve_model("realesr-animevideov3-x2")
    src = photo_crop("coffee.png", 100, 150, 16, 16).astype(np.float32) / 255.0
    device = _software_vulkan()
    fp32 = Engine([Session(files, device, fp32=True)]).run_model(src, Options())
    fp16 = Engine([Session(files, device, fp32=False)]).run_model(src, Options())
    mse = float(np.mean((fp32 - fp16) ** 2))
    assert mse > 0 or np.array_equal(fp32, fp16)
    assert 10 * np.log10(1.0 / max(mse, 1e-20)) >= 45


def test_cpu_and_lavapipe_share_the_tiles_of_one_image(photo_crop) -> None:
    """`-g 0,1`-style sharing, here with the CPU and lavapipe as the two devices."""
    files = resolve_model("realesr-animevideov3-x2")
    src = photo_crop("astronaut.png", 60, 200, 24, 24)
    cpu = Session(files, dev.cpu_device(), fp32=True)
    shared = Engine([cpu, Session(files, _software_vulkan(), fp32=True)]).run_model(src, Options(tile=8))
    alone = Engine([cpu]).run_model(src, Options(tile=8))
    assert np.abs(shared.astype(int) - alone.astype(int)).max() <= 1


def test_hardware_gpu_matches_cpu_when_present(photo_crop) -> None:
    hardware = [d for d in dev.vulkan_devices() if not d.is_software]
    if not hardware:
        pytest.skip("no hardware Vulkan GPU on this machine (the Vulkan path is tested on lavapipe above)")
    files = resolve_model("realesr-animevideov3-x4")
    src = photo_crop("chelsea.png", 100, 150, 32, 32).astype(np.float32) / 255.0
    cpu = Engine([Session(files, dev.cpu_device(), fp32=True)]).run_model(src, Options())
    gpu = Engine([Session(files, hardware[0], fp32=True)]).run_model(src, Options())
    assert np.abs(gpu - cpu).max() < 1e-3


def test_rrdbnet_segments_on_lavapipe_match_cpu(photo_crop) -> None:
    """The segment engine (blobs fed and extracted in the middle of the net) on Vulkan."""
    files = resolve_model("realesrgan-x4plus-anime")
    src = photo_crop("chelsea.png", 120, 160, 7, 9).astype(np.float32) / 255.0
    vk = Engine([Session(files, _software_vulkan(), fp32=True)])
    cpu = Engine([Session(files, dev.cpu_device(), fp32=True, threads=1)])
    out = vk.run_model(src, Options(tile=16))
    assert out.shape == (28, 36, 3)
    assert len(vk.sessions[0].segmenter.schedule(27, 29, vk.budget / 2, 16)) > 1  # really in segments
    assert np.abs(out - cpu.run_model(src, Options(tile=16))).max() < 1e-4
