"""The training run: build everything from a Config, resume, iterate, checkpoint, validate, export.

Kept free of argument parsing (that is `train.py`) so tests and notebooks call `run(cfg)` too.
Every rank executes the same code; rank-dependent parts are the degradation seed, the data
shard, and (rank 0 only) writing files.
"""

from __future__ import annotations

import importlib.util
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from ..atomic import write_bytes_atomic
from ..errors import UserError
from ..cli.progress import make_progress
from . import checkpoint as ckpt
from . import distributed as dist
from .config import Config, ConfigError
from .data import HRFolderDataset, PairedDataset, UnreadableCounter, make_loader
from .degradations import Degrader, TrainingPairPool, paired_random_crop, usm_sharp
from .logs import RunLog
from .models import build_discriminator, build_generator, generator_params, load_pretrained
from .plot import plot_curves
from .speedups import apply_backend, fuse_dense_blocks
from .stages import ESRGANStage, ESRNetStage, TrainingDiverged, make_stage
from .timing import PhaseTimer
from .validate import Validator, save_grid
from .vgg import load_vgg19_state


@dataclass
class RunResult:
    """What a finished run produced (rank 0; others get the same iteration and no paths)."""

    iteration: int
    last_losses: dict[str, float]
    checkpoint: Path | None
    export: Any = None


class BatchMaker:
    """Turns a loaded batch into (lq, gt, gt_usm) on the device: degrade + crop + pool, or paired + USM.

    `generator` draws the degradation parameters, crops and pool order; a CPU generator keeps
    those small draws on the host (on CUDA each would be a device-to-host sync); the pixel noise
    is drawn on the device from generators seeded by it.
    """

    def __init__(self, cfg: Config, device: torch.device, generator: torch.Generator) -> None:
        self.cfg, self.device, self.gen = cfg, device, generator
        self.deg_cfg = cfg.degradation
        batched = cfg.speed.enabled("batched_degradations", device)
        self.degrader = Degrader(self.deg_cfg, scale=cfg.scale, batched=batched) if cfg.data.mode == "degrade" else None
        use_pool = cfg.data.pool_size > 0 and cfg.data.mode == "degrade"
        self.pool = TrainingPairPool(size=cfg.data.pool_size) if use_pool else None
        self._usm = usm_sharp

    def degrade_one(self, gt: torch.Tensor, seed: int) -> torch.Tensor:
        """A fixed LQ for validation: the run's degradation with its own seeded generator."""
        assert self.degrader is not None
        g = torch.Generator(device=self.device).manual_seed(seed)
        lq, _ = self.degrader(gt.to(self.device), g)
        return lq.cpu()

    @torch.no_grad()
    def __call__(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gt = batch["gt"].to(self.device, non_blocking=True)
        if self.degrader is None:
            lq = batch["lq"].to(self.device, non_blocking=True)
            u = self.deg_cfg.usm
            return lq, gt, self._usm(gt, weight=u.weight, radius=u.radius, threshold=u.threshold)
        lq, gt_usm = self.degrader(gt, self.gen)
        both = torch.cat([gt, gt_usm], dim=1)  # crop and pool GT and USM-GT together
        both, lq = paired_random_crop(both, lq, self.cfg.data.gt_size, self.cfg.scale, self.gen)
        if self.pool is not None:
            lq, both = self.pool.exchange(lq, both, self.gen)
        return lq.contiguous(), both[:, :3].contiguous(), both[:, 3:].contiguous()


def _build_dataset(cfg: Config) -> HRFolderDataset | PairedDataset:
    d = cfg.data
    if d.mode == "paired":
        return PairedDataset(d.dataroot_gt, d.dataroot_lq, d.gt_size, cfg.scale, d.use_hflip, d.use_rot, d.meta_file or None)
    return HRFolderDataset(d.dataroot_gt, d.crop_size or d.gt_size, d.use_hflip, d.use_rot, d.meta_file or None)


def _build_stage(cfg: Config, info: dist.DistInfo, log: RunLog, init: bool) -> ESRNetStage:
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    net_g = build_generator(cfg.network_g, cfg.scale)
    fuse_dense_blocks(net_g, cfg.speed.enabled("fused_dense", info.device))
    apply_backend(cfg.speed, info.device)
    net_d = build_discriminator(cfg.network_d) if cfg.train.stage == "esrgan" else None
    if init and cfg.path.pretrain_g:
        log.info(load_pretrained(net_g, cfg.path.pretrain_g, "generator", cfg.path.strict_load))
    if init and net_d is not None and cfg.path.pretrain_d:
        log.info(load_pretrained(net_d, cfg.path.pretrain_d, "discriminator", cfg.path.strict_load))
    net_g.to(info.device)
    if net_d is not None:
        net_d.to(info.device)
    return make_stage(cfg, net_g, info, net_d, lambda: load_vgg19_state(cfg.path.vgg_weights or None))


def _resume_state(cfg: Config, resume: str | None, info: dist.DistInfo, log: RunLog) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to continue from; only rank 0 reads it (other nodes need no shared disk)."""
    if not resume:
        return None
    found: tuple[Path, dict[str, Any]] | None | BaseException = None
    if info.is_main:
        try:
            found = ckpt.load_latest(cfg.run_dir, log.note) if resume == "auto" else (Path(resume), ckpt.load(Path(resume)))
        except ckpt.CheckpointError as exc:
            found = exc
    found = dist.broadcast_object(found, info)
    if isinstance(found, BaseException):
        raise found
    return found


def check_inputs(cfg: Config) -> None:
    """The files and folders the config names, before any data or weights load: `--dry-run` once
    said "ok" for a missing VGG19 file or pretrained generator, a missing validation folder or an
    unwritable experiments root, and each run then failed later."""
    uses_vgg = cfg.train.stage == "esrgan" and cfg.train.perceptual_weight > 0
    files = {"path.vgg_weights": cfg.path.vgg_weights if uses_vgg else "",
             "path.pretrain_d": cfg.path.pretrain_d if cfg.train.stage == "esrgan" else "",
             "path.pretrain_g": "" if cfg.path.pretrain_g.startswith("official:") else cfg.path.pretrain_g}
    for key, value in files.items():
        if value and not Path(value).is_file():
            what = "is not a file" if Path(value).exists() else "does not exist"
            raise ConfigError(f"config key '{key}': {value} {what}")
    if cfg.val.every > 0 and cfg.val.dataroot_gt and not Path(cfg.val.dataroot_gt).is_dir():
        raise ConfigError(f"config key 'val.dataroot_gt': {cfg.val.dataroot_gt} is not a folder")
    existing = next(p for p in (cfg.run_dir, *cfg.run_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ConfigError(f"the run folder {cfg.run_dir} cannot be made: {existing} is not a writable folder")


def check_config(cfg: Config) -> None:
    """Everything that can be checked without data or weights, so a typo fails in a second."""
    generator_params(cfg.network_g, cfg.scale)
    if cfg.logging.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("logging.tensorboard needs the `tensorboard` package (pip install tensorboard)")
    if cfg.train.stage == "esrgan":
        with torch.device("meta"):
            build_discriminator(cfg.network_d)


#: Settings that the optimizers and schedulers carry in a checkpoint: a resumed run continues with
#: the checkpoint's, so a changed value here would be recorded in config.yml but never used.
RESTORED_TRAIN_KEYS = ("lr_g", "lr_d", "betas", "weight_decay", "milestones", "gamma")


def _check_resumable(cfg: Config, path: Path, state: dict[str, Any]) -> None:
    """Refuse a resume whose config changes what the checkpoint's optimizer state decides (a new
    lr was once ignored in silence while config.yml claimed it), or ends before the checkpoint."""
    saved = state.get("config", {}).get("train", {}) if isinstance(state.get("config"), dict) else {}
    now = cfg.to_dict()["train"]
    changed = [f"train.{k} {saved[k]!r} -> {now[k]!r}" for k in RESTORED_TRAIN_KEYS if k in saved and saved[k] != now[k]]
    if changed:
        raise ConfigError(f"--resume from {path}: {'; '.join(changed)} would not take effect (the optimizer and "
                          "scheduler continue from the checkpoint); keep the checkpoint's values or start a new run")
    start = int(state.get("iteration", 0))
    if cfg.train.total_iter < start:
        raise ConfigError(f"train.total_iter {cfg.train.total_iter} is below the checkpoint's iteration {start} "
                          f"({path}); raise it to continue")


def _restore(stage: ESRNetStage, maker: BatchMaker, state: dict[str, Any], path: Path, rank: int, world: int) -> None:
    saved_stage = state.get("stage", "esrgan" if "net_d" in state else "esrnet")
    if isinstance(stage, ESRGANStage) != (saved_stage == "esrgan"):
        raise ckpt.CheckpointError(
            f"checkpoint {path} is from stage {saved_stage}, the config trains stage "
            f"{'esrgan' if isinstance(stage, ESRGANStage) else 'esrnet'}; to start a new stage from it "
            f"set path.pretrain_g={path} and do not resume"
        )
    nets = {"params": stage.generator(), "params_ema": stage.ema.module}
    if isinstance(stage, ESRGANStage):
        nets["net_d"] = stage.discriminator()
    for key, net in nets.items():
        ckpt.check_network(path, key, net, state)
    try:
        stage.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ckpt.CheckpointError(f"checkpoint {path} does not match the configured networks: {str(exc).splitlines()[0]}") from None
    ranks = state.get("ranks", [])
    if len(ranks) == world:  # same world size: every rank continues its own random stream and pool
        mine = ranks[rank]
        ckpt.set_rng_state(mine["rng"], maker.gen)
        if maker.pool is not None and mine.get("pool") is not None:  # checkpoints load on the CPU
            pool = {k: v.to(maker.device) if isinstance(v, torch.Tensor) else v for k, v in mine["pool"].items()}
            maker.pool.load_state_dict(pool)


def _save(cfg: Config, stage: ESRNetStage, maker: BatchMaker, info: dist.DistInfo, it: int) -> Path | None:
    mine = {"rng": ckpt.rng_state(maker.gen), "pool": maker.pool.state_dict() if maker.pool is not None else None}
    ranks = dist.gather_objects(mine, info)
    path = None
    if info.is_main:
        state = {**stage.state_dict(), "stage": cfg.train.stage, "ranks": ranks, "config": cfg.to_dict()}
        path = ckpt.save(cfg.run_dir, it, state, cfg.checkpoint.keep_last)
    dist.barrier(info)
    return path


def _validate(cfg: Config, validator: Validator, stage: ESRNetStage, info: dist.DistInfo, log: RunLog, it: int) -> None:
    metrics, rows = validator.run(stage.ema.module, info.device)
    log.record("val", it, metrics)
    log.info(f"val iter {it}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if cfg.val.grid:
        save_grid(rows, cfg.run_dir / "visualization" / f"val_{it:08d}.png")


def run(cfg: Config, resume: str | None = None, log_stream: Any = None) -> RunResult:
    """Train as configured; `resume` is None, `auto` (newest checkpoint of the run) or a path."""
    info = dist.setup(cfg.device)
    try:
        with ckpt.run_lock(cfg.run_dir) if info.is_main else nullcontext():
            log = RunLog(cfg.run_dir, enabled=info.is_main, tensorboard=cfg.logging.tensorboard, stream=log_stream)
            try:
                return _run(cfg, resume, info, log)
            finally:
                log.close()
    finally:
        dist.teardown()


def _run(cfg: Config, resume: str | None, info: dist.DistInfo, log: RunLog) -> RunResult:
    if cfg.train.amp and info.device.type != "cuda":
        log.info("train.amp is ignored: mixed precision is used on CUDA only")
    check_config(cfg)
    dataset = _build_dataset(cfg)
    counter = UnreadableCounter(len(dataset), cfg.data.max_unreadable)
    resumed = _resume_state(cfg, resume, info, log)
    if resumed is not None:
        _check_resumable(cfg, *resumed)
    stage = _build_stage(cfg, info, log, init=resumed is None)
    gen = torch.Generator().manual_seed(cfg.seed + info.rank)  # parameters: host draws (BatchMaker)
    maker = BatchMaker(cfg, info.device, gen)
    start = 0
    if resumed is not None:
        path, state = resumed
        _restore(stage, maker, state, path, info.rank, info.world)
        start = int(state["iteration"])
        log.info(f"resumed from {path} at iteration {start}")
    elif resume == "auto":
        log.info(f"no checkpoint in {ckpt.checkpoint_dir(cfg.run_dir)}: starting at iteration 0")
    if info.is_main:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cfg.run_dir / "config.yml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode("utf-8"))
    validator = None
    want_val = cfg.val.every > 0 and bool(cfg.val.dataroot_gt)
    if info.is_main and want_val:
        validator = Validator(cfg, maker.degrade_one if maker.degrader is not None else None)
        if validator.niqe_note:
            log.info(validator.niqe_note)
    log.info(
        f"{cfg.name}: stage {cfg.train.stage}, {len(dataset)} images, world {info.world} on {info.device}, "
        f"iterations {start + 1}..{cfg.train.total_iter}"
    )
    if want_val and start == 0:  # the starting point: the baseline of a fine-tune
        if validator is not None:
            _validate(cfg, validator, stage, info, log, 0)
        dist.barrier(info)
    loader = make_loader(
        dataset, cfg.data.batch_size, cfg.seed, info.rank, info.world, start, cfg.data.num_workers,
        pin_memory=info.device.type == "cuda",
    )
    bar = make_progress(log.stream) if info.is_main else None
    if bar is not None:  # log lines go above the bar while it is drawn
        bar.start()
        task = bar.add_task("train", total=cfg.train.total_iter, completed=start)
        log.printer = lambda line: bar.console.print(line, markup=False, highlight=False)

    def tick() -> None:
        if bar is not None:
            bar.update(task, advance=1, refresh=True)

    try:
        last_path, losses = _iterate(cfg, stage, maker, info, log, loader, counter, validator, want_val, start, tick)
    finally:
        if bar is not None:
            bar.stop()
            log.printer = None
    result = RunResult(iteration=max(start, cfg.train.total_iter), last_losses=losses, checkpoint=last_path)
    if info.is_main and cfg.export.at_end and start < cfg.train.total_iter:
        try:
            result.export = export_generator(cfg, stage.ema.module, log)
        except (RuntimeError, ValueError, OSError) as exc:  # convert's errors are of these kinds
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ExportFailed(f"training finished ({last_path}) but the export failed: {first}; retry with --export") from None
    return result


def _iterate(cfg: Config, stage: Any, maker: Any, info: Any, log: RunLog, loader: Any, counter: Any, validator: Any,
             want_val: bool, start: int, tick_bar: Callable[[], object]) -> tuple[Path | None, dict[str, float]]:
    """Iterations start+1..total: step, log, checkpoint, validate, plot; (last checkpoint, last losses).

    Losses stay on the device between print intervals (summed as tensors) and the timer records
    device phases with events, so an iteration waits for the device only at print, check and
    checkpoint intervals.
    """
    last_path, losses = None, {}
    sums: dict[str, torch.Tensor] = {}
    count = 0
    timer = PhaseTimer(info.device)
    check_every = cfg.speed.check_every
    for it in range(start + 1, cfg.train.total_iter + 1):
        with timer.phase("data"):
            batch = next(loader)
        for line in counter.add(batch):
            log.info(f"skipped unreadable image {line}")
        with timer.phase("degrade"):
            lq, gt, gt_usm = maker(batch)
        printing = it % cfg.logging.print_every == 0 or it == cfg.train.total_iter
        saving = it % cfg.checkpoint.save_every == 0 or it == cfg.train.total_iter
        try:
            losses = stage.step(lq, gt, gt_usm, it, timer)
            if printing or saving or (check_every and it % check_every == 0):
                stage.check_finite()
        except TrainingDiverged as exc:
            found = ckpt.list_checkpoints(cfg.run_dir)
            kept = f"; last good checkpoint {found[-1][1]}" if found else "; no checkpoint was written yet"
            raise TrainingDiverged(f"{exc}{kept} (lower the learning rate or check the data)") from None
        for k, v in losses.items():
            sums[k] = sums[k] + v if k in sums else v.clone()
        count += 1
        timer.step_done()
        if printing:
            means = dist.mean_scalars({k: float(v) / count for k, v in sums.items()}, info)
            times = timer.report()
            rate = times["iters_per_s"]
            log.record("train", it, {**means, "lr": stage.lr, **times, "unreadable": len(counter.bad)})
            eta = (cfg.train.total_iter - it) / rate if rate > 0 else 0.0
            log.info(
                f"iter {it}: " + ", ".join(f"{k} {v:.4g}" for k, v in means.items())
                + f", lr {stage.lr:.2e}, {rate:.3g} it/s, eta {_duration(eta)}; ms/it "
                + ", ".join(f"{k[3:]} {v:.1f}" for k, v in times.items() if k.startswith("ms_"))
                + f", data wait {100 * times['data_share']:.0f}%"
            )
            sums, count = {}, 0
        t_book = time.perf_counter()
        if saving:
            last_path = _save(cfg, stage, maker, info, it) or last_path
        if want_val and (it % cfg.val.every == 0 or it == cfg.train.total_iter):
            if validator is not None:
                _validate(cfg, validator, stage, info, log, it)
            dist.barrier(info)
        if info.is_main and printing and cfg.logging.plot:
            plot_curves(log.jsonl_path, cfg.run_dir / "curves.png")
        timer.leave_out(time.perf_counter() - t_book)
        tick_bar()
    return last_path, {k: float(v) for k, v in losses.items()}


class ExportFailed(UserError, RuntimeError):
    """Training finished and was checkpointed, but converting the result to ncnn failed."""


def _duration(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def export_generator(cfg: Config, model: torch.nn.Module, log: RunLog, name: str | None = None) -> Any:
    """EMA generator -> `run_dir/export/NAME.{param,bin,json}` through convert's export API."""
    from ..convert.api import export_state_dict

    name = name or cfg.export.name or cfg.name
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    result = export_state_dict(
        sd, cfg.run_dir / "export", name, fp16=cfg.export.fp16, verify=cfg.export.verify,
        source=f"trained with realesr-portable ({cfg.name})", license=cfg.export.license,
    )
    log.info(f"exported {result.param} ({result.json.name}); max abs vs torch: {result.max_abs}")
    return result
