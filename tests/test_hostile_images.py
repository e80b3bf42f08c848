"""Hostile images and output paths through the real CLI (issue 8, items 1-4 and the smaller ones).

Each case is built from a failure seen in a hostile-input campaign: the promise is a correct
result or a one-line error with a non-zero exit, no traceback, no hang, no overwritten input.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.batch.jobs import Job
from realesr_portable.batch.pipeline import run_pipeline
from realesr_portable.run.options import UpscaleOptions
from realesr_portable.cli import app
from realesr_portable.image.io import Picture, read_image

runner = CliRunner()
FAST = ["-n", "realesr-animevideov3-x2", "-g", "-1", "-q"]


def _pixels(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _exif_orientation_ascii(text: bytes) -> bytes:
    """A raw EXIF block whose Orientation tag (0x0112) is stored as ASCII, as some editors write it."""
    entry = struct.pack("<HHI", 0x0112, 2, len(text)) + text[:4].ljust(4, b"\0")
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


def _assert_clean(output: str) -> None:
    assert "Traceback" not in output
    assert all(len(line) < 400 for line in output.splitlines())


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("tag", [b"1\0", b"6\0", b"abc\0"])
def test_ascii_exif_orientation_upscales(tmp_path: Path, fmt: str, tag: bytes) -> None:
    ext = "jpg" if fmt == "JPEG" else "webp"
    src = tmp_path / f"odd.{ext}"
    Image.fromarray(_pixels()).save(src, fmt, exif=_exif_orientation_ascii(tag))
    after = tmp_path / "after.png"
    Image.fromarray(_pixels(seed=1)).save(after)
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(src), "-i", str(after), "-o", str(out), *FAST[:-1]])
    _assert_clean(result.output)
    assert result.exit_code == 0, result.output
    written = Image.open(out / f"odd.{ext}")
    rotated = tag.startswith(b"6")
    assert written.size == ((12, 16) if rotated else (16, 12))
    assert (out / "after.png").is_file()  # the file after it in the batch is not skipped
    if tag == b"abc\0":
        assert "orientation" in result.output and "ignored" in result.output


def test_jpeg_with_exif_too_long_is_written_without_it(tmp_path: Path) -> None:
    """Once a failure after the upscale (and before that a crash of the batch); now the image is
    written and only its EXIF, which no JPEG can hold, is dropped (with a note, see round 4)."""
    src = tmp_path / "big_exif.png"
    exif = Image.Exif()
    exif[0x010E] = "x" * 100_000  # ImageDescription: 100 KB, more than a JPEG APP1 segment holds
    Image.fromarray(_pixels()).save(src, exif=exif.tobytes())
    good = tmp_path / "good.png"
    Image.fromarray(_pixels(seed=2)).save(good)
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(src), "-i", str(good), "-o", str(out), "-f", "jpg", *FAST])
    _assert_clean(result.output)
    assert result.exit_code == 0, result.output
    assert (out / "good.jpg").is_file() and (out / "big_exif.jpg").is_file()
    with Image.open(out / "big_exif.jpg") as im:
        assert not len(im.getexif())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_webp_too_wide_fails_alone_and_batch_does_not_hang(tmp_path: Path) -> None:
    """Three WebP outputs over 16383 px kill both save threads in the old code; the good one hung."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_pixels(1, 1100, seed=i)).save(folder / f"wide{i}.png")  # x16 -> 17600 px
    Image.fromarray(_pixels(2, 2, seed=9)).save(folder / "z_good.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(folder), "-o", str(out), "-f", "webp", "-s", "16", *FAST])
    _assert_clean(result.output)
    assert result.exit_code == 1
    assert "3 of 4 file(s) failed" in result.output
    assert (out / "z_good.webp").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["z_good.webp"]


@pytest.mark.parametrize("stage", ["load", "process", "save"])
def test_unexpected_exception_in_any_stage_is_that_files_failure(tmp_path: Path, stage: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Any exception type, in any worker, on every file: the pipeline finishes and lists each one."""
    import realesr_portable.batch.pipeline as batch

    srcs = []
    for i in range(5):
        srcs.append(tmp_path / f"f{i}.png")
        Image.fromarray(_pixels(seed=i)).save(srcs[-1])

    def boom(*_args: object, **_kw: object) -> None:
        raise KeyError("surprise")  # not an ImageError, not an OSError

    if stage == "load":
        monkeypatch.setattr(batch, "read_image", boom)
    if stage == "save":
        monkeypatch.setattr(batch, "save_image", boom)
    upscaler = SimpleNamespace(upscale_picture=boom if stage == "process" else (lambda pic, progress=None: pic))
    jobs = [Job(src, tmp_path / f"o{i}.png", "PNG") for i, src in enumerate(srcs)]
    report = run_pipeline(jobs, upscaler, UpscaleOptions(max_pixels=0), (1, 1, 1), False)
    assert len(report.failed) == 5 and not report.done
    assert all("surprise" in reason and str(src) in reason for src, reason in report.failed)


def test_every_save_thread_failing_does_not_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import realesr_portable.batch.pipeline as batch

    calls = {"n": 0}
    real_save = batch.save_image

    def flaky(path: Path, pic: Picture, fmt: str, quality: int = 95, png_level: int = 1) -> None:
        calls["n"] += 1
        if "bad" in path.name:
            raise ValueError("encoder said no")
        real_save(path, pic, fmt, quality, png_level)

    monkeypatch.setattr(batch, "save_image", flaky)
    jobs = []
    for i, name in enumerate(["bad0", "bad1", "bad2", "bad3", "good"]):
        src = tmp_path / f"{name}.png"
        Image.fromarray(_pixels(seed=i)).save(src)
        jobs.append(Job(src, tmp_path / f"{name}_out.png", "PNG"))
    same = SimpleNamespace(upscale_picture=lambda pic, progress=None: pic)
    report = run_pipeline(jobs, same, UpscaleOptions(max_pixels=0), (1, 1, 2), False)
    assert [p.name for p in report.done] == ["good.png"] and len(report.failed) == 4
    assert (tmp_path / "good_out.png").is_file() and calls["n"] == 5


@pytest.mark.parametrize("spelling", ["same", "dot_slash", "hard_link", "symlink"])
def test_single_output_never_overwrites_the_input(tmp_path: Path, spelling: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "x.png"
    Image.fromarray(_pixels()).save(src)
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    target = {"same": "x.png", "dot_slash": "./x.png", "hard_link": "link.png", "symlink": "sym.png"}[spelling]
    if spelling == "hard_link":
        os.link(src, tmp_path / target)
    if spelling == "symlink":
        os.symlink(src, tmp_path / target)
    result = runner.invoke(app, ["-i", "x.png", "-o", target, *FAST])
    _assert_clean(result.output)
    assert result.exit_code == 2 and "overwrite the input" in result.output
    assert src.read_bytes() == before


def test_folder_mode_refuses_a_hard_link_as_output(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    src = folder / "a.png"
    Image.fromarray(_pixels()).save(src)
    os.link(src, folder / "a_x2.png")  # the default output name beside the input
    before = src.read_bytes()
    result = runner.invoke(app, ["-i", str(src), *FAST])
    assert result.exit_code == 2 and "overwrite the input" in result.output
    assert src.read_bytes() == before


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".gif"])
def test_output_with_an_unwritable_image_suffix_is_refused(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_pixels(seed=i)).save(folder / f"{i}.png")
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["-i", str(folder), "-o", str(out), *FAST])
    _assert_clean(result.output)
    assert result.exit_code == 2 and "cannot write" in result.output
    assert not out.exists()
    single = runner.invoke(app, ["-i", str(folder / "0.png"), "-o", str(out), *FAST])
    assert single.exit_code == 2 and not out.exists()


def _png_with_bad_idat_crc(path: Path) -> None:
    Image.fromarray(_pixels()).save(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") - 4
    length = int.from_bytes(data[at : at + 4], "big")
    crc_at = at + 8 + length
    data[crc_at : crc_at + 4] = ((zlib.crc32(bytes(data[at + 4 : crc_at])) ^ 0xFFFF) & 0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(data))


def test_png_with_wrong_idat_crc_is_upscaled_with_a_note(tmp_path: Path) -> None:
    src = tmp_path / "crc.png"
    _png_with_bad_idat_crc(src)
    assert any("IDAT" in note for note in read_image(src).notes)
    out = tmp_path / "crc_out.png"
    result = runner.invoke(app, ["-i", str(src), "-o", str(out), *FAST[:-1]])
    assert result.exit_code == 0 and out.is_file()
    assert "note:" in result.output and "wrong CRC" in result.output


def test_intact_png_gets_no_crc_note(tmp_path: Path) -> None:
    src = tmp_path / "fine.png"
    Image.fromarray(_pixels()).save(src)
    assert read_image(src).notes == []

