"""`--png-level` (fast zlib level 1 by default so saving never holds up the device) and
`-j load:proc:save` with `auto` save threads (issue 16 item 5)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.batch.pipeline import UsageError, auto_save_threads, parse_threads
from realesr_portable.cli import app
from realesr_portable.image.io import PNG_LEVEL, Picture, check_png_level, encode, read_image

runner = CliRunner()


def _encoded(pic: Picture, level: int) -> bytes:
    buf = io.BytesIO()
    encode(pic, "PNG", buf, png_level=level)
    return buf.getvalue()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_level_changes_size_not_pixels(dtype, photo_crop, tmp_path: Path) -> None:
    rgb = photo_crop("coffee.png", 50, 50, 96, 128).astype(dtype)
    if dtype == np.uint16:
        rgb = rgb * 256 + 7  # real 16-bit values (low byte set), written by png16
    pic = Picture(color=rgb)
    sizes = {}
    for level in (0, 1, 9):
        data = _encoded(pic, level)
        sizes[level] = len(data)
        path = tmp_path / f"l{level}.png"
        path.write_bytes(data)
        assert np.array_equal(read_image(path).color, rgb)
    assert sizes[0] > sizes[1] > sizes[9]
    assert PNG_LEVEL == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels,with_alpha", [(1, False), (1, True), (3, False), (3, True)])
def test_fast_level_writer_round_trips_every_layout(dtype, channels: int, with_alpha: bool, photo_crop,
                                                    tmp_path: Path) -> None:
    """Level 1 goes through the project's own encoder (Up filter, run-length zlib) for 8 and 16
    bits, gray or colour, with or without alpha: every sample comes back exactly."""
    rgb = photo_crop("chelsea.png", 30, 40, 20, 24).astype(dtype)
    if dtype == np.uint16:
        rgb = rgb * 257 + 3
    color = rgb if channels == 3 else rgb[..., :1].copy()
    alpha = (rgb.max() - rgb[..., 1]) if with_alpha else None
    path = tmp_path / "fast.png"
    path.write_bytes(_encoded(Picture(color=color, alpha=alpha), 1))
    back = read_image(path)
    assert back.color.dtype == dtype and np.array_equal(back.color, color)
    assert (back.alpha is None) if alpha is None else np.array_equal(back.alpha, alpha)


@pytest.mark.parametrize("bad", [-1, 10, True, 1.5])
def test_png_level_outside_0_9_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="--png-level"):
        check_png_level(bad)
    assert check_png_level(9) == 9


def test_cli_png_level_writes_that_level(tmp_path: Path, photo_crop) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(photo_crop("chelsea.png", 80, 140, 24, 32)).save(src)
    sizes = {}
    for level in ("0", "9"):
        dst = tmp_path / f"out{level}.png"
        result = runner.invoke(app, ["-i", str(src), "-o", str(dst), "-n", "realesr-animevideov3-x2", "-g", "-1",
                                     "-q", "--png-level", level])
        assert result.exit_code == 0, result.output
        sizes[level] = dst.stat().st_size
    assert sizes["0"] > 1.5 * sizes["9"]  # level 0 stores the pixels uncompressed
    with Image.open(tmp_path / "out0.png") as a, Image.open(tmp_path / "out9.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("level", ["10", "-1", "fast"])
def test_cli_bad_png_level_is_one_line_and_writes_nothing(level: str, tmp_path: Path, photo_crop) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(photo_crop("chelsea.png", 80, 140, 8, 8)).save(src)
    dst = tmp_path / "out.png"
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), "-g", "-1", "-q", "--png-level", level])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "png-level" in result.output
    assert not dst.exists()


def test_jobs_auto_sizes_save_threads() -> None:
    assert parse_threads("1:1:auto") == (1, 1, auto_save_threads())
    assert 2 <= auto_save_threads() <= 4
    assert parse_threads("2:1:3") == (2, 1, 3)
    for bad in ("1:1", "auto:1:1", "1:0:2", "1:1:fast"):
        with pytest.raises(UsageError, match="-j"):
            parse_threads(bad)


def test_batch_saves_while_the_next_image_is_processed(tmp_path: Path, photo_crop, monkeypatch) -> None:
    """load:proc:save overlap (issue 16 item 4 on the host side): processing image 2 waits until the
    save of image 1 has started; a pipeline that saved only after processing would time out."""
    import threading

    import realesr_portable.batch.pipeline as batch
    from realesr_portable.batch.jobs import Job
    from realesr_portable.batch.pipeline import run_pipeline
    from realesr_portable.run.options import UpscaleOptions

    first_saving = threading.Event()
    real_save = batch.save_image

    def save(path: Path, *args, **kwargs) -> None:
        if path.name == "o0.png":
            first_saving.set()
        real_save(path, *args, **kwargs)

    processed = []

    def process(pic, progress=None):  # one process thread, images in order: the second call is image 1
        processed.append(pic)
        if len(processed) == 2:
            assert first_saving.wait(20), "image 0 was not being saved while image 1 was processed"
        return pic

    monkeypatch.setattr(batch, "save_image", save)
    jobs = []
    for i in range(3):
        src = tmp_path / f"i{i}.png"
        Image.fromarray(photo_crop("coffee.png", 10 * i, 10, 16, 16)).save(src)
        jobs.append(Job(src, tmp_path / f"o{i}.png", "PNG"))
    report = run_pipeline(jobs, SimpleNamespace(upscale_picture=process), UpscaleOptions(max_pixels=0),
                          parse_threads("1:1:auto"), False)
    assert not report.failed, report.failed
    assert sorted(p.name for p in report.done) == ["i0.png", "i1.png", "i2.png"]
