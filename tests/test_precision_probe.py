"""Precision per model and device from a measurement, and no NaN/inf ever written as pixels.

Why: fp16 storage/arithmetic overflows where a model's activations pass 65504 (a community model's
tolerance is unknown until measured). A synthetic x2 net whose first convolution reaches ~1e6
(then scaled back) is exact in fp32 and inf in fp16: lavapipe stores fp16, so the probe must
choose fp32 there, with a note, and the picture must equal the CPU's fp32 one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hostile_support import overflow_model
from realesr_portable import cli
from realesr_portable.api import Upscaler
from realesr_portable.image.io import Picture
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.precision_probe import MIN_PSNR_DB, Verdict, cache_file, choose_precision, compare, probe_input
from realesr_portable.run.tiler import NonFiniteOutputError, TileJob, Window

def test_compare_states_its_bound() -> None:
    x = probe_input(3, (0.0, 1.0))
    assert x.shape == (3, 32, 32) and 0 <= x.min() < 0.2 and 0.8 < x.max() <= 1
    assert compare(x, x, (0.0, 1.0)) == Verdict(False, float("inf"))
    close = compare(x + 1e-3, x, (0.0, 1.0))
    assert not close.force_fp32 and abs(close.psnr_db - 60.0) < 0.5
    far = compare(x + 0.02, x, (0.0, 1.0))  # ~34 dB: the H200's animevideov3 loss
    assert far.force_fp32 and far.psnr_db < MIN_PSNR_DB
    broken = x.copy()
    broken[0, 3, 3] = np.inf
    assert compare(broken, x, (0.0, 1.0)) == Verdict(True, float("-inf"))
    assert compare(x * 255, x * 255 + 2, (0.0, 255.0)).force_fp32  # in the model's own range


def test_the_verdict_is_cached_per_model_and_device(tmp_path: Path) -> None:
    """A NaN-producing reduced run (what fp16 gives this net on a GPU) forces fp32; the verdict
    then comes from the cache (the fp32 reference is not built again); other devices measure anew;
    a corrupt cache is ignored and rewritten."""
    model = resolve_model(overflow_model(tmp_path))
    cache = tmp_path / "cache" / "precision.json"
    nan_run = lambda x: np.full((3, 64, 64), np.nan, np.float32)  # noqa: E731
    exact = lambda: (lambda x: np.zeros((3, 64, 64), np.float32))  # noqa: E731

    def never():
        raise AssertionError("measured again although cached")

    assert choose_precision(model, "dev A", nan_run, exact, cache=cache).force_fp32
    assert choose_precision(model, "dev A", nan_run, never, cache=cache).force_fp32
    assert not choose_precision(model, "dev B", exact(), exact, cache=cache).force_fp32
    assert len(json.loads(cache.read_text())["verdicts"]) == 2
    other = choose_precision(model, "dev A", nan_run, exact, weights=b"blended", cache=cache)  # --dn weights: another model
    assert other.force_fp32 and len(json.loads(cache.read_text())["verdicts"]) == 3
    for junk in (b"\xff\x00", b"[1, 2]", b'{"version": 1, "verdicts": {"x": 3}}', b"9" * 5000):
        cache.write_bytes(junk)
        assert choose_precision(model, "dev A", nan_run, exact, cache=cache).force_fp32
        assert json.loads(cache.read_text())["version"] == 1


def _vulkan_index() -> int:
    import ncnn

    if ncnn.get_gpu_count() == 0:
        pytest.skip("no Vulkan device, not even lavapipe (the decision itself is tested on the CPU above)")
    return 0


def test_lavapipe_fp16_overflow_runs_at_fp32_with_a_note(tmp_path: Path) -> None:
    param = overflow_model(tmp_path)
    rgb = (np.random.default_rng(1).random((24, 28, 3)) * 255).astype(np.uint8)
    gpu = Upscaler(model=param, gpu=_vulkan_index())
    assert any("differs from fp32" in note and "NaN/inf" in note for note in gpu.notes), gpu.notes
    got = gpu.upscale(rgb)
    cpu = Upscaler(model=param, gpu=-1, fp32=True).upscale(rgb)
    assert np.abs(got.astype(int) - cpu.astype(int)).max() <= 1
    assert str(cache_file()).startswith(str(Path(__import__("os").environ["REALESR_PORTABLE_CACHE"])))
    again = Upscaler(model=param, gpu=_vulkan_index())  # cached: same verdict, same note
    assert again.notes == gpu.notes


def test_an_image_that_overflows_after_the_probe_passed_is_retried_at_fp32(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe at load said fp16 is fine (seeded in the cache, as a probe whose activations
    stayed in range would), yet this image's activations overflow fp16 on lavapipe: the image is
    redone at fp32 (the CPU's pixels), a note says so, and the next load starts at fp32."""
    from realesr_portable.device.select import select_devices
    from realesr_portable.run.precision_probe import device_key

    monkeypatch.setenv("REALESR_PORTABLE_CACHE", str(tmp_path / "cache"))  # not the other tests' verdicts
    param = overflow_model(tmp_path)
    device = select_devices(_vulkan_index())[0]
    fine = lambda x: np.zeros((3, 64, 64), np.float32)  # noqa: E731
    assert not choose_precision(resolve_model(param), device_key(device), fine, lambda: fine).force_fp32
    rgb = (np.random.default_rng(2).random((24, 28, 3)) * 255).astype(np.uint8)
    gpu = Upscaler(model=param, gpu=_vulkan_index())
    assert gpu.notes == [] and not gpu.engine.sessions[0].fp32  # fp16 storage, as the seeded verdict says
    out = gpu.upscale_picture(Picture(rgb, None))
    cpu = Upscaler(model=param, gpu=-1, fp32=True).upscale(rgb)
    assert np.abs(out.color.astype(int) - cpu.astype(int)).max() <= 1
    assert gpu.engine.sessions[0].fp32
    (note,) = [n for n in out.notes if "NaN/inf on this image" in n]
    assert "running at fp32" in note and "\n" not in note
    again = Upscaler(model=param, gpu=_vulkan_index())  # the overflow was remembered
    assert again.engine.sessions[0].fp32 and any("NaN/inf" in n for n in again.notes)


def test_a_model_fine_in_fp16_keeps_it_on_lavapipe(tmp_path: Path) -> None:
    param = overflow_model(tmp_path, up=1.0)  # activations ~1: fp16 is close to fp32
    assert Upscaler(model=param, gpu=_vulkan_index()).notes == []


def test_non_finite_output_is_never_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = np.zeros((4, 4, 3), np.uint8)
    job = TileJob(src=src, out=np.zeros((8, 8, 3), np.uint8), scale=2, pad=0, size_multiple=1, src_max=255.0, out_max=255.0)
    crop = np.zeros((3, 8, 8), np.float32)
    crop[1, 2, 2] = np.nan
    with pytest.raises(NonFiniteOutputError):
        job.write(Window(0, 4, 0, 4), crop)
    # weights beyond fp32's range: inf even at fp32 -> one line, exit non-zero, no file
    param = overflow_model(tmp_path, up=1e38)
    from PIL import Image

    Image.fromarray((np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code = cli.main(["-q", "-g", "-1", "-i", str(tmp_path / "in.png"), "-o", str(out), "-m", str(param)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "Traceback" not in err, err  # the batch summary, then one line per failed file
    assert [line for line in err.splitlines() if "NaN/inf" in line] == err.splitlines()[1:2], err
    assert not out.exists()
