"""Write files so that readers (and a crash or Ctrl-C) never see one half-written.

One mechanism for every output of the project: images, sidecars, weights, converted models,
checkpoints, sub-images. The data goes to a temporary file in the destination folder (same file
system, so the rename is atomic) and is renamed over the destination only after the writer
returned; on any failure the temporary files are removed and the destinations are untouched.
Temporary files are created with mode 0666 minus the umask, like any file the user creates
(mkstemp's 0600 would leave outputs readable by their owner only). `fsync=True` also flushes
data and folder to disk before returning, for files whose loss after a power cut costs work
(training checkpoints).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], object]


def _create_temp(path: Path) -> tuple[int, Path]:
    """An exclusive new file beside `path` (mode 0666 & ~umask, applied by the kernel)."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.part")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported everywhere (Windows): the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _temp_beside(path: Path, writer: Writer, fsync: bool) -> Iterator[Path]:
    """Write a temporary file beside `path` with `writer`; yield it; remove it if still there."""
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        yield tmp
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # renamed into place (the normal case) or already gone


def write_files_atomic(files: Mapping[Path, Writer | bytes], fsync: bool = False) -> None:
    """Write several files that belong together (a model's .param/.bin/.json).

    Every file is written to its temporary name first; only when all writers succeeded are they
    renamed into place, in the order given (put the file readers look for last). Raises OSError
    from the file system unchanged; callers turn it into their own one-line error.
    """
    items = [(Path(p), (lambda fh, d=w: fh.write(d)) if isinstance(w, bytes) else w) for p, w in files.items()]
    with ExitStack() as stack:
        temps = [stack.enter_context(_temp_beside(p, w, fsync)) for p, w in items]
        for (path, _), tmp in zip(items, temps):
            os.replace(tmp, path)
    if fsync:
        for folder in {path.parent for path, _ in items}:
            _fsync_dir(folder)


def write_atomic(path: Path, writer: Writer, fsync: bool = False) -> None:
    """Run `writer` on a temporary file beside `path`, then rename it into place."""
    write_files_atomic({Path(path): writer}, fsync)


def write_bytes_atomic(path: Path, data: bytes, fsync: bool = False) -> None:
    """`write_atomic` for data already in memory."""
    write_files_atomic({Path(path): data}, fsync)
