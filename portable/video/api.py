"""`upscale_video(src, dst, upscaler)`: the Python API behind `realesr-portable -i clip.mp4 -o out.mp4`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..atomic import remove_stale, same_file
from . import pipeline
from .encoder import EncoderSettings, check_settings, container_format, deep_format
from .join import join
from .probe import VideoError, check_frame_size, input_identity, probe
from .chunks import Chunk, WorkFolder, plan_chunks
from .timing import output_timing

ProgressCallback = Callable[[int, int], None]


class ImageUpscaler(Protocol):
    """What upscale_video needs: `realesr_portable.Upscaler` or anything with the same `upscale`."""

    def upscale(self, image: np.ndarray) -> np.ndarray: ...


@dataclass
class VideoReport:
    """What a run did: frames in the output, frames upscaled now, reused duplicates, resumed chunks."""

    frames: int = 0
    upscaled: int = 0
    duplicates: int = 0
    chunks_reused: int = 0
    notices: list[str] = field(default_factory=list)


def job_settings(upscaler: object, settings: EncoderSettings, skip_duplicates: bool, threshold: int) -> dict:
    """Every setting that changes the output's pixels, keyed by option name, for the resume check.

    `Upscaler.settings()` derives them from its `UpscaleOptions`, so a new option is in the manifest
    without a line here; an upscaler other than `Upscaler` is identified by its type only.
    """
    describe = getattr(upscaler, "settings", None)
    pixels = describe() if callable(describe) else {"upscaler": type(upscaler).__name__}
    return {**pixels, "--codec": settings.codec, "--crf": settings.crf, "--preset": settings.preset,
            "--pix-fmt": settings.pix_fmt, "--skip-duplicates": skip_duplicates,
            "duplicate threshold": threshold if skip_duplicates else None}


def upscale_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upscaler: ImageUpscaler,
    *,
    codec: str = "libx264",
    crf: float | None = None,
    preset: str | None = None,
    pix_fmt: str = "yuv420p",
    resume: bool = False,
    skip_duplicates: bool = False,
    duplicate_threshold: int = 2,
    chunk_seconds: float = 10.0,
    max_pixels: int = 0,
    progress: ProgressCallback | None = None,
) -> VideoReport:
    """Upscale every frame of `src` into `dst`, keeping timestamps and copying the other streams.

    Args:
        codec, crf, preset, pix_fmt: the output video encoder (crf/preset None: the encoder's default).
        resume: continue from the finished chunks of a killed run (its `.NAME.resume/` folder).
        skip_duplicates: reuse the previous output when a frame differs from the previous input frame
            by at most `duplicate_threshold` (of 255) in every pixel.
        chunk_seconds: minimum chunk length; a killed run loses at most about this much work.
        max_pixels: refuse frames larger than this many pixels, checked on the stream's size before any
            work and on every decoded frame (0: no limit; the CLI's --max-pixels, default 100 MP).
        progress: called as progress(frames_done, frames_total) after each frame.
    Raises VideoError (one line) for unreadable input, bad settings, unwritable output or a resume
    folder from another job; `dst` then does not exist (or is left as it was).
    """
    src, dst = Path(src), Path(dst)
    settings = EncoderSettings(codec, crf, preset, pix_fmt)
    fmt = container_format(dst)
    check_settings(settings, fmt)
    if same_file(src, dst):
        raise VideoError(f"{dst}: output would overwrite the input")
    info = probe(src)
    check_frame_size(src, info.width, info.height, max_pixels)
    timing = output_timing(src, info, fmt)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(dst.parent)  # a killed join's temporary file
        remove_stale(WorkFolder(dst).path)  # a killed chunk's temporary file
    except OSError as exc:
        raise VideoError(f"{dst.parent}: cannot create the output folder ({exc.strerror or exc})") from None
    if not os.access(dst.parent, os.W_OK):
        raise VideoError(f"{dst}: the output folder is not writable")
    report = VideoReport(frames=info.frames, notices=list(info.notes))
    work = WorkFolder(dst)
    identity = {**input_identity(src), "name": src.name}
    job = job_settings(upscaler, settings, skip_duplicates, duplicate_threshold)
    chunks = work.open(identity, job, plan_chunks(info, chunk_seconds), resume)
    todo = [s for s in chunks if not work.is_done(s)]
    report.chunks_reused = len(chunks) - len(todo)
    done = sum(s.frames for s in chunks if s not in todo)
    rgb_format = "rgb48le" if deep_format(pix_fmt) else "rgb24"
    state = _Frames(upscaler, skip_duplicates, duplicate_threshold, report)
    if todo:
        def on_frame() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, info.frames)

        try:
            pipeline.run(src, info, todo, work, fmt, settings, timing, rgb_format, state.transform, report.notices, on_frame,
                         max_pixels)
        except BaseException:
            if not any(work.is_done(s) for s in chunks):
                work.remove()  # nothing to resume: do not make the next run ask for --resume
            raise
    elif progress is not None:
        progress(done, info.frames)
    join(src, dst, fmt, work, chunks, report.notices)
    work.remove()
    return report


class _Frames:
    """Upscale one frame, or reuse the previous output for a repeated input frame (same chunk only,
    so a resumed run makes exactly the frames an uninterrupted one would)."""

    def __init__(self, upscaler: ImageUpscaler, skip: bool, threshold: int, report: VideoReport) -> None:
        self.upscaler, self.skip, self.threshold, self.report = upscaler, skip, threshold, report
        self.previous: tuple[Chunk, np.ndarray, np.ndarray] | None = None

    def transform(self, item: pipeline.Item) -> np.ndarray:
        image = item.image
        if self.skip and self.previous is not None and self.previous[0] is item.chunk:
            before = self.previous[1]
            limit = self.threshold * (257 if image.dtype == np.uint16 else 1)
            if np.abs(image.astype(np.int32) - before).max() <= limit:
                self.report.duplicates += 1
                return self.previous[2]
        out = self.upscaler.upscale(image)
        self.report.upscaled += 1
        if self.skip:
            self.previous = (item.chunk, image, out)
        return out
