"""Is this file a video, and what is in it? Decided by opening it with PyAV, not by its name.

PyAV is an optional dependency (the `video` extra): it is imported only here, lazily, so the
image path and `--help` never need it, and a missing install becomes one line naming the extra.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

from ..errors import UserError
from ..suffixes import IMAGE_SUFFIXES, VIDEO_SUFFIXES

_IMAGE_DEMUXERS = ("image2", "gif", "apng", "webp_pipe", "tiff_pipe", "bmp_pipe")
_HEAD_BYTES = 4 << 20


class VideoError(UserError, ValueError):
    """A video that cannot be read, encoded or resumed; the message is one line naming the file."""


def require_av() -> ModuleType:
    """The `av` module, or a one-line VideoError saying which extra to install."""
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install 'realesr-portable[video]'") from None
    return av


def is_video(path: Path) -> bool:
    """True for a video: a video suffix, or (other suffixes) content PyAV opens as a moving picture.

    A file with a video suffix counts as a video even when unreadable, so that a broken `.mp4`
    gets the video error instead of being treated as an image.
    """
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    try:
        av = require_av()
    except VideoError:
        return False
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if container.format.name.split(",")[0] in _IMAGE_DEMUXERS or container.format.name.endswith("_pipe"):
                return False
            return bool(container.streams.video)
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know before decoding: size, timing and every frame's pts."""

    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    frame_pts: tuple[int, ...]  # sorted presentation timestamps of the video packets
    keyframe_pts: tuple[int, ...]
    rotation: int

    @property
    def frames(self) -> int:
        return len(self.frame_pts)


def probe(path: Path) -> VideoInfo:
    """Scan the video stream's packets (no decoding) for timestamps and keyframes.

    Raises VideoError for files that are not videos, have no video stream (audio-only), no frames,
    or cannot be demuxed to the end (truncated).
    """
    av = require_av()
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = main_video(container)
            if stream is None:
                kinds = sorted({s.type for s in container.streams})
                found = f"only {', '.join(kinds)}" if kinds else "no streams at all: an empty or zero-frame file"
                raise VideoError(f"{path}: no video stream ({found})")
            if stream.time_base is None:
                raise VideoError(f"{path}: the video stream has no time base")
            pts: list[int] = []
            keys: list[int] = []
            end = Fraction(0)  # where the last packet of any stream ends, in seconds
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None or packet.stream.time_base is None:
                    continue
                end = max(end, (packet.pts + (packet.duration or 0)) * Fraction(packet.stream.time_base))
                if packet.stream.index != stream.index:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
            if pts:
                _check_complete(path, container, end, Fraction(stream.time_base), pts)
            rotation = _first_rotation(container, stream) if pts else 0
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
    except VideoError:
        raise
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable video ({_reason(exc)})") from None
    except OSError as exc:
        raise VideoError(f"{path}: {exc.strerror or exc}") from None
    if not pts:
        raise VideoError(f"{path}: the video stream has no frames")
    if width <= 0 or height <= 0:
        raise VideoError(f"{path}: the video stream has no frame size")
    pts.sort()
    return VideoInfo(width, height, Fraction(stream.time_base), Fraction(rate) if rate else None, tuple(pts),
                     tuple(sorted(keys)) or (pts[0],), rotation)


def _check_complete(path: Path, container, end: Fraction, time_base: Fraction, pts: list[int]) -> None:
    """Refuse a file whose streams stop well before the duration its header announces.

    A cut Matroska/WebM file still demuxes (its header was written first); only the length it
    promised tells that frames are missing. Only Matroska is checked: mp4/mov lengths also count
    chapter tracks, and MPEG-TS lengths are estimates. The tolerance (3 frame intervals, at least 0.25 s)
    absorbs muxers' rounding of that length.
    """
    if container.duration is None or "matroska" not in container.format.name:
        return  # mp4/mov cut anywhere lose their index and fail to open; other headers guess lengths
    start = Fraction(container.start_time or 0, 1_000_000)
    promised = start + Fraction(container.duration, 1_000_000)
    ordered = sorted(pts)
    interval = (ordered[-1] - ordered[0]) * time_base / max(1, len(ordered) - 1)
    if promised - end > max(Fraction(1, 4), 3 * interval):
        raise VideoError(f"{path}: truncated (streams end at {float(end):.2f} s of the {float(promised):.2f} s "
                         "its header announces)")


def main_video(container):
    """The first video stream that is not an attached picture (cover art), or None."""
    cover = int(require_av().stream.Disposition.attached_pic)
    return next((s for s in container.streams.video if not int(s.disposition) & cover), None)


def _first_rotation(container, stream) -> int:
    """Display rotation in degrees (counter-clockwise), read from the first decoded frame's side data."""
    container.seek(0, stream=stream)
    for frame in container.decode(stream):
        return int(frame.rotation or 0)
    return 0


def _reason(exc: Exception) -> str:
    """FFmpeg's own message without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).splitlines()[0] if text else type(exc).__name__


def input_identity(path: Path) -> dict:
    """Size, mtime and a hash of the first MBs: enough to tell a resume folder's input from another file."""
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(_HEAD_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": digest.hexdigest()}
