"""Progress bars with rate and ETA (rich) for files, tiles, training iterations and conversions.

One helper for every long job of the project. Bars are drawn only on a terminal (or when asked):
piped output and logs stay clean. rich comes with typer; it is imported when a bar is created,
so `--help` does not pay for it.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress


def make_progress(stream: TextIO | None = None, enabled: bool | None = None) -> Progress | None:
    """A rich `Progress` (description, bar, done/total, rate, elapsed, ETA) on `stream`, or None
    when disabled (`enabled` None: only when the stream is a terminal)."""
    stream = stream or sys.stderr
    if not (stream.isatty() if enabled is None else enabled):
        return None
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    class RateColumn(TextColumn):
        """Items per second (or seconds per item when slower than one a second)."""

        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            if not speed:
                return Text("-- it/s", style="progress.data.speed")
            text = f"{speed:.3g} it/s" if speed >= 1 else f"{1 / speed:.3g} s/it"
            return Text(text, style="progress.data.speed")

    console = Console(file=stream, force_terminal=True if enabled else None, highlight=False)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    RateColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console, auto_refresh=False, transient=False)


class ProgressLine:
    """Files and the tiles of the current file, as two bars; thread-safe (tiles arrive from workers)."""

    def __init__(self, total_files: int, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self._progress = make_progress(stream, enabled)
        self.enabled = self._progress is not None
        self._lock = threading.Lock()
        if self._progress is not None:
            self._progress.start()
            self._files = self._progress.add_task("files", total=total_files)
            self._tiles = self._progress.add_task("tiles", total=None)

    def tile(self, done: int, total: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            self._progress.update(self._tiles, completed=done, total=total)
            self._progress.refresh()

    def file_done(self, *_: object) -> None:
        if self._progress is None:
            return
        with self._lock:
            self._progress.advance(self._files)
            self._progress.reset(self._tiles, total=None)
            self._progress.refresh()

    def close(self) -> None:
        if self._progress is not None:
            with self._lock:
                self._progress.refresh()
                self._progress.stop()
