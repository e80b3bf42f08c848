"""The runner cross-built for 64-bit ARM (ncnn's NEON kernels), run under qemu-user, matches x86."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_support import build_runner, cpp_upscale, level_diff, model_dir, with_tile_pad
from export_support import srvgg_info, small_model
from realesr_portable.convert.cli import main as convert_main
from realesr_portable.convert.weights_io import save_state_dict
from realesr_portable.model.catalog import resolve_model


@pytest.fixture(scope="module")
def runners() -> tuple[Path, Path]:
    return build_runner("x86_64"), build_runner("aarch64")


def _converted(root: Path) -> Path:
    pth = save_state_dict(small_model(srvgg_info(3)).state_dict(), root / "tiny-vgg-x3.pth")
    assert convert_main(["convert", str(pth), "-o", str(root / "out"), "--no-verify"]) == 0
    return root / "out" / "tiny-vgg-x3.param"


# qemu emulates NEON slowly (~16 s of CPU for animevideov3 on this image): the RRDBNet is slow-marked.
CASES = ["realesr-animevideov3-x2", "converted", pytest.param("realesrgan-x4plus-anime", marks=pytest.mark.slow)]


@pytest.mark.parametrize("which", CASES)
def test_aarch64_under_qemu_matches_x86(runners: tuple[Path, Path], photo_crop, tmp_path: Path, which: str) -> None:
    x86, arm = runners
    if which == "converted":
        param = _converted(tmp_path)
    else:
        files = resolve_model(which)
        # x4plus-anime through qemu is slow: 16 px of padding instead of 64 (same rule on both).
        param = model_dir(with_tile_pad(files, 16) if "anime" in which and "x4" in which else files, tmp_path / "m")
    image = photo_crop("chelsea.png", 80, 150, 14, 18)
    native = cpp_upscale(x86, param, image, 10, tmp_path / "x86")
    emulated = cpp_upscale(arm, param, image, 10, tmp_path / "arm", emulate=True)
    worst, count = level_diff(native, emulated)
    print(f"\n{which}: aarch64 (qemu) vs x86 max diff {worst}, {count} of {native.size} values differ")
    assert worst <= 1
