"""Write a file so that readers (and a crash or Ctrl-C) never see it half-written.

One mechanism for every output of the project: images, sidecars, weights, previews. The data goes
to a temporary file in the destination folder (same file system, so the rename is atomic) and is
renamed over the destination only after the writer returned; on any failure the temporary file
is removed and the destination is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Run `writer` on a temporary file beside `path`, then rename it into place.

    Raises OSError from the file system unchanged; callers turn it into their own one-line error.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
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
