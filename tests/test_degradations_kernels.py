"""Blur kernels against their closed forms, and the drawn kernel parameters' distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch

from realesr_portable.trainer.degradations.config import KERNEL_TYPES, KernelConfig
from realesr_portable.trainer.degradations.kernels import KernelDraw, draw_kernels, draw_sinc, make_kernels


def _draw(type_name: str, size: int, sx: float, sy: float, theta: float, beta: float = 1.0,
          sinc: bool = False, cutoff: float = 1.0) -> KernelDraw:
    f64 = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    idx = KERNEL_TYPES.index(type_name) if type_name else -1
    return KernelDraw(torch.tensor([size]), torch.tensor([idx]), f64(sx), f64(sy), f64(theta),
                      f64(beta), torch.tensor([sinc]), f64(cutoff))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(size) - size // 2
    return np.meshgrid(ax, ax)  # xx varies along columns, yy along rows


def _quad(size: int, sx: float, sy: float, theta: float) -> np.ndarray:
    """p^T Sigma^-1 p with Sigma = R diag(sx^2, sy^2) R^T, via numpy's matrix inverse."""
    r = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(r @ np.diag([sx * sx, sy * sy]) @ r.T)
    xx, yy = _grid(size)
    p = np.stack([xx, yy], -1)
    return np.einsum("...i,ij,...j->...", p, inv, p)


def _embed(k: np.ndarray, pad_to: int = 21) -> np.ndarray:
    out = np.zeros((pad_to, pad_to))
    o = (pad_to - k.shape[0]) // 2
    out[o : o + k.shape[0], o : o + k.shape[1]] = k / k.sum()
    return out


@pytest.mark.parametrize(
    ("type_name", "size", "sx", "sy", "theta", "beta", "closed"),
    [
        ("iso", 21, 2.0, 2.0, 0.0, 1.0, lambda q, b: np.exp(-0.5 * q)),
        ("aniso", 15, 2.5, 0.7, 0.6, 1.0, lambda q, b: np.exp(-0.5 * q)),
        ("generalized_iso", 11, 1.5, 1.5, 0.0, 0.7, lambda q, b: np.exp(-0.5 * q**b)),
        ("generalized_aniso", 19, 3.0, 1.2, -2.1, 3.2, lambda q, b: np.exp(-0.5 * q**b)),
        ("plateau_iso", 9, 1.1, 1.1, 0.0, 1.6, lambda q, b: 1.0 / (q**b + 1.0)),
        ("plateau_aniso", 21, 2.2, 0.4, 1.3, 1.9, lambda q, b: 1.0 / (q**b + 1.0)),
    ],
)
def test_gaussian_family_matches_closed_form(type_name, size, sx, sy, theta, beta, closed):
    got = make_kernels(_draw(type_name, size, sx, sy, theta, beta))[0].numpy()
    want = _embed(closed(_quad(size, sx, sy, theta), beta))
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)


def test_iso_gaussian_is_outer_product_of_1d_gaussians():
    k = make_kernels(_draw("iso", 21, 1.7, 1.7, 0.0))[0].numpy()
    g = np.exp(-((np.arange(21) - 10) ** 2) / (2 * 1.7**2))
    np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), atol=1e-12)


def test_aniso_rotation_direction():
    """theta = +pi/2 swaps the axes: sigma_x = 3 then spreads along rows (y)."""
    k = make_kernels(_draw("aniso", 21, 3.0, 0.5, math.pi / 2))[0].numpy()
    assert k[:, 10].sum() > 5 * k[10, :].sum()
    k0 = make_kernels(_draw("aniso", 21, 3.0, 0.5, 0.0))[0].numpy()
    assert k0[10, :].sum() > 5 * k0[:, 10].sum()


@pytest.mark.parametrize(("size", "cutoff"), [(7, math.pi / 2), (13, 1.0), (21, math.pi / 5)])
def test_sinc_matches_closed_form(size, cutoff):
    got = make_kernels(_draw("", size, 0, 0, 0, sinc=True, cutoff=cutoff))[0].numpy()
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = cutoff * scipy.special.j1(cutoff * r) / (2 * np.pi * r)
    k[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    # torch's bessel_j1 agrees with scipy's to ~1e-8 (far below float32 resolution)
    np.testing.assert_allclose(got, _embed(k), atol=5e-8)


def test_pulse_when_no_sinc():
    draw = draw_sinc((7, 21), (1.0, 2.0), 0.0, 3, torch.Generator().manual_seed(0))
    k = make_kernels(draw)
    assert torch.equal(k[:, 10, 10], torch.ones(3, dtype=torch.float64))
    assert float(k.abs().sum()) == 3.0


def test_drawn_kernels_are_normalised_and_sized():
    draw = draw_kernels(KernelConfig(), 400, torch.Generator().manual_seed(1))
    k = make_kernels(draw)
    assert torch.allclose(k.sum((1, 2)), torch.ones(400, dtype=torch.float64), atol=1e-12)
    half = draw.size // 2
    for i in range(0, 400, 37):  # nothing outside the drawn size
        h = int(half[i])
        inner = k[i, 10 - h : 11 + h, 10 - h : 11 + h]
        assert float(inner.sum()) == pytest.approx(1.0, abs=1e-12)


def test_kernel_draw_distributions():
    """Seeded: type frequencies, sizes, sigma/beta ranges, sinc rate and cutoff by size."""
    n = 20000
    cfg = KernelConfig()
    d = draw_kernels(cfg, n, torch.Generator().manual_seed(2))
    gauss = ~d.sinc
    assert abs(float(d.sinc.double().mean()) - cfg.sinc_prob) < 0.01
    freq = torch.bincount(d.type_index[gauss], minlength=6).double() / int(gauss.sum())
    for f, p in zip(freq.tolist(), cfg.kernel_probs):
        assert abs(f - p) < 0.015, (freq, cfg.kernel_probs)
    sizes = torch.bincount(d.size, minlength=22)[7::2].double() / n  # 7, 9, ..., 21
    assert torch.all((sizes - 1 / 8).abs() < 0.012), sizes
    assert set(d.size.unique().tolist()) == set(range(7, 22, 2))
    assert float(d.sigma_x.min()) >= 0.2 and float(d.sigma_x.max()) < 3.0
    assert abs(float(d.sigma_x.mean()) - 1.6) < 0.03
    iso = torch.tensor([not t.endswith("aniso") for t in KERNEL_TYPES])[d.type_index]
    assert torch.equal(d.sigma_x[iso], d.sigma_y[iso]) and float(d.theta[iso].abs().max()) == 0
    assert float(d.theta[~iso].min()) >= -math.pi and float(d.theta[~iso].max()) < math.pi
    gen = torch.tensor([t.startswith("generalized") for t in KERNEL_TYPES])[d.type_index]
    bg = d.beta[gen]
    assert float(bg.min()) >= 0.5 and float(bg.max()) < 4.0
    assert abs(float((bg < 1).double().mean()) - 0.5) < 0.03  # 50/50 below/above 1
    small = d.size < 13
    assert float(d.cutoff[small].min()) >= math.pi / 3 - 1e-12
    assert float(d.cutoff[~small].min()) < math.pi / 3  # pi/5 .. pi for the larger kernels
    assert float(d.cutoff[~small].min()) >= math.pi / 5 - 1e-12
