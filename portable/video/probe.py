"""Is this file a video, and what is in it? Decided by opening it with PyAV, not by its name.

PyAV is an optional dependency (the `video` extra): it is imported only here, lazily, so the
image path and `--help` never need it, and a missing install becomes one line naming the extra.
"""

from __future__ import annotations

import hashlib
import os
from stat import S_ISDIR, S_ISFIFO, S_ISREG
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


class MissingAvError(VideoError):
    """PyAV is not installed: this machine's set-up, not bad usage, even while the command sets up."""

    exit_code = 1  # read by the one exit-code table, cli/commands.py `exit_code`


def require_av() -> ModuleType:
    """The `av` module, or a one-line VideoError saying which extra to install."""
    try:
        import av
    except ImportError:
        raise MissingAvError("video needs PyAV: pip install 'realesr-portable[video]'") from None
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
    if not path.is_file():  # a FIFO or device: opening it could block; the image path refuses it
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
    by_order: bool = False  # frame_pts are decode-order stamps (AVI): the n-th decoded frame gets the n-th
    notes: tuple[str, ...] = ()  # for the user: what could not be checked (a Matroska file announcing no length), a dropped alpha plane

    @property
    def frames(self) -> int:
        return len(self.frame_pts)


def _alpha_note(path: Path, pix_fmt: str | None) -> tuple[str, ...]:
    """A note for a video with an alpha plane (yuva420p, rgba, ...): frames travel as RGB, so its
    transparency is dropped; it once vanished without a word."""
    if pix_fmt is None:
        return ()
    av = require_av()
    try:
        planes = len(av.video.format.VideoFormat(pix_fmt).components)
    except (ValueError, av.FFmpegError):
        return ()
    if planes in (2, 4):  # gray + alpha, colour + alpha (bgr0's padding is no component)
        return (f"{path.name}: its alpha channel ({pix_fmt}) is dropped: video output carries colour only",)
    return ()


def probe(path: Path) -> VideoInfo:
    """Scan the video stream's packets (no decoding) for timestamps and keyframes.

    Raises VideoError for files that are not videos, have no video stream (audio-only), no frames,
    or cannot be demuxed to the end (truncated).
    """
    av = require_av()
    _require_regular(path)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = main_video(container)
            if stream is None:
                kinds = sorted({s.type for s in container.streams})
                found = f"only {', '.join(kinds)}" if kinds else "no streams at all: an empty or zero-frame file"
                raise VideoError(f"{path}: no video stream ({found})")
            if stream.time_base is None:
                raise VideoError(f"{path}: the video stream has no time base")
            # AVI stores no presentation times: FFmpeg guesses pts = dts + a reorder delay, so frames
            # (B-frames included) are numbered by decode order: the n-th frame shown is the n-th dts.
            by_order = container.format.name == "avi"
            pts: list[int] = []  # in decode order until sorted below
            keys: list[int] = []
            first_key: int | None = None  # index in `pts` of the first keyframe
            video_end = Fraction(0)  # where the video stream's last frame ends, in seconds
            end = Fraction(0)  # where the last packet of any stream ends, in seconds
            tb = Fraction(stream.time_base)
            for packet in container.demux():
                stamp = packet.dts if by_order and packet.stream.index == stream.index else packet.pts
                if packet.size == 0 or stamp is None or packet.stream.time_base is None:
                    continue
                stop = (stamp + (packet.duration or 0)) * Fraction(packet.stream.time_base)
                end = max(end, stop)
                if packet.stream.index != stream.index:
                    continue
                video_end = max(video_end, stop if packet.duration else stamp * tb + _shortest(pts, tb))
                if getattr(packet, "is_discard", False):  # an edit list's hidden pre-roll: never shown
                    continue
                pts.append(stamp)
                if packet.is_keyframe:
                    keys.append(stamp)
                    first_key = len(pts) - 1 if first_key is None else first_key
            notes = _check_complete(path, container, stream, video_end, end, pts) if pts else ()
            if first_key:  # a recording cut mid-GOP: the decoder starts at the first keyframe
                notes = (*notes, f"{path.name}: {first_key} frame(s) before the first keyframe cannot be decoded; skipped")
                pts = pts[first_key:]
            rotation = _first_rotation(container, stream) if pts else 0
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            notes = (*notes, *_alpha_note(path, stream.codec_context.pix_fmt))
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
                     tuple(sorted(keys)) or (pts[0],), rotation, by_order, notes)


def check_frame_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    """The image path's decompression-bomb limit (--max-pixels), applied to a video's frames."""
    if max_pixels and width * height > max_pixels:
        raise VideoError(f"{path}: {width}x{height} = {width * height} pixels per frame exceeds the limit of "
                         f"{max_pixels} (raise it with --max-pixels)")


def _require_regular(path: Path) -> None:
    """Refuse a FIFO, socket or device before FFmpeg opens it: a FIFO with no writer blocks for good,
    and segments and --resume need a file that can be read twice and seeked."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise VideoError(f"{path}: {exc.strerror or exc}") from None
    if not S_ISREG(mode):
        kind = "a FIFO" if S_ISFIFO(mode) else "a folder" if S_ISDIR(mode) else "a device or socket"
        raise VideoError(f"{path}: not a regular file ({kind}); give a video file")


def _shortest(pts: list[int], time_base: Fraction) -> Fraction:
    """The shortest frame interval seen so far (seconds): the length of a last frame with no duration."""
    ordered = sorted(pts[-16:])
    return min((b - a for a, b in zip(ordered, ordered[1:]) if b > a), default=0) * time_base


def _check_complete(path: Path, container, stream, video_end: Fraction, end: Fraction,
                    pts: list[int]) -> tuple[str, ...]:
    """Refuse a Matroska/WebM file whose frames stop before the length its header announces.

    A cut Matroska file still demuxes (its header was written first); only the length it promised
    tells that frames are missing. FFmpeg's muxer writes each stream's exact length as a DURATION
    tag: the video must end there within half its shortest frame interval (lengths are in ms), so
    one missing frame is caught. Without that tag the segment's duration is compared with where any
    stream ends (Opus/AAC codec delay makes a complete file up to ~10 ms short). Without either,
    nothing can be checked: that is returned as a note. mp4/mov cut anywhere lose their index and
    fail to open; other containers' lengths are estimates and are not checked.
    """
    if "matroska" not in container.format.name:
        return ()
    _check_segment_size(path)
    tb = Fraction(stream.time_base)
    ordered = sorted(pts)
    shortest = min((b - a for a, b in zip(ordered, ordered[1:]) if b > a), default=0) * tb
    announced = _tag_seconds(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
    if announced is not None:
        start = Fraction(stream.start_time or 0) * tb if stream.start_time is not None else Fraction(0)
        reached, promised, slack = video_end, start + announced, max(shortest / 2, Fraction(1, 500))
    elif container.duration is not None:
        promised = Fraction(container.start_time or 0, 1_000_000) + Fraction(container.duration, 1_000_000)
        reached, slack = end, max(shortest / 2, Fraction(1, 100))
    else:
        return (f"{path.name}: the file announces no length, so a cut file cannot be told from a complete one",)
    if promised - reached > slack:
        raise VideoError(f"{path}: truncated (its frames end at {float(reached):.3f} s of the "
                         f"{float(promised):.3f} s its header announces)")
    return ()


def _check_segment_size(path: Path) -> None:
    """Refuse a Matroska file shorter than its Segment element says (exact, whatever was cut off).

    A muxer writing to a seekable file (FFmpeg, mkvmerge) stores the Segment's size when it
    finishes; a live-written file says "unknown" and is left to the length checks.
    """
    with open(path, "rb") as fh:
        head = fh.read(64)
        size = os.fstat(fh.fileno()).st_size
    pos = 0
    for wanted in (0x1A45DFA3, 0x18538067):  # the EBML header, then the Segment
        ident, pos = _vint(head, pos, keep_marker=True)
        length, pos = _vint(head, pos, keep_marker=False)
        if ident != wanted or length is None:
            return  # not the usual layout, or an unknown size: nothing to compare
        if wanted == 0x1A45DFA3:
            pos += length
    if size < pos + length:
        raise VideoError(f"{path}: truncated (the file has {size} bytes, its header announces {pos + length})")


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int | None, int]:
    """An EBML variable-length integer at `pos`: (value, next position); value None when unknown/short."""
    if pos >= len(data) or data[pos] == 0:
        return None, len(data)
    width = 8 - data[pos].bit_length() + 1
    if pos + width > len(data):
        return None, len(data)
    value = int.from_bytes(data[pos : pos + width], "big")
    if keep_marker:
        return value, pos + width
    value &= (1 << (7 * width)) - 1
    return (None if value == (1 << (7 * width)) - 1 else value), pos + width


def _tag_seconds(text: str | None) -> Fraction | None:
    """Matroska's `HH:MM:SS.nnnnnnnnn` length tag in seconds, or None."""
    try:
        hours, minutes, seconds = (text or "").split(":")
        return (int(hours) * 60 + int(minutes)) * 60 + Fraction(seconds)
    except ValueError:
        return None


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
