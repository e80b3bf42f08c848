"""The upscaling CLI end to end, in-process (CliRunner) and once as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.cli import app, main, models_app

runner = CliRunner()


def _save(tmp_path: Path, name: str, array: np.ndarray) -> Path:
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return path


def test_cli_upscales_a_photo_in_process(tmp_path: Path, photo_crop) -> None:
    src = _save(tmp_path, "cat.png", photo_crop("chelsea.png", 80, 140, 24, 32))
    dst = tmp_path / "out" / "cat_x4.png"
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), "-n", "realesr-animevideov3", "-g", "-1", "-q"])
    assert result.exit_code == 0, result.output
    with Image.open(dst) as im:
        assert im.size == (128, 96) and im.mode == "RGB"
        out = np.asarray(im).astype(np.float32)
    # The upscaled image, shrunk back, must look like the input (a real SR result, not noise).
    small = np.asarray(Image.fromarray(out.astype(np.uint8)).resize((32, 24), Image.Resampling.BOX)).astype(np.float32)
    assert np.abs(small - photo_crop("chelsea.png", 80, 140, 24, 32)).mean() < 8


def test_cli_reports_the_device_on_one_line(tmp_path: Path, photo_crop) -> None:
    src = _save(tmp_path, "a.png", photo_crop("coffee.png", 100, 200, 16, 16))
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "b.png"), "-n", "realesr-animevideov3-x2", "-g", "-1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "on CPU" in line]
    assert len(lines) == 1 and "realesr-animevideov3-x2 x2" in lines[0]


def test_models_command_lists_official_models() -> None:
    result = runner.invoke(models_app, [])
    assert result.exit_code == 0, result.output
    for name in ("realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3-x2", "realesr-animevideov3-x4"):
        assert name in result.output
    assert "BSD-3-Clause" in result.output


def test_main_dispatches_models_subcommand(capsys) -> None:
    assert main(["models"]) == 0
    assert "realesrgan-x4plus-anime" in capsys.readouterr().out


def test_real_subprocess_on_a_real_photo(tmp_path: Path, skimage_photo) -> None:
    """The installed console script, as a user runs it, on a real JPEG from scikit-image."""
    src = tmp_path / "rocket.jpg"
    with Image.open(skimage_photo("rocket.jpg")) as im:
        im.crop((200, 100, 232, 124)).save(src, quality=95)
    exe = Path(sys.executable).with_name("realesr-portable")
    dst = tmp_path / "rocket_x2.webp"
    proc = subprocess.run(
        [str(exe), "-i", str(src), "-o", str(dst), "-n", "realesr-animevideov3", "-s", "2", "-g", "-1"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    with Image.open(dst) as im:
        assert im.format == "WEBP" and im.size == (64, 48)
