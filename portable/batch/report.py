"""`Report`: what a batch did, the one result record of a single-machine batch and a Ray job alike.

Why one record: the command line prints the same summary, and a caller of the Python API reads the
same lists, whichever way the images were upscaled. Sources are paths on one machine; on a
cluster they may be URIs, so they are kept as the user gave them (`Path` or `str`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import one_line, printable

Source = Path | str  # a local path, or a URI a cluster reads


@dataclass
class Report:
    """Sources written, skipped (output already there) and failed (with a one-line reason);
    notices for the user; the wall time and how many workers (Ray actors) did the work."""

    done: list[Source] = field(default_factory=list)
    skipped: list[Source] = field(default_factory=list)
    failed: list[tuple[Source, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0

    @property
    def total(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed)

    @property
    def images_per_s(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """`5 done, 1 skipped, 1 failed in 3.2 s (1.56 images/s on 2 worker(s))`."""
        return (f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed "
                f"in {self.seconds:.1f} s ({self.images_per_s:.2f} images/s on {self.workers} worker(s))")

    def failure_lines(self) -> list[str]:
        """One line per failure, naming the source once (reasons usually start with it), a name
        with a newline or odd bytes escaped (`printable`) so each failure stays one line."""
        return [name_once(src, reason) for src, reason in self.failed]


def name_once(source: Source, reason: str) -> str:
    """`reason` on one line with `source` in it written printable, or `source: reason` when it does
    not name it (`one_line` may already have turned the name's newlines into spaces)."""
    src = str(source)
    shown = printable(src)
    for said in dict.fromkeys((shown, src, " ".join(src.split()))):
        if said and said in reason:
            return one_line(Exception(reason.replace(said, shown, 1)))
    return one_line(Exception(f"{shown}: {reason}"))
