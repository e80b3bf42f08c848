"""What one extractor call and one multiply-add cost on a device: measured, cached per device+model.

The planner (segments.py) trades tile count against recomputed halos with a fixed per-call cost.
The CPU's constant (EXTRACT_MACS, ~1 ms) badly underrates a GPU, where a call (upload, dispatch,
sync, download) costs ~100x more relative to its compute: with CPU costs an H200 ran the default
anime-video model in dozens of tiles, 6x slower than one tile. So on a Vulkan device two short
whole-net runs (two sizes) fit `seconds = call + pixels * per_pixel`, once per device, model and
options; the result is cached in the user cache dir (atomic writes; an unreadable file is ignored
and rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import write_bytes_atomic

CACHE_VERSION = 1
SIDES = (16, 48)  # calibration inputs: short even for x4plus on lavapipe (~10 s once), far enough apart
RUNS = 2
CALL_FLOOR = 0.1  # the call costs at least this share of the smallest calibration run


@dataclass(frozen=True)
class DeviceCost:
    """Seconds per extractor call and per net-input pixel of the whole net on one device."""

    call_s: float
    pixel_s: float

    def call_macs(self, macs_per_pixel: float) -> float:
        """The per-call cost in the planner's unit (multiply-adds of this net)."""
        mac_s = max(self.pixel_s, 1e-15) / max(macs_per_pixel, 1.0)
        return max(self.call_s, 0.0) / mac_s


def cache_dir() -> Path:
    """`$REALESR_PORTABLE_CACHE`, else `$XDG_CACHE_HOME/realesr-portable`, else ~/.cache/realesr-portable."""
    explicit = os.environ.get("REALESR_PORTABLE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "realesr-portable"


def cache_key(model_bytes: bytes, device_name: str, options: str) -> str:
    """Digest of the model files' content, the device's name and the precision options."""
    digest = hashlib.sha256(model_bytes)
    digest.update(b"\0" + device_name.encode() + b"\0" + options.encode())
    return digest.hexdigest()[:32]


def load_cost(path: Path) -> DeviceCost | None:
    """The cached cost, or None when missing, unreadable, of another version or implausible."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CACHE_VERSION:
            return None
        cost = DeviceCost(float(data["call_s"]), float(data["pixel_s"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    ok = all(v == v and 0 <= v < 1e3 for v in (cost.call_s, cost.pixel_s)) and cost.pixel_s > 0
    return cost if ok else None


def save_cost(path: Path, cost: DeviceCost) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps({"version": CACHE_VERSION, **asdict(cost)}).encode())


def measure(run: Callable[[int], object], sides: tuple[int, int] = SIDES, runs: int = RUNS) -> DeviceCost:
    """Fit call + pixels * per_pixel from whole-net runs at two square sides (`run(side)` runs one)."""
    medians = []
    for side in sides:
        run(side)  # warm-up: pipeline creation and allocation
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run(side)
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    (s0, s1), (t0, t1) = sides, medians
    pixel_s = max((t1 - t0) / (s1 * s1 - s0 * s0), 1e-12)
    # A 16-px run is mostly call overhead on any device; a fit that leaves it none is timing noise
    # (seen on a loaded machine), and a free call would make the planner cut needless tiles.
    return DeviceCost(max(t0 - pixel_s * s0 * s0, CALL_FLOOR * t0), pixel_s)


def device_cost(key: str, run: Callable[[int], object]) -> DeviceCost:
    """The cached cost for `key`, or measure it now and cache it (a corrupt file is rewritten)."""
    path = cache_dir() / "calibration" / f"{key}.json"
    cost = load_cost(path)
    if cost is None:
        cost = measure(run)
        try:
            save_cost(path, cost)
        except OSError:
            pass  # a read-only cache costs a calibration per process, nothing else
    return cost
