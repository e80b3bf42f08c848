"""`realesr-portable train` and `python trainer/train.py`: load config, run, report errors.

Errors go through the runtime's one table (`cli/commands.py`, `run_command` and `errors_exit`):
one line `PROG: error: ...` (PROG is `realesr-portable train`, or `train.py` when the script runs;
`[rank N] ` in front under torchrun). A bad config, anything `check_config` finds included, is
bad usage found before any work starts: exit 2. Failures during the work (no data, unreadable
images, a diverged loss, a checkpoint that cannot be written or read) exit 1; Ctrl-C 130 and
SIGTERM 143, with a note on how to resume. "internal error" means a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..cli.commands import errors_exit, run_command
from ..errors import UsageError
from . import config as config_mod


def _prefix() -> str:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f"[rank {os.environ.get('RANK', '0')}] " if world > 1 else ""


def _export_only(cfg: config_mod.Config, resume: str | None) -> int:
    from . import checkpoint as ckpt
    from .logs import RunLog
    from .loop import export_generator
    from .models import build_generator

    skipped: list[str] = []
    found = ckpt.load_latest(cfg.run_dir, skipped.append) if resume in (None, "auto") else (Path(resume), ckpt.load(Path(resume)))
    if found is None:
        raise ckpt.CheckpointError(f"no checkpoint in {ckpt.checkpoint_dir(cfg.run_dir)} to export")
    path, state = found
    log = RunLog(cfg.run_dir)
    try:
        for line in skipped:
            log.note(line)
        model = build_generator(cfg.network_g, cfg.scale)
        ckpt.check_network(path, "params_ema", model, state)
        model.load_state_dict(state["params_ema"])
        export_generator(cfg, model, log, name=f"{cfg.export.name or cfg.name}_iter{int(state['iteration'])}")
    finally:
        log.close()
    return 0


def _dry_run(cfg: config_mod.Config, origin: str) -> int:
    from .data import HRFolderDataset, PairedDataset
    from .models import build_discriminator, build_generator

    g = build_generator(cfg.network_g, cfg.scale)
    d = build_discriminator(cfg.network_d) if cfg.train.stage == "esrgan" else None
    data = cfg.data
    if data.mode == "paired":
        n = len(PairedDataset(data.dataroot_gt, data.dataroot_lq, data.gt_size, cfg.scale, meta_file=data.meta_file or None))
    else:
        n = len(HRFolderDataset(data.dataroot_gt, data.crop_size or data.gt_size, meta_file=data.meta_file or None))
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters()) if d is not None else 0
    print(f"ok: {cfg.name}, stage {cfg.train.stage}, {n} training images, G {n_g / 1e6:.2f}M params"
          + (f", D {n_d / 1e6:.2f}M params" if d is not None else "") + f", run folder {cfg.run_dir}; code from {origin}")
    return 0


def _resume_hint(cfg: config_mod.Config) -> str:
    """What an interrupted run can continue from (the hint once promised a checkpoint that did not exist)."""
    from . import checkpoint as ckpt

    found = ckpt.list_checkpoints(cfg.run_dir)
    if not found:
        return "no checkpoint was written yet (checkpoint.save_every)"
    return f"resume with --resume auto (from iteration {found[-1][0]})"


def run_cli(args: argparse.Namespace, origin: str, prog: str = "realesr-portable train") -> int:
    """Execute parsed `train.py` arguments; returns the process exit code.

    Errors end the command through `errors_exit` (as `typer.Exit`, so run it inside the app).
    """
    prog = f"{_prefix()}{prog}"
    overrides = list(args.overrides)
    if args.vgg_weights:
        overrides.append(f"path.vgg_weights={args.vgg_weights}")
    with errors_exit(prog, setup=True):  # the config, and all that can be checked without data or weights
        if args.resume is not None and not args.resume.strip():  # "" once meant "start from scratch"
            raise UsageError("--resume needs 'auto' or a checkpoint file, got an empty value")
        cfg = config_mod.load(args.config, overrides)
        from . import checkpoint as ckpt
        from .loop import check_config, check_inputs, run

        check_config(cfg)
        if not args.export:
            check_inputs(cfg)
        if not (args.export or args.dry_run or args.resume) and ckpt.list_checkpoints(cfg.run_dir):
            # a second run under one name once replaced the first's checkpoints one by one, mixed
            raise UsageError(f"{cfg.run_dir} already holds this run's checkpoints (newest: iteration "
                             f"{ckpt.list_checkpoints(cfg.run_dir)[-1][0]}); continue with --resume auto, or set another name")
    with errors_exit(prog):
        if args.dry_run:
            return _dry_run(cfg, origin)
        if args.export:
            return _export_only(cfg, args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"realesr_portable from {origin}", flush=True)
    with errors_exit(prog, after=lambda: _resume_hint(cfg)):
        result = run(cfg, resume=args.resume)
    if result.checkpoint is not None:
        print(f"done: iteration {result.iteration}, checkpoint {result.checkpoint}")
    return 0


def make_app(origin: str) -> typer.Typer:
    """The `train` command; `origin` says where the code was imported from (shown at start)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.command(help="Train Real-ESRNet / Real-ESRGAN from a YAML config (see trainer/presets).")
    def train(
        ctx: typer.Context,
        config: Annotated[Path, typer.Option("--config", help="YAML config, e.g. trainer/presets/realesrgan_x4plus.yml")],
        overrides: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE",
                             help="override a config value, e.g. --set train.total_iter=1000 (repeatable)")] = None,
        resume: Annotated[Optional[str], typer.Option("--resume", metavar="auto|CKPT",
                          help="continue from the run's newest checkpoint (auto) or from a checkpoint file")] = None,
        vgg_weights: Annotated[Optional[Path], typer.Option("--vgg-weights", metavar="PATH",
                               help="local VGG19 weights (torchvision's vgg19-dcbb9e9d.pth) instead of downloading them")] = None,
        export: Annotated[bool, typer.Option("--export", help="only export the EMA generator of the newest (or --resume) checkpoint")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="check config, data and networks, then exit")] = False,
    ) -> None:
        args = argparse.Namespace(config=config, overrides=list(overrides or []), resume=resume,
                                  vgg_weights=vgg_weights, export=export, dry_run=dry_run)
        raise typer.Exit(run_cli(args, origin, ctx.info_name or "realesr-portable train"))

    return app


def main(argv: list[str] | None = None, origin: str = "package", prog: str = "realesr-portable train") -> int:
    """Parse `argv` (default: the process arguments) and train; returns the exit code."""
    return run_command(make_app(origin), list(sys.argv[1:] if argv is None else argv), prog)
