"""Hostile round 4: special files as inputs and models, option values out of range, odd file names,
odd output paths and odd images, through the real CLI on tiny images.

Each test comes from a broken promise found in the round (one line and a non-zero exit, no
traceback, no hang, no half-written output, one bad file never stops the others), or pins a
promise the round checked and found kept (EXIF orientation, 16-bit alpha, palette transparency,
ICC profiles).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from hostile_support import FAST, assert_clean, good_image, noise_image
from realesr_portable.cli import app, main
from realesr_portable.errors import UsageError
from realesr_portable.image.io import ImageError, read_image
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.options import UpscaleOptions

runner = CliRunner()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int = 8, colour: int = 2, rows: bytes = b"\0" * 10) -> bytes:
    """A PNG whose header says `width`x`height` whatever `rows` holds (bombs, 0x0)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


# Special files as inputs.

def test_fifo_named_png_as_the_input_says_so_and_does_not_hang(tmp_path: Path) -> None:
    """Before: "empty file" (stat of a FIFO says size 0); a reader opening it would block for good."""
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "realesr_portable", "-i", str(fifo), "-o", str(tmp_path / "o.png"), *FAST],
                          capture_output=True, text=True, timeout=120)
    assert_clean(proc.stderr)
    assert proc.returncode == 1
    assert f"{fifo}: not a regular file (a FIFO)" in proc.stderr and "empty" not in proc.stderr
    assert not (tmp_path / "o.png").exists()


def test_fifo_in_a_folder_or_glob_fails_alone(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    good_image(inputs, "a.png")
    os.mkfifo(inputs / "b.png")
    good_image(inputs, "c.png", seed=1)
    for given in (str(inputs), str(inputs / "*.png")):
        out = tmp_path / f"out{len(given)}"
        result = runner.invoke(app, ["-i", given, "-o", str(out), *FAST])
        assert_clean(result.output)
        assert result.exit_code == 1
        assert f"{inputs / 'b.png'}: not a regular file (a FIFO)" in result.output
        assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


@pytest.mark.parametrize("kind", ["fifo", "folder", "loop"])
def test_read_image_names_what_the_path_is(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "y.png")
        (tmp_path / "y.png").symlink_to(path)
    expected = {"fifo": "not a regular file (a FIFO)", "folder": "not a regular file (a folder)",
                "loop": "symbolic links"}[kind]
    with pytest.raises(ImageError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_image(path)


def test_symlink_loop_as_input_is_one_failure(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "back.png")
    (tmp_path / "back.png").symlink_to(loop)
    good = good_image(tmp_path, "good.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(loop), "-i", str(good), "-o", str(out), *FAST])
    assert_clean(result.output)
    assert result.exit_code == 1 and "symbolic links" in result.output
    assert [p.name for p in out.iterdir()] == ["good.png"]


# Model folders with special files named like models.

@pytest.mark.parametrize(("entry", "kind"), [("up2x-denoise1x.param", "folder"), ("up2x-denoise1x.param", "fifo"),
                                             ("mine.param", "folder")])
def test_model_folder_entry_that_is_no_file_is_named_plainly(tmp_path: Path, entry: str, kind: str) -> None:
    """Before: "no noise level 1 at x2 (up2x-denoise1x.param); it has denoise1x": that file, there but
    a folder or FIFO, was listed as present and called missing in one breath."""
    models = tmp_path / "models"
    models.mkdir()
    bad = models / entry
    bad.mkdir() if kind == "folder" else os.mkfifo(bad)
    src = good_image(tmp_path, "a.png")
    name = "1" if entry.startswith("up2x") else "mine"
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "o.png"), "-m", str(models), "-n", name,
                                 "-s", "2", "-g", "-1", "-q"])
    assert_clean(result.output)
    assert result.exit_code == 2
    what = "a folder" if kind == "folder" else "a FIFO"
    assert f"{bad}: model .param file is {what}, not a regular file" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_model_folder_lists_only_real_param_files(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "junk.param").mkdir()
    official = resolve_model("realesr-animevideov3-x2")
    (models / "real.param").symlink_to(official.param)
    (models / "real.bin").symlink_to(official.bin)
    result = runner.invoke(app, ["-i", str(good_image(tmp_path, "a.png")), "-m", str(models), "-n", "other", "-g", "-1", "-q"])
    assert result.exit_code == 2 and "(it has real)" in result.output, result.output


def test_model_param_path_that_is_a_fifo_or_its_bin_a_folder(tmp_path: Path) -> None:
    fifo = tmp_path / "f.param"
    os.mkfifo(fifo)
    src = str(good_image(tmp_path, "a.png"))
    result = runner.invoke(app, ["-i", src, "-m", str(fifo), "-g", "-1", "-q"])
    assert result.exit_code == 2 and "f.param: model .param file is a FIFO, not a regular file" in result.output
    (tmp_path / "g.param").write_text(resolve_model("realesr-animevideov3-x2").param.read_text())
    (tmp_path / "g.bin").mkdir()
    result = runner.invoke(app, ["-i", src, "-m", str(tmp_path / "g.param"), "-g", "-1", "-q"])
    assert result.exit_code == 2 and "g.bin: model .bin file is a folder, not a regular file" in result.output


def test_convert_names_a_fifo_source_instead_of_not_found(tmp_path: Path) -> None:
    from realesr_portable.convert.weights_io import WeightsError, load_state_dict

    fifo = tmp_path / "w.pth"
    os.mkfifo(fifo)
    with pytest.raises(WeightsError, match=r"not a regular file \(a FIFO\)"):
        load_state_dict(fifo)


# Options out of range.

@pytest.mark.parametrize(("args", "needle"), [
    (["--threads", "100000"], "--threads 100000: expected 1 to 1024"),  # before: SIGSEGV inside ncnn/OpenMP
    (["--threads", "99999999999999999999"], "--threads"),  # before: internal error (TypeError from ncnn)
    (["-j", "1:1:99999"], "-j '1:1:99999'"),  # before: internal error: can't start new thread
    (["-s", "nan"], "-s"), (["-s", "0"], "-s"), (["-t", "-1"], "-t"), (["--png-level", "10"], "--png-level"),
    (["--max-memory", "garbage"], "max memory"), (["-g", "99"], "no Vulkan device 99"),
])
def test_out_of_range_options_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], needle: str) -> None:
    out = tmp_path / "o.png"
    code = main(["-i", str(good_image(tmp_path, "a.png")), "-o", str(out), *FAST, *args])
    err = capsys.readouterr().err
    assert_clean(err)
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_threads_bound_holds_for_the_python_api() -> None:
    with pytest.raises(UsageError, match="--threads"):
        UpscaleOptions(threads=5000)


# File names and output paths.

def test_newline_in_a_failing_name_stays_on_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad\nname.png"
    bad.write_bytes(b"not an image")
    fine = good_image(tmp_path, "new\nline.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(bad), "-i", str(fine), "-o", str(out), *FAST])
    assert_clean(result.output)
    assert result.exit_code == 1
    failures = [line for line in result.output.splitlines() if line.startswith("  ")]
    assert failures == [f"  {tmp_path}/bad\\nname.png: not an image file (or a format Pillow cannot read)"]
    assert (out / "new\nline.png").is_file()


def test_name_too_long_fails_alone(tmp_path: Path) -> None:
    long_name = good_image(tmp_path, "x" * 250 + ".png")  # the input fits; the output's _x2 suffix does not
    good = good_image(tmp_path, "good.png", seed=1)
    result = runner.invoke(app, ["-i", str(long_name), "-i", str(good), *FAST])
    assert_clean(result.output)
    assert result.exit_code == 1 and "File name too long" in result.output
    assert (tmp_path / "good_x2.png").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_output_into_a_folder_link_loop(tmp_path: Path) -> None:
    """Before: "internal error: RuntimeError: Symlink loop" from Path.resolve in the clash check."""
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "back")
    (tmp_path / "back").symlink_to(loop)
    src = str(good_image(tmp_path, "a.png"))
    folder = runner.invoke(app, ["-i", src, "-o", str(loop), *FAST])
    assert_clean(folder.output)
    assert folder.exit_code == 2 and f"{loop}: cannot create output folder (it is a broken link or a link loop)" in folder.output
    inside = runner.invoke(app, ["-i", src, "-o", str(loop / "sub"), *FAST])
    assert_clean(inside.output)
    assert inside.exit_code == 2 and "cannot create output folder (Too many levels of symbolic links)" in inside.output


def test_output_folder_under_a_file_says_which_file(tmp_path: Path) -> None:
    """Before: "cannot create output folder (File exists)"."""
    src = good_image(tmp_path, "a.png")
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"keep")
    result = runner.invoke(app, ["-i", str(src), "-o", str(blocker / "sub" / "o.png"), *FAST])
    assert_clean(result.output)
    assert result.exit_code == 1 and f"({blocker} is a file)" in result.output
    assert blocker.read_bytes() == b"keep"


@pytest.mark.parametrize("suffix", [".avif", ".jxl", ".pdf"])
def test_output_with_another_image_format_suffix_is_refused(tmp_path: Path, suffix: str) -> None:
    """Before: `-o out.avif` made a folder named out.avif holding a PNG."""
    out = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["-i", str(good_image(tmp_path, "a.png")), "-o", str(out), *FAST])
    assert_clean(result.output)
    assert result.exit_code == 2 and "cannot write" in result.output
    assert not out.exists()


# Odd images.

def test_animated_image_says_only_its_first_frame_is_upscaled(tmp_path: Path) -> None:
    frames = [Image.fromarray(noise_image(seed=i)) for i in range(3)]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(src), "-o", str(out), *FAST[:-1]])
    assert result.exit_code == 0, result.output
    assert "animated (3 frames): only the first frame is upscaled" in result.output
    with Image.open(out / "anim.png") as im:
        assert im.size == (16, 12) and getattr(im, "n_frames", 1) == 1


def test_bomb_zero_and_truncated_images_fail_alone(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "bomb.png").write_bytes(_png(100_000, 100_000))
    (inputs / "zero.png").write_bytes(_png(0, 0, rows=b""))
    Image.fromarray(noise_image(16, 16)).save(inputs / "full.jpg", quality=90)
    Image.fromarray(noise_image(16, 16)).save(inputs / "full.webp")
    for name in ("full.jpg", "full.webp"):
        data = (inputs / name).read_bytes()
        (inputs / f"cut_{name}").write_bytes(data[: len(data) // 2])
        (inputs / name).unlink()
    good_image(inputs, "good.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["-i", str(inputs), "-o", str(out), *FAST])
    assert_clean(result.output)
    assert result.exit_code == 1 and "4 of 5 file(s) failed" in result.output
    assert [p.name for p in out.iterdir()] == ["good.png"]


def test_thin_images_upscale(tmp_path: Path) -> None:
    out = tmp_path / "out"
    names = []
    for h, w in ((1, 1), (1, 9), (9, 1)):
        names.append(good_image(tmp_path, f"{h}x{w}.png").name)
        Image.fromarray(noise_image(h, w)).save(tmp_path / names[-1])
    result = runner.invoke(app, ["-i", str(tmp_path / "*.png"), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert [Image.open(out / n).size for n in names] == [(2, 2), (18, 2), (2, 18)]


def _rgba16(path: Path) -> np.ndarray:
    data = np.random.default_rng(3).integers(0, 65535, (6, 8, 4), dtype=np.uint16)
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in data)
    path.write_bytes(_png(8, 6, depth=16, colour=6, rows=rows))
    return data


def test_kept_promises_orientation_16bit_alpha_palette_and_icc(tmp_path: Path) -> None:
    """Checked in the round and found kept: pinned so that they stay."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(noise_image()).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    alpha16 = _rgba16(tmp_path / "deep.png")[..., 3]
    palette = Image.fromarray((noise_image()[..., 0] % 4).astype(np.uint8), "L").convert("P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    palette.save(tmp_path / "pal.png", transparency=0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(noise_image()).save(tmp_path / "icc.webp", icc_profile=srgb)
    out = tmp_path / "out"
    names = ["rot.jpg", "deep.png", "pal.png", "icc.webp"]
    result = runner.invoke(app, ["-o", str(out), *FAST, *(str(tmp_path / n) for n in names)])
    assert result.exit_code == 0, result.output
    with Image.open(out / "rot.jpg") as im:
        assert im.size == (12, 16) and im.getexif().get(0x0112, 1) == 1
    deep = read_image(out / "deep.png")
    assert deep.bits == 16 and deep.alpha is not None and deep.alpha.shape == (12, 16)
    assert abs(float(deep.alpha.astype(np.float64).mean()) - float(alpha16.mean())) < 4000
    pal = read_image(out / "pal.png")
    assert pal.alpha is not None and pal.alpha.min() < 128 < pal.alpha.max()
    with Image.open(out / "icc.webp") as im:
        assert im.info.get("icc_profile") == srgb


def test_output_folder_equal_to_the_inputs_however_spelled_keeps_the_suffix(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`-o ./` wrote a_x2.png while `-o $PWD` and `-o ../dir/` refused ("would overwrite the input"):
    the folder was compared as spelled. Every spelling of the input's folder now means "beside it"."""
    src = good_image(tmp_path, "a.png")
    monkeypatch.chdir(tmp_path)
    for spelled in ("./", str(tmp_path), f"../{tmp_path.name}/"):
        result = runner.invoke(app, ["-i", "a.png", "-o", spelled, *FAST])
        assert result.exit_code == 0, (spelled, result.output)
        made = tmp_path / "a_x2.png"
        assert made.is_file() and Image.open(made).size == (16, 12), spelled
        assert np.array_equal(np.asarray(Image.open(src)), noise_image()), spelled
        made.unlink()
