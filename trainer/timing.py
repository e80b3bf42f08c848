"""Where a print interval's time went: data wait, degradations, G, D, other - without a host sync
per step.

Why not `time.perf_counter()` around each phase: on CUDA the host only queues kernels, so a
host clock measures launch time unless every phase ends with `torch.cuda.synchronize()`, which
would itself stall the pipeline being measured. Device phases therefore record CUDA events
(queued like kernels, read once at the end of the interval); on the CPU, where work is
synchronous, the host clock is exact. The data wait (the host blocked in the loader) is always a
host time. `other` is the interval's wall time minus the timed phases: the pool, EMA, per-step
Python work and any idle device time (checkpoints, validation and plots are left out).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

#: The timed phases, in the order they are reported; `other` is derived.
PHASES = ("data", "degrade", "g", "d")


class PhaseTimer:
    """Accumulates per-phase seconds over one print interval.

    Args:
        device: the training device (CUDA: device phases are timed with events).
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._host: dict[str, float] = {}
        self._events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self._start = time.perf_counter()
        self._left_out = 0.0
        self._iters = 0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase `name` (`data` is host time, the rest device time)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {', '.join(PHASES)}")
        if self.cuda and name != "data":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((name, start, end))
            return
        t0 = time.perf_counter()
        yield
        self._host[name] = self._host.get(name, 0.0) + time.perf_counter() - t0

    def leave_out(self, seconds: float) -> None:
        """Take `seconds` of wall time out of the interval: checkpoints, validation and plots
        (they have log lines of their own) would otherwise count as `other`."""
        self._left_out += seconds

    def step_done(self) -> None:
        """Count one iteration of the interval."""
        self._iters += 1

    def report(self) -> dict[str, float]:
        """Milliseconds per iteration for each phase and `other`, plus `data_share` (data wait /
        wall time) and `iters_per_s`; then start a new interval. Waits for the device once."""
        if self._events:
            self._events[-1][2].synchronize()
        wall = time.perf_counter() - self._start - self._left_out
        total = dict.fromkeys(PHASES, 0.0)
        for name, seconds in self._host.items():
            total[name] += seconds
        for name, start, end in self._events:
            total[name] += start.elapsed_time(end) / 1000.0
        n = max(self._iters, 1)
        out = {f"ms_{k}": 1000.0 * v / n for k, v in total.items()}
        out["ms_other"] = max(0.0, 1000.0 * (wall - sum(total.values())) / n)
        out["data_share"] = total["data"] / wall if wall > 0 else 0.0
        out["iters_per_s"] = self._iters / wall if wall > 0 else 0.0
        self._host, self._events, self._iters, self._left_out = {}, [], 0, 0.0
        self._start = time.perf_counter()
        return out


def maybe(timer: PhaseTimer | None, name: str) -> contextlib.AbstractContextManager:
    """`timer.phase(name)`, or nothing when there is no timer (stages called from tests)."""
    return timer.phase(name) if timer is not None else contextlib.nullcontext()
