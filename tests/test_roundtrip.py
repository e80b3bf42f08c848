"""Round trip: official ncnn -> .pth -> our ncnn gives the official 8-bit output on a real photo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from export_support import load_files, ncnn_run, to_chw, to_uint8
from realesr_portable.api import Upscaler
from realesr_portable.convert.api import ConvertResult, convert_file
from realesr_portable.convert.detect import arch_info, build_model
from realesr_portable.model.catalog import OFFICIAL, official_model_dir

SLOW = pytest.mark.slow
CASES = [
    pytest.param("realesr-animevideov3-x4", 48, id="animevideov3-x4"),
    pytest.param("realesr-animevideov3-x2", 48, id="animevideov3-x2-with-resize"),
    pytest.param("realesrgan-x4plus-anime", 24, id="x4plus-anime"),
    pytest.param("realesrgan-x4plus", 16, id="x4plus", marks=SLOW),
]


def _official_param(name: str) -> Path:
    return official_model_dir() / f"{OFFICIAL[name][0]}.param"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ConvertResult]:
    """Convert each official model once per module. The runtime mirrors image borders by the
    model's tile_pad, so the official pad is declared: both runs then see the same borders and only
    the networks can differ. The RRDBNets skip the torch check here (slow; covered elsewhere)."""
    cache: dict[str, ConvertResult] = {}

    def convert(name: str) -> ConvertResult:
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            verify = "animevideov3" in name
            cache[name] = convert_file(_official_param(name), out, name="ours", verify=verify,
                                       tile_pad=OFFICIAL[name][1].tile_pad)
        return cache[name]

    return convert


@pytest.mark.parametrize(("name", "size"), CASES)
def test_round_trip_gives_official_8bit_output(name: str, size: int, converted, photo_crop) -> None:
    result = converted(name)
    assert result.pth is not None
    checkpoint = torch.load(result.pth, map_location="cpu", weights_only=True)
    assert list(checkpoint) == ["params_ema"]  # the official release layout, ready to fine-tune
    params = {k: v for k, v in result.spec.arch_params.items() if k != "output_resize"}
    build_model(arch_info(result.spec.arch, params)).load_state_dict(checkpoint["params_ema"], strict=True)
    image = photo_crop("chelsea.png", 60, 120, size, size)
    # Both through the runtime, by name and by path, one tile each (tile >= image).
    official = Upscaler(name, gpu=-1, tile=size, threads=1).upscale(image)
    ours = Upscaler(result.param, gpu=-1, tile=size, threads=1).upscale(image)
    assert ours.shape == official.shape == (size * result.spec.scale, size * result.spec.scale, 3)
    assert np.array_equal(ours, official)


def test_import_parity_is_checked_and_reported(converted) -> None:
    result = converted("realesr-animevideov3-x2")
    assert result.import_max_abs is not None and result.import_max_abs < 1e-4
    assert result.spec.scale == 2 and result.spec.arch_params["output_resize"] == 0.5


@pytest.mark.parametrize("name", ["realesrgan-x4plus-anime", "realesr-animevideov3-x2"])
def test_exact_arithmetic_matches_the_official_graph(name: str, converted, photo_crop) -> None:
    """With fp16 off on both sides the re-exported graph reproduces the official one to float precision."""
    chw = to_chw(photo_crop("astronaut.png", 100, 200, 16, 16))
    official = ncnn_run(load_files(_official_param(name), ("data", "output")), chw)
    ours = ncnn_run(load_files(converted(name).param), chw)
    assert np.abs(ours - official).max() < 1e-5
    assert np.array_equal(to_uint8(ours), to_uint8(official))


def test_pth_re_exports_to_the_same_model(converted, tmp_path: Path) -> None:
    """The written .pth is a complete hand-off: converting it again gives the same ncnn files."""
    first = converted("realesr-animevideov3-x4")
    assert first.pth is not None
    second = convert_file(first.pth, tmp_path, name="ours", verify=False)
    assert second.bin.read_bytes() == first.bin.read_bytes()
    assert second.param.read_text() == first.param.read_text()
    assert second.spec.arch_params == first.spec.arch_params
    assert second.spec.tile_pad == 16 + 2  # SRVGG's exact receptive field: 16 hidden convs + first + last
