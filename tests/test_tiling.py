"""Tile arithmetic, mirrored borders, size multiples, OOM retry and multi-device sharing.

These use exact stand-in runners (no ncnn) so any off-by-one in the tiler shows as a mismatch;
tests/test_tiling_parity.py checks the real models.
"""

from __future__ import annotations


import numpy as np
import pytest

from realesr_portable.run.session import TileError
from realesr_portable.run.tiler import TileJob, crop_runner, reflect_indices, upscale_tiled, windows


def nearest_x(scale: int):
    """A 'model' with no receptive field: nearest-neighbour upscaling."""

    def run(chw: np.ndarray) -> np.ndarray:
        return chw.repeat(scale, axis=1).repeat(scale, axis=2)

    return crop_runner(run, scale)


def _box_blur_x2(chw: np.ndarray) -> np.ndarray:
    """A 'model' with a 3x3 receptive field (zero-padded like a conv), then x2 nearest."""
    padded = np.pad(chw, ((0, 0), (1, 1), (1, 1)))
    h, w = chw.shape[1:]
    blurred = sum(padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return blurred.repeat(2, axis=1).repeat(2, axis=2)


box_blur_x2 = crop_runner(_box_blur_x2, 2)


def _job(src: np.ndarray, scale: int, pad: int, multiple: int = 1) -> TileJob:
    out = np.zeros((src.shape[0] * scale, src.shape[1] * scale, src.shape[2]), src.dtype)
    maximum = 255.0 if src.dtype == np.uint8 else 1.0
    return TileJob(src, out, scale, pad, multiple, maximum, maximum)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 40])
def test_reflect_indices_match_numpy_reflect(size: int) -> None:
    data = np.arange(size)
    for pad in (0, 1, 5, 23):
        expected = np.pad(data, pad, mode="reflect") if size > 1 else np.zeros(size + 2 * pad, int)
        assert np.array_equal(data[reflect_indices(-pad, size + pad, size)], expected)


def test_windows_cover_the_image_exactly_once() -> None:
    seen = np.zeros((37, 50), int)
    for strip in windows(37, 50, 16):
        for win in strip:
            seen[win.y0 : win.y1, win.x0 : win.x1] += 1
    assert (seen == 1).all()
    assert len(windows(37, 50, 0)) == 1 and len(windows(37, 50, 0)[0]) == 1


@pytest.mark.parametrize("tile,multiple", [(5, 1), (8, 4), (13, 2), (0, 4)])
def test_tiled_nearest_is_exact_for_odd_sizes_and_multiples(tile: int, multiple: int) -> None:
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    seen_shapes = []

    def run(chw: np.ndarray, box) -> np.ndarray:
        seen_shapes.append(chw.shape)
        return nearest_x(3)(chw, box)

    job = _job(src, 3, pad=2, multiple=multiple)
    upscale_tiled(job, run, tile)
    assert np.array_equal(job.out, src.repeat(3, axis=0).repeat(3, axis=1))
    assert all(h % multiple == 0 and w % multiple == 0 for _, h, w in seen_shapes)


def test_tiled_equals_untiled_when_pad_covers_the_receptive_field() -> None:
    rng = np.random.default_rng(2)
    src = rng.random((30, 26, 3), dtype=np.float32)
    whole = _job(src, 2, pad=1)
    upscale_tiled(whole, box_blur_x2, 0)
    tiled = _job(src, 2, pad=1)
    upscale_tiled(tiled, box_blur_x2, 7)
    assert np.abs(whole.out - tiled.out).max() < 1e-6
    no_pad = _job(src, 2, pad=0)
    upscale_tiled(no_pad, box_blur_x2, 7)
    assert np.abs(whole.out - no_pad.out).max() > 0.05  # without padding, seams appear


def test_out_of_memory_tile_is_split_and_retried() -> None:
    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    calls = []

    def small_only(chw: np.ndarray, box) -> np.ndarray:
        calls.append(chw.shape)
        if max(chw.shape[1:]) > 30:
            raise TileError("out of memory (simulated)")
        return nearest_x(2)(chw, box)

    job = _job(src, 2, pad=2)
    retries = upscale_tiled(job, small_only, 40)
    assert retries >= 1
    assert np.array_equal(job.out, src.repeat(2, axis=0).repeat(2, axis=1))


def test_tile_that_never_fits_raises() -> None:
    def always_fail(chw: np.ndarray, box) -> np.ndarray:
        raise TileError("out of memory (simulated)")

    with pytest.raises(TileError, match="even at"):
        upscale_tiled(_job(np.zeros((40, 40, 3), np.uint8), 2, pad=2), always_fail, 40)


def test_uint16_is_processed_in_float_and_rounded() -> None:
    src = np.array([[[0, 1, 65535], [30000, 257, 12345]]], dtype=np.uint16)
    job = _job(src, 2, pad=1)
    job = TileJob(job.src, job.out, 2, 1, 1, 65535.0, 65535.0)
    upscale_tiled(job, nearest_x(2), 0)
    assert job.out.dtype == np.uint16
    assert np.array_equal(job.out, src.repeat(2, axis=0).repeat(2, axis=1))


def test_a_tile_input_ncnn_cannot_allocate_is_a_tile_error(monkeypatch) -> None:
    """ncnn hands back an empty Mat when it cannot allocate: the tiler must hear "retry smaller"
    (TileError), not a numpy broadcast error."""
    import ncnn

    from realesr_portable.device.select import cpu_device
    from realesr_portable.model.catalog import resolve_model
    from realesr_portable.run.session import Session

    session = Session(resolve_model("realesr-animevideov3-x2"), cpu_device(), fp32=True, threads=1)
    tile = np.zeros((3, 12, 12), np.float32)
    assert session.extract({session.spec.input_blob: tile}, [session.spec.output_blob])[0].shape == (3, 24, 24)
    real_mat = ncnn.Mat
    monkeypatch.setattr(ncnn, "Mat", lambda *args: real_mat() if len(args) == 3 else real_mat(*args))
    with pytest.raises(TileError, match="out of memory"):
        session.extract({session.spec.input_blob: tile}, [session.spec.output_blob])
