"""Write a file so that readers (and a crash or Ctrl-C) never see it half-written.

One mechanism for every output of the project: images, sidecars, weights, previews. The data goes
to a temporary file in the destination folder (same file system, so the rename is atomic) and is
renamed over the destination only after the writer returned; on any failure the temporary file
is removed and the destination is untouched.

The temporary name is `.NAME.PID.XXXXXXXX.part`: hidden, and carrying the writer's process id so
that a later run can tell the leftovers of a killed writer (SIGKILL, power loss: no cleanup code
ran) from files another process is still writing, and remove only those (`remove_stale`).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

_PART = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.part$")  # mkstemp: 8 chars of [a-z0-9_]
STALE_AFTER_S = 60.0  # a dead writer's file must also be this old (other PID namespaces share folders)
ABANDONED_AFTER_S = 24 * 3600.0  # whatever the pid says: no write takes a day


def write_atomic(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Run `writer` on a temporary file beside `path`, then rename it into place.

    Raises OSError from the file system unchanged; callers turn it into their own one-line error.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp's 0600 would surprise users of the output.
            writer(fh)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`write_atomic` for data already in memory."""
    write_atomic(path, lambda fh: fh.write(data))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # exists but is someone else's (PermissionError), or not a real pid
    return True


def is_stale_part(path: Path, now: float | None = None) -> bool:
    """Whether `path` is a temporary file of this writer whose writer is gone (or a day old)."""
    match = _PART.match(path.name)
    if match is None:
        return False
    try:
        info = path.lstat()
    except OSError:
        return False
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    age = (time.time() if now is None else now) - info.st_mtime
    pid = int(match["pid"])
    if age > ABANDONED_AFTER_S:
        return True
    return age > STALE_AFTER_S and pid != os.getpid() and not _pid_alive(pid)


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
