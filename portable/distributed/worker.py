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
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..batch.jobs import Job
from ..batch.pipeline import run_pipeline
from ..batch.report import Report
from ..run.options import UpscaleOptions
from .plan import Row, is_uri

RESULT_COLUMNS = ("src", "dst", "status", "reason", "notes")


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

    def __init__(self, options: UpscaleOptions, jobs: tuple[int, int, int] = (1, 1, 2), assigned_gpu: bool = False) -> None:
        """`options`: the driver's, whole; `jobs`: load:proc:save threads; `assigned_gpu`: Ray gives
        this actor a GPU, so an automatic `gpu` means that one."""
        self.options, self.jobs, self.assigned_gpu = options, jobs, assigned_gpu
        self.setup_error: str | None = None
        try:
            self.upscaler = self._build()
        except Exception as exc:  # noqa: BLE001 - reported on every row, so the driver prints one line
            self.setup_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def _build(self):
        from ..api import Upscaler
        from ..device.select import vulkan_devices
        from ..run.backend import choose_backend

        options = self.options
        gpu = options.gpu
        if self.assigned_gpu and str(gpu).strip().lower() in ("", "auto", "none"):
            import ray

            if choose_backend(options.backend, gpu) == "torch":
                index = assigned_cuda_device(ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"))
            else:
                hardware = [d.index for d in vulkan_devices() if not d.is_software]
                index = assigned_vulkan_device(ray.get_gpu_ids(), hardware)
            options = options if index is None else replace(options, gpu=index)
        return Upscaler(options=options)

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
            report = run_pipeline(jobs, self.upscaler, self.options, self.jobs, skip_existing=False)
            return [self._result(row, report, local, fetch_failed) for row in rows]
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

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
