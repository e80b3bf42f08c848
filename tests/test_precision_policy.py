"""Precision policy (issue 16 item 1): every Vulkan device gets fp16 storage with fp32 arithmetic,
the CPU fp32; fp16 arithmetic only when asked. The policy is tested directly because lavapipe does
not reproduce the fp16-arithmetic error seen on an NVIDIA GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_portable.device import select as dev
from realesr_portable.device.precision import ncnn_options
from realesr_portable.device.select import Device
from realesr_portable.model.catalog import OFFICIAL, resolve_model
from realesr_portable.run.session import Session

# Device descriptions as select.vulkan_devices() builds them from ncnn's GpuInfo (type 0-3).
GPUS = [
    Device(0, "NVIDIA H200", "discrete", 140_000),
    Device(1, "Intel(R) UHD Graphics 770", "integrated", 8_000),
    Device(2, "Virtio-GPU Venus", "virtual", 4_000),
    Device(3, "llvmpipe (LLVM 15.0.6, 256 bits)", "software", 1_024),
]


@pytest.mark.parametrize("device", GPUS, ids=lambda d: d.kind)
def test_every_vulkan_device_gets_fp16_storage_fp32_arithmetic(device: Device) -> None:
    opts = ncnn_options(device)
    assert opts.use_vulkan_compute
    assert opts.use_fp16_storage and opts.use_fp16_packed
    assert not opts.use_fp16_arithmetic
    assert not (opts.use_bf16_storage or opts.use_bf16_packed)
    assert opts.describe() == "fp16 storage, fp32 arithmetic"


@pytest.mark.parametrize("device", GPUS, ids=lambda d: d.kind)
def test_fp16_arithmetic_only_when_asked_and_fp32_wins(device: Device) -> None:
    assert ncnn_options(device, fp16_arith=True).use_fp16_arithmetic
    forced = ncnn_options(device, fp16_arith=True, force_fp32=True)
    assert not (forced.use_fp16_arithmetic or forced.use_fp16_storage or forced.use_fp16_packed)
    assert forced.describe() == "fp32"


def test_cpu_is_fp32_even_with_fp16_arith() -> None:
    for fp16_arith in (False, True):
        opts = ncnn_options(dev.cpu_device(), fp16_arith=fp16_arith)
        assert not opts.use_vulkan_compute
        assert not (opts.use_fp16_storage or opts.use_fp16_packed or opts.use_fp16_arithmetic)
        assert not (opts.use_bf16_storage or opts.use_bf16_packed)


def _lavapipe() -> Device:
    soft = [d for d in dev.vulkan_devices() if d.is_software]
    assert soft, "no software Vulkan device: install mesa-vulkan-drivers (lavapipe) to test the Vulkan path"
    return soft[0]


@pytest.mark.parametrize("fp16_arith", [False, True])
def test_session_applies_the_policy_on_lavapipe(fp16_arith: bool) -> None:
    session = Session(resolve_model("realesr-animevideov3-x2"), _lavapipe(), fp16_arith=fp16_arith)
    opt = session._net.opt
    assert opt.use_vulkan_compute
    assert opt.use_fp16_storage and opt.use_fp16_packed
    assert opt.use_fp16_arithmetic == fp16_arith
    assert not opt.use_bf16_storage
    cpu = Session(resolve_model("realesr-animevideov3-x2"), dev.cpu_device(), fp16_arith=fp16_arith)
    assert not (cpu._net.opt.use_fp16_storage or cpu._net.opt.use_fp16_arithmetic)


def _whole_photo(skimage_photo, size: tuple[int, int]) -> np.ndarray:
    """The whole coffee photo (600x400) resized: a realistic frame, not a crop; CHW in [0, 1]."""
    with Image.open(skimage_photo("coffee.png")) as im:
        rgb = np.asarray(im.convert("RGB").resize(size, Image.BICUBIC))
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_models_at_default_options_reach_50db_on_lavapipe(name: str, skimage_photo) -> None:
    """Default (policy) options on lavapipe vs fp32 on the CPU, one whole frame, no tiles.

    Sizes keep the file under ~60 s on lavapipe (~20x slower than ncnn's CPU path): 480x320 for the
    animevideov3 models (~10 s each), 96x64 for the RRDBNet ones (~40x the cost per pixel)."""
    files = resolve_model(name)
    size = (96, 64) if files.spec.arch == "RRDBNet" else (480, 320)
    src = _whole_photo(skimage_photo, size)
    ours = Session(files, _lavapipe()).run(src)
    ref = Session(files, dev.cpu_device(), fp32=True).run(src)
    assert ours.shape == ref.shape == (3, size[1] * files.spec.scale, size[0] * files.spec.scale)
    mse = float(np.mean((np.clip(ours, 0, 1) - np.clip(ref, 0, 1)) ** 2))
    assert mse > 0  # really two different paths
    assert 10 * np.log10(1.0 / mse) >= 50


@pytest.mark.parametrize("fp16_arith", [False, True])
def test_api_and_cli_pass_fp16_arith_to_the_session(fp16_arith: bool, tmp_path: Path, photo_crop) -> None:
    from typer.testing import CliRunner

    from realesr_portable.api import Upscaler
    from realesr_portable.cli import app

    index = str(_lavapipe().index)
    up = Upscaler("realesr-animevideov3-x2", gpu=index, fp16_arith=fp16_arith)
    assert up.engine.sessions[0]._net.opt.use_fp16_arithmetic == fp16_arith
    assert up.settings()["--fp16-arith"] == fp16_arith
    arith = "fp16 arithmetic" if fp16_arith else "fp32 arithmetic"
    assert f"fp16 storage, {arith}" in up.description
    src = tmp_path / "a.png"
    Image.fromarray(photo_crop("coffee.png", 100, 200, 12, 12)).save(src)
    args = ["-i", str(src), "-o", str(tmp_path / "b.png"), "-n", "realesr-animevideov3-x2", "-g", index]
    result = CliRunner().invoke(app, args + (["--fp16-arith"] if fp16_arith else []))
    assert result.exit_code == 0, result.output
    assert f"fp16 storage, {arith}" in result.output  # the device line names the precision used
    with Image.open(tmp_path / "b.png") as im:
        assert im.size == (24, 24)
