"""Which inputs, and where each output goes, decided once on the driver.

The single-machine CLI's own planning (`batch.expand_inputs`, `batch.plan_jobs`) decides every
output path, so a cluster run writes exactly the files the CLI would. This module only adds what a
cluster needs on top: list files of paths or URIs, URIs read through pyarrow's file systems, the
resume rule (an existing output is skipped) and the clean-up of temporary files left by a killed
worker.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from ..atomic import live_writer
from ..batch.jobs import expand_inputs, plan_jobs
from ..errors import UsageError
from ..suffixes import IMAGE_SUFFIXES

LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class Row:
    """One unit of work as it travels through the Ray Dataset (plain strings: cheap to ship)."""

    src: str  # a URI, or an absolute local path (workers on other machines have another cwd)
    dst: str  # an absolute path, on a file system every worker mounts at the same place
    fmt: str  # Pillow format name
    shown: str = ""  # the source as the user gave it, for messages

    @property
    def name(self) -> str:
        return self.shown or self.src

    def as_dict(self) -> dict[str, str]:
        return {"src": self.src, "dst": self.dst, "fmt": self.fmt}


def is_uri(text: str) -> bool:
    return "://" in text


def read_list_file(path: Path) -> list[str]:
    """Entries of a list file: one path, glob, folder or URI per line; blank lines and # comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the list of inputs ({getattr(exc, 'strerror', None) or exc})") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def expand_uri(uri: str) -> tuple[list[str], list[tuple[str, str]]]:
    """A file URI -> itself; a folder URI -> its images (sorted). Missing -> a failure row."""
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
        if info.type == fs.FileType.File:
            return [uri], []
        if info.type == fs.FileType.Directory:
            found = filesystem.get_file_info(fs.FileSelector(root, recursive=False))
            names = sorted(f.base_name for f in found if f.type == fs.FileType.File and Path(f.base_name).suffix.lower() in IMAGE_SUFFIXES)
            return [f"{uri.rstrip('/')}/{name}" for name in names], []
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) for bad URIs
        return [], [(uri, f"{uri}: cannot open ({str(exc).splitlines()[0]})")]
    return [], [(uri, f"{uri}: no such file or directory")]


def expand_sources(items: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Folders, globs, files, list files and URIs -> (sources as strings, missing entries)."""
    local: list[str] = []
    uris: list[str] = []
    missing: list[tuple[str, str]] = []
    for item in items:
        path = Path(item).expanduser()
        entries = read_list_file(path) if path.suffix.lower() in LIST_SUFFIXES and path.is_file() else [item]
        for entry in entries:
            (uris if is_uri(entry) else local).append(entry)
    files, gone_local = expand_inputs(local)
    missing.extend((str(path), reason) for path, reason in gone_local)
    found_uris: list[str] = []
    for uri in uris:
        more, gone = expand_uri(uri)
        found_uris.extend(more)
        missing.extend(gone)
    return [str(f) for f in files] + list(dict.fromkeys(found_uris)), missing


def _stand_in(source: str) -> Path:
    """A Path with the source's name, for planning: the path part of a URI, or the path itself."""
    if not is_uri(source):
        return Path(source)
    return Path("/" + source.split("://", 1)[1].lstrip("/"))


def plan_rows(
    sources: list[str], output: Path | None, fmt: str | None, suffix: str | None, default_suffix: str,
    notes: list[str] | None = None,
) -> list[Row]:
    """One Row per source, its output placed by the CLI's own `plan_jobs` (which leaves out, with
    a note, a source that is another's output from an earlier run)."""
    if output is None and any(is_uri(s) for s in sources):
        raise UsageError("URI inputs need -o FOLDER (outputs are written to a file system the workers share)")
    stand_ins = [_stand_in(s) for s in sources]
    jobs = {job.src: job for job in plan_jobs(stand_ins, output, fmt, suffix, default_suffix, notes)}
    return [Row(src if is_uri(src) else str(Path(src).absolute()), str(job.dst.absolute()), job.fmt, src)
            for src, stand_in in zip(sources, stand_ins) if (job := jobs.get(stand_in)) is not None]


def split_existing(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """(to do, already written): the resume rule. Outputs only appear complete (temp + rename)."""
    todo, done = [], []
    for row in rows:
        (done if Path(row.dst).exists() else todo).append(row)
    return todo, done


def remove_leftovers(rows: list[Row]) -> int:
    """Delete temporary `.NAME.*.part` files that a killed worker left beside planned outputs.

    `atomic.write_atomic` names its temporary file after the destination; a SIGKILL between
    create and rename leaves it behind, and a finished job must hold exactly one file per output.
    A file that a process still running on this machine writes (another job, the plain CLI) is
    left alone: it was once deleted under its writer.
    """
    removed = 0
    for row in rows:
        dst = Path(row.dst)
        if not dst.parent.is_dir():
            continue
        for part in dst.parent.glob(f".{glob.escape(dst.name)}.*.part"):
            if live_writer(part):
                continue
            try:
                part.unlink()
                removed += 1
            except OSError:
                pass
    return removed
