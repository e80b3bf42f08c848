"""Run log: human lines to stdout and `train.log`, records to `log.jsonl`, optional TensorBoard.

Only rank 0 writes; on other ranks every method is a no-op, so callers need no rank checks.
Each JSONL record is one line written with a single `write` + flush, so a kill cuts at most the
last line, which the readers skip.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO


class RunLog:
    """Args: run_dir: the run's folder; enabled: False on ranks other than 0; tensorboard: also write events."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = False, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.jsonl_path = self.run_dir / "log.jsonl"
        self.stream = stream or sys.stdout
        self._text: TextIO | None = None
        self._jsonl: TextIO | None = None
        self._tb: Any = None
        #: Where `info` lines go instead of `stream` (a progress bar's console, while one is drawn).
        self.printer: Callable[[str], None] | None = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._text = open(self.run_dir / "train.log", "a", encoding="utf-8")
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

            self._tb = SummaryWriter(str(self.run_dir / "tb"))

    def info(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        if self.printer is not None:
            self.printer(line)
        else:
            print(line, file=self.stream, flush=True)
        self._keep(line)

    def note(self, msg: str) -> None:
        """`note: msg` on stderr and in train.log: something the user must see even when stdout
        goes to a file (an unreadable checkpoint skipped on resume)."""
        if not self.enabled:
            return
        print(f"note: {msg}", file=sys.stderr, flush=True)
        self._keep(f"{time.strftime('%Y-%m-%d %H:%M:%S')} note: {msg}")

    def _keep(self, line: str) -> None:
        assert self._text is not None
        self._text.write(line + "\n")
        self._text.flush()

    def record(self, kind: str, iteration: int, values: dict[str, float]) -> None:
        """Append one JSONL record (and TensorBoard scalars)."""
        if not self.enabled:
            return
        assert self._jsonl is not None
        rec = {"kind": kind, "iter": iteration, "time": round(time.time(), 3), **values}
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{kind}/{key}", value, iteration)

    def close(self) -> None:
        for fh in (self._text, self._jsonl):
            if fh is not None:
                fh.close()
        if self._tb is not None:
            self._tb.close()
