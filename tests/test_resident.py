"""Device-resident segments (run/resident.py, deploy/native/resident.cpp) on lavapipe.

The same path runs on any Vulkan GPU; lavapipe checks what it computes: equal to the CPU run in
fp32 (within 1e-4), equal to the host runner on the same device (same ncnn layers, so within
1e-6) at the default fp16 storage too, on plans with several segments and tiles, and a
realistic frame at the default options. Wrong programs and a wrong library give one-line errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy_support import build_runner
from realesr_portable.api import Upscaler
from realesr_portable.device.precision import ncnn_options
from realesr_portable.device.select import Device, cpu_device, vulkan_devices
from realesr_portable.model.catalog import resolve_model
from realesr_portable.plan.segments import Segment
from realesr_portable.run.engine import Engine, Options
from realesr_portable.run.resident import ENV, ResidentError, ResidentNet, program
from realesr_portable.run.session import Session

LIBRARY = "librealesr_portable_resident.so"


@pytest.fixture(scope="module")
def library() -> Path:
    path = build_runner("x86_64").parent / LIBRARY
    assert path.is_file(), f"deploy/build.sh did not build {LIBRARY}"
    return path


@pytest.fixture(scope="module")
def lavapipe() -> Device:
    soft = [d for d in vulkan_devices() if d.is_software]
    assert soft, "no software Vulkan device: install mesa-vulkan-drivers (lavapipe)"
    return soft[0]


def _recording(engine: Engine) -> list[str]:
    """Record the programs the engine hands to its resident runner."""
    assert engine.resident is not None
    programs: list[str] = []
    run = engine.resident.run

    def recorded(text: str, *args):
        programs.append(text)
        return run(text, *args)

    engine.resident.run = recorded  # type: ignore[method-assign]
    return programs


CASES = [("realesr-animevideov3-x4", (40, 52), 16), ("realesrgan-x4plus-anime", (20, 28), 12)]


@pytest.mark.parametrize("name,size,tile", CASES, ids=[c[0] for c in CASES])
def test_resident_equals_the_cpu_run_and_the_host_runner(library: Path, lavapipe: Device, photo_crop, name: str,
                                                          size: tuple[int, int], tile: int) -> None:
    files = resolve_model(name)
    src = photo_crop("coffee.png", 150, 200, *size).astype(np.float32) / 255.0
    cpu = Engine([Session(files, cpu_device(), fp32=True, threads=1)]).run_model(src, Options(tile=tile))
    for fp32 in (True, False):
        session = Session(files, lavapipe, fp32=fp32, threads=1)
        engine = Engine([session], resident=library)
        programs = _recording(engine)
        out = engine.run_model(src, Options(tile=tile))
        host = Engine([session]).run_model(src, Options(tile=tile))
        # the plan had several segments, each in several tiles
        text = programs[0]
        assert text.count("\nsegment ") >= 2 and text.count("\nwindow ") >= 2 * text.count("\nsegment ")
        assert out.shape == cpu.shape == host.shape
        assert np.abs(out - host).max() <= 1e-6, "the resident runner and the host runner differ"
        if fp32:
            assert np.abs(out - cpu).max() <= 1e-4


def test_a_realistic_frame_at_the_default_options(library: Path, lavapipe: Device, photo_crop) -> None:
    """A 256x144 frame, fp16 storage (the Vulkan default), tiles of 64: the precision the GPU
    policy promises (>= 50 dB against the CPU's fp32) and the host runner's pixels."""
    files = resolve_model("realesr-animevideov3-x4")
    src = photo_crop("astronaut.png", 100, 120, 144, 256)
    reference = Engine([Session(files, cpu_device(), fp32=True, threads=2)]).run_model(src, Options(tile=64))
    session = Session(files, lavapipe, threads=2)
    assert ncnn_options(lavapipe).use_fp16_storage
    engine = Engine([session], resident=library)
    programs = _recording(engine)
    out = engine.run_model(src, Options(tile=64))
    assert programs and programs[0].count("\nwindow ") > 1
    host = Engine([session]).run_model(src, Options(tile=64))
    assert np.array_equal(out, host)
    mse = np.mean((out.astype(np.float64) - reference) ** 2)
    assert 10 * np.log10(255.0**2 / max(mse, 1e-12)) >= 50


def test_the_program_covers_the_box_or_the_whole_tile_after_a_global_segment() -> None:
    local = Segment(0, 1, ("in",), ("mid",), ("in",), (2, 2, 2, 2), 1, 1.0, 1.0, 1)
    opaque = Segment(1, 2, ("mid",), ("out",), ("mid",), None, 1, 1.0, 1.0, 2)
    keep = lambda stop: {"mid"} if stop == 1 else set()  # noqa: E731
    text, covered = program([(local, 4)], lambda b: b, keep, "in", "mid", 10, 12, (2, 9, 3, 11))
    assert covered == (2, 9, 3, 11)
    assert text.splitlines()[0] == "input in" and text.splitlines()[-1] == "result mid"
    windows = [list(map(int, line.split()[1:])) for line in text.splitlines() if line.startswith("window")]
    assert windows[0] == [2, 6, 3, 7, 0, 8, 1, 9]  # the core, then the core grown by the halo, clipped
    assert len(windows) == 2 * 2
    _, covered = program([(local, 4), (opaque, 0)], lambda b: b, keep, "in", "out", 10, 12, (2, 9, 3, 11))
    assert covered == (0, 10, 0, 12)  # a segment that reads the whole image fills all of it


def _net(library: Path, lavapipe: Device) -> tuple[ResidentNet, str]:
    session = Session(resolve_model("realesr-animevideov3-x2"), lavapipe, fp32=True, threads=1)
    net = ResidentNet(library, session.param_text, session.weights, lavapipe.index, ncnn_options(lavapipe, force_fp32=True))
    root = session.segmenter.graph.root
    good, _ = program([(session.segmenter.segment(0, len(session.graph.layers) - 1), 0)], root, lambda _: set(),
                      session.spec.input_blob, session.spec.output_blob, 8, 8, (0, 8, 0, 8))
    return net, good


BAD_PROGRAMS = {
    "unknown line": lambda good: good.replace("segment", "sgement", 1),
    "is not stored": lambda good: good.replace("result ", "result nothing_here_", 1),
    "has no blob": lambda good: good.replace("\nout ", "\nout no_such_blob_", 1),
    "a crop outside": lambda good: good.replace("window 0 8 0 8 0 8 0 8", "window 0 8 0 8 0 80 0 8"),
    "needs input": lambda good: "\n".join(line for line in good.splitlines() if not line.startswith("input")),
}


@pytest.mark.parametrize("reason", list(BAD_PROGRAMS))
def test_a_wrong_program_is_refused_in_one_line(library: Path, lavapipe: Device, reason: str) -> None:
    net, good = _net(library, lavapipe)
    chw = np.zeros((3, 8, 8), np.float32)
    assert net.run(good, chw, (3, 16, 16)).shape == (3, 16, 16)
    bad = BAD_PROGRAMS[reason](good)
    assert bad != good
    with pytest.raises(ResidentError, match=reason) as caught:
        net.run(bad, chw, (3, 16, 16))
    assert "\n" not in str(caught.value)
    with pytest.raises(ResidentError, match="the plan expected"):
        net.run(good, chw, (3, 16, 17))


def test_a_wrong_library_is_one_line_and_exit_1(lavapipe: Device, tmp_path: Path) -> None:
    fake = tmp_path / "libnot.so"
    fake.write_text("not a shared library")
    src = tmp_path / "in.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(src)
    env = {**os.environ, ENV: str(fake)}
    proc = subprocess.run([sys.executable, "-m", "realesr_portable", "-i", str(src), "-o", str(tmp_path / "out.png"),
                           "-g", str(lavapipe.index), "-m", "realesr-animevideov3-x2", "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ENV in lines[0] and "deploy/build.sh" in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_two_images_in_flight_give_each_its_own_pixels(library: Path, lavapipe: Device, photo_crop) -> None:
    """The batch's two proc threads call the runner at once (ctypes lets go of the GIL): each
    image must come back as it does alone."""
    files = resolve_model("realesr-animevideov3-x2")
    engine = Engine([Session(files, lavapipe, threads=1)], resident=library)
    images = [photo_crop("coffee.png", 100 + 30 * i, 150, 36, 44) for i in range(4)]
    alone = [engine.run_model(img, Options(tile=16)) for img in images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda img: engine.run_model(img, Options(tile=16)), images))
    for a, b in zip(alone, together):
        assert np.array_equal(a, b)
    assert not np.array_equal(alone[0], alone[1])


def test_the_upscaler_says_it_uses_the_resident_runner(library: Path, lavapipe: Device, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(library))
    upscaler = Upscaler("realesr-animevideov3-x2", gpu=lavapipe.index)
    assert upscaler.engine.resident is not None and upscaler.overlaps_calls
    assert "device-resident segments" in upscaler.description
    monkeypatch.delenv(ENV)
    plain = Upscaler("realesr-animevideov3-x2", gpu=lavapipe.index)
    assert plain.engine.resident is None and not plain.overlaps_calls
    assert Upscaler("realesr-animevideov3-x2", gpu=-1).engine.resident is None


def test_the_planner_counts_the_maps_the_resident_joins_hold(library: Path, lavapipe: Device) -> None:
    """While the runner joins tile cores it holds the joined rows beside the segment's input and
    output maps: under one budget its super-tiles are smaller than the host runner's."""
    session = Session(resolve_model("realesr-animevideov3-x2"), lavapipe, threads=1)
    host = Engine([session], max_memory=64 << 20)
    resident = Engine([session], max_memory=64 << 20, resident=library)
    assert resident.resident is not None and host.resident is None
    shape = (1080, 1920)
    assert 0 < resident.pieces(shape, Options()) < host.pieces(shape, Options())
