"""Write files so that readers (and a crash or Ctrl-C) never see one half-written.

One mechanism for every output of the project: images, sidecars, weights, converted models,
checkpoints, sub-images. The data goes to a temporary file in the destination folder (same file
system, so the rename is atomic) and is renamed over the destination only after the writer
returned; on any failure the temporary files are removed and the destinations are untouched.
Temporary files are created with mode 0666 minus the umask, like any file the user creates
(mkstemp's 0600 would leave outputs readable by their owner only). `fsync=True` also flushes
data and folder to disk before returning, for files whose loss after a power cut costs work
(training checkpoints).

The temporary name is `.NAME.PID.XXXXXXXX.part`: hidden, and carrying the writer's process id so
that a later run can tell the leftovers of a killed writer (SIGKILL, power loss: no cleanup code
ran) from files another process is still writing, and remove only those (`remove_stale`).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], object]

_PART = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.part$")  # 8 hex chars of os.urandom(4)
STALE_AFTER_S = 60.0  # a dead writer's file must also be this old (other PID namespaces share folders)
ABANDONED_AFTER_S = 24 * 3600.0  # whatever the pid says: no write takes a day


def _create_temp(path: Path) -> tuple[int, Path]:
    """An exclusive new file beside `path` (mode 0666 & ~umask, applied by the kernel)."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.part")
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
    for path, _ in items:
        refuse_special(path)
    with ExitStack() as stack:
        temps = [stack.enter_context(_temp_beside(p, w, fsync)) for p, w in items]
        for (path, _), tmp in zip(items, temps):
            os.replace(tmp, path)
    if fsync:
        for folder in {path.parent for path, _ in items}:
            _fsync_dir(folder)


def refuse_special(path: Path) -> None:
    """An existing destination that is not a regular file (a pipe, a device such as /dev/full, a
    socket) would be replaced by the rename, losing the device and the data: IsADirectoryError/
    OSError naming it instead. A missing destination or a regular file (or a link to one) passes."""
    kind = special_kind(path)
    if kind == "a folder":
        raise IsADirectoryError(21, "is a directory", str(path))
    if kind is not None:
        raise OSError(f"{path}: not a regular file ({kind}); refusing to replace it")


def special_kind(path: Path) -> str | None:
    """What an existing `path` is when it is no regular file: "a folder", "a FIFO", "a socket" or
    "a device"; None for a regular file (or a link to one) and for nothing there (or unreadable).
    Why: the one test every reader and writer makes before opening, since opening a FIFO blocks
    until some writer comes and a folder or device fails later with a misleading message."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, a link loop, a name too long, a NUL in the name
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket" if stat.S_ISSOCK(mode) else "a device"


def write_atomic(path: Path, writer: Writer, fsync: bool = False) -> None:
    """Run `writer` on a temporary file beside `path`, then rename it into place."""
    write_files_atomic({Path(path): writer}, fsync)


def write_bytes_atomic(path: Path, data: bytes, fsync: bool = False) -> None:
    """`write_atomic` for data already in memory."""
    write_files_atomic({Path(path): data}, fsync)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # exists but is someone else's (PermissionError), or not a real pid
    return True


def _part_writer(path: Path, now: float | None = None) -> tuple[int, float] | None:
    """(writer pid, age in seconds) of a temporary file `write_atomic` named, or None for any
    other name, a link or something gone."""
    match = _PART.match(Path(path).name)
    if match is None:
        return None
    try:
        info = Path(path).lstat()
    except OSError:
        return None
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    return int(match["pid"]), (time.time() if now is None else now) - info.st_mtime


def writer_gone(path: Path) -> bool:
    """Whether `path` is a temporary file whose writer (another process) has ended, whatever its age:
    for a caller that has just stopped its own workers and knows no one else writes there."""
    found = _part_writer(path)
    return found is not None and found[0] != os.getpid() and not _pid_alive(found[0])


def is_stale_part(path: Path, now: float | None = None) -> bool:
    """Whether `path` is a temporary file of this writer whose writer is gone (or a day old)."""
    found = _part_writer(path, now)
    if found is None:
        return False
    pid, age = found
    if age > ABANDONED_AFTER_S:
        return True
    return age > STALE_AFTER_S and pid != os.getpid() and not _pid_alive(pid)


def live_writer(path: Path) -> bool:
    """Whether another process on this machine that is still running writes `path` (a temporary
    file named by `write_atomic`, less than a day old): its file must not be deleted."""
    found = _part_writer(path)
    return found is not None and found[1] <= ABANDONED_AFTER_S and found[0] != os.getpid() and _pid_alive(found[0])


def remove_stale(folder: Path) -> list[Path]:
    """Delete the leftovers of killed writers in `folder` (only names this module makes)."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if is_stale_part(entry):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                continue
    return removed


def same_file(src: Path, dst: Path) -> bool:
    """Whether writing `dst` would replace `src`: same path after resolving, or a hard link to it
    (the (st_dev, st_ino) pair). Every command checks its outputs with this before writing."""
    try:
        if Path(src).resolve() == Path(dst).resolve():
            return True
    except RuntimeError:  # a symlink loop (Python < 3.13 raises): the samefile below says False
        pass
    try:
        return os.path.samefile(src, dst)
    except OSError:  # dst does not exist (yet): it cannot be the input
        return False
