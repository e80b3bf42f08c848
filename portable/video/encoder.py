"""Encoder settings, checked before any work starts, and the frames handed to the encoder.

The container follows the output's extension; codec, CRF, preset and pixel format are the user's.
A frame size the pixel format cannot hold (odd width for 4:2:0) is padded by repeating the last
row/column, with a notice, rather than failing inside the encoder after minutes of upscaling.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .probe import VideoError, require_av

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".nut": "nut",
              ".avi": "avi"}


@dataclass(frozen=True)
class EncoderSettings:
    """What the user chose for the output stream; part of a resume folder's identity."""

    codec: str = "libx264"
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str = "yuv420p"

    def to_dict(self) -> dict:
        return asdict(self)

    def options(self) -> dict[str, str]:
        """Private options for the codec; CRF in libvpx needs a zero bit rate to mean constant quality."""
        opts: dict[str, str] = {}
        if self.crf is not None:
            opts["crf"] = f"{self.crf:g}"
            if self.codec.startswith("libvpx"):
                opts["b"] = "0"
        if self.preset is not None:
            opts["preset"] = self.preset
        if self.codec == "libx265":
            opts["x265-params"] = "log-level=error"  # x265 prints a banner per encoder, one per chunk
        return opts


def container_format(path: Path) -> str:
    """FFmpeg muxer name for an output path, from its extension."""
    fmt = CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise VideoError(f"{path}: unsupported video container {path.suffix or '(none)'} "
                         f"(use {', '.join(sorted({s.lstrip('.') for s in CONTAINERS}))})")
    return fmt


def check_settings(settings: EncoderSettings, fmt: str) -> None:
    """Reject unknown encoders, pixel formats the encoder lacks and codecs the container cannot hold."""
    av = require_av()
    try:
        codec = av.codec.Codec(settings.codec, "w")
    except (av.codec.codec.UnknownCodecError, av.FFmpegError, ValueError):
        raise VideoError(f"--codec {settings.codec!r}: no such encoder in the bundled FFmpeg "
                         "(e.g. libx264, libx265, libvpx-vp9, libsvtav1, ffv1)") from None
    if codec.type != "video":
        raise VideoError(f"--codec {settings.codec!r} is a {codec.type} encoder, not a video one")
    formats = [f.name for f in codec.video_formats or ()]
    if formats and settings.pix_fmt not in formats:
        raise VideoError(f"--pix-fmt {settings.pix_fmt!r}: {settings.codec} takes {', '.join(formats)}")
    with av.open(io.BytesIO(), "w", format=fmt) as probe:
        if codec.canonical_name not in probe.supported_codecs:
            raise VideoError(f"--codec {settings.codec}: the {fmt} container cannot hold {codec.canonical_name}")
    if settings.preset is not None or settings.crf is not None:
        _check_options(av, settings)


def _check_options(av, settings: EncoderSettings) -> None:
    """Open the encoder once on a tiny frame so a bad --preset/--crf fails now, not after the first chunk."""
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format="nut") as out:
            stream = out.add_stream(settings.codec, rate=25, options=settings.options())
            stream.width, stream.height, stream.pix_fmt = 64, 64, settings.pix_fmt
            stream.codec_context.open()
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"--codec {settings.codec} rejects --crf/--preset ({str(exc).splitlines()[0]})") from None


def even_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """The smallest size >= (width, height) whose chroma planes the pixel format can hold exactly."""
    av = require_av()
    fmt = av.VideoFormat(pix_fmt)
    step_w = max(1, 64 // max(1, fmt.chroma_width(64)))
    step_h = max(1, 64 // max(1, fmt.chroma_height(64)))
    return -(-width // step_w) * step_w, -(-height // step_h) * step_h


def deep_format(pix_fmt: str) -> bool:
    """True when the pixel format keeps more than 8 bits, so frames travel as 16-bit RGB."""
    av = require_av()
    return max(c.bits for c in av.VideoFormat(pix_fmt).components) > 8


def pad_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Repeat the last row/column up to (width, height); a no-op when the size already fits."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    return np.pad(image, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


def open_video_stream(out, settings: EncoderSettings, size: tuple[int, int], time_base: Fraction,
                      rate: Fraction | None, rotation: int):
    """Add the encoded video stream; its time base is the input's, so every pts is kept exactly."""
    if settings.codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration unless told errors only
    stream = out.add_stream(settings.codec, rate=rate, options=settings.options())
    stream.width, stream.height = size
    stream.pix_fmt = settings.pix_fmt
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    if rotation:
        stream.set_display_rotation(rotation)
    return stream
