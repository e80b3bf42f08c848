"""Image modes, bit depths, orientation and metadata through read -> upscale -> write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps
from typer.testing import CliRunner

from realesr_portable.image import png16
from realesr_portable.cli import app
from realesr_portable.image.io import Picture, read_image, save_image

runner = CliRunner()
FAST = ["-n", "realesr-animevideov3-x2", "-g", "-1", "-q"]


def _cli(src: Path, dst: Path, *extra: str) -> None:
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), *FAST, *extra])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_round_trip_is_exact(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    data = rng.integers(0, 65536, (9, 13, channels), dtype=np.uint16)
    path = tmp_path / "a.png"
    pic = Picture(data[..., :3] if channels in (3, 4) else data[..., :1],
                  data[..., -1] if channels in (2, 4) else None)
    save_image(path, pic, "PNG")
    back = read_image(path)
    assert back.bits == 16
    assert np.array_equal(back.color, pic.color)
    assert (back.alpha is None) == (pic.alpha is None)
    if pic.alpha is not None:
        assert np.array_equal(back.alpha, pic.alpha)


def test_16bit_reader_handles_every_png_row_filter(tmp_path: Path) -> None:
    """Pillow writes 8-bit; a 16-bit RGB file with adaptive filters comes from our own encoder
    with each filter type forced, decoded back exactly."""
    rng = np.random.default_rng(7)
    data = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    # The encoder's file, its rows re-filtered with None/Sub/Up/Average/Paeth by hand.
    raw = np.ascontiguousarray(data, ">u2").view(np.uint8).reshape(6, 30).astype(np.int32)
    rows, prev = [], np.zeros(30, np.int32)
    for i, f in enumerate([0, 1, 2, 3, 4, 2]):
        r = raw[i]
        left = np.concatenate([np.zeros(6, np.int32), r[:-6]])
        up_left = np.concatenate([np.zeros(6, np.int32), prev[:-6]])
        p = left + prev - up_left
        paeth = np.where((abs(p - left) <= abs(p - prev)) & (abs(p - left) <= abs(p - up_left)), left,
                         np.where(abs(p - prev) <= abs(p - up_left), prev, up_left))
        pred = [0, left, prev, (left + prev) // 2, paeth][f]
        rows.append(bytes([f]) + ((r - pred) % 256).astype(np.uint8).tobytes())
        prev = r
    import zlib

    encoded = png16.encode_png(data)
    idat_start = encoded.index(b"IDAT") - 4
    iend = encoded.index(b"IEND") - 4
    body = zlib.compress(b"".join(rows))
    chunk = len(body).to_bytes(4, "big") + b"IDAT" + body + zlib.crc32(b"IDAT" + body).to_bytes(4, "big")
    path = tmp_path / "filters.png"
    path.write_bytes(encoded[:idat_start] + chunk + encoded[iend:])
    assert np.array_equal(read_image(path).color, data)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path: Path, orientation: int, photo_crop) -> None:
    base = Image.fromarray(photo_crop("astronaut.png", 50, 60, 10, 14))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestMake"
    path = tmp_path / "o.png"
    base.save(path, exif=exif.tobytes())
    pic = read_image(path)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(pic.color, expected)
    kept = Image.Exif()
    kept.load(pic.exif)
    assert kept.get(0x0112, 1) == 1 and kept[0x010F] == "TestMake"


def test_icc_and_exif_survive_the_cli(tmp_path: Path, photo_crop) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    src = tmp_path / "meta.jpg"
    Image.fromarray(photo_crop("coffee.png", 100, 100, 12, 16)).save(src, quality=95, icc_profile=icc, exif=exif.tobytes())
    for fmt in ("png", "jpg", "webp"):
        dst = tmp_path / f"out.{fmt}"
        _cli(src, dst)
        with Image.open(dst) as im:
            assert im.info.get("icc_profile") == icc, fmt
            assert im.getexif().get(0x010F) == "CameraMaker", fmt
            assert im.size == (32, 24)


@pytest.mark.parametrize(
    "mode,expected_mode",
    [("L", "L"), ("LA", "LA"), ("RGB", "RGB"), ("RGBA", "RGBA"), ("P", "RGB"), ("PT", "RGBA"), ("1", "L")],
)
def test_modes_round_trip_through_the_cli(tmp_path: Path, mode: str, expected_mode: str, photo_crop) -> None:
    rgb = Image.fromarray(photo_crop("chelsea.png", 100, 160, 12, 16))
    if mode == "PT":
        im = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        im.info["transparency"] = 0
    else:
        im = rgb.convert(mode) if mode != "LA" else Image.merge("LA", (rgb.convert("L"), rgb.convert("L").point(lambda v: 255 - v)))
    src = tmp_path / "in.png"
    im.save(src, transparency=0) if mode == "PT" else im.save(src)
    dst = tmp_path / "out.png"
    _cli(src, dst)
    with Image.open(dst) as out:
        assert out.mode == expected_mode and out.size == (32, 24)
        result = np.asarray(out.convert(expected_mode)).astype(np.float32)
        reference = np.asarray(Image.open(src).convert(expected_mode).resize((32, 24), Image.Resampling.BICUBIC)).astype(np.float32)
    # A super-resolved image stays close to the bicubic one on average (same content, same mode).
    assert np.abs(result - reference).mean() < 20


def test_16bit_png_gives_16bit_png_processed_in_float(tmp_path: Path, photo_crop) -> None:
    rgb8 = photo_crop("astronaut.png", 120, 200, 12, 16)
    rgb16 = rgb8.astype(np.uint16) * 257 + 100  # values not reachable from 8-bit data
    src16, src8 = tmp_path / "a16.png", tmp_path / "a8.png"
    src16.write_bytes(png16.encode_png(rgb16))
    Image.fromarray(rgb8).save(src8)
    _cli(src16, tmp_path / "o16.png")
    _cli(src8, tmp_path / "o8.png")
    out16 = read_image(tmp_path / "o16.png")
    out8 = read_image(tmp_path / "o8.png").color.astype(np.float32)
    assert out16.bits == 16 and out16.color.shape == (24, 32, 3)
    # Values between the 8-bit levels exist: the 16-bit path was not quantised to 8 bits.
    assert np.any(out16.color % 257 != 0)
    assert np.abs(out16.color / 257.0 - out8).max() < 3.0


def test_gray16_keeps_16_bits(tmp_path: Path, photo_crop) -> None:
    gray = (photo_crop("coffee.png", 10, 10, 12, 16)[..., 0].astype(np.uint16) * 250)
    src = tmp_path / "g16.png"
    Image.fromarray(gray).save(src)
    _cli(src, tmp_path / "g16_out.png")
    with Image.open(tmp_path / "g16_out.png") as im:
        assert im.mode == "I;16" and im.size == (32, 24)


def test_alpha_is_bicubic_by_default_and_model_on_request(tmp_path: Path, photo_crop) -> None:
    rgb = photo_crop("coffee.png", 200, 200, 12, 16)
    alpha = np.tile(np.linspace(0, 255, 16, dtype=np.float32), (12, 1)).astype(np.uint8)
    src = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src)
    _cli(src, tmp_path / "bicubic.png")
    _cli(src, tmp_path / "model.png", "--alpha", "model")
    expected = np.asarray(Image.fromarray(alpha).resize((32, 24), Image.Resampling.BICUBIC))
    got = np.asarray(Image.open(tmp_path / "bicubic.png"))[..., 3]
    assert np.array_equal(got, expected)
    by_model = np.asarray(Image.open(tmp_path / "model.png"))[..., 3].astype(np.int32)
    assert not np.array_equal(by_model, expected)
    assert np.abs(by_model - expected).mean() < 12  # the net upscales a ramp to a similar ramp


def test_alpha_to_jpg_is_flattened_with_a_notice(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 4:, 3] = 255
    src = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(src)
    dst = tmp_path / "t.jpg"
    result = runner.invoke(app, ["-i", str(src), "-o", str(dst), "-n", "realesr-animevideov3-x2", "-g", "-1",
                                 "--background", "0,0,255"])
    assert result.exit_code == 0, result.output
    assert "flattened" in result.output
    out = np.asarray(Image.open(dst)).astype(int)
    assert out[8, 1, 2] > 200 and out[8, 1, 0] < 60  # transparent side shows the blue background
    assert out[8, 14, 0] > 200 and out[8, 14, 2] < 60  # opaque side stays red


def test_cmyk_is_converted_with_a_note(tmp_path: Path, photo_crop) -> None:
    src = tmp_path / "cmyk.jpg"
    Image.fromarray(photo_crop("coffee.png", 50, 50, 12, 16)).convert("CMYK").save(src, quality=95)
    result = runner.invoke(app, ["-i", str(src), "-o", str(tmp_path / "c.png"), "-n", "realesr-animevideov3-x2", "-g", "-1"])
    assert result.exit_code == 0, result.output
    assert "CMYK converted to RGB" in result.output
    assert Image.open(tmp_path / "c.png").mode == "RGB"


def test_output_format_flag_and_webp_input(tmp_path: Path, photo_crop) -> None:
    src = tmp_path / "in.webp"
    Image.fromarray(photo_crop("chelsea.png", 60, 60, 12, 16)).save(src, lossless=True)
    out_dir = tmp_path / "outs"
    result = runner.invoke(app, ["-i", str(src), "-o", str(out_dir), "-f", "jpg", *FAST])
    assert result.exit_code == 0, result.output
    with Image.open(out_dir / "in.jpg") as im:
        assert im.format == "JPEG" and im.size == (32, 24)


def test_pixel_data_of_a_real_photo_reads_like_pillow(skimage_photo) -> None:
    pic = read_image(skimage_photo("astronaut.png"))
    with Image.open(skimage_photo("astronaut.png")) as im:
        assert np.array_equal(pic.color, np.asarray(im.convert("RGB")))
