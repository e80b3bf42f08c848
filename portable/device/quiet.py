"""Silence ncnn's C-level stderr chatter (device banners, loader errors) around one call.

ncnn prints with fprintf(stderr) from C, which Python cannot intercept; the CLI promises one line
per error and one line naming the device, so the file descriptor itself is redirected briefly.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Redirect fd 2 to /dev/null for the duration; a no-op when fd 2 cannot be duplicated."""
    if os.environ.get("REALESR_PORTABLE_VERBOSE"):
        yield
        return
    with _LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
