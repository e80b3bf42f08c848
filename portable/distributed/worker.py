"""The actor that Ray Data's `map_batches` runs: one `Upscaler` per actor, many batches each.

Each batch goes through the single-machine CLI's own `run_pipeline` (read_image -> Upscaler ->
save_image), so the bytes written are the CLI's and a bad image becomes a failed row with the
CLI's one-line reason, never an exception that would fail the Ray job. Writes are atomic (temp
file + rename), so a batch retried after its actor was killed overwrites only complete files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..batch.pipeline import Job, Report, Stages, run_pipeline
from ..image.io import DEFAULT_MAX_PIXELS, Picture
from ..model.catalog import DEFAULT_MODEL
from .plan import Row, is_uri

RESULT_COLUMNS = ("src", "dst", "status", "reason", "notes")


@dataclass(frozen=True)
class Settings:
    """Everything an actor needs to build its `Upscaler` and write like the CLI (picklable)."""

    model: str = DEFAULT_MODEL
    gpu: str | int | None = "auto"
    tile: int = 0
    fp32: bool = False
    outscale: float | None = None
    tta: bool = False
    alpha: str = "bicubic"
    threads: int | None = None
    dn: float | None = None
    dn_model: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    quality: int = 95
    background: tuple[int, int, int] = (255, 255, 255)
    jobs: tuple[int, int, int] = (1, 1, 2)
    max_memory: int | None = None  # bytes per actor for features and tiles (None: the device's share)
    assigned_gpu: bool = False  # True when Ray gives each actor a GPU: use that one
    backend: str = "auto"  # auto, ncnn or torch (run/backend.py)


def assigned_vulkan_device(gpu_ids: list, hardware_indexes: list[int]) -> int | None:
    """Vulkan index of the GPU Ray assigned to this actor.

    ncnn enumerates GPUs through Vulkan, which ignores CUDA_VISIBLE_DEVICES on most drivers: Ray's
    GPU id is then the index among the hardware Vulkan devices. Where the driver did filter the
    list (it holds exactly the assigned GPUs), the first visible device is the assigned one.
    """
    if not gpu_ids or not hardware_indexes:
        return None
    first = int(gpu_ids[0])
    if len(hardware_indexes) == len(gpu_ids):
        return hardware_indexes[0]
    return hardware_indexes[first] if first < len(hardware_indexes) else None


def assigned_cuda_device(gpu_ids: list, visible: str | None) -> int | None:
    """CUDA index (as torch counts) of the GPU Ray assigned to this actor.

    Ray sets CUDA_VISIBLE_DEVICES to the assigned ids, so the id's place in that list is torch's
    index (0 for one GPU per actor); where Ray leaves the variable unset, the id is the index.
    """
    if not gpu_ids:
        return None
    first = str(gpu_ids[0]).strip()
    if not visible or not visible.strip():
        return int(first)
    order = [part.strip() for part in visible.split(",")]
    return order.index(first) if first in order else None


class UpscaleWorker:
    """Ray Data callable class: built once per actor, then called with batches of job rows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.setup_error: str | None = None
        try:
            self.upscaler = self._build()
        except Exception as exc:  # noqa: BLE001 - reported on every row, so the driver prints one line
            self.setup_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def _build(self):
        from ..api import Upscaler
        from ..device.select import vulkan_devices
        from ..run.backend import choose_backend

        s = self.settings
        gpu = s.gpu
        if s.assigned_gpu and str(gpu).strip().lower() in ("", "auto", "none"):
            import ray

            if choose_backend(s.backend, gpu) == "torch":
                index = assigned_cuda_device(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"))
            else:
                hardware = [d.index for d in vulkan_devices() if not d.is_software]
                index = assigned_vulkan_device(ray.get_gpu_ids(), hardware)
            gpu = gpu if index is None else index
        return Upscaler(s.model, gpu=gpu, tile=s.tile, fp32=s.fp32, outscale=s.outscale, tta=s.tta, alpha=s.alpha,
                        threads=s.threads, dn=s.dn, dn_model=s.dn_model, max_memory=s.max_memory, backend=s.backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [Row(str(s), str(d), str(f)) for s, d, f in zip(batch["src"], batch["dst"], batch["fmt"])]
        if self.setup_error is not None:
            results = [(row, "failed", f"worker setup failed: {self.setup_error}", "") for row in rows]
        else:
            results = self.run_rows(rows)
        columns = ([row.src for row, *_ in results], [row.dst for row, *_ in results],
                   *([r[i] for r in results] for i in (1, 2, 3)))
        return {name: np.array(values, dtype=object) for name, values in zip(RESULT_COLUMNS, columns)}

    def run_rows(self, rows: list[Row]) -> list[tuple[Row, str, str, str]]:
        """Upscale a batch with the CLI's pipeline; URIs are fetched to a local scratch folder first."""
        scratch = Path(tempfile.mkdtemp(prefix="realesr-portable-fetch-")) if any(is_uri(r.src) for r in rows) else None
        try:
            local: dict[str, Row] = {}
            fetch_failed: dict[str, str] = {}
            jobs = []
            for i, row in enumerate(rows):
                try:
                    path = fetch(row.src, scratch / str(i)) if scratch and is_uri(row.src) else Path(row.src)
                except (OSError, ValueError) as exc:  # pyarrow: FileNotFoundError, ArrowInvalid, ...
                    fetch_failed[row.src] = f"{row.src}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                    continue
                local[str(path)] = row
                jobs.append(Job(path, Path(row.dst), row.fmt))
            report = run_pipeline(jobs, self._stages(), self.settings.jobs, skip_existing=False)
            return [self._result(row, report, local, fetch_failed) for row in rows]
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _stages(self) -> Stages:
        def process(pic: Picture, job: Job) -> Picture:
            return self.upscaler.upscale_picture(pic)

        s = self.settings
        return Stages(process, s.max_pixels, s.quality, s.background)

    @staticmethod
    def _result(row: Row, report: Report, local: dict[str, Row], fetch_failed: dict[str, str]) -> tuple[Row, str, str, str]:
        if row.src in fetch_failed:
            return row, "failed", fetch_failed[row.src], ""
        path = next(p for p, r in local.items() if r is row)
        notes = "\n".join(_as_source(n, path, row.src) for n in report.notices
                          if n.startswith(f"{path}:") or n.startswith(f"{row.dst}:"))
        if any(str(src) == path for src in report.done):
            return row, "done", "", notes
        reason = next((r for src, r in report.failed if str(src) == path), "not processed")
        return row, "failed", _as_source(reason if path in reason else f"{path}: {reason}", path, row.src), notes


def _as_source(text: str, local: str, source: str) -> str:
    """Name the user's URI, not the scratch copy, in messages."""
    return text.replace(local, source) if local != source else text


def fetch(uri: str, folder: Path) -> Path:
    """Copy a URI (any pyarrow file system) to `folder`, keeping its file name for messages and formats."""
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(path).name
    with filesystem.open_input_stream(path) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return target
