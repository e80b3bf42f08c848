"""The GPU path of the degradations (one size group, whole-batch noise), run on the CPU: same
draws, same noise statistics per sample, same windows, same output when there is no noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from realesr_portable.trainer.degradations import DegradationConfig, Degrader
from realesr_portable.trainer.degradations.config import FinalConfig, StageConfig
from realesr_portable.trainer.degradations.noise import add_noise, add_noise_batched


def _gt(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(b, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear").clamp(0, 1)


def test_same_draws_and_levels_on_both_paths():
    gt = _gt(6, 64, 48)
    a = Degrader(batched=False).run(gt, torch.Generator().manual_seed(3))
    b = Degrader(batched=True).run(gt, torch.Generator().manual_seed(3))
    for field in ("scale", "mode", "gaussian", "sigma", "poisson_scale", "gray", "quality"):
        assert torch.equal(getattr(a.first, field), getattr(b.first, field)), field
    assert torch.equal(a.final.resize_first, b.final.resize_first)
    assert torch.equal(a.kernels1, b.kernels1) and torch.equal(a.sinc_kernels, b.sinc_kernels)
    assert b.lq.shape == a.lq.shape and torch.equal((b.lq * 255).round() / 255, b.lq)
    assert not torch.equal(a.lq, b.lq)  # the noise streams differ
    again = Degrader(batched=True).run(gt, torch.Generator().manual_seed(3))
    assert torch.equal(b.lq, again.lq)  # still reproducible for a seed


def test_without_noise_both_paths_agree():
    """No noise (sigma 0): grouping and the batched noise call change nothing but rounding."""
    stage = StageConfig(gaussian_noise_prob=1.0, noise_range=(0.0, 0.0))
    cfg = DegradationConfig(first=stage, second=StageConfig(gaussian_noise_prob=1.0, noise_range=(0.0, 0.0)),
                            final=FinalConfig())
    gt = _gt(8, 64, 64, seed=2)
    a = Degrader(cfg, batched=False)(gt, torch.Generator().manual_seed(5))[0]
    b = Degrader(cfg, batched=True)(gt, torch.Generator().manual_seed(5))[0]
    assert float((a - b).abs().max()) <= 1 / 255 + 1e-6
    assert float((a != b).float().mean()) < 0.01  # an 8-bit level apart in at most a few pixels


@pytest.mark.parametrize("gray", [False, True])
def test_batched_noise_matches_per_sample_statistics(gray: bool):
    """Per sample: residual std of both paths within a few percent (Gaussian sigma, Poisson
    level counts), zero outside each valid window, one plane for gray samples."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(40, 216, (4, 3, 96, 96), generator=g).double() / 255  # no clipping at 0/1
    sizes = torch.tensor([[96, 96], [50, 70], [96, 40], [64, 64]])
    gaussian = torch.tensor([True, True, False, False])
    sigma = torch.tensor([5.0, 20.0, 1.0, 1.0], dtype=torch.float64)
    pscale = torch.tensor([1.0, 1.0, 0.5, 2.5], dtype=torch.float64)
    grays = torch.full((4,), gray)
    ref = add_noise(x, sizes, gaussian, sigma, pscale, grays, [torch.Generator().manual_seed(s) for s in range(4)])
    got = add_noise_batched(x, sizes, gaussian, sigma, pscale, grays, torch.Generator().manual_seed(9))
    for b, (h, w) in enumerate(sizes.tolist()):
        want_std = float((ref[b, :, :h, :w] - x[b, :, :h, :w]).std())
        got_std = float((got[b, :, :h, :w] - x[b, :, :h, :w]).std())
        assert got_std == pytest.approx(want_std, rel=0.06), b
        assert torch.equal(got[b, :, h:], x[b, :, h:]) and torch.equal(got[b, :, :, w:], x[b, :, :, w:])
        res = got[b, :, :h, :w] - x[b, :, :h, :w]
        same = float(((res[0] - res[2]).abs() < 1e-12).double().mean())  # one plane (clipping aside)
        assert same > 0.9 if gray else same < 0.01


def test_batched_poisson_photon_count_follows_each_samples_levels():
    """Sample 0 has one level (photon count 1), sample 1 all 256 (count 256): each residual
    variance equals the per-sample path's (clipping included), and they differ ~100x."""
    x = torch.full((2, 3, 128, 128), 128 / 255, dtype=torch.float64)
    x[1] = torch.randint(0, 256, (3, 128, 128), generator=torch.Generator().manual_seed(2)).double() / 255
    sizes = torch.tensor([[128, 128], [128, 128]])
    args = (sizes, torch.tensor([False, False]), torch.zeros(2, dtype=torch.float64),
            torch.ones(2, dtype=torch.float64), torch.tensor([False, False]))
    got = (add_noise_batched(x, *args, torch.Generator().manual_seed(3)) - x).var(dim=(1, 2, 3))
    ref = (add_noise(x, *args, [torch.Generator().manual_seed(s) for s in (4, 5)]) - x).var(dim=(1, 2, 3))
    torch.testing.assert_close(got, ref, rtol=0.06, atol=0)
    assert float(got[0] / got[1]) > 50
