"""SIGTERM handled like Ctrl-C, so `timeout`, `docker stop` and `kill` leave no temporary files.

Without a handler SIGTERM ends Python at once: save threads die mid-write and their `.part` files
stay. With it, the main thread gets an exception, the pipeline lets each save thread finish (and
rename) the file it is writing, and the CLI exits with one line and code 143 (128 + SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells report for a terminated process
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException (like KeyboardInterrupt) so `except Exception` lets it pass."""


def _raise_terminated(signum: int, frame: object) -> None:
    # A second SIGTERM (`timeout` and service managers resend) must not cut the cleanup short;
    # SIGKILL still ends the process, and the next run removes what that leaves.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` in the main thread; outside, the old handler."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_process_if_workers_busy(code: int) -> None:
    """After Ctrl-C/SIGTERM: end the process now if worker threads are still inside ncnn.

    The save threads have finished (and renamed) their files by then, so nothing is lost; but a
    processing thread may be in the middle of an ncnn extract, and letting the interpreter shut
    down under it aborts in C++ ("terminate called without an active exception", exit 134).
    """
    if code not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        return
    if any(t.is_alive() and t is not threading.current_thread() for t in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
