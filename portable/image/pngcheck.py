"""Check a PNG's chunk CRCs, which Pillow does not do for the image data (IDAT).

Why: a PNG whose pixel data was damaged in transit can still inflate to an image; Pillow decodes
it silently. The user should hear that the input is damaged even though it was upscaled.
"""

from __future__ import annotations

import zlib
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1 << 20  # read large IDAT chunks in pieces: memory stays small whatever the file


def crc_problems(path: Path) -> list[str]:
    """One note for the first chunk whose CRC does not match, else nothing."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != _SIGNATURE:
                return []
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    return []
                length = int.from_bytes(head[:4], "big")
                kind = head[4:8]
                crc = zlib.crc32(kind)
                left = length
                while left:
                    piece = fh.read(min(left, _CHUNK))
                    if not piece:
                        return []  # truncated: the decoder already reported or tolerated it
                    crc = zlib.crc32(piece, crc)
                    left -= len(piece)
                stored = fh.read(4)
                if len(stored) < 4:
                    return []
                if int.from_bytes(stored, "big") != crc:
                    name = kind.decode("latin-1", "replace")
                    return [f"PNG chunk {name} has a wrong CRC: the file is damaged; decoded anyway"]
                if kind == b"IEND":
                    return []
    except OSError:
        return []
