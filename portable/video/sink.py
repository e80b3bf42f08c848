"""The file PyAV writes into: write errors are kept here and raised by our own code.

An OSError raised inside PyAV's write callback is "stashed" by PyAV; when FFmpeg writes again
before PyAV re-raises it (the muxer ignores a failed write and goes on), PyAV prints "PyAV library
exception being dropped:" and a traceback to stderr, and the caller gets "Error in PyAV callback"
instead of "No space left on device". So the callback never raises: the first error is recorded,
later writes are dropped, and the muxing loops call `check()` after each packet.
"""

from __future__ import annotations

from typing import BinaryIO


class Sink:
    """A write-only, seekable view of `fh` that records the first OSError instead of raising it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                self.fh.write(data)
            except OSError as exc:
                self.error = exc
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()

    def seekable(self) -> bool:
        return True

    def check(self) -> None:
        """Raise the recorded write error, if any (outside PyAV's callbacks)."""
        if self.error is not None:
            raise self.error
