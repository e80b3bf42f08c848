"""Decode -> upscale -> encode, overlapping in threads joined by small bounded queues.

Memory stays independent of the video's length: at most a few frames wait in each queue, and each
chunk is encoded straight into its own file. Frames keep their input pts, duration and time base,
so variable frame rate survives unchanged. An error in any stage stops the others and surfaces in
the caller as one VideoError; an unfinished chunk is discarded by the atomic writer.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from .encoder import EncoderSettings, even_size, open_video_stream, pad_to
from .probe import VideoError, VideoInfo, _reason, check_frame_size, main_video, require_av
from .join import fix_dts
from .chunks import Chunk, WorkFolder, chunk_of
from .sink import Sink
from .timing import Timing

_QUEUE = 4
_END = None


@dataclass
class Item:
    """One frame on its way through the pipeline."""

    chunk: Chunk
    pts: int
    duration: int | None
    image: np.ndarray


@dataclass
class Colour:
    """The input's colour tags, carried to the output so players interpret the pixels the same way."""

    tags: dict = field(default_factory=dict)


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def decode(path: Path, info: VideoInfo, todo: list[Chunk], rgb_format: str, colour: Colour,
           max_pixels: int = 0) -> Iterator[Item]:
    """Frames of the `todo` chunks in presentation order, starting with a seek to the first one.

    Where the container has no presentation times (AVI, `info.by_order`), the decoder's output
    order is the presentation order and the n-th frame from a keyframe gets the n-th stamp of the
    probe from there: FFmpeg's guessed pts would run one frame late and, with B-frames, backwards.
    """
    av = require_av()
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = main_video(container)
            stream.thread_type = "AUTO"
            index = 0  # by_order: the probe's stamp for the next decoded frame
            if todo[0].start_pts > info.frame_pts[0]:
                container.seek(todo[0].start_pts, stream=stream)
                index = bisect.bisect_left(info.frame_pts, todo[0].start_pts)
            last, current = todo[-1], None
            for frame in container.decode(stream):
                pts = frame.pts
                if info.by_order:
                    if index >= len(info.frame_pts):
                        return
                    pts, index = info.frame_pts[index], index + 1
                elif pts is None:
                    raise VideoError(f"{path}: a frame has no timestamp; remux the file first")
                if last.end_pts is not None and pts >= last.end_pts:
                    return
                chunk = current if current is not None and current.holds(pts) else chunk_of(todo, pts)
                current = chunk
                if chunk is None:
                    continue
                check_frame_size(path, frame.width, frame.height, max_pixels)
                if (frame.width, frame.height) != (info.width, info.height):  # once padded and smeared, exit 0
                    raise VideoError(f"{path}: the frame size changes from {info.width}x{info.height} to "
                                     f"{frame.width}x{frame.height} at {float(pts * info.time_base):.3f} s; "
                                     "split the file where it changes")
                if not colour.tags:
                    colour.tags = {k: getattr(frame, k) for k in ("colorspace", "color_range", "color_primaries", "color_trc")}
                yield Item(chunk, pts, frame.duration or None, frame.to_ndarray(format=rgb_format))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: decoding failed ({_reason(exc)})") from None


def encode_chunk(path: Path, fmt: str, items: "_Peek", settings: EncoderSettings, timing: Timing,
                   rotation: int, rgb_format: str, colour: Colour, notices: list[str],
                   on_frame: Callable[[], None]) -> None:
    """Encode the frames of one chunk into `path` (atomically: a temp file renamed when complete)."""
    av = require_av()
    chunk = items.peek().chunk
    size = _frame_size(items.peek().image, settings.pix_fmt, notices)
    count = 0

    def writer(fh) -> None:
        nonlocal count
        last = None
        sink = Sink(fh)
        with av.open(sink, "w", format=fmt) as out:
            stream = open_video_stream(out, settings, size, timing.time_base, timing.rate, rotation)
            _tag_colour(stream, colour, settings.pix_fmt)
            while (item := items.peek()) is not _END and item.chunk is chunk:
                next(items)
                frame = av.VideoFrame.from_ndarray(pad_to(item.image, *size), format=rgb_format)
                frame = frame.reformat(format=settings.pix_fmt, dst_colorspace=_space(colour),
                                       dst_color_range=_range(colour, settings.pix_fmt))
                frame.pts, frame.time_base = timing.pts(item.pts), timing.time_base
                duration = timing.duration(item.duration)
                if duration:
                    frame.duration = duration
                for packet in stream.encode(frame):
                    last = _mux(out, packet, last, timing.time_base)
                sink.check()
                count += 1
                on_frame()
            if count != chunk.frames:  # raised inside the writer: the partial chunk is discarded
                raise VideoError(f"segment {chunk.index}: decoded {count} of {chunk.frames} frames "
                                 "(truncated or damaged input?)")
            for packet in stream.encode(None):
                last = _mux(out, packet, last, timing.time_base)
        sink.check()

    try:
        write_atomic(path, writer)
    except av.FFmpegError as exc:
        raise VideoError(f"{path.name}: encoding with {settings.codec} failed ({_reason(exc)})") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _mux(out, packet, last, time_base):
    """Mux one encoded packet with a dts the muxer accepts (see join.fix_dts); returns its dts."""
    tick = Fraction(packet.time_base or time_base)
    last = fix_dts(packet, last, tick)
    out.mux(packet)
    return last


def _frame_size(image: np.ndarray, pix_fmt: str, notices: list[str]) -> tuple[int, int]:
    """The encoded size: the upscaled size, padded up when the pixel format needs even sides."""
    height, width = image.shape[:2]
    size = even_size(width, height, pix_fmt)
    note = (f"{width}x{height} does not fit {pix_fmt}; padded to {size[0]}x{size[1]} "
            "by repeating the last row/column")
    if size != (width, height) and note not in notices:
        notices.append(note)
    return size


_UNSPECIFIED = {"colorspace": 2, "color_primaries": 2, "color_trc": 2, "color_range": 0}  # FFmpeg's values


def _space(colour: Colour):
    """The input's YUV matrix for the RGB -> YUV conversion, or None (swscale's default)."""
    space = colour.tags.get("colorspace")
    return space if space is not None and int(space) != _UNSPECIFIED["colorspace"] else None


def _range(colour: Colour, pix_fmt: str) -> int | None:
    """The output's colour range: full for the yuvj formats, else the input's where it is set.
    The RGB -> YUV conversion must use it too: with the input's full-range tag on limited-range
    pixels, black played as 16 and white as 235 (washed out)."""
    if pix_fmt.startswith("yuvj"):
        return _FULL_RANGE
    value = colour.tags.get("color_range")
    return int(value) if value is not None and int(value) != _UNSPECIFIED["color_range"] else None


_FULL_RANGE = 2  # FFmpeg's AVCOL_RANGE_JPEG


def _tag_colour(stream, colour: Colour, pix_fmt: str) -> None:
    """Copy the input's colour tags that are set onto the encoder (the range as `_range` says)."""
    ctx = stream.codec_context
    out_range = _range(colour, pix_fmt)
    tags = {**colour.tags, "color_range": out_range} if out_range is not None else colour.tags
    for key, value in tags.items():
        if value is not None and int(value) != _UNSPECIFIED[key]:
            try:
                setattr(ctx, key, value)
            except (AttributeError, TypeError, ValueError):
                pass


class _Peek:
    """An iterator over a queue with one item of look-ahead; re-raises a stage's failure."""

    def __init__(self, q: queue.Queue, stop: threading.Event) -> None:
        self.q, self.stop = q, stop
        self.head: object = ...

    def peek(self):
        while self.head is ...:
            try:
                self.head = self.q.get(timeout=0.2)
            except queue.Empty:
                if self.stop.is_set():
                    raise VideoError("stopped") from None
        if isinstance(self.head, _Failure):
            raise self.head.exc
        return self.head

    def __next__(self):
        item = self.peek()
        self.head = ...
        return item


def _put(q: queue.Queue, item: object, stop: threading.Event) -> None:
    while True:
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            if stop.is_set():
                raise VideoError("stopped") from None


def run(src: Path, info: VideoInfo, todo: list[Chunk], work: WorkFolder, fmt: str, settings: EncoderSettings,
        timing: Timing, rgb_format: str, transform: Callable[[Item], np.ndarray], notices: list[str],
        on_frame: Callable[[], None], max_pixels: int = 0) -> None:
    """Decode and encode in two threads around `transform` (the upscaler) in the calling thread."""
    decoded: queue.Queue = queue.Queue(maxsize=_QUEUE)
    upscaled: queue.Queue = queue.Queue(maxsize=_QUEUE)
    stop = threading.Event()
    colour = Colour()
    errors: list[BaseException] = []

    def decoder() -> None:
        try:
            for item in decode(src, info, todo, rgb_format, colour, max_pixels):
                _put(decoded, item, stop)
            _put(decoded, _END, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            if not stop.is_set():
                _put_failure(decoded, exc)

    def encoder() -> None:
        items = _Peek(upscaled, stop)
        try:
            while items.peek() is not _END:
                encode_chunk(work.chunk_path(items.peek().chunk), fmt, items, settings, timing,
                               info.rotation, rgb_format, colour, notices, on_frame)
        except BaseException as exc:  # noqa: BLE001
            named = isinstance(exc, VideoError) and str(src) not in str(exc) and str(exc) != "stopped"
            errors.append(VideoError(f"{src}: {exc}") if named else exc)  # which input, in a batch
            stop.set()

    threads = [threading.Thread(target=decoder, daemon=True), threading.Thread(target=encoder, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        source = _Peek(decoded, stop)
        while (item := next(source)) is not _END:
            item.image = transform(item)
            _put(upscaled, item, stop)
        _put(upscaled, _END, stop)
        threads[1].join()
    except BaseException as exc:
        stop.set()
        if not errors:
            _put_failure(upscaled, exc)
        threads[1].join(timeout=30)
        if errors and isinstance(exc, VideoError) and str(exc) == "stopped":
            raise errors[0] from None
        raise
    finally:
        stop.set()
        threads[0].join(timeout=5)
    if errors:
        raise errors[0]


def _put_failure(q: queue.Queue, exc: BaseException) -> None:
    """Hand an exception downstream without blocking: drop queued frames to make room."""
    while True:
        try:
            q.put_nowait(_Failure(exc))
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
