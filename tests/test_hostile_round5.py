"""Hostile round 5 on the runtime: option values, odd output names and paths, odd images and
the Python API, through the real CLI on tiny images (round 4: test_hostile_round4.py).

Each test comes from a broken promise a probe found (one line and a non-zero exit, no traceback,
no half-written output, never an input overwritten), and failed on the code before its fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile_support import FAST, assert_clean, good_image, noise_image
from realesr_portable.cli import main
from realesr_portable.errors import UserError
from realesr_portable.image.io import ImageError, read_image
from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.options import UpscaleOptions


@pytest.mark.parametrize("suffix", ["../../evil", "/", "sub/x", "x\0y"])
def test_a_suffix_with_a_path_separator_is_refused_before_any_work(tmp_path: Path, suffix: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`--suffix ../../evil` wrote `evil.png` two folders up and left a folder `a..`; `--suffix /`
    made a folder `a` holding `.png`. A suffix is part of a name: a separator in it is bad usage."""
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    good_image(work, "a.png")
    assert main(["-i", str(work / "a.png"), "--suffix", suffix, *FAST]) == 2
    err = capsys.readouterr().err
    assert_clean(err)
    assert err.count("\n") == 1 and "cannot hold a path separator" in err, err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["deep", "deep/work", "deep/work/a.png"]


@pytest.mark.parametrize("name, fmt, written", [("o.png", "jpg", None), ("o.webp", "png", None), ("o.jpg", "jpeg", "JPEG"),
                                                ("o.PNG", "png", "PNG")])
def test_format_flag_that_contradicts_the_output_name_is_refused(tmp_path: Path, name: str, fmt: str, written: str | None,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`-o o.png -f jpg` wrote JPEG bytes into o.png (exit 0): a file whose name lies about its
    contents. Agreeing spellings (jpg/jpeg, any case) still write."""
    src = good_image(tmp_path, "a.png")
    code = main(["-i", str(src), "-o", str(tmp_path / name), "-f", fmt, *FAST])
    err = capsys.readouterr().err
    assert_clean(err)
    if written is None:
        assert code == 2 and f"names a {Image.registered_extensions()[Path(name).suffix]} file but -f {fmt}" in err, err
        assert not (tmp_path / name).exists()
    else:
        assert code == 0, err
        with Image.open(tmp_path / name) as im:
            assert im.format == written and im.size == (16, 12)


def test_a_video_into_an_image_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-i clip.mp4 -o out.png` made a folder `out.png` holding the upscaled clip (exit 0)."""
    from video_support import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, 3)
    assert main(["-i", str(clip), "-o", str(tmp_path / "out.png"), *FAST]) == 2
    err = capsys.readouterr().err
    assert_clean(err)
    assert "a video cannot be written as an image file" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.fixture(scope="module")
def x2_cpu():
    from realesr_portable.api import Upscaler

    return Upscaler("realesr-animevideov3-x2", gpu=-1)


@pytest.mark.parametrize("image, error, fragment", [
    (np.zeros((0, 0, 3), np.uint8), ValueError, "empty image (0x0)"),  # was "range() arg 3 must not be zero"
    (np.zeros((5, 0), np.uint16), ValueError, "empty image (0x5)"),
    (Image.new("RGB", (0, 4)), ValueError, "empty image (0x4)"),
    (np.full((6, 8, 3), np.nan, np.float32), ValueError, "holds NaN or inf"),  # was blamed on the model
    (np.full((6, 8), np.inf), ValueError, "holds NaN or inf"),
    ("photo.png", TypeError, "got str; read files with"),  # was "got shape ()"
    (Path("photo.png"), TypeError, "got PosixPath"),
])
def test_python_api_names_what_is_wrong_with_the_array(x2_cpu, image: object, error: type, fragment: str) -> None:
    with pytest.raises(error) as caught:
        x2_cpu.upscale(image)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_python_api_still_takes_float_arrays_in_range(x2_cpu) -> None:
    out = x2_cpu.upscale(np.linspace(0, 1, 6 * 8 * 3).reshape(6, 8, 3))
    assert out.shape == (12, 16, 3) and out.dtype == np.float64 and np.isfinite(out).all()


@pytest.mark.parametrize("options, fragment", [
    ({"value_range": (0, 0)}, "LOW < HIGH"),  # was ZeroDivisionError in the tiler
    ({"value_range": (1, 0)}, "LOW < HIGH"),  # wrote an inverted image
    ({"value_range": (float("nan"), 1)}, "LOW < HIGH"),  # blamed on the model
    ({"value_range": (0, 1, 2)}, "expected LOW,HIGH"),  # silently truncated
    ({"background": (300, -1, 0)}, "three integers 0-255"),
    ({"background": (1.5, 2, 3)}, "three integers 0-255"),
    ({"tile": 3.5}, "-t 3.5"),  # was a TypeError inside the segment runner
    ({"gpu": "abc"}, "-g 'abc'"),  # under --ray it failed every file after Ray started
])
def test_python_options_are_checked_as_the_command_line_checks_them(options: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        UpscaleOptions(**options)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, UserError)  # one line, exit 2 in the CLI


def test_ray_refuses_a_malformed_gpu_before_ray_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--ray auto -g abc` started Ray (~9 s), failed each file in its worker and left an empty folder."""
    src = good_image(tmp_path, "a.png")
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "--ray", "auto", "-n", "realesr-animevideov3-x2",
                 "-g", "abc", "-q"]) == 2
    err = capsys.readouterr().err
    assert_clean(err)
    assert err.strip() == "realesr-portable: error: -g 'abc': expected auto, -1 (CPU), a GPU index or a list like 0,1"
    assert not (tmp_path / "out").exists()


def test_a_rerun_into_the_input_folder_never_upscales_its_own_outputs(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`-i dir -o dir` run twice wrote a_x2_x2.png from the first run's a_x2.png (exit 0), and
    rewrote a_x2.png while it was an input. Ray planned the same (distributed/plan.py)."""
    from realesr_portable.distributed.plan import plan_rows

    folder = tmp_path / "photos"
    folder.mkdir()
    good_image(folder, "a.png")
    good_image(folder, "b.png", seed=1)
    for run in range(2):
        assert main(["-i", str(folder), "-o", str(folder), *FAST[:-1]]) == 0, run
    err = capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x2.png", "b.png", "b_x2.png"]
    assert f"note: {folder / 'a_x2.png'}: skipped: it is the output of {folder / 'a.png'} (from an earlier run)" in err
    notes: list[str] = []
    rows = plan_rows([str(folder / n) for n in ("a.png", "a_x2.png", "b.png")], None, None, None, "_x2", notes)
    assert [Path(r.dst).name for r in rows] == ["a_x2.png", "b_x2.png"] and len(notes) == 1


def test_models_listing_escapes_what_a_sidecar_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sidecar licence holding a terminal escape (OSC title) or a newline reached the terminal raw."""
    import json

    folder = tmp_path / "models"
    folder.mkdir()
    official = resolve_model("realesr-animevideov3-x2")
    for suffix in (".param", ".bin"):
        (folder / f"m{suffix}").write_bytes(official.param.with_suffix(suffix).read_bytes())
    spec = json.loads(official.spec.to_json())
    spec.update(license="\x1b]0;pwned\x07MIT", source="line one\nline two")
    (folder / "m.json").write_text(json.dumps(spec))
    assert main(["models", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and len(out.strip().splitlines()) == 2, out
    assert "\\x1b]0;pwned\\x07MIT" in out and "line one\\nline two" in out


def test_a_four_channel_model_gets_an_opaque_alpha_plane_and_gives_colour(tmp_path: Path) -> None:
    """A 4-in/4-out model converted fine, then failed every image with "runner returned (4, ...),
    expected (3, ...)"; a 4-in/3-out one was fed the 3 colour planes into its 4-channel input."""
    import torch

    from export_support import small_model, srvgg_info
    from realesr_portable.api import Upscaler
    from realesr_portable.convert.cli import main as convert_main
    from realesr_portable.convert.weights_io import save_state_dict

    model = small_model(srvgg_info(2, channels=4))
    save_state_dict(model.state_dict(), tmp_path / "rgba.pth")
    assert convert_main(["convert", str(tmp_path / "rgba.pth"), "-o", str(tmp_path / "m"), "--fp32", "--no-verify"]) == 0
    rgb = noise_image(12, 16, seed=3)
    got = Upscaler(str(tmp_path / "m" / "rgba.param"), gpu=-1, threads=1).upscale(rgb)
    x = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)
    x = torch.cat([x, torch.ones_like(x[:1])])[None]
    x = torch.nn.functional.pad(x, (0, 10, 0, 10), mode="reflect")  # the runtime's pre-pad
    with torch.no_grad():
        ref = model(x)[0, :3, : 12 * 2, : 16 * 2].clamp(0, 1).mul(255).round().byte().numpy().transpose(1, 2, 0)
    assert got.shape == (24, 32, 3)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


# Round 5 on images (a deeper probe of the image command line and the Python API).

def test_an_output_folder_path_taken_by_a_file_is_refused_before_any_work(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`-o plainfile` (no suffix, an existing file) upscaled the whole batch, then failed every image."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        good_image(src, f"{i}.png", seed=i)
    (tmp_path / "plainfile").write_text("data")
    assert main(["-i", str(src), "-o", str(tmp_path / "plainfile"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"realesr-portable: error: -o {tmp_path / 'plainfile'}: a file is in the way of the output folder"
    assert (tmp_path / "plainfile").read_text() == "data"


def test_an_empty_input_and_one_file_spelled_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`-i ""` (an empty "$VAR") upscaled the current folder; `-i a.png -i $PWD/a.png` was refused
    as "several inputs would write this output"."""
    monkeypatch.chdir(tmp_path)
    good_image(tmp_path, "a.png")
    assert main(["-i", "", *FAST]) == 2
    assert "an empty input" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert main(["-i", "a.png", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_skip_existing_skips_only_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder named like the output counted as an existing output: the image was never made."""
    src = good_image(tmp_path, "a.png")
    (tmp_path / "out" / "a.webp").mkdir(parents=True)
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), "-f", "webp", "--skip-existing", *FAST]) == 1
    err = capsys.readouterr().err
    assert "skipped" not in err and "a.png" in err and (tmp_path / "out" / "a.webp").is_dir()


@pytest.mark.parametrize("mode, key", [("RGB", (10, 20, 30)), ("L", 7), ("I;16", 1234)])
def test_a_png_colour_key_becomes_alpha(tmp_path: Path, mode: str, key: object) -> None:
    """tRNS on an RGB or gray PNG (8 and 16 bits) was dropped: the transparent areas came out
    opaque in the key colour."""
    rng = np.random.default_rng(5)
    if mode == "RGB":
        pixels = rng.integers(40, 255, (6, 8, 3), dtype=np.uint8)
        pixels[:3] = key
    elif mode == "L":
        pixels = rng.integers(40, 255, (6, 8), dtype=np.uint8)
        pixels[:3] = key
    else:
        pixels = rng.integers(2000, 60000, (6, 8), dtype=np.uint16)
        pixels[:3] = key
    path = tmp_path / "key.png"
    (Image.fromarray(pixels) if mode == "I;16" else Image.fromarray(pixels, mode)).save(path, transparency=key)
    pic = read_image(path)
    assert pic.alpha is not None and pic.alpha.dtype == pixels.dtype
    assert (pic.alpha[:3] == 0).all() and (pic.alpha[3:] == np.iinfo(pixels.dtype).max).all()


def test_pillows_own_bomb_limit_never_overrides_max_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow refuses over 2 x its MAX_IMAGE_PIXELS (~179 MP) by itself: `--max-pixels 0` or 300M
    could not open a 200 MP image, and a tighter limit got Pillow's message instead of ours.
    (Simulated with Pillow's limit at 1000 pixels on a 64x48 image.)"""
    path = tmp_path / "a.png"
    Image.fromarray(noise_image(48, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert read_image(path, max_pixels=0).size == (64, 48)
    assert read_image(path, max_pixels=10_000).size == (64, 48)
    with pytest.raises(ImageError, match=r"64x48 = 3072 pixels exceeds the limit of 3000 \(raise it with --max-pixels\)"):
        read_image(path, max_pixels=3000)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored after each open


def test_tiff_inputs_say_what_pillow_drops_and_carry_no_layout_tags(tmp_path: Path) -> None:
    """A 16-bit RGB TIFF came out 8-bit without a word; a TIFF's own layout tags (its size, bits,
    strips) went into the output's EXIF and described the old file."""
    import tifffile

    deep = tmp_path / "deep.tif"
    tifffile.imwrite(deep, (np.arange(6 * 8 * 3, dtype=np.uint16).reshape(6, 8, 3) * 500), photometric="rgb")
    assert any("16-bit TIFF colour read at 8 bits" in n for n in read_image(deep).notes)
    plain = tmp_path / "plain.tif"
    Image.fromarray(noise_image()).save(plain)
    exif = Image.Exif()
    exif.load(read_image(plain).exif or b"")
    assert not set(exif) & {256, 257, 258, 259, 262, 273, 277, 278, 279, 284}, dict(exif)


def test_exif_too_long_for_jpeg_is_dropped_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """70 KB of EXIF into a JPEG failed the image after the upscale ("EXIF data is too long")."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000  # ImageDescription
    src = tmp_path / "a.png"
    Image.fromarray(noise_image()).save(src, exif=exif.tobytes())
    out = tmp_path / "a.jpg"
    assert main(["-i", str(src), "-o", str(out), *FAST[:-1]]) == 0
    assert "EXIF does not fit a JPEG (64 KB); not copied" in capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (16, 12) and im.format == "JPEG"


def test_a_folder_takes_the_other_image_suffixes_pillow_reads(tmp_path: Path) -> None:
    """.tga, .jfif and .ppm files in a folder were skipped in silence (named one by one they worked)."""
    src = tmp_path / "in"
    src.mkdir()
    for name, fmt in (("a.tga", "TGA"), ("b.jfif", "JPEG"), ("c.ppm", "PPM"), ("d.png", "PNG")):
        Image.fromarray(noise_image()).save(src / name, fmt)
    assert main(["-i", str(src), "-o", str(tmp_path / "out"), *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png", "d.png"]


def test_float_arrays_outside_zero_one_are_refused(x2_cpu) -> None:
    """0..255 floats came back clipped to all white, without a word."""
    with pytest.raises(ValueError, match=r"float input must be in \[0, 1\]; this one spans 0 to 255"):
        x2_cpu.upscale(np.linspace(0, 255, 6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3))


def test_a_trailing_slash_on_o_means_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o out/newdir.png/` wrote a file named newdir.png; with two inputs `-o out/v1.0.png/` said
    "2 inputs cannot go into one output file; give a directory". `-o ''` is refused."""
    a, b = good_image(tmp_path, "a.png"), good_image(tmp_path, "b.png", seed=1)
    assert main(["-i", str(a), "-o", f"{tmp_path / 'newdir.png'}/", *FAST]) == 0
    assert (tmp_path / "newdir.png" / "a.png").is_file()
    assert main(["-i", str(a), "-i", str(b), "-o", f"{tmp_path / 'v1.0.png'}/", *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "v1.0.png").iterdir()) == ["a.png", "b.png"]
    assert main(["-i", str(a), "-o", "", *FAST]) == 2
    assert "an empty output" in capsys.readouterr().err
