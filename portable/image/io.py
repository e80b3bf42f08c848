"""Reading and writing images without losing what the user cares about.

Every supported mode becomes `Picture`: colour as (H,W,1) gray or (H,W,3) RGB, alpha apart, 8 or
16 bits. EXIF orientation is applied on read; the ICC profile and the rest of the EXIF are carried
to the output. Writes go to a temporary file in the target folder and are renamed into place, so
no half-written output survives a failure or Ctrl-C.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import atomic
from . import png16, pngcheck
from ..errors import UserError

DEFAULT_MAX_PIXELS = 100_000_000
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_ORIENTATION = 0x0112
#: IFD0 tags that describe how a TIFF stores its pixels (width, height, bits, compression,
#: photometric, strips, samples, planar, predictor, tiles, sample format, ...): Pillow reads a
#: TIFF's header as its EXIF, so these once described the old file in the output's EXIF.
_LAYOUT_TAGS = (254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
                330, 338, 339, 340, 341, 513, 514, 530, 531, 532)
_EXIF_IFD = 0x8769
_EXIF_DIMENSIONS = (0xA002, 0xA003)  # PixelXDimension, PixelYDimension
JPEG_MAX_EXIF = 65533  # one APP1 segment: Pillow cannot write more into a JPEG


class ImageError(UserError, ValueError):
    """An input cannot be read (corrupt, truncated, too large, unsupported) or an output not written."""


@dataclass
class Picture:
    """Decoded pixels plus the metadata to carry over. `color`: (H,W,1) or (H,W,3), uint8/uint16."""

    color: np.ndarray
    alpha: np.ndarray | None = None  # (H,W), same dtype as color
    icc: bytes | None = None
    exif: bytes | None = None  # orientation already applied and reset to 1
    source_format: str = "PNG"
    notes: list[str] = field(default_factory=list)

    @property
    def bits(self) -> int:
        return 16 if self.color.dtype == np.uint16 else 8

    @property
    def max_value(self) -> float:
        return 65535.0 if self.bits == 16 else 255.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.color.shape[1], self.color.shape[0]


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H,W,...) array, like PIL.ImageOps.exif_transpose."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),
        8: lambda x: np.rot90(x, 1),
    }
    op = ops.get(orientation)
    return a if op is None else np.ascontiguousarray(op(a))


def split_modes(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Pillow image of any supported mode -> (color, alpha) arrays."""
    mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode in ("P", "PA"):
        keep_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if keep_alpha else "RGB")
        mode = im.mode
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        notes.append(f"{mode} converted to RGB")
        im, mode = im.convert("RGB"), "RGB"
    elif mode in ("RGBa", "La"):
        im = im.convert(mode.upper())
        mode = im.mode
    if mode in ("L", "RGB"):
        a = np.asarray(im)
        return (a[..., None] if a.ndim == 2 else a), None
    if mode in ("LA", "RGBA"):
        a = np.asarray(im)
        return a[..., :-1], a[..., -1]
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if a.dtype != np.uint16:
            if a.min() < 0 or a.max() > 65535:
                raise ImageError(f"mode {mode} with values outside 0..65535 is not supported")
            a = a.astype(np.uint16)
        return a[..., None], None
    raise ImageError(f"unsupported image mode {mode}")


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode `path`; any problem is an `ImageError` whose message names the file."""
    path = Path(path)
    _require_regular(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file")
        with warnings.catch_warnings(), _pillow_limit():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            if max_pixels and w * h > max_pixels:
                raise ImageError(
                    f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (raise it with --max-pixels)"
                )
            notes: list[str] = []
            frames = getattr(im, "n_frames", 1)  # GIF, APNG, WebP: the output keeps one frame, said
            if frames > 1:
                notes.append(f"animated ({frames} frames): only the first frame is upscaled")
            raw16 = png16.colour16_rawmode(im)  # before getexif(), which may load the pixels
            icc = im.info.get("icc_profile")
            exif = im.getexif()
            orientation = _orientation(exif, notes)
            if im.mode == "CMYK":
                icc = None  # a CMYK profile would mislabel the converted RGB pixels.
            colour_key = im.info.get("transparency") if im.mode in ("RGB", "L", "I", "I;16", "I;16B") else None
            if raw16:
                data = png16.read_16bit_colour(str(path), raw16)
                color, alpha = (data[..., :-1], data[..., -1]) if data.shape[2] in (2, 4) else (data, None)
            else:
                im.load()
                color, alpha = split_modes(im, notes)
            source_format = im.format or "PNG"
            if source_format == "TIFF" and color.dtype == np.uint8 and _tiff_bits(im) > 8:
                notes.append(f"{_tiff_bits(im)}-bit TIFF colour read at 8 bits (Pillow reads such TIFFs so)")
            if alpha is None and colour_key is not None:
                alpha = _colour_key_alpha(color, colour_key)
    except ImageError:
        raise
    except Image.DecompressionBombError:  # a plugin that checks again while decoding
        raise ImageError(f"{path}: image exceeds Pillow's decompression-bomb limit") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many types inside Pillow
        raise ImageError(f"{path}: cannot decode image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if orientation != 1:
        color = _orient(color, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
    if source_format == "PNG":
        notes.extend(pngcheck.crc_problems(path))
    exif_bytes = _exif_bytes(exif, orientation, notes)
    return Picture(np.ascontiguousarray(color), alpha if alpha is None else np.ascontiguousarray(alpha),
                   icc, exif_bytes, source_format, notes)


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def _pillow_limit() -> Iterator[None]:
    """Pillow refuses images over twice its module-wide MAX_IMAGE_PIXELS (~179 MP) on its own:
    `--max-pixels 0` or 300M once could not open a 200 MP image, and a smaller limit got Pillow's
    message instead of ours. Pillow's is lifted for the open (the header only); `--max-pixels` is
    checked right after, before any pixel is decoded."""
    pillow = Image.MAX_IMAGE_PIXELS
    if pillow is None:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = pillow


def _colour_key_alpha(color: np.ndarray, key: object) -> np.ndarray | None:
    """The alpha a PNG tRNS colour key means (that colour transparent, all else opaque), or None
    when no pixel has it; it was once dropped, the transparent areas coming out in the key colour."""
    values = key if isinstance(key, tuple) else (key,)
    if len(values) != color.shape[2] or not all(isinstance(v, int) for v in values):
        return None
    transparent = np.all(color == np.asarray(values, dtype=np.int64).astype(color.dtype), axis=2)
    if not transparent.any():
        return None
    top = np.iinfo(color.dtype).max
    return np.where(transparent, 0, top).astype(color.dtype)


def _tiff_bits(im: Image.Image) -> int:
    """The widest BitsPerSample a TIFF declares (0 when it says none)."""
    bits = getattr(im, "tag_v2", {}).get(258, 0)
    return max(bits) if isinstance(bits, tuple) and bits else int(bits or 0)


def _require_regular(path: Path) -> None:
    """Refuse what is no regular file before Pillow opens it: a FIFO would block for good (and look
    empty to stat), a link loop or missing file deserves its own reason, not "cannot decode"."""
    kind = atomic.special_kind(path)
    if kind is not None:
        raise ImageError(f"{path}: not a regular file ({kind})")
    try:
        os.stat(path)
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the name
        raise ImageError(f"{str(path)!r}: not a valid file name") from None


def _orientation(exif: Image.Exif, notes: list[str]) -> int:
    """The EXIF orientation 1-8; a tag that is not a small number (stored as text, say) is ignored."""
    raw = exif.get(_ORIENTATION, 1)
    try:
        value = int(raw or 1)
    except (TypeError, ValueError, OverflowError):
        value = 0
    if not 1 <= value <= 8:
        notes.append(f"EXIF orientation {str(raw)[:20]!r} is not 1-8; ignored")
        return 1
    return value


def _exif_bytes(exif: Image.Exif, orientation: int, notes: list[str]) -> bytes | None:
    """EXIF to carry to the output (orientation reset to 1, as the pixels are already turned).

    Pillow cannot re-encode every EXIF block it can read (odd tag types raise struct.error and
    others); such a block is dropped with a note rather than failing the image.
    """
    if not len(exif):
        return None
    try:
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        for tag in _LAYOUT_TAGS:  # a TIFF's own layout (size, bits, strips) would describe the old file
            exif.pop(tag, None)
        if _EXIF_IFD in exif:
            sub = exif.get_ifd(_EXIF_IFD)
            for tag in _EXIF_DIMENSIONS:  # the old pixel size: wrong once upscaled
                sub.pop(tag, None)
        return exif.tobytes() if len(exif) else None
    except Exception as exc:  # noqa: BLE001 - Pillow's EXIF writer raises many types
        notes.append(f"EXIF could not be re-encoded ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); not copied")
        return None


def format_for(path: Path, fmt: str | None) -> str:
    """Pillow format name from `-f` or the output suffix (png when neither says)."""
    key = (fmt or path.suffix.lstrip(".") or "png").lower()
    if key not in FORMATS:
        raise ImageError(f"{path}: unsupported output format {key!r} (png, jpg, webp)")
    return FORMATS[key]


def flatten(pic: Picture, background: tuple[int, int, int]) -> Picture:
    """Composite alpha onto a solid colour (for JPEG, which has no alpha)."""
    if pic.alpha is None:
        return pic
    a = pic.alpha.astype(np.float32)[..., None] / pic.max_value
    bg = np.asarray(background, np.float32) * (pic.max_value / 255.0)
    color = pic.color.astype(np.float32)
    if color.shape[2] == 1 and len(set(background)) > 1:
        color = np.repeat(color, 3, axis=2)
    elif color.shape[2] == 1:
        bg = bg[:1]
    mixed = color * a + bg * (1.0 - a)
    return replace(pic, color=np.rint(mixed).astype(pic.color.dtype), alpha=None)


def _to_8bit(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.uint8 else np.rint(a.astype(np.float32) / 257.0).astype(np.uint8)


PNG_LEVEL = 1  # zlib level 1, run-length strategy (png16): Pillow's level 6 is ~8x slower for a 2-17% smaller file
PNG_LEVELS = range(10)


def check_png_level(level: int) -> int:
    """Refuse a zlib level outside 0-9 before any image is processed."""
    if isinstance(level, bool) or not isinstance(level, int) or level not in PNG_LEVELS:
        raise ValueError(f"--png-level {level!r}: expected an integer 0-9 (0 none, 1 fast, 9 smallest)")
    return level


def encode(pic: Picture, fmt: str, fh: BinaryIO, quality: int = 95, png_level: int = PNG_LEVEL) -> None:
    """Encode a picture into `fh`; 16 bits are kept in PNG only (JPEG/WebP are 8-bit formats).
    PNG at a fast zlib level by default so saving never holds up a GPU (bench/bench_png_level.py):
    16-bit PNG and the fast level are written by `png16`, other 8-bit levels by Pillow (its
    adaptive row filters make smaller files at the higher levels)."""
    color, alpha = pic.color, pic.alpha
    extra = {k: v for k, v in (("icc_profile", pic.icc), ("exif", pic.exif)) if v}
    if fmt == "PNG" and pic.bits == 16:
        data = color if alpha is None else np.concatenate([color, alpha[..., None]], axis=2)
        fh.write(png16.encode_png(data, pic.icc, pic.exif, level=png_level))
        return
    color = _to_8bit(color)
    planes = color if alpha is None else np.concatenate([color, _to_8bit(alpha)[..., None]], axis=2)
    if fmt == "PNG" and png_level == png16.FAST_LEVEL:
        fh.write(png16.encode_png(planes, pic.icc, pic.exif, level=png_level))
        return
    modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
    im = Image.fromarray(planes[..., 0] if planes.shape[2] == 1 else planes, modes[planes.shape[2]])
    if fmt == "JPEG":
        im.save(fh, "JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, **extra)
    elif fmt == "WEBP":
        im.save(fh, "WEBP", quality=quality, **extra)
    else:
        im.save(fh, "PNG", compress_level=png_level, **extra)


def save_image(path: Path, pic: Picture, fmt: str, quality: int = 95, png_level: int = PNG_LEVEL) -> None:
    """Encode straight into a temporary file beside `path`, then rename it into place.

    Encoder refusals (EXIF too long for JPEG, a WebP over 16383 px, ...) raise ValueError and
    others inside Pillow; they become one-line ImageErrors like file-system failures.
    """

    def writer(fh: BinaryIO) -> None:
        try:
            encode(pic, fmt, fh, quality, png_level)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow's encoders raise many types
            raise ImageError(f"{path}: cannot encode {fmt} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None

    write_atomic(path, writer)


def write_atomic(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """`atomic.write_atomic` with file-system failures reported as one-line ImageErrors."""
    try:
        atomic.write_atomic(path, writer)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write output ({exc.strerror or exc})") from None
