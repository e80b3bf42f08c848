"""Tiled == untiled within 1/255 for every bundled model, borders included, at the model's own
mirrored pre-pad, on real photos. The untiled run is the same runtime with one tile."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from realesr_portable.run import engine as engine_module
from realesr_portable.device.select import cpu_device
from realesr_portable.run.engine import Engine, Options
from realesr_portable.model.catalog import ModelFiles, resolve_model
from realesr_portable.run.session import Session

LEVEL = 1.0 / 255.0


def _engine(name: str, **session_kw) -> Engine:
    return Engine([Session(resolve_model(name), cpu_device(), **session_kw)])


def _parity(name: str, src: np.ndarray, tile: int) -> float:
    engine = _engine(name)
    whole = engine.run_model(src, Options(tile=0))
    tiled = engine.run_model(src, Options(tile=tile))
    assert whole.shape == tiled.shape == (src.shape[0] * engine.spec.scale, src.shape[1] * engine.spec.scale, 3)
    return float(np.abs(whole - tiled).max())


@pytest.mark.parametrize("name", ["realesr-animevideov3-x2", "realesr-animevideov3-x3", "realesr-animevideov3-x4"])
def test_animevideov3_tiles_are_seam_free(name: str, photo_crop) -> None:
    src = photo_crop("chelsea.png", 90, 140, 40, 52).astype(np.float32) / 255.0
    assert _parity(name, src, 16) <= LEVEL


def test_super_tiles_need_the_declared_padding(photo_crop, monkeypatch) -> None:
    """Super-tiles (images whose features outgrow the budget) carry the spec's seam-free context:
    with it they match one piece; 8 px leaves visible seams."""
    src = photo_crop("astronaut.png", 100, 180, 40, 40).astype(np.float32) / 255.0
    files = resolve_model("realesr-animevideov3-x4")
    whole = _engine("realesr-animevideov3-x4").run_model(src, Options(tile=0))
    monkeypatch.setattr(engine_module, "super_tile", lambda *args: 16)
    assert np.abs(whole - _engine("realesr-animevideov3-x4").run_model(src, Options(tile=0))).max() <= LEVEL
    thin = ModelFiles(files.param, files.bin, replace(files.spec, tile_pad=8), "path")
    pieces = Engine([Session(thin, cpu_device())]).run_model(src, Options(tile=0))
    assert np.abs(whole - pieces).max() > LEVEL


def test_x4plus_anime_tiles_are_seam_free(photo_crop) -> None:
    src = photo_crop("astronaut.png", 120, 200, 24, 24).astype(np.float32) / 255.0
    assert _parity("realesrgan-x4plus-anime", src, 12) <= LEVEL


@pytest.mark.slow
def test_x4plus_tiles_are_seam_free(photo_crop) -> None:
    src = photo_crop("chelsea.png", 100, 150, 20, 24).astype(np.float32) / 255.0
    assert _parity("realesrgan-x4plus", src, 10) <= LEVEL


def test_uint8_tiled_output_differs_by_at_most_one_level(photo_crop) -> None:
    src = photo_crop("coffee.png", 150, 250, 36, 44)
    engine = _engine("realesr-animevideov3-x4")
    whole = engine.run_model(src, Options(tile=0)).astype(int)
    tiled = engine.run_model(src, Options(tile=12)).astype(int)
    assert whole.dtype == tiled.dtype and np.abs(whole - tiled).max() <= 1
