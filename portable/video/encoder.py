"""Encoder settings, checked before any work starts, and the frames handed to the encoder.

The container follows the output's extension; codec, CRF, preset and pixel format are the user's.
A frame size the pixel format cannot hold (odd width for 4:2:0) is padded by repeating the last
row/column, with a notice, rather than failing inside the encoder after minutes of upscaling.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..device.quiet import quiet_stderr
from .probe import VideoError, _reason, require_av

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".nut": "nut",
              ".avi": "avi"}

#: Highest --crf an encoder really takes where its option says "any float" (x264/x265 clamp to 51).
CRF_MAX = {"libx264": 51.0, "libx265": 51.0}


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
    _check_quality_options(av, settings)
    _check_open(av, settings, formats)


def _check_quality_options(av, settings: EncoderSettings) -> None:
    """Refuse --crf/--preset where the encoder has no such option (FFmpeg would ignore it silently)
    or --crf outside its range (x264/x265 clamp anything above 51 without a word)."""
    private = {o.name: o for o in av.codec.CodecContext.create(settings.codec, "w").supported_options.private}
    if settings.crf is not None:
        option = private.get("crf")
        if option is None:
            raise VideoError(f"--crf: {settings.codec} has no constant-quality (crf) setting; leave --crf out")
        low, high = max(0.0, option.min), min(option.max, CRF_MAX.get(settings.codec, option.max))
        if not low <= settings.crf <= high:
            raise VideoError(f"--crf {settings.crf:g}: {settings.codec} takes {low:g} to {high:g}")
    if settings.preset is not None and "preset" not in private:
        raise VideoError(f"--preset: {settings.codec} has no presets; leave --preset out")


def _check_open(av, settings: EncoderSettings, formats: list[str]) -> None:
    """Open the encoder once on a tiny frame, so a setting it refuses (a bad --preset, mjpeg's
    limited-range yuv420p) fails now, not after the first chunk. The encoder's own complaint
    (x264/x265 print "[error]" lines themselves) is silenced: our one line says it."""
    given = [f"--pix-fmt {settings.pix_fmt}"] + [f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
                                                for flag, value in (("--crf", settings.crf), ("--preset", settings.preset))
                                                if value is not None]
    failure = _open_fails(av, settings)
    if failure is not None:
        full_range = settings.pix_fmt.replace("yuv", "yuvj", 1)
        usable = full_range in formats and _open_fails(av, replace(settings, pix_fmt=full_range)) is None
        hint = f"; try --pix-fmt {full_range}" if usable else ""
        raise VideoError(f"--codec {settings.codec} rejects {', '.join(given)} ({failure}){hint}")


def _open_fails(av, settings: EncoderSettings) -> str | None:
    """Why the encoder refuses to open with `settings` on a 64x64 stream, or None when it opens."""
    _quiet_library_logs(settings)
    try:
        with quiet_stderr(), av.open(io.BytesIO(), "w", format="nut") as out:
            stream = out.add_stream(settings.codec, rate=25, options=settings.options())
            stream.width, stream.height, stream.pix_fmt = 64, 64, settings.pix_fmt
            stream.codec_context.open()
    except (av.FFmpegError, ValueError) as exc:
        return _reason(exc)
    return None


def _quiet_library_logs(settings: EncoderSettings) -> None:
    """SVT-AV1 prints its configuration to stdout unless told errors only (read once per process)."""
    if settings.codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")


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
    _quiet_library_logs(settings)
    options = settings.options()
    if out.format.name == "avi":
        options["bf"] = "0"  # AVI stores frames in decode order only: no reordering, no shifted frames
    stream = out.add_stream(settings.codec, rate=rate, options=options)
    stream.width, stream.height = size
    stream.pix_fmt = settings.pix_fmt
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    if rotation:
        stream.set_display_rotation(rotation)
    return stream
