"""Batch jobs: which files a batch reads (folders, globs, files) and where each output goes.

Why its own module: the CLI, `--ray` (distributed/plan.py) and the video route (cli/video.py)
plan with it, while only the single-machine batch runs the load -> process -> save pipeline.
Every refusal here is bad usage, found before any work.
"""

from __future__ import annotations

import errno
import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..atomic import same_file, special_kind
from ..errors import UsageError, printable
from ..image.io import FORMATS, ImageError, format_for
from ..suffixes import IMAGE_SUFFIXES, VIDEO_SUFFIXES

_GLOB_CHARS = set("*?[")
#: Image formats Pillow has no plugin for here; `-o` with one of them is refused, not made a folder.
_OTHER_IMAGE_SUFFIXES = (".heic", ".heif", ".jxl", ".exr", ".hdr", ".svg", ".raw", ".dng")


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path
    fmt: str  # Pillow format name


def expand_inputs(items: Iterable[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files, directories (their images and videos, sorted) and globs -> (files, missing entries)."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for item in items:
        if not str(item).strip():  # an empty "$VAR" once meant the current folder
            raise UsageError("-i '': an empty input; give a file, folder or glob")
        path = Path(item).expanduser()
        try:
            _expand_one(item, path, files, missing)
        except OSError as exc:  # an unreadable folder fails itself, not the whole batch
            missing.append((path, exc.strerror or str(exc)))
    # one file however spelled (a/x.png, $PWD/a/x.png): once "several inputs would write this output"
    unique = list({_resolved(f): f for f in reversed(files)}.values())[::-1]
    return unique, missing


def _expand_one(item: str, path: Path, files: list[Path], missing: list[tuple[Path, str]]) -> None:
    """One `-i` entry: a folder's media files, a file, or a glob's matches; what fails goes to `missing`."""
    if path.is_dir():
        entries = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
        if not _add_files(entries, files, missing):
            missing.append((path, "no images or videos in this folder"))
    elif path.exists() or path.is_symlink():
        _add_files([path], files, missing)
    elif _GLOB_CHARS & set(item):
        if not _add_files([Path(p) for p in glob.glob(str(path))], files, missing):
            missing.append((path, "no file matches this pattern"))
    else:
        missing.append((path, "no such file or directory"))


def _add_files(entries: list[Path], files: list[Path], missing: list[tuple[Path, str]]) -> int:
    """Regular files (sorted) to `files`; folders left out; anything else named like media (a FIFO
    would block the reader for good, a link loop or broken link fails) to `missing`, said, never
    skipped in silence. Returns how many entries were not folders."""
    count = 0
    for entry in sorted(entries):
        kind = special_kind(entry)
        if kind == "a folder":
            continue
        count += 1
        if entry.is_file():
            files.append(entry)
        else:
            missing.append((entry, _not_a_file(entry, kind)))
    return count


def _not_a_file(path: Path, kind: str | None) -> str:
    """Why `path` (no regular file) cannot be read, in a few words."""
    if kind is not None:
        return f"not a regular file ({kind})"
    try:
        os.stat(path)
    except OSError as exc:  # a broken link, a link loop (ELOOP), a name too long
        return "a broken link" if exc.errno == errno.ENOENT else (exc.strerror or str(exc))
    return "not a regular file"


def plan_jobs(
    files: list[Path], output: Path | None, fmt: str | None, suffix: str | None, default_suffix: str,
    notes: list[str] | None = None,
) -> list[Job]:
    """Output path per input. `output` is a file only for a single input with an image suffix.

    An input that is another input's output (`a_x2.png` beside `a.png`, left by an earlier run
    into the same folder) is left out with a note in `notes`: it was once upscaled again into
    `a_x2_x2.png`, and replaced while it was read."""
    if output is not None and not output.is_dir() and names_an_image_file(output.suffix) \
            and output.suffix.lower().lstrip(".") not in FORMATS:
        raise UsageError(f"{output}: cannot write {output.suffix.lstrip('.')} files (png, jpg, webp); "
                         "name an output folder without an image suffix")
    if output is not None and output.suffix.lower().lstrip(".") in FORMATS and not output.is_dir():
        if len(files) > 1:
            raise UsageError(f"{output}: {len(files)} inputs cannot go into one output file; give a directory")
        if files and same_file(files[0], output):
            raise UsageError(f"{output}: output would overwrite the input; choose another output file")
        named = FORMATS[output.suffix.lower().lstrip(".")]
        if fmt is not None and FORMATS.get(fmt.lower(), named) != named:  # once wrote JPEG bytes into out.png
            raise UsageError(f"-o {output} names a {named} file but -f {fmt} asks for {FORMATS[fmt.lower()]}; "
                             f"drop -f or name the output {output.stem}.{fmt.lower()}")
        return [Job(files[0], output, format_for(output, fmt))] if files else []
    if output is not None and output.exists() and not output.is_dir():  # (a link loop: make_folder says so)
        # a folder's outputs cannot go under a file: once every image was upscaled, then failed
        raise UsageError(f"-o {output}: a file is in the way of the output folder")
    jobs = []
    for src in files:
        ext = (fmt or src.suffix.lstrip(".")).lower()
        if ext not in FORMATS:
            ext = "png"
        jobs.append(Job(src, output_path(src, output, suffix, default_suffix, f".{ext}"), FORMATS[ext]))
    made = {_resolved(job.dst): job.src for job in jobs}
    earlier = [job for job in jobs if _resolved(job.src) in made and made[_resolved(job.src)] != job.src]
    for job in earlier:
        if notes is not None:
            notes.append(f"{job.src}: skipped: it is the output of {made[_resolved(job.src)]} (from an earlier run)")
    jobs = [job for job in jobs if job not in earlier]
    refuse_clashes([(job.src, job.dst) for job in jobs])
    return jobs


def output_path(src: Path, output: Path | None, suffix: str | None, default_suffix: str, ext: str) -> Path:
    """Where one input's output goes in folder mode (images and videos): into `output`, or beside
    the input with `default_suffix` (an `-o` that is the input's own folder, however spelled:
    ./, $PWD, a link, counts as beside it); `suffix` when given wins."""
    check_suffix(suffix)
    folder = output if output is not None else src.parent
    beside = output is None or same_file(folder, src.parent)
    tail = suffix if suffix is not None else (default_suffix if beside else "")
    return folder / f"{src.stem}{tail}{ext}"


def check_suffix(suffix: str | None) -> None:
    """`--suffix` is part of a file name: a separator in it (`--suffix ../x`, `--suffix /`) once
    made folders and wrote outside the output folder."""
    if suffix is not None and ("/" in suffix or os.sep in suffix or "\0" in suffix):
        raise UsageError(f"--suffix '{printable(suffix)}': a name part cannot hold a path separator; "
                         "use -o for another folder")


def names_an_image_file(suffix: str) -> bool:
    """Whether `-o NAME.suffix` reads as an image file (.tif, .avif, .jxl, ...) rather than a folder
    with a dot: made as a folder, `-o out.avif` would leave the user a folder where they asked
    for a file."""
    suffix = suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return False
    return suffix in IMAGE_SUFFIXES + _OTHER_IMAGE_SUFFIXES or suffix in Image.registered_extensions()


def refuse_clashes(pairs: list[tuple[Path, Path]]) -> None:
    """UsageError when two inputs would write one output or an output would replace its input.

    The one check for images and videos alike (a video's output is planned apart, in cli/video.py).
    """
    targets = [_resolved(dst) for _, dst in pairs]
    if len(set(targets)) != len(targets):
        dup = next(dst for (_, dst), t in zip(pairs, targets) if targets.count(t) > 1)
        raise UsageError(f"{dup}: several inputs would write this output; use --suffix or separate folders")
    clash = next((src for src, dst in pairs if same_file(src, dst)), None)
    if clash is not None:
        raise UsageError(f"{clash}: output would overwrite the input; use -o or --suffix")


def make_folder(folder: Path) -> None:
    """`mkdir -p` for an output folder; its failure an ImageError saying what is in the way (mkdir
    says "File exists" for a file, a dead link and a link loop alike)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ImageError(f"{folder}: cannot create output folder ({_in_the_way(folder)})") from None
    except OSError as exc:
        raise ImageError(f"{folder}: cannot create output folder ({exc.strerror or exc})") from None


def _in_the_way(folder: Path) -> str:
    """The first of `folder` and its parents that exists but is no folder, and what it is."""
    for part in (folder, *folder.parents):
        if os.path.lexists(part) and not part.is_dir():
            what = "a broken link or a link loop" if part.is_symlink() else "a file"
            return f"it is {what}" if part == folder else f"{part} is {what}"
    return "something else is in the way"


def _resolved(path: Path) -> Path:
    """`path` absolute with its links followed; a link loop (RuntimeError before Python 3.13,
    OSError since) stays as written, and writing the output reports it as that file's failure."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))
