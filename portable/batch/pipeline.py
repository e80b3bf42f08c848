"""The batch's load -> process -> save pipeline in threads (which files and where they go: jobs.py).

Bad inputs never stop a batch: each failure is recorded with a one-line reason and listed at the
end, and every good file is still written (atomically, via `imageio.save_image`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from ..atomic import remove_stale
from ..errors import UsageError, one_line
from ..image.io import JPEG_MAX_EXIF, Picture, flatten, read_image, save_image
from ..run.options import UpscaleOptions
from .jobs import Job, make_folder
from .report import Report, name_once

def auto_save_threads() -> int:
    """Save threads for `-j ...:auto`: PNG at level 1 encodes a 4K frame in ~0.35 s on one core where
    a GPU computes it in ~0.25 s, so half the cores (2 to 4) keep saving off the critical path."""
    return max(2, min(4, (os.cpu_count() or 1) // 2))


#: Most threads one `-j` stage may have: each holds a decoded image, and Python cannot start
#: tens of thousands (RuntimeError: can't start new thread, after the batch had begun).
MAX_STAGE_THREADS = 64


def parse_threads(text: str) -> tuple[int, int, int]:
    """`-j load:proc:save`, e.g. `1:2:2`; the save count may be `auto` (`auto_save_threads`)."""
    fields = text.split(":")
    if len(fields) == 3 and fields[2].strip().lower() == "auto":
        fields[2] = str(auto_save_threads())
    try:
        parts = tuple(int(p) for p in fields)
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1 or max(parts) > MAX_STAGE_THREADS:
        raise UsageError(f"-j {text!r}: expected load:proc:save thread counts 1-{MAX_STAGE_THREADS}, "
                         "e.g. 1:1:2 or 1:1:auto")
    return parts  # type: ignore[return-value]


class BatchProgress(Protocol):
    """What the pipeline reports to (the CLI's progress line): tiles of the image being upscaled, and
    each file finished or failed. Typed here, so the pipeline calls no function of the layer above."""

    def tile(self, done: int, total: int) -> None: ...

    def file_done(self, job: Job) -> None: ...


class PictureUpscaler(Protocol):
    """What the process stage calls: `realesr_portable.Upscaler`, or anything with its `upscale_picture`.

    Typed here, in the stage that calls it, so the pipeline depends on no model code.
    """

    def upscale_picture(self, pic: Picture, progress: Callable[[int, int], None] | None = None) -> Picture: ...


def _prepare_output(pic: Picture, job: Job, options: UpscaleOptions, report: Report, lock: threading.Lock) -> Picture:
    if job.fmt == "JPEG" and pic.alpha is not None:
        with lock:
            report.notices.append(f"{job.dst}: JPEG has no alpha; flattened on background {options.background}")
        pic = flatten(pic, options.background)
    if job.fmt != "PNG" and pic.bits == 16:
        with lock:
            report.notices.append(f"{job.dst}: {job.fmt} is 8-bit; 16-bit input saved as 8-bit")
    if job.fmt == "JPEG" and pic.exif is not None and len(pic.exif) > JPEG_MAX_EXIF:
        # it once failed the image after the upscale ("EXIF data is too long")
        with lock:
            report.notices.append(f"{job.dst}: its {len(pic.exif)}-byte EXIF does not fit a JPEG (64 KB); not copied")
        pic = replace(pic, exif=None)
    return pic


def _put(q: queue.Queue, item: object, consumers: list[threading.Thread]) -> bool:
    """Put `item` unless no consumer thread is left to take it (False): never block for good."""
    while True:
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            if consumers and not any(worker.is_alive() for worker in consumers):
                return False


def run_pipeline(jobs: list[Job], upscaler: PictureUpscaler, options: UpscaleOptions, threads: tuple[int, int, int],
                 skip_existing: bool, progress: BatchProgress | None = None) -> Report:
    """Load, process and save in overlapping thread pools connected by small bounded queues.

    Each image: `read_image` (refusing more than `options.max_pixels`), `upscaler.upscale_picture`,
    then `save_image` at `options.quality`/`png_level` (alpha flattened on `options.background` for
    JPEG); `progress` hears of tiles and of each file finished or failed.

    Any exception a stage raises for one file (not only the expected ImageError: Pillow's encoders
    and EXIF code raise ValueError, struct.error, ...) becomes that file's one-line failure; the
    worker goes on with the next file, so no stage can die and leave the others waiting.
    """
    report = Report()
    lock = threading.Lock()
    todo: queue.Queue = queue.Queue()
    loaded: queue.Queue = queue.Queue(maxsize=max(2, threads[1]))
    processed: queue.Queue = queue.Queue(maxsize=max(2, threads[2]))
    stop = threading.Event()
    pools: dict[str, list[threading.Thread]] = {"proc": [], "save": []}
    for folder in sorted({job.dst.parent for job in jobs}):
        removed = remove_stale(folder)
        if removed:
            report.notices.append(f"{folder}: removed {len(removed)} temporary file(s) left by a killed run")
    for job in jobs:
        if skip_existing and job.dst.is_file():  # a folder in its place is no output: writing it fails, said
            report.skipped.append(job.src)
        else:
            todo.put(job)

    def fail(job: Job, exc: BaseException) -> None:
        with lock:
            report.failed.append((job.src, name_once(job.src, one_line(exc))))
        if progress is not None:
            progress.file_done(job)

    def load() -> None:
        while not stop.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                pic = read_image(job.src, options.max_pixels)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                fail(job, exc)
                continue
            if not _put(loaded, (job, pic), pools["proc"]):
                fail(job, RuntimeError("the processing stage stopped"))

    def process() -> None:
        while not stop.is_set():
            item = loaded.get()
            if item is None:
                return
            job, pic = item
            try:
                out = _prepare_output(upscaler.upscale_picture(pic, None if progress is None else progress.tile), job, options, report, lock)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                fail(job, exc)
                continue
            if not _put(processed, (job, out), pools["save"]):
                fail(job, RuntimeError("the save stage stopped"))

    def save() -> None:
        while True:
            item = processed.get()
            if item is None:
                return
            job, pic = item
            try:
                make_folder(job.dst.parent)
                save_image(job.dst, pic, job.fmt, options.quality, options.png_level)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                fail(job, exc)
                continue
            with lock:
                report.done.append(job.src)
                report.notices.extend(f"{job.src}: {note}" for note in pic.notes)
            if progress is not None:
                progress.file_done(job)

    def start(target: Callable[[], None], count: int) -> list[threading.Thread]:
        workers = [threading.Thread(target=target, daemon=True) for _ in range(count)]
        for worker in workers:
            worker.start()
        return workers

    pools["save"] = start(save, threads[2])
    pools["proc"] = start(process, threads[1])
    loaders = start(load, threads[0])
    try:
        for group, q, consumers in ((loaders, loaded, pools["proc"]), (pools["proc"], processed, pools["save"])):
            for worker in group:
                while worker.is_alive():
                    worker.join(timeout=0.2)  # short joins keep Ctrl-C responsive
            for _ in consumers:
                _put(q, None, consumers)
        for worker in pools["save"]:
            while worker.is_alive():
                worker.join(timeout=0.2)
    except BaseException:
        stop.set()
        _drain(processed, pools["save"])
        raise
    return report


def _drain(processed: queue.Queue, savers: list[threading.Thread], timeout: float = 30.0) -> None:
    """After Ctrl-C: let each saver finish (and rename) the file it is writing, then stop.

    Daemon threads killed at exit would leave their temporary `.part` file behind.
    """
    while True:  # drop outputs not yet started: they are not written at all
        try:
            processed.get_nowait()
        except queue.Empty:
            break
    for _ in savers:
        try:
            processed.put(None, timeout=1.0)
        except queue.Full:
            break
    for worker in savers:
        worker.join(timeout=timeout)
