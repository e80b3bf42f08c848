"""One optimisation step of each stage, plus the state a checkpoint must hold.

Stage 1, Real-ESRNet (`ESRNetStage`): L1 between G(lq) and the (USM-sharpened) GT.
Stage 2, Real-ESRGAN (`ESRGANStage`): G minimises L1 + VGG19 perceptual on the USM GT and a
vanilla GAN loss against a U-Net discriminator that sees the plain GT; D is then updated on
real GT and the detached output. Adam + MultiStepLR for both nets, EMA of G after each step,
optional CUDA mixed precision (bf16, or fp16 with loss scaling). A non-finite loss raises
`TrainingDiverged` and nothing is stepped with it, so the weights (and the last checkpoint) stay
good: without fused Adam the check runs before each step (a host sync per loss); with fused Adam
the step is skipped on the device (its `found_inf` input) and `check_finite()` raises at the
next print interval or checkpoint, naming the first bad iteration, so a step needs no sync.
`step` returns detached loss tensors: the loop sums them on the device and reads them at print.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .config import Config
from .distributed import DistInfo, any_true, max_reduce_, unwrap, wrap
from .ema import ModelEMA
from .losses import GANLoss, L1Loss, PerceptualLoss
from .speedups import compiled, to_format
from .timing import PhaseTimer, maybe


class TrainingDiverged(UserError, RuntimeError):
    """A loss became NaN or Inf; the message names the iteration and the loss.

    A `UserError` (the remedy is the user's: a lower learning rate, other data), so the command
    line reports it as one line, exit 1, like every other failure during the work."""


def _adam(params: Any, lr: float, cfg: Config, fused: bool) -> torch.optim.Adam:
    b1, b2 = cfg.train.betas
    extra = {"fused": True} if fused else {}
    return torch.optim.Adam(params, lr=lr, betas=(b1, b2), weight_decay=cfg.train.weight_decay, **extra)


def _step_with(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, found_inf: torch.Tensor | None) -> None:
    """Step through the scaler; without one, hand fused Adam the non-finite flag (skips on the device)."""
    if found_inf is not None and not scaler.is_enabled():
        opt.found_inf = found_inf  # type: ignore[attr-defined]  # read by fused Adam's step
        try:
            opt.step()
        finally:
            del opt.found_inf  # type: ignore[attr-defined]
    else:
        scaler.step(opt)
    scaler.update()


def _sched(opt: torch.optim.Optimizer, cfg: Config) -> torch.optim.lr_scheduler.MultiStepLR:
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.train.milestones), gamma=cfg.train.gamma)


def _sched_state(sched: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """Scheduler state as plain containers (MultiStepLR keeps a Counter, which safe loading refuses)."""
    state = dict(sched.state_dict())
    if "milestones" in state:
        state["milestones"] = dict(state["milestones"])
    return state


def _load_sched(sched: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    from collections import Counter

    state = dict(state)
    if "milestones" in state:
        state["milestones"] = Counter(state["milestones"])
    sched.load_state_dict(state)


class ESRNetStage:
    """Generator-only training with L1 (stage 1; also the base of stage 2).

    Args:
        cfg: the run's config.
        net_g: the generator (already initialised, on `info.device`).
        info: distributed/device info.
    """

    def __init__(self, cfg: Config, net_g: nn.Module, info: DistInfo) -> None:
        self.cfg, self.info = cfg, info
        speed, dev = cfg.speed, info.device
        self.amp = cfg.train.amp and dev.type == "cuda"
        self.amp_dtype = torch.bfloat16 if cfg.train.amp_dtype == "bfloat16" else torch.float16
        self.channels_last = speed.enabled("channels_last", dev)
        self.fused = speed.enabled("fused_adam", dev)
        self.net_g = wrap(to_format(net_g, self.channels_last), info)
        self.compile = speed.enabled("compile", dev)
        self.g_call = compiled(self.net_g, self.compile, speed.compile_mode)
        self.ema = ModelEMA(net_g, cfg.train.ema_decay)
        self.opt_g = _adam([p for p in net_g.parameters() if p.requires_grad], cfg.train.lr_g, cfg, self.fused)
        self.sched_g = _sched(self.opt_g, cfg)
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.l1 = L1Loss(cfg.train.l1_weight)
        self._bad_iter: torch.Tensor | None = None  # first iteration with a non-finite loss (0: none)
        self._bad_vals: dict[str, torch.Tensor] = {}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast("cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _check(self, losses: dict[str, torch.Tensor], it: int) -> None:
        bad = [name for name, value in losses.items() if not torch.isfinite(value.detach()).all()]
        if any_true(bool(bad), self.info):
            which = ", ".join(f"{n}={float(losses[n].detach()):g}" for n in bad) or "a loss on another rank"
            raise TrainingDiverged(f"non-finite loss at iteration {it}: {which}")

    def _guard(self, losses: dict[str, torch.Tensor], it: int) -> torch.Tensor | None:
        """Non-finite losses: raise now (plain Adam), or remember them on the device and return
        the flag that makes fused Adam skip its step (no host sync)."""
        if not self.fused:
            self._check(losses, it)
            return None
        vals = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        flag = (~torch.isfinite(vals)).any().float()
        max_reduce_(flag, self.info)  # every rank skips together
        if self._bad_iter is None:
            self._bad_iter = torch.zeros((), dtype=torch.long, device=vals.device)
        new = (self._bad_iter == 0) & (flag > 0)
        self._bad_iter = torch.where(new, torch.full_like(self._bad_iter, it), self._bad_iter)
        for name, v in zip(losses, vals):
            old = self._bad_vals.get(name, torch.zeros_like(v))
            self._bad_vals[name] = torch.where(new, v, old)
        return flag

    def check_finite(self) -> None:
        """Raise `TrainingDiverged` if a skipped step saw a non-finite loss (one host sync)."""
        if self._bad_iter is None or int(self._bad_iter) == 0:
            return
        it = int(self._bad_iter)
        bad = {n: float(v) for n, v in self._bad_vals.items() if not torch.isfinite(v)}
        which = ", ".join(f"{n}={v:g}" for n, v in bad.items()) or "a loss on another rank"
        raise TrainingDiverged(f"non-finite loss at iteration {it}: {which}")

    def _step_g(self, total: torch.Tensor, found_inf: torch.Tensor | None) -> None:
        self.scaler_g.scale(total).backward()
        if self.cfg.train.grad_clip > 0:
            self.scaler_g.unscale_(self.opt_g)
            torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.cfg.train.grad_clip)
        _step_with(self.opt_g, self.scaler_g, found_inf)

    def step(self, lq: torch.Tensor, gt: torch.Tensor, gt_usm: torch.Tensor, it: int,
             timer: PhaseTimer | None = None) -> dict[str, torch.Tensor]:
        """One iteration; returns the losses as detached tensors (read them at print time)."""
        self.net_g.train()
        with maybe(timer, "g"):
            self.opt_g.zero_grad(set_to_none=True)
            with self._autocast():
                out = self.g_call(self._input(lq))
                l_pix = self.l1(out.float(), gt_usm if self.cfg.train.l1_gt_usm else gt)
            self._step_g(l_pix, self._guard({"l_pix": l_pix}, it))
        self.sched_g.step()
        self.ema.update(unwrap(self.net_g))
        return {"l_pix": l_pix.detach()}

    @property
    def lr(self) -> float:
        return float(self.opt_g.param_groups[0]["lr"])

    def generator(self) -> nn.Module:
        return unwrap(self.net_g)

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self.generator().state_dict(),
            "params_ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": _sched_state(self.sched_g),
            "scaler_g": self.scaler_g.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator().load_state_dict(state["params"])
        self.ema.load_state_dict(state["params_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        _load_sched(self.sched_g, state["sched_g"])
        if state.get("scaler_g"):
            self.scaler_g.load_state_dict(state["scaler_g"])


class ESRGANStage(ESRNetStage):
    """Stage 2: L1 + perceptual + GAN for G, vanilla GAN for the U-Net discriminator.

    Args:
        cfg, net_g, info: as `ESRNetStage`.
        net_d: the discriminator (initialised, on `info.device`).
        vgg_state: torchvision-layout VGG19 weights for the perceptual loss (None if its weight is 0).
    """

    def __init__(
        self, cfg: Config, net_g: nn.Module, info: DistInfo, net_d: nn.Module,
        vgg_state: dict[str, torch.Tensor] | None,
    ) -> None:
        super().__init__(cfg, net_g, info)
        mode = cfg.speed.compile_mode
        self.net_d = wrap(to_format(net_d, self.channels_last), info)
        self.d_call = compiled(self.net_d, self.compile, mode)
        # D's parameters are frozen in G's step; calling the unwrapped D keeps DDP's reducer out.
        self.d_frozen_call = compiled(unwrap(self.net_d), self.compile, mode)
        self.opt_d = _adam(net_d.parameters(), cfg.train.lr_d, cfg, self.fused)
        self.sched_d = _sched(self.opt_d, cfg)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.scaler_g.is_enabled())
        self.percep: PerceptualLoss | None = None
        self.percep_call: Callable[..., torch.Tensor] | None = None
        if cfg.train.perceptual_weight > 0:
            if vgg_state is None:
                raise ValueError("the perceptual loss needs VGG19 weights")
            self.percep = PerceptualLoss(cfg.train.layer_weights, vgg_state, cfg.train.perceptual_weight).to(info.device)
            self.percep_call = compiled(to_format(self.percep, self.channels_last), self.compile, mode)
        self.gan = GANLoss("vanilla", loss_weight=cfg.train.gan_weight)

    def _g_losses(self, out: torch.Tensor, gt: torch.Tensor, gt_usm: torch.Tensor) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        losses: dict[str, torch.Tensor] = {}
        if t.l1_weight > 0:
            losses["l_pix"] = self.l1(out.float(), gt_usm if t.l1_gt_usm else gt)
        if self.percep_call is not None:
            losses["l_percep"] = self.percep_call(out, self._input(gt_usm if t.percep_gt_usm else gt))
        losses["l_g_gan"] = self.gan(self.d_frozen_call(out), True, is_disc=False)
        return losses

    def step(self, lq: torch.Tensor, gt: torch.Tensor, gt_usm: torch.Tensor, it: int,
             timer: PhaseTimer | None = None) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        self.net_g.train()
        self.net_d.train()
        update_g = it % t.net_d_iters == 0 and it > t.net_d_init_iters
        logs: dict[str, torch.Tensor] = {}
        with maybe(timer, "g"):
            unwrap(self.net_d).requires_grad_(False)
            self.opt_g.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(update_g), self._autocast():
                out = self.g_call(self._input(lq))
                if update_g:
                    losses = self._g_losses(out, gt, gt_usm)
            if update_g:
                self._step_g(sum(losses.values()), self._guard(losses, it))
                logs.update({k: v.detach() for k, v in losses.items()})

        with maybe(timer, "d"):
            unwrap(self.net_d).requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            gan_gt = self._input(gt_usm if t.gan_gt_usm else gt)
            d_losses: dict[str, torch.Tensor] = {}
            for name, images, real in (("l_d_real", gan_gt, True), ("l_d_fake", out.detach().clone(), False)):
                with self._autocast():
                    pred = self.d_call(images)
                    loss = self.gan(pred.float(), real, is_disc=True)
                if not self.fused:
                    self._check({name: loss}, it)
                self.scaler_d.scale(loss).backward()
                d_losses[name] = loss
                logs[name] = loss.detach()
                logs[f"out_d_{name[4:]}"] = pred.detach().float().mean()
            _step_with(self.opt_d, self.scaler_d, self._guard(d_losses, it) if self.fused else None)
        with warnings.catch_warnings():  # during D warm-up G's optimiser has not stepped yet: expected
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.sched_g.step()
        self.sched_d.step()
        self.ema.update(unwrap(self.net_g))
        return logs

    def discriminator(self) -> nn.Module:
        return unwrap(self.net_d)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "net_d": self.discriminator().state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_d": _sched_state(self.sched_d),
            "scaler_d": self.scaler_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "net_d" not in state:
            raise KeyError("net_d")
        self.discriminator().load_state_dict(state["net_d"])
        self.opt_d.load_state_dict(state["opt_d"])
        _load_sched(self.sched_d, state["sched_d"])
        if state.get("scaler_d"):
            self.scaler_d.load_state_dict(state["scaler_d"])


def make_stage(
    cfg: Config, net_g: nn.Module, info: DistInfo, net_d: nn.Module | None,
    vgg_loader: Callable[[], dict[str, torch.Tensor]],
) -> ESRNetStage:
    """The stage object for `cfg.train.stage`."""
    if cfg.train.stage == "esrnet":
        return ESRNetStage(cfg, net_g, info)
    if net_d is None:
        raise ValueError("stage esrgan needs a discriminator")
    vgg = vgg_loader() if cfg.train.perceptual_weight > 0 else None
    return ESRGANStage(cfg, net_g, info, net_d, vgg)
