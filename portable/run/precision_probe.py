"""Precision per model and device, from a measurement: fp16 only where it gives fp32's picture.

Why: fp16 storage/arithmetic costs a model anything from nothing to its whole picture depending
on the model (activations beyond fp16's 65504 become inf) and the device (measured on an H200:
animevideov3 loses 34 dB, x4plus far less). A foreign model's tolerance is unknown until
measured, so at load a small probe image runs at the device's reduced precision and at fp32; if
they disagree beyond `MIN_PSNR_DB`, or the reduced run gives NaN/inf, the model runs at fp32 on
that device (one-line note). The verdict is cached per model content and device in the user's
cache dir (atomic writes; a corrupt cache is ignored and rewritten).

The seam to the precision policy (which ncnn options a device gets) is one boolean: the
Session's `fp32`. This module only decides "force fp32 for this model on this device".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..device.select import Device
from ..model.catalog import ModelFiles
from ..plan.cost import cache_dir

MIN_PSNR_DB = 45.0  # fp16 vs fp32 on the probe, in the [0, 1] range: below this, the model runs at fp32
PROBE_SIDE = 32  # a multiple of every size_multiple (1..16); small enough to cost ~a tile
CACHE_VERSION = 1
MAX_CACHE_BYTES = 1 << 20
MAX_CACHE_ENTRIES = 1000


@dataclass(frozen=True)
class Verdict:
    """The probe's answer for one model on one device; `psnr_db` is inf for identical outputs and
    -inf for non-finite reduced output."""

    force_fp32: bool
    psnr_db: float

    def note(self, model: str, device: str) -> str:
        why = "NaN/inf" if self.psnr_db == float("-inf") else f"{self.psnr_db:.1f} dB < {MIN_PSNR_DB:.0f} dB"
        return f"{model}: fp16 on {device} differs from fp32 on a probe ({why}); running at fp32 there"


def model_digest(model: ModelFiles, weights: bytes | None = None) -> str:
    """sha256 of a model's `.param` and weights (the `.bin`, or blended `--dn` weights)."""
    digest = hashlib.sha256()
    digest.update(model.param.read_bytes())
    if weights is not None:
        digest.update(weights)
        return digest.hexdigest()
    with open(model.bin, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def device_key(device: Device) -> str:
    """What the verdict depends on besides the model: the device and the ncnn build that runs it."""
    import ncnn

    return f"{device.name}|{device.kind}|{device.index}|ncnn {getattr(ncnn, '__version__', '?')}"


def cache_file() -> Path:
    """The verdicts' file in the project's one cache folder (plan/cost.py `cache_dir`)."""
    return cache_dir() / "precision.json"


def _read_cache(path: Path) -> dict[str, dict]:
    """The cached verdicts; anything unreadable or malformed counts as an empty cache."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CACHE_BYTES + 1)
        data = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_CACHE_BYTES else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("verdicts"), dict):
        return {}
    return {k: v for k, v in data["verdicts"].items() if isinstance(v, dict)}


def _cached(entry: dict | None) -> Verdict | None:
    if entry is None:
        return None
    force, psnr = entry.get("force_fp32"), entry.get("psnr_db")
    if not isinstance(force, bool) or not isinstance(psnr, (int, float)) or isinstance(psnr, bool):
        return None
    return Verdict(force, float(psnr))


def _write_cache(path: Path, key: str, verdict: Verdict) -> None:
    """Best effort: a read-only cache dir only costs a probe next time."""
    verdicts = _read_cache(path)
    verdicts.pop(key, None)
    verdicts[key] = {"force_fp32": verdict.force_fp32, "psnr_db": verdict.psnr_db}  # +-Infinity: Python's json
    verdicts = dict(list(verdicts.items())[-MAX_CACHE_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps({"version": CACHE_VERSION, "verdicts": verdicts}).encode("utf-8"))
    except OSError:
        pass


def probe_input(channels: int, value_range: tuple[float, float]) -> np.ndarray:
    """A deterministic (C, 32, 32) image in the model's range: gradients, an edge and noise, so
    that activations see the flat and the busy content of real photos."""
    yy, xx = np.mgrid[0:PROBE_SIDE, 0:PROBE_SIDE].astype(np.float32) / (PROBE_SIDE - 1)
    noise = np.random.default_rng(0).random((channels, PROBE_SIDE, PROBE_SIDE), dtype=np.float32)
    planes = [xx, yy, (xx > 0.5).astype(np.float32), (xx + yy) / 2]
    unit = np.stack([0.6 * planes[c % 4] + 0.4 * noise[c] for c in range(channels)])
    lo, hi = value_range
    return lo + unit * (hi - lo)


def compare(reduced: np.ndarray, exact: np.ndarray, value_range: tuple[float, float]) -> Verdict:
    """PSNR of the reduced-precision output against fp32, both clipped to the value range as
    the writer clips them; non-finite reduced (or reference) output forces fp32."""
    if not np.isfinite(reduced).all() or not np.isfinite(exact).all():
        return Verdict(True, float("-inf"))
    lo, hi = value_range
    a = np.clip((reduced - lo) / (hi - lo), 0.0, 1.0)
    b = np.clip((exact - lo) / (hi - lo), 0.0, 1.0)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
    return Verdict(bool(psnr < MIN_PSNR_DB), float(psnr))


def measure(run_reduced: Callable[[np.ndarray], np.ndarray], run_fp32: Callable[[np.ndarray], np.ndarray],
            channels: int, value_range: tuple[float, float]) -> Verdict:
    """Run the probe image both ways and compare."""
    x = probe_input(channels, value_range)
    return compare(run_reduced(x), run_fp32(x), value_range)


def choose_precision(model: ModelFiles, device_key: str, run_reduced: Callable[[np.ndarray], np.ndarray],
                     make_fp32: Callable[[], Callable[[np.ndarray], np.ndarray]], weights: bytes | None = None,
                     cache: Path | None = None) -> Verdict:
    """The cached verdict for this model content on this device, else a fresh measurement (cached).

    `make_fp32` builds the fp32 reference only when a measurement is needed."""
    path = cache or cache_file()
    key = f"{model_digest(model, weights)}|{device_key}"
    known = _cached(_read_cache(path).get(key))
    if known is not None:
        return known
    verdict = measure(run_reduced, make_fp32(), model.spec.in_channels, model.spec.value_range)
    _write_cache(path, key, verdict)
    return verdict


def remember_fp32(model: ModelFiles, device_key: str, weights: bytes | None = None, cache: Path | None = None) -> None:
    """Cache fp32 for this model on this device: an image overflowed its reduced precision though
    the probe did not, so later runs start at fp32 instead of failing on such an image again."""
    _write_cache(cache or cache_file(), f"{model_digest(model, weights)}|{device_key}", Verdict(True, float("-inf")))
