"""Join the finished chunks into the final file without re-encoding, plus the input's other streams.

Video packets come from the chunk files, audio/subtitle/data packets straight from the input,
merged by decode time so the muxer never has to buffer a whole stream (memory stays flat). Both
keep their original timestamps. Container metadata, chapters, stream metadata (language, title)
and dispositions are copied where the output container can hold them.
"""

from __future__ import annotations

import heapq
import io
from fractions import Fraction
from collections.abc import Iterator
from pathlib import Path

from ..atomic import write_atomic
from .probe import VideoError, _reason, main_video, require_av
from .chunks import Chunk, WorkFolder
from .sink import Sink

_COPY_TYPES = ("audio", "subtitle", "data")


def _video_packets(av, paths: list[Path], out_stream) -> Iterator[tuple[float, int, object]]:
    """Chunk packets in decode order, dts made strictly increasing across chunk boundaries.

    Each chunk's encoder starts its own reorder delay, and Matroska stores no dts at all, so a
    joined stream can repeat or lack a dts; pts (what players show) is never changed.
    """
    last: Fraction | None = None
    for path in paths:
        with av.open(str(path)) as seg:
            stream = seg.streams.video[0]
            tick = Fraction(stream.time_base)
            for packet in seg.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                last = fix_dts(packet, last, tick)
                packet.stream = out_stream
                yield _key(packet, stream.time_base), 0, packet


def fix_dts(packet, last: Fraction | None, tick: Fraction) -> Fraction:
    """Give `packet` a dts after `last` and not after its pts (pts untouched); returns its dts in seconds.

    Needed where encoders restart (each chunk) and where they guess a dts for the last frames of
    a tiny variable-rate chunk that the muxer would refuse.
    """
    if packet.dts is None or packet.dts > packet.pts or last is not None and packet.dts * tick <= last:
        wanted = packet.pts if last is None else min(packet.pts, max(packet.dts or 0, int(last / tick) + 1))
        packet.dts = min(wanted, packet.pts)
    return packet.dts * tick


def _copied_packets(av, container, mapping: dict) -> Iterator[tuple[float, int, object]]:
    if not mapping:
        return
    for packet in container.demux([container.streams[i] for i in mapping]):
        if packet.size == 0 or packet.dts is None and packet.pts is None:
            continue
        source_tb = packet.stream.time_base
        packet.stream = mapping[packet.stream.index]
        yield _key(packet, source_tb), 1, packet


def _key(packet, time_base) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * time_base)


def join(src: Path, dst: Path, fmt: str, work: WorkFolder, chunks: list[Chunk], notices: list[str]) -> None:
    """Write `dst` atomically from the chunk files and the input's non-video streams."""
    av = require_av()
    paths = [work.chunk_path(s) for s in chunks]

    def writer(fh) -> None:
        sink = Sink(fh)
        with av.open(str(src), metadata_errors="ignore") as source, av.open(sink, "w", format=fmt) as out:
            in_video = main_video(source)
            with av.open(str(paths[0])) as first:
                template = first.streams.video[0]
                video = out.add_stream_from_template(template, opaque=True)
                _copy_tags(in_video, video)
                _keep_timecode(av, template, in_video, video, fmt, notices, dst)
            mapping = {}
            for stream in source.streams:
                if stream.type == "attachment":  # fonts and files of a Matroska input: no packets to copy
                    notices.append(f"{dst.name}: attachment stream #{stream.index} "
                                   f"({stream.metadata.get('filename', 'unnamed')}) not copied")
                    continue
                if stream.type not in _COPY_TYPES and not (stream.type == "video" and stream.index != in_video.index):
                    continue
                if stream.codec_context is None:  # e.g. mp4's chapter track: chapters are copied below
                    if _is_timecode_track(stream) and "timecode" in video.metadata:
                        continue  # the muxer writes it again from the video's timecode tag
                    if not source.chapters():
                        notices.append(f"{dst.name}: {stream.type} stream #{stream.index} has no codec; not copied")
                    continue
                refused = _header_fails(av, stream, fmt)
                if refused is not None:
                    notices.append(f"{dst.name}: {stream.type} stream #{stream.index} not copied (the {fmt} container "
                                   f"refuses {_codec(stream)}: {refused})")
                    continue
                try:
                    copied = out.add_stream_from_template(stream, opaque=True)
                except (av.FFmpegError, ValueError) as exc:
                    notices.append(f"{dst.name}: {stream.type} stream #{stream.index} not copied ({_reason(exc)})")
                    continue
                _copy_tags(stream, copied)
                mapping[stream.index] = copied
            _copy_container_tags(source, out, notices, dst)
            merged = heapq.merge(_video_packets(av, paths, video), _copied_packets(av, source, mapping),
                                 key=lambda entry: (entry[0], entry[1]))
            for _, _, packet in merged:
                out.mux(packet)
                sink.check()
        sink.check()

    try:
        write_atomic(dst, writer)
    except av.FFmpegError as exc:
        raise VideoError(f"{dst}: joining the chunks failed ({_reason(exc)})") from None
    except OSError as exc:
        raise VideoError(f"{dst}: cannot write ({exc.strerror or exc})") from None


def _header_fails(av, stream, fmt: str, timecode: str | None = None, rate=None) -> str | None:
    """Why the output container refuses `stream` (with a timecode tag at `rate`) once it writes its
    header (Opus or FLAC in .mov, a timecode without a frame rate), or None. Tried alone in memory
    first: the join once failed there after every frame was upscaled, and so did each --resume."""
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as probe:
            trial = probe.add_stream_from_template(stream, opaque=True)
            if timecode is not None:
                trial.metadata["timecode"] = timecode
            if rate:
                trial.codec_context.framerate = rate
            probe.start_encoding()
    except (av.FFmpegError, ValueError) as exc:
        return _reason(exc)
    return None


def _keep_timecode(av, template, in_video, video, fmt: str, notices: list[str], dst: Path) -> None:
    """A video `timecode` tag makes the mov/mp4 muxer write a timecode track at the stream's
    frame rate, which a stream copied from a chunk does not carry: the join once failed there
    ("Invalid argument") after every frame was upscaled. Give it the input's rate; where the
    muxer still refuses, drop the tag with a note."""
    timecode = video.metadata.get("timecode")
    if timecode is None:
        return
    rate = in_video.average_rate or in_video.guessed_rate
    if rate:
        video.codec_context.framerate = rate
    refused = _header_fails(av, template, fmt, timecode, rate)
    if refused is not None:
        del video.metadata["timecode"]
        notices.append(f"{dst.name}: timecode {timecode} not kept: the {fmt} container refuses it ({refused})")


def _is_timecode_track(stream) -> bool:
    return stream.type == "data" and "timecode" in stream.metadata


def _codec(stream) -> str:
    return stream.codec_context.name if stream.codec_context is not None else "no codec"


def _copy_tags(source, target) -> None:
    """Stream metadata (language, title, handler) and disposition (default, forced, ...)."""
    for key, value in source.metadata.items():
        if key.upper() not in ("DURATION", "ENCODER", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES"):
            target.metadata[key] = value
    try:
        target.disposition = source.disposition
    except (AttributeError, TypeError, ValueError):
        pass


def _copy_container_tags(source, out, notices: list[str], dst: Path) -> None:
    for key, value in source.metadata.items():
        if key.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
            out.metadata[key] = value
    chapters = source.chapters()
    if chapters:
        try:
            out.set_chapters(chapters)
        except (ValueError, TypeError) as exc:
            notices.append(f"{dst.name}: chapters not copied ({exc})")
