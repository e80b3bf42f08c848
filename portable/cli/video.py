"""The CLI's video route: which inputs are videos, where their outputs go, a frame progress line.

Kept apart from `cli.py` so the command only needs a few lines to send videos here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..atomic import same_file
from ..batch.jobs import names_an_image_file, output_path, refuse_clashes
from ..errors import UsageError, printable
from ..suffixes import VIDEO_SUFFIXES
from ..video.api import VideoReport, upscale_video
from ..video.encoder import CONTAINERS, EncoderSettings, check_settings, container_format
from ..video.probe import VideoError, is_video


def split_videos(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(videos, images) of an expanded input list, videos recognised by content where the name is unclear."""
    videos = [f for f in files if is_video(f)]
    return videos, [f for f in files if f not in videos]


def is_video_output(output: Path | None) -> bool:
    return output is not None and output.suffix.lower() in VIDEO_SUFFIXES and not output.is_dir()


def plan_videos(videos: list[Path], images: list[Path], output: Path | None, suffix: str | None,
                default_suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) per video: `-o` a video file for one video, else `FOLDER/NAME.ext` like images."""
    if is_video_output(output):
        if len(videos) != 1 or images:
            raise UsageError(f"{output}: {len(videos) + len(images)} inputs cannot go into one video file; "
                             "give one video or a directory")
        if same_file(videos[0], output):  # type: ignore[arg-type]
            raise UsageError(f"{output}: output would overwrite the input; choose another output file")
        return [(videos[0], output)]  # type: ignore[list-item]
    if videos and output is not None and not output.is_dir() and names_an_image_file(output.suffix):
        # made as a folder, `-o out.png` left the user a folder holding the video
        raise UsageError(f"{output}: a video cannot be written as an image file; name a video file "
                         "(.mp4, .mkv, .webm, ...) or a folder")
    jobs = []
    for src in videos:
        jobs.append((src, output_path(src, output, suffix, default_suffix, writable_suffix(src))))
    refuse_clashes(jobs)
    return jobs


def writable_suffix(src: Path) -> str:
    """The output's suffix in folder mode: the input's, or .mkv (Matroska holds every stream
    the others do) where FFmpeg cannot write the input's container (.ts, .flv, .mpg, ...): a
    .ts in a folder once stopped the whole batch with "unsupported video container"."""
    return src.suffix if src.suffix.lower() in CONTAINERS else ".mkv"


def check_encoders(jobs: list[tuple[Path, Path]], options: dict) -> None:
    """Refuse encoder settings before any work (bad usage, exit 2): a bad --codec or --pix-fmt
    once failed each video only after the batch's images were done, with exit 1."""
    settings = EncoderSettings(options["codec"], options["crf"], options["preset"], options["pix_fmt"])
    for fmt in dict.fromkeys(container_format(dst) for _, dst in jobs):
        check_settings(settings, fmt)


class FrameProgress:
    """`[clip.mp4] 120/480 frames  14.2 fps  ETA 0:25` redrawn on one terminal line; silent elsewhere."""

    def __init__(self, name: str, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.name = name
        self.start: tuple[float, int] | None = None
        self.last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.start is None:
            self.start = (now, done - 1)
        if not self.enabled or (now - self.last_draw < 0.2 and done < total):
            return
        self.last_draw = now
        elapsed, counted = now - self.start[0], done - self.start[1]
        fps = counted / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / fps if fps > 0 else 0.0
        self.stream.write(f"\r[{self.name}] {done}/{total} frames  {fps:.1f} fps  ETA {int(eta) // 60}:{int(eta) % 60:02d}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.start is not None:
            self.stream.write("\n")
            self.stream.flush()


def run_videos(jobs: list[tuple[Path, Path]], upscaler, options: dict, quiet: bool, skip_existing: bool,
               say: Callable[[str], None], named: bool = False) -> int:
    """Upscale each video; print one line per failure (and notices unless quiet). Returns the failure count.

    Every line goes through `printable`: a newline in a file name once split an error in two.
    `named`: `-o` named the output file, so a changed container is the user's choice, not noted."""
    failed = 0
    tell = lambda text: say(printable(text))  # noqa: E731 - the one way out for this function's lines
    for src, dst in jobs:
        if skip_existing and dst.exists():
            continue
        progress = FrameProgress(src.name, enabled=False if quiet else None)
        if not (quiet or named) and dst.suffix.lower() != src.suffix.lower() and src.suffix.lower() not in CONTAINERS:
            tell(f"note: {src}: written as {dst.name} (the {src.suffix} container cannot be written)")
        try:
            report: VideoReport = upscale_video(src, dst, upscaler, progress=progress, **options)
        except VideoError as exc:
            progress.close()
            tell(f"error: {exc}")
            failed += 1
            continue
        except KeyboardInterrupt:
            progress.close()
            raise
        except Exception as exc:  # noqa: BLE001 - one line per failed video, never a traceback
            progress.close()
            detail = str(exc).splitlines()[0] if str(exc) else ""
            tell(f"error: {src}: {type(exc).__name__}{': ' + detail if detail else ''}")
            failed += 1
            continue
        progress.close()
        if not quiet:
            for note in report.notices:
                tell(f"note: {note}")
            extra = f", {report.duplicates} repeated frame(s) reused" if report.duplicates else ""
            resumed = f", {report.chunks_reused} segment(s) resumed" if report.chunks_reused else ""
            tell(f"{dst}: {report.frames} frames{extra}{resumed}")
    return failed
