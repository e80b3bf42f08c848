"""`upscale_many`: plan on the driver, upscale on Ray actors, collect one report.

Ray is imported only here, and only when a job runs, so the runtime works without the
`distributed` extra. The driver decides every output path with the CLI's planning code and skips
outputs that exist (a failed job resumes where it stopped); Ray Data feeds the remaining job rows
to a pool of actors (`map_batches` with a callable class), and Ray restarts a killed actor and
retries its batch.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..batch.report import Report
from ..errors import UsageError, UserError
from ..model.catalog import resolve_model
from ..run.backend import choose_backend
from ..run.options import UpscaleOptions
from .plan import Row, expand_sources, plan_rows, remove_leftovers, split_existing
from .worker import UpscaleWorker

EXTRA_HINT = "pip install 'realesr-portable[distributed]'"
MAX_BLOCKS = 10_000  # beyond this, per-block bookkeeping on the driver costs more than a retry saves
RESERVED_CPUS = 0.5  # left free on CPU clusters for Ray Data's own tasks (an all-CPU pool can stall them)


class RayMissingError(UserError, ImportError):
    """The `distributed` extra (ray[data]) is not installed."""


class RayUnreachableError(UsageError, ConnectionError):
    """The cluster address answers no connection: Ray itself would retry for minutes, silently."""


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str) -> None:
    """Open (and close) a TCP connection to `host:port` or `ray://host:port` before `ray.init`:
    an address where nothing listens once hung the job with no error (Ray retries for minutes)."""
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # a form Ray resolves itself (a bare host, `auto`): left to it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise RayUnreachableError(f"cannot reach the Ray cluster at {address!r} ({reason}); is it running?") from None


def import_ray():
    """`ray` and `ray.data`, or a RayMissingError that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError as exc:
        raise RayMissingError(f"--ray needs the distributed extra ({EXTRA_HINT}): {exc}") from None
    return ray


@contextmanager
def ray_session(address: str | None, quiet: bool) -> Iterator[object]:
    """Connect to Ray for one job; shut down only a Ray that this call started.

    `auto` starts a local Ray on this machine (Ray counts its CPUs and GPUs), unless RAY_ADDRESS
    names a cluster; any other value is a cluster address (`host:6379`, `ray://host:10001`). A
    Ray already initialised in this process is used as it is.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        target = os.environ.get("RAY_ADDRESS") if address in (None, "", "auto") else address
        options = dict(log_to_driver=False, logging_level=logging.ERROR if quiet else logging.WARNING)
        if target:
            check_reachable(target)
            ray.init(address=target, **options)
        else:  # "local": a new Ray, never a stray one found on this machine
            ray.init(address="local", include_dashboard=False, **options)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@contextmanager
def data_progress(progress: bool) -> Iterator[None]:
    """Ray Data's progress bars and execution logs on or off for this job, restored afterwards."""
    from ray.data import DataContext

    context = DataContext.get_current()
    # Rich bars: Ray's default tqdm bars draw nothing in a driver that does not forward worker logs.
    wanted = {"enable_progress_bars": progress, "enable_rich_progress_bars": True, "use_ray_tqdm": False}
    saved = {name: getattr(context, name, None) for name in wanted}
    logger = logging.getLogger("ray.data")
    saved_level = logger.level
    for name, value in wanted.items():
        setattr(context, name, value)
    if not progress:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        logger.setLevel(saved_level)


@dataclass(frozen=True)
class Sizing:
    actors: int
    num_cpus: float
    num_gpus: float
    threads: int | None


def size_actors(resources: dict, nodes: int, actors: int | None, num_cpus: float | None, num_gpus: float | None,
                threads: int | None, cpu_only: bool = False) -> Sizing:
    """Actor count and resources: one per GPU on GPU clusters; on CPUs, one per machine by default.

    CPU actors ask for a fraction of a core less than their share, so Ray Data's own tasks always
    find a CPU; ncnn's threads (what really uses the cores) are the actor's share, rounded up.
    """
    cpus = float(resources.get("CPU", 1.0))
    if num_gpus is None:  # automatic: one GPU per actor wherever the cluster has GPUs
        num_gpus = 1.0 if resources.get("GPU", 0) > 0 and not cpu_only else 0.0
    if num_gpus > 0:
        gpus = float(resources.get("GPU", 0.0))
        if gpus < num_gpus:
            raise ValueError(f"the Ray cluster has {gpus:g} GPU(s); each actor asks for {num_gpus:g}")
        if num_cpus is not None and num_cpus > cpus:
            raise ValueError(f"the Ray cluster has {cpus:g} CPU(s); each actor asks for {num_cpus:g}")
        count = actors or max(1, int(gpus // num_gpus))
        return Sizing(count, num_cpus if num_cpus is not None else 1.0, num_gpus, threads)
    count = actors or max(1, nodes)
    share = cpus / count
    per_actor = num_cpus if num_cpus is not None else max(0.25, share - RESERVED_CPUS / count)
    if per_actor * count > cpus:  # Ray would wait for CPUs that never come, silently
        raise ValueError(f"the Ray cluster has {cpus:g} CPU(s); {count} actor(s) asking for {per_actor:g} each need "
                         f"{per_actor * count:g}")
    return Sizing(count, per_actor, 0.0, threads if threads is not None else max(1, math.ceil(share - 1e-9)))


def upscale_many(
    inputs: list[str] | str,
    output: str | os.PathLike[str] | None = None,
    *,
    options: UpscaleOptions | None = None,
    suffix: str | None = None,
    jobs: tuple[int, int, int] = (1, 1, 2),
    address: str | None = "auto",
    actors: int | None = None,
    num_cpus_per_actor: float | None = None,
    num_gpus_per_actor: float | None = None,
    batch_size: int = 4,
    skip_existing: bool = True,
    progress: bool = True,
    **fields: Any,
) -> Report:
    """Upscale many images on a Ray cluster, writing exactly the files the CLI would write.

    `inputs`: folders, globs, files, list files (.txt/.lst/.list: one path or URI per line) or
    URIs that pyarrow's file systems read. Outputs go where `realesr-portable -i ... -o output`
    puts them, on a file system every worker can reach. Existing outputs are skipped (resume).
    Bad images are `Report.failed` rows, never an exception; setup errors (unknown model, bad
    option, no Ray) raise before any work starts. The upscale is `options` (or `UpscaleOptions`'
    keywords: model, outscale, gpu, fp32, png_level, ...), shipped whole to every actor;
    `max_memory` is each actor's budget, `backend` each actor's engine (with Ray's GPU id as its
    CUDA device under torch); `jobs` each actor's load:proc:save threads.

    Cluster options: `address` "auto" (a local Ray, or RAY_ADDRESS) or a cluster address;
    `actors` (default: one per GPU, else one per machine); `num_gpus_per_actor` (default 1 where
    the cluster has GPUs and `gpu` is not -1); `num_cpus_per_actor` (default: the actor's share
    of the CPUs less a reserve for Ray Data); `batch_size` images per actor call (the unit a
    killed actor redoes); `progress` Ray Data's progress bars and logs.
    """
    started = time.perf_counter()
    options = UpscaleOptions.given(options, fields)
    choose_backend(options.backend, options.gpu)  # a torch backend that cannot run fails before Ray starts
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out = Path(output) if output is not None else None
    files = resolve_model(options.model, scale=options.outscale)  # the driver needs the scale for default names; fails early
    out_scale = options.outscale if options.outscale is not None else files.spec.scale
    sources, missing = expand_sources([str(i) for i in items])
    notes: list[str] = []
    rows = plan_rows(sources, out, options.fmt, suffix, f"_x{out_scale:g}", notes)
    todo, existing = split_existing(rows) if skip_existing else (rows, [])
    report = Report(skipped=[r.name for r in existing], failed=list(missing), notices=notes)
    if out is not None and not out.suffix and not out.exists():
        out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(todo)
    shipped = replace(options, model=_for_workers(options.model),
                      dn_model=None if options.dn_model is None else _for_workers(options.dn_model))
    if todo:
        with ray_session(address, quiet=not progress) as ray, data_progress(progress):
            sizing = size_actors(ray.cluster_resources(), _cpu_nodes(ray), actors, num_cpus_per_actor, num_gpus_per_actor,
                                 options.threads, cpu_only=str(options.gpu).strip() == "-1")
            report.workers = sizing.actors
            try:
                _run(ray, todo, replace(shipped, threads=sizing.threads), tuple(jobs), sizing, batch_size, report)
            finally:
                remove_leftovers(todo)
    report.seconds = time.perf_counter() - started
    return report


def _for_workers(model: str | os.PathLike[str]) -> str:
    """A model path made absolute (workers have another cwd); a model name stays a name."""
    path = Path(model).expanduser()
    return str(path.absolute()) if path.is_file() else str(model)


def _cpu_nodes(ray) -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0)


def _run(ray, rows: list[Row], options: UpscaleOptions, jobs: tuple[int, int, int], sizing: Sizing, batch_size: int,
         report: Report) -> None:
    """One Ray Dataset of job rows -> actor pool -> result rows streamed back into `report`."""
    batch_size = max(1, batch_size)
    blocks = min(MAX_BLOCKS, max(1, math.ceil(len(rows) / batch_size)))  # a block is what a retry redoes
    # Fault tolerance comes from Ray Data's actor defaults (max_restarts=-1, max_task_retries=-1
    # since Ray 2.4): a killed actor is started again and its batch retried. Passing them by hand
    # is deprecated in Ray 2.60; tests/test_distributed.py kills an actor to hold Ray to it.
    dataset = ray.data.from_items([r.as_dict() for r in rows], override_num_blocks=blocks)
    results = dataset.map_batches(
        UpscaleWorker,
        fn_constructor_kwargs={"options": options, "jobs": jobs, "assigned_gpu": sizing.num_gpus > 0},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=sizing.actors),
        num_cpus=sizing.num_cpus,
        num_gpus=sizing.num_gpus or None,
    )
    shown = {r.src: r.name for r in rows}
    for row in results.iter_rows():
        src = str(row["src"])
        name = shown.get(src, src)
        if row["status"] == "done":
            report.done.append(name)
        else:
            report.failed.append((name, str(row["reason"]).replace(src, name)))
        report.notices.extend(n.replace(src, name) for n in str(row["notes"]).splitlines() if n)
