"""16-bit colour PNG reading and writing, which Pillow truncates to 8 bits.

Reading lets Pillow's own PNG decoder undo the row filters twice, once keeping the high byte of
every sample and once the low byte (the two `;16B`/`;16L` raw modes unfilter with the same
6/8-byte pixel stride), then joins them. Writing emits IHDR/iCCP/eXIf/IDAT/IEND directly.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image, PngImagePlugin

_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def colour16_rawmode(im: Image.Image) -> str | None:
    """Pillow's raw mode for a not-yet-loaded PNG whose 16-bit colour samples it would truncate."""
    if not isinstance(im, PngImagePlugin.PngImageFile) or not im.tile:
        return None
    raw = str(im.tile[0].args)
    return raw if raw in ("RGB;16B", "RGBA;16B", "LA;16B") else None


def read_16bit_colour(path: str, raw: str) -> np.ndarray:
    """Return (H,W,C) uint16 for the 16-bit RGB/RGBA/gray+alpha PNG at `path` (raw from above)."""
    if raw == "LA;16B":
        # Two 16-bit samples = 4 bytes: decoding as plain 8-bit RGBA passes the bytes through.
        planes = _decode_as(path, "RGBA")
        data = planes.astype(np.uint16)
        return np.stack([data[..., 0] << 8 | data[..., 1], data[..., 2] << 8 | data[..., 3]], axis=-1)
    high = _decode_as(path, raw)
    low = _decode_as(path, raw.replace(";16B", ";16L"))
    return high.astype(np.uint16) << 8 | low.astype(np.uint16)


def _decode_as(path: str, rawmode: str) -> np.ndarray:
    with Image.open(path) as im:
        tile = im.tile[0]
        im.tile = [tile._replace(args=rawmode)]  # Pillow opens 16-bit LA as RGBA, so "RGBA" fits too.
        im.load()
        return np.asarray(im)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_16bit(pixels: np.ndarray, icc: bytes | None = None, exif: bytes | None = None, level: int = 6) -> bytes:
    """Encode (H,W,C) uint16 (C = 1..4) as a 16-bit PNG; rows use the Sub filter (vectorised)."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    h, w, c = pixels.shape
    raw = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(h, w, 2 * c)
    filtered = raw.copy()
    filtered[:, 1:] -= raw[:, :-1]  # uint8 arithmetic wraps mod 256, as the PNG Sub filter wants.
    rows = np.concatenate([np.ones((h, 1), np.uint8), filtered.reshape(h, w * 2 * c)], axis=1)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, _COLOR_TYPES[c], 0, 0, 0))]
    if icc:
        out.append(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
    if exif:
        out.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out.append(_chunk(b"IDAT", zlib.compress(rows.tobytes(), level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
