"""The output's time base and each frame's output timestamp.

Every container but AVI keeps the input's time base and pts unchanged (variable frame rate
included). AVI has no timestamps at all: a stream has one frame rate and frame n sits in slot n
(empty slots allowed). So into AVI each frame goes to the slot of its time at the input's frame
rate, and a video whose frames do not sit on such a grid is refused rather than retimed.
B-frames are switched off for AVI (see encoder.open_video_stream): slots are in decode order.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .probe import VideoError, VideoInfo


@dataclass(frozen=True)
class Timing:
    """`time_base` of the encoded stream; `slots` maps input pts to output pts (None: unchanged)."""

    time_base: Fraction
    rate: Fraction | None
    slots: dict[int, int] | None = None

    def pts(self, pts: int) -> int:
        return pts if self.slots is None else self.slots[pts]

    def duration(self, duration: int | None) -> int | None:
        return duration if self.slots is None else None  # one slot each


def output_timing(src: Path, info: VideoInfo, fmt: str) -> Timing:
    """The input's own timing, or (AVI) frame slots at the input's frame rate."""
    if fmt != "avi":
        return Timing(info.time_base, info.rate)
    first, tb = info.frame_pts[0], info.time_base
    times = [(p - first) * tb for p in info.frame_pts]
    tolerance = max(tb, Fraction(1, 1000))  # the input's own rounding (Matroska keeps ms)
    measured = (len(times) - 1) / times[-1] if len(times) > 1 and times[-1] > 0 else None
    for rate in (info.rate, measured and Fraction(measured).limit_denominator(1001)):
        if not rate:
            continue
        slots = [round(t * rate) for t in times]
        if len(set(slots)) == len(slots) and all(abs(s / rate - t) <= tolerance for s, t in zip(slots, times)):
            return Timing(1 / Fraction(rate), Fraction(rate), dict(zip(info.frame_pts, slots)))
    raise VideoError(f"{src}: variable frame rate does not fit AVI, which holds one frame rate and no "
                     "timestamps; use .mkv or .mp4 to keep them")
