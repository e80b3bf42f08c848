"""A one-line progress display (files and tiles) for terminals; silent otherwise."""

from __future__ import annotations

import sys
import threading
from typing import TextIO


class ProgressLine:
    """Redraws `[files done/total] tiles t/T` on one line of a terminal stream."""

    def __init__(self, total_files: int, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total_files
        self.files = 0
        self.tiles = (0, 0)
        self._lock = threading.Lock()

    def _draw(self) -> None:
        if self.enabled:
            done, total = self.tiles
            tiles = f"  tiles {done}/{total}" if total else ""
            self.stream.write(f"\r[{self.files}/{self.total} files]{tiles}\033[K")
            self.stream.flush()

    def tile(self, done: int, total: int) -> None:
        with self._lock:
            self.tiles = (done, total)
            self._draw()

    def file_done(self, *_: object) -> None:
        with self._lock:
            self.files += 1
            self.tiles = (0, 0)
            self._draw()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
