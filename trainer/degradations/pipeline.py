"""The high-order degradation model: USM'd GT -> stage(first) -> stage(second) -> final step.

Faithful to Real-ESRGAN's `RealESRGANModel.feed_data` (x4plus), with these deliberate
differences, all for per-sample randomness, reproducibility or realism:

- every sample draws its own resize direction/scale/mode, noise type (Gaussian or Poisson),
  second-blur decision, final order and final resize mode; the reference draws those once
  per batch (its kernels, noise strengths, gray-noise flags and JPEG qualities were already
  per sample);
- all randomness comes from the caller's `torch.Generator` (the reference mixes `random`,
  `np.random` and torch's global generator): parameters are drawn first, then each sample's
  noise comes from its own generator seeded from the caller's, so a seed reproduces a batch
  bit for bit (same device and versions) and a sample's result does not depend on the other
  samples' pixels;
- JPEG quality is an integer and the codec follows libjpeg (see jpeg.py), not DiffJPEG;
- the resize coordinate mapping always uses in/out sizes (`size=` semantics); the reference's
  first stage uses `scale_factor=`, a sub-pixel difference.

Because samples differ in size between the first resize and the final one, a batch is held
as a canvas plus per-sample valid sizes (see filters.py), split after the first blur into a
few groups of similar size (batching.py) so that small samples are not padded to the largest.

On a GPU (`batched`, the default for CUDA input) the batch is one group and the noise is drawn
for the whole batch in one call (noise.py's `add_noise_batched`): a kernel launch there costs
more than the padded pixels, and each per-sample Poisson draw needed a host sync. The drawn
parameters, hence their statistics, are the same on both paths; only the noise streams differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.profiler import record_function

from .batching import put, select, size_groups
from .config import DegradationConfig
from .filters import blur, full_sizes, usm_sharp
from .jpeg import jpeg
from .kernels import make_kernels
from .noise import add_noise, add_noise_batched
from .params import FinalDraw, StageDraw, draw_final, draw_stage, take
from .rand import sample_generators
from .resize import resize


# A group costs about as much fixed work as this many full-size samples (calls, small-batch
# inefficiency of the grouped convolution); tuned on the x4plus recipe with bench/.
_GROUP_COST = 1.0


@dataclass(frozen=True)
class DegradationResult:
    """One batch's outputs and everything drawn for it (kernels as (B, 21, 21) float64)."""

    lq: Tensor
    gt_usm: Tensor
    first: StageDraw
    second: StageDraw
    final: FinalDraw
    kernels1: Tensor
    kernels2: Tensor
    sinc_kernels: Tensor


def _blur_subset(x: Tensor, sizes: Tensor, kernels: Tensor, which: Tensor) -> Tensor:
    """Blur the samples where `which` is true; the others pass through untouched."""
    if bool(which.all()):
        return blur(x, kernels, sizes)
    if not bool(which.any()):
        return x
    idx = which.nonzero().squeeze(1)
    return put(x, idx, blur(select(x, idx), kernels[idx], sizes[idx]))


def stage_sizes(base: tuple[float, float], draw: StageDraw) -> Tensor:
    """(B, 2) sizes after a stage's resize: int(base * scale), at least 1."""
    return torch.stack([(base[0] * draw.scale).long(), (base[1] * draw.scale).long()], 1).clamp_min(1)


def run_stage(x: Tensor, sizes: Tensor, base: tuple[float, float], draw: StageDraw,
              kernels: Tensor | None, gens: list[torch.Generator], name: str = "stage",
              batch_gen: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One degradation stage on a canvas: blur -> resize to int(base * scale) -> noise -> JPEG.

    kernels=None skips the blur (done by the caller). Returns the new canvas and sizes.
    gens[b] draws sample b's noise pixels (on x's device), or `batch_gen` the whole batch's
    (the GPU path). `name` labels the steps for torch.profiler (the benchmark's breakdown).
    """
    if kernels is not None:
        with record_function(f"deg.{name}.blur"):
            x = _blur_subset(x, sizes, kernels, draw.blur)
    out = stage_sizes(base, draw)
    with record_function(f"deg.{name}.resize"):
        if not torch.equal(out, sizes):
            x = resize(x, sizes, out, draw.mode)
            sizes = out
    with record_function(f"deg.{name}.noise"):
        if batch_gen is not None:
            x = add_noise_batched(x, sizes, draw.gaussian, draw.sigma, draw.poisson_scale, draw.gray, batch_gen)
        else:
            x = add_noise(x, sizes, draw.gaussian, draw.sigma, draw.poisson_scale, draw.gray, gens)
    if draw.quality is not None:
        with record_function(f"deg.{name}.jpeg"):
            x = jpeg(x, draw.quality, sizes)
    return x, sizes


def _resize_sinc(x: Tensor, sizes: Tensor, out_hw: tuple[int, int], draw: FinalDraw,
                 kernels: Tensor) -> Tensor:
    out = torch.tensor([out_hw], dtype=torch.long).expand(x.shape[0], 2)
    if not torch.equal(out, sizes):
        x = resize(x, sizes, out, draw.mode)
    return _blur_subset(x[..., : out_hw[0], : out_hw[1]], out, kernels, draw.kernel.sinc)


def run_final(x: Tensor, sizes: Tensor, out_hw: tuple[int, int], draw: FinalDraw,
              kernels: Tensor) -> Tensor:
    """Per sample: [resize to out_hw + sinc, then JPEG] or [JPEG, then resize + sinc]."""
    out = torch.empty((x.shape[0], x.shape[1], *out_hw), device=x.device, dtype=x.dtype)
    for first in (True, False):
        idx = (draw.resize_first == first).nonzero().squeeze(1)
        if not idx.numel():
            continue
        sub_draw = take(draw, idx)
        sub, sub_sizes, sub_k = select(x, idx), sizes[idx], kernels[idx]
        q = sub_draw.quality
        if first:
            with record_function("deg.final.resize_sinc"):
                sub = _resize_sinc(sub, sub_sizes, out_hw, sub_draw, sub_k)
            if q is not None:
                with record_function("deg.final.jpeg"):
                    sub = jpeg(sub, q)
        else:
            if q is not None:
                with record_function("deg.final.jpeg"):
                    sub = jpeg(sub, q, sub_sizes)
            with record_function("deg.final.resize_sinc"):
                sub = _resize_sinc(sub, sub_sizes, out_hw, sub_draw, sub_k)
        out = put(out, idx, sub)
    return out


def _check_input(gt: Tensor, scale: int) -> None:
    if not isinstance(gt, Tensor) or gt.dim() != 4 or gt.shape[1] != 3:
        shape = tuple(gt.shape) if isinstance(gt, Tensor) else type(gt).__name__
        raise ValueError(f"expected a GT batch of shape (B, 3, H, W), got {shape}")
    if not gt.is_floating_point():
        raise ValueError(f"expected a float GT batch in [0, 1], got dtype {gt.dtype}")
    if scale < 1 or gt.shape[-2] < scale or gt.shape[-1] < scale:
        raise ValueError(f"GT of size {tuple(gt.shape[-2:])} is too small for scale {scale}")


class Degrader(torch.nn.Module):
    """Maps a GT batch to (LQ batch, USM-sharpened GT batch) with the high-order model.

    config: the recipe (default: DegradationConfig.x4plus()); scale: GT/LQ size ratio;
    batched: the GPU path (one size group, whole-batch noise); None = when the input is on CUDA.
    Call with (gt: (B, 3, H, W) float in [0, 1], generator: torch.Generator); the LQ is
    (B, 3, H // scale, W // scale) on 8-bit levels, on gt's device. Nothing is modified in place.
    """

    def __init__(self, config: DegradationConfig | None = None, scale: int = 4,
                 batched: bool | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DegradationConfig.x4plus()
        self.scale = int(scale)
        self.batched = batched

    def forward(self, gt: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        result = self.run(gt, generator)
        return result.lq, result.gt_usm

    @torch.no_grad()
    def run(self, gt: Tensor, generator: torch.Generator) -> DegradationResult:
        """Like calling the module, but also returns every drawn parameter and kernel."""
        # Canvas sizes change with every batch: cuDNN autotuning (the trainer's cudnn_benchmark)
        # would time its algorithms anew for nearly every blur, so it is off in here.
        saved = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        try:
            return self._run(gt, generator)
        finally:
            torch.backends.cudnn.benchmark = saved

    def _run(self, gt: Tensor, generator: torch.Generator) -> DegradationResult:
        _check_input(gt, self.scale)
        cfg = self.config
        b, _, h, w = gt.shape
        batched = gt.device.type == "cuda" if self.batched is None else self.batched
        with record_function("deg.draw"):
            gens = sample_generators(generator, b, gt.device)  # both paths draw alike
            first = draw_stage(cfg.first, b, generator)
            second = draw_stage(cfg.second, b, generator)
            final = draw_final(cfg.final, b, generator)
            k1, k2, ks = (make_kernels(d.kernel) for d in (first, second, final))

        dtype = gt.dtype if gt.dtype == torch.float64 else torch.float32
        with record_function("deg.usm"):
            gt_usm = usm_sharp(gt.to(dtype), cfg.usm.weight, cfg.usm.radius, cfg.usm.threshold)
        sizes = full_sizes(gt)
        with record_function("deg.first.blur"):
            x = _blur_subset(gt_usm, sizes, k1, first.blur)
        out_hw = (h // self.scale, w // self.scale)
        x_out = torch.empty((b, 3, *out_hw), device=gt.device, dtype=dtype)
        areas = stage_sizes((float(h), float(w)), first).prod(1).to(torch.float64) / (h * w)
        groups = [torch.arange(b)] if batched else size_groups(areas, group_cost=_GROUP_COST)
        batch_gen = gens[0] if batched else None
        for idx in groups:
            group_gens = [] if batched else [gens[i] for i in idx.tolist()]
            xs, ss = run_stage(select(x, idx), sizes[idx], (float(h), float(w)), take(first, idx),
                               None, group_gens, "first", batch_gen)
            xs, ss = run_stage(xs, ss, (h / self.scale, w / self.scale), take(second, idx),
                               k2[idx], group_gens, "second", batch_gen)
            x_out = put(x_out, idx, run_final(xs, ss, out_hw, take(final, idx), ks[idx]))
        x = x_out
        lq = ((x * 255.0).round().clamp(0, 255) / 255.0).to(gt.dtype)
        return DegradationResult(lq, gt_usm.to(gt.dtype), first, second, final, k1, k2, ks)


def degrade(gt: Tensor, seed: int, scale: int = 4) -> Tensor:
    """LQ images (B, 3, H // scale, W // scale) from GT (B, 3, H, W) in [0, 1] with the x4plus
    recipe, deterministic for `seed` (on a given device); `gt` is left unchanged."""
    return Degrader(DegradationConfig.x4plus(), scale)(gt, torch.Generator().manual_seed(int(seed)))[0]
