"""The whole pipeline: determinism, batch independence, shapes, what it applies, draws' statistics."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from realesr_portable.trainer.degradations import DegradationConfig, Degrader, degrade, usm_sharp
from realesr_portable.trainer.degradations.config import FinalConfig, StageConfig
from realesr_portable.trainer.degradations.params import DOWN, KEEP, UP, draw_final, draw_stage


def _gt(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random images (a noise field upsampled), values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, 3, max(h // 4, 2), max(w // 4, 2), generator=g)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def test_deterministic_for_a_seed_and_input_untouched():
    gt = _gt(4, 64, 48)
    before = gt.clone()
    a = degrade(gt, seed=123)
    b = degrade(gt, seed=123)
    c = degrade(gt, seed=124)
    assert torch.equal(gt, before)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    same = Degrader()(gt, torch.Generator().manual_seed(123))[0]
    assert torch.equal(a, same)


@pytest.mark.parametrize(
    ("h", "w", "scale"),
    [(53, 78, 4), (64, 36, 2), (31, 17, 1), (40, 40, 3), (4, 4, 4), (8, 200, 4), (1, 1, 1)],
)
def test_shapes_and_levels_for_odd_non_square_inputs(h, w, scale):
    gt = _gt(3, h, w, seed=h)
    lq, gt_usm = Degrader(scale=scale)(gt, torch.Generator().manual_seed(5))
    assert lq.shape == (3, 3, h // scale, w // scale)
    assert gt_usm.shape == gt.shape
    assert float(lq.min()) >= 0 and float(lq.max()) <= 1
    assert torch.equal((lq * 255).round() / 255, lq)  # clamped and rounded to 8-bit levels
    assert torch.isfinite(lq).all()


def test_batch_independence_and_own_parameters():
    """A sample's output does not depend on the other samples' pixels, and samples draw their
    own parameters (sizes, orders) within one batch."""
    gt = _gt(6, 48, 48, seed=1)
    other = gt.clone()
    other[1:] = _gt(5, 48, 48, seed=2)
    r1 = Degrader().run(gt, torch.Generator().manual_seed(9))
    r2 = Degrader().run(other, torch.Generator().manual_seed(9))
    assert torch.equal(r1.lq[0], r2.lq[0])
    assert not torch.equal(r1.lq[1:], r2.lq[1:])
    big = Degrader().run(_gt(32, 16, 16), torch.Generator().manual_seed(3))
    assert len(set(big.first.scale.tolist())) > 20
    assert set(big.final.resize_first.tolist()) == {True, False}
    assert set(big.first.gaussian.tolist()) == {True, False}
    assert set(big.second.blur.tolist()) == {True, False}


def test_gt_usm_is_the_usm_of_gt_and_float64_kept():
    gt = _gt(2, 32, 40).double()
    lq, gt_usm = Degrader()(gt, torch.Generator().manual_seed(0))
    assert lq.dtype == torch.float64 and gt_usm.dtype == torch.float64
    torch.testing.assert_close(gt_usm, usm_sharp(gt), atol=0, rtol=0)


def _plain_config() -> DegradationConfig:
    """No blur, no noise, no JPEG, keep size: only the resizes remain."""
    plain = StageConfig(blur_prob=0.0, resize_probs=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0,
                        noise_range=(0.0, 0.0), jpeg_range=None)
    final = FinalConfig(sinc_prob=0.0, jpeg_range=None)
    return DegradationConfig(first=plain, second=plain, final=final)


def test_plain_config_is_resize_of_usm_with_the_drawn_mode():
    gt = _gt(5, 48, 64, seed=4)
    r = Degrader(_plain_config()).run(gt, torch.Generator().manual_seed(2))
    for b in range(5):
        mode = ("area", "bilinear", "bicubic")[int(r.second.mode[b])]
        want = F.interpolate(r.gt_usm[b : b + 1], size=(12, 16), mode=mode)
        want = (want * 255).round().clamp(0, 255) / 255
        torch.testing.assert_close(r.lq[b : b + 1], want, atol=1e-6, rtol=0)


def test_each_sample_gets_its_drawn_noise_sigma():
    """Only Gaussian noise (both stages, colour): the residual's std per sample matches that
    sample's own drawn sigmas, sqrt(s1^2 + s2^2 + 1/12) in 8-bit levels (rounding included)."""
    stage = StageConfig(blur_prob=0.0, resize_probs=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0,
                        gray_noise_prob=0.0, noise_range=(1.0, 20.0), jpeg_range=None)
    cfg = DegradationConfig(first=stage, second=stage, final=FinalConfig(sinc_prob=0.0, jpeg_range=None))
    gt = torch.full((6, 3, 96, 96), 0.5)
    r = Degrader(cfg, scale=1).run(gt, torch.Generator().manual_seed(4))
    got = (r.lq - r.gt_usm).std(dim=(1, 2, 3)) * 255
    want = torch.sqrt(r.first.sigma**2 + r.second.sigma**2 + 1 / 12).float()
    torch.testing.assert_close(got, want, rtol=0.03, atol=0)
    assert float(want.std()) > 2  # the samples really differ


def test_bad_inputs_raise_one_line_errors():
    d = Degrader()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        d(torch.rand(3, 16, 16), g)
    with pytest.raises(ValueError, match="float"):
        d(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), g)
    with pytest.raises(ValueError, match="too small"):
        d(torch.rand(1, 3, 3, 16), g)


def _uniform_ok(x: torch.Tensor, lo: float, hi: float) -> bool:
    return scipy.stats.kstest(x.numpy(), "uniform", args=(lo, hi - lo)).pvalue > 1e-3


def test_stage_draw_distributions():
    n = 20000
    cfg = DegradationConfig.x4plus()
    d = draw_stage(cfg.first, n, torch.Generator().manual_seed(11))
    freq = torch.bincount(d.direction, minlength=3).double() / n
    assert torch.allclose(freq, torch.tensor([0.2, 0.7, 0.1], dtype=torch.float64), atol=0.012)
    assert _uniform_ok(d.scale[d.direction == UP], 1.0, 1.5)
    assert _uniform_ok(d.scale[d.direction == DOWN], 0.15, 1.0)
    assert torch.all(d.scale[d.direction == KEEP] == 1)
    assert torch.allclose(torch.bincount(d.mode, minlength=3).double() / n,
                          torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.012)
    assert abs(float(d.gaussian.double().mean()) - 0.5) < 0.012
    assert abs(float(d.gray.double().mean()) - 0.4) < 0.012
    assert _uniform_ok(d.sigma, 1.0, 30.0)
    assert _uniform_ok(d.poisson_scale, 0.05, 3.0)
    assert float(d.blur.double().mean()) == 1.0
    assert d.quality is not None and d.quality.dtype == torch.long
    counts = torch.bincount(d.quality, minlength=96)[30:96]
    assert int(counts.min()) > 0 and int(d.quality.min()) == 30 and int(d.quality.max()) == 95
    assert scipy.stats.chisquare(counts.numpy()).pvalue > 1e-3  # uniform over 30..95

    d2 = draw_stage(cfg.second, n, torch.Generator().manual_seed(12))
    assert abs(float(d2.blur.double().mean()) - 0.8) < 0.012
    freq2 = torch.bincount(d2.direction, minlength=3).double() / n
    assert torch.allclose(freq2, torch.tensor([0.3, 0.4, 0.3], dtype=torch.float64), atol=0.012)
    assert _uniform_ok(d2.scale[d2.direction == DOWN], 0.3, 1.0)
    assert _uniform_ok(d2.sigma, 1.0, 25.0)
    assert d2.quality is None
    assert float(d2.kernel.sigma_x.max()) < 1.5


def test_final_draw_distributions():
    n = 20000
    d = draw_final(DegradationConfig.x4plus().final, n, torch.Generator().manual_seed(13))
    assert abs(float(d.resize_first.double().mean()) - 0.5) < 0.012
    assert abs(float(d.kernel.sinc.double().mean()) - 0.8) < 0.012
    assert _uniform_ok(d.kernel.cutoff, math.pi / 3, math.pi)
    assert set(d.kernel.size.unique().tolist()) == set(range(7, 22, 2))


def test_x4plus_preset_values():
    c = DegradationConfig.x4plus()
    assert c.first.resize_probs == (0.2, 0.7, 0.1) and c.second.resize_probs == (0.3, 0.4, 0.3)
    assert c.first.resize_range == (0.15, 1.5) and c.second.resize_range == (0.3, 1.2)
    assert c.first.noise_range == (1.0, 30.0) and c.second.noise_range == (1.0, 25.0)
    assert c.first.poisson_scale_range == (0.05, 3.0) and c.second.poisson_scale_range == (0.05, 2.5)
    assert c.first.kernel.sigma_range == (0.2, 3.0) and c.second.kernel.sigma_range == (0.2, 1.5)
    assert c.first.kernel.kernel_probs == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    assert c.second.blur_prob == 0.8 and c.final.sinc_prob == 0.8 and c.final.resize_first_prob == 0.5
    assert c.first.jpeg_range == (30.0, 95.0) and c.final.jpeg_range == (30.0, 95.0)
    assert c.usm.radius == 50 and c.usm.weight == 0.5 and c.usm.threshold == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CPU is covered above)")
def test_cuda_device_follows_input():
    gt = _gt(3, 48, 40, seed=6)
    g = lambda: torch.Generator(device="cuda").manual_seed(1)  # noqa: E731
    a = Degrader()(gt.cuda(), g())[0]
    assert a.device.type == "cuda" and torch.equal(a, Degrader()(gt.cuda(), g())[0])
    # without noise the CPU and CUDA results agree to float rounding (8-bit levels)
    cfg = _plain_config()
    cpu = Degrader(cfg).run(gt, torch.Generator().manual_seed(2))
    cuda = Degrader(cfg).run(gt.cuda(), torch.Generator().manual_seed(2))
    assert float((cuda.lq.cpu() - cpu.lq).abs().max()) <= 1 / 255 + 1e-6
