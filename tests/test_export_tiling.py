"""Tile padding in the sidecar: measured or receptive-field based, and enough for seam-free tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export_support import rrdb_info, small_model, srvgg_info
from realesr_portable.api import Upscaler
from realesr_portable.convert.api import export_state_dict
from realesr_portable.convert.detect import ArchInfo
from realesr_portable.convert.direct_writer import write_ncnn
from realesr_portable.convert.sidecar import PAD_STEP, error_by_distance, measure_tile_pad, receptive_radius
from realesr_portable.convert.verify import NcnnRunner


def _box_blur(radius: int):
    """A zero-padded (2r+1)-wide box blur: tile cuts change outputs exactly up to r pixels in."""

    def run(chw: np.ndarray) -> np.ndarray:
        padded = np.pad(chw, ((0, 0), (radius, radius), (radius, radius)))
        out = np.zeros_like(chw)
        for dy in range(2 * radius + 1):
            for dx in range(2 * radius + 1):
                out += padded[:, dy : dy + chw.shape[1], dx : dx + chw.shape[2]]
        return out / (2 * radius + 1) ** 2

    return run


@pytest.mark.parametrize("radius", [3, 11])
def test_measured_pad_covers_a_known_reach(radius: int) -> None:
    errors = error_by_distance(_box_blur(radius), scale=1, width=24)
    assert errors[radius - 1] > 0 and np.all(errors[radius:] == 0)
    choice = measure_tile_pad(_box_blur(radius), scale=1, limit=64)
    assert choice.pad % PAD_STEP == 0 and radius <= choice.pad < radius + PAD_STEP
    assert choice.worst_error == 0 and choice.seam_free


def test_unreached_tolerance_reports_the_remaining_error() -> None:
    choice = measure_tile_pad(_box_blur(30), scale=1, limit=64, max_pad=16)
    assert choice.pad == 16 and not choice.seam_free and choice.worst_error > 0
    assert measure_tile_pad(_box_blur(30), scale=1, limit=5).pad == 5  # a receptive field below 8 px is exact


def test_srvgg_receptive_field_is_exact() -> None:
    info = srvgg_info(3, convs=4)
    run = NcnnRunner(write_ncnn(info, small_model(info).state_dict(), fp16=False), exact=True, scale=info.scale)
    errors = error_by_distance(run, scale=3, width=16)
    radius = receptive_radius(info)
    assert radius == 4 + 2
    assert errors[radius - 1] > 0 and np.all(errors[radius:] < 1e-5)  # float noise only


@pytest.mark.parametrize("info", [rrdb_info(2), srvgg_info(4)], ids=["rrdbnet-x2", "srvgg-x4"])
def test_runtime_tiles_seam_free_with_the_declared_pad(info: ArchInfo, tmp_path: Path, photo_crop) -> None:
    result = export_state_dict(small_model(info, seed=7).state_dict(), tmp_path, "m", fp16=False, verify=False)
    image = photo_crop("astronaut.png", 150, 150, 40, 44).astype(np.float32) / 255.0
    whole = Upscaler(result.param, gpu=-1, fp32=True, tile=64, threads=1).upscale(image)
    tiled = Upscaler(result.param, gpu=-1, fp32=True, tile=16, threads=1).upscale(image)
    assert tiled.shape == whole.shape == (40 * info.scale, 44 * info.scale, 3)
    assert np.abs(tiled - whole).max() <= 1.0 / 255.0


@pytest.mark.slow
def test_measured_pad_is_seam_free_for_official_anime_weights(tmp_path: Path, photo_crop) -> None:
    """Real weights on a photo other than the probe: tiles at the measured pad stay within one level."""
    from realesr_portable.convert.api import convert_file
    from realesr_portable.model.catalog import OFFICIAL, official_model_dir

    param = official_model_dir() / f"{OFFICIAL['realesrgan-x4plus-anime'][0]}.param"
    result = convert_file(param, tmp_path, name="anime", verify=False)
    image = photo_crop("chelsea.png", 20, 100, 176, 176)
    whole = Upscaler(result.param, gpu=-1, tile=176, threads=1).upscale(image)
    tiled = Upscaler(result.param, gpu=-1, tile=64, threads=1).upscale(image)
    assert np.abs(whole.astype(np.int16) - tiled).max() <= 1
