"""Blur, USM, resize and noise against direct reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from realesr_portable.trainer.degradations import usm_sharp
from realesr_portable.trainer.degradations.batching import size_groups
from realesr_portable.trainer.degradations.filters import blur, reflect_index, replicate_fill
from realesr_portable.trainer.degradations.noise import add_noise, gaussian_noise, poisson_noise
from realesr_portable.trainer.degradations.resize import resize


def _rand(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("pad", [0, 2, 10])
def test_reflect_index_matches_numpy_reflect(n, pad):
    got = reflect_index(torch.tensor([n]), -pad, n + 2 * pad)[0].numpy()
    want = np.pad(np.arange(n), pad, mode="reflect") if n > 1 else np.zeros(n + 2 * pad, int)
    np.testing.assert_array_equal(got, want)


def test_blur_per_sample_matches_scipy_correlate():
    """Each sample with its own kernel, borders mirrored (scipy 'mirror' = torch 'reflect')."""
    x = _rand(3, 3, 29, 40)
    k = _rand(3, 21, 21, seed=1)
    k = k / k.sum((1, 2), keepdim=True)
    got = blur(x, k).numpy()
    for b in range(3):
        for c in range(3):
            want = scipy.ndimage.correlate(x[b, c].numpy(), k[b].numpy(), mode="mirror")
            np.testing.assert_allclose(got[b, c], want, atol=1e-12)


def test_blur_on_ragged_canvas_uses_each_samples_own_border():
    x = _rand(2, 3, 30, 30)
    k = _rand(2, 7, 7, seed=3)
    sizes = torch.tensor([[30, 30], [17, 23]])
    got = blur(x, k, sizes)
    alone = blur(x[1:, :, :17, :23], k[1:])
    torch.testing.assert_close(got[1:, :, :17, :23], alone, atol=1e-12, rtol=0)
    torch.testing.assert_close(got[:1], blur(x[:1], k[:1]), atol=1e-12, rtol=0)


def _cv2_gaussian(size: int) -> np.ndarray:
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def _usm_reference(img: np.ndarray, weight=0.5, radius=50, threshold=10) -> np.ndarray:
    """Real-ESRGAN's USMSharp with a dense 2-D kernel, computed by scipy on each plane."""
    size = radius + 1 if radius % 2 == 0 else radius
    k2 = np.outer(_cv2_gaussian(size), _cv2_gaussian(size))

    def filt(a):
        return np.stack([scipy.ndimage.correlate(p, k2, mode="mirror") for p in a])

    residual = img - filt(img)
    mask = (np.abs(residual) * 255 > threshold).astype(np.float64)
    soft = filt(mask)
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img


def test_usm_matches_dense_reference():
    x = _rand(1, 3, 60, 75, seed=4)
    x = F.avg_pool2d(F.interpolate(x, scale_factor=2, mode="nearest"), 2) ** 2  # some structure
    got = usm_sharp(x)[0].numpy()
    np.testing.assert_allclose(got, _usm_reference(x[0].numpy()), atol=1e-10)


def test_usm_small_radius_and_tiny_image_float32():
    """Reflection works even when the kernel is wider than the image (9 px vs 51 taps)."""
    x = _rand(2, 3, 9, 12, seed=5)
    got = usm_sharp(x.float(), weight=0.3, radius=8, threshold=5)
    want = np.stack([_usm_reference(x[b].numpy(), 0.3, 8, 5) for b in range(2)])
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6)
    big = usm_sharp(x.float())  # radius 50 on a 9x12 image
    assert big.shape == x.shape and torch.isfinite(big).all()


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_resize_matches_interpolate_per_sample(mode):
    x = _rand(4, 3, 37, 53, seed=6)
    sizes = torch.tensor([[37, 53], [30, 41], [20, 53], [5, 3]])
    outs = torch.tensor([[50, 11], [13, 60], [37, 7], [9, 9]])
    modes = (torch.arange(4) + mode) % 3
    got = resize(x, sizes, outs, modes)
    names = ("area", "bilinear", "bicubic")
    for b in range(4):
        (h, w), (ho, wo) = sizes[b].tolist(), outs[b].tolist()
        want = F.interpolate(x[b : b + 1, :, :h, :w], size=(ho, wo), mode=names[int(modes[b])])
        torch.testing.assert_close(got[b : b + 1, :, :ho, :wo], want, atol=1e-12, rtol=0)


def test_replicate_fill():
    x = _rand(1, 1, 4, 5)
    got = replicate_fill(x, torch.tensor([[3, 2]]), 6, 4)[0, 0]
    want = F.pad(x[:, :, :3, :2], (0, 2, 0, 3), mode="replicate")[0, 0]
    assert torch.equal(got, want)


def test_gaussian_noise_statistics():
    g = torch.Generator().manual_seed(7)
    for sigma in (5.0, 25.0):
        n = gaussian_noise((3, 128, 128), sigma, False, g, torch.float64)
        assert float(n.std() * 255) == pytest.approx(sigma, rel=0.02)
        assert float(n.mean().abs()) < 1e-3 and not torch.equal(n[0], n[1])
    n = gaussian_noise((3, 64, 64), 12.0, True, g, torch.float64)
    assert torch.equal(n[0], n[1]) and torch.equal(n[0], n[2])


def test_poisson_noise_statistics():
    """Image with all 256 levels: photon count 256 per unit, noise variance = level / (255 * 256)."""
    g = torch.Generator().manual_seed(8)
    levels = torch.randint(0, 256, (3, 160, 160), generator=g).double()
    n = poisson_noise(levels / 255, 1.0, False, g)
    assert float((n**2).mean() / (levels / (255 * 256)).mean()) == pytest.approx(1.0, abs=0.03)
    n2 = poisson_noise(levels / 255, 2.0, False, g)
    assert float((n2**2).mean() / (levels / (255 * 256)).mean()) == pytest.approx(4.0, abs=0.12)
    assert float(n.mean().abs()) < 1e-3
    gray = poisson_noise(levels / 255, 1.0, True, g)
    assert torch.equal(gray[0], gray[2]) and not torch.equal(n[0], n[2])


def test_poisson_few_levels_means_few_photons():
    """One distinct level -> photon count 1 (as in the reference): variance = rate = 128/255."""
    img = torch.full((3, 64, 64), 128 / 255, dtype=torch.float64)
    n = poisson_noise(img, 1.0, False, torch.Generator().manual_seed(9))
    assert float(n.var()) == pytest.approx(128 / 255, rel=0.1)


def test_add_noise_only_in_valid_windows_and_per_sample_streams():
    x = torch.full((2, 3, 20, 30), 0.5)
    sizes = torch.tensor([[20, 30], [11, 7]])
    args = (torch.tensor([True, False]), torch.tensor([10.0, 10.0], dtype=torch.float64),
            torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([False, False]))
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    out = add_noise(x, sizes, *args, gens())
    assert torch.equal(out[1, :, 11:], x[1, :, 11:]) and torch.equal(out[1, :, :, 7:], x[1, :, :, 7:])
    assert not torch.equal(out[1, :, :11, :7], x[1, :, :11, :7])
    other = x.clone()
    other[0] = 0.9
    again = add_noise(other, sizes, *args, gens())
    assert torch.equal(again[1], out[1])  # sample 1 does not see sample 0


def test_size_groups_partition_and_cost():
    areas = torch.tensor([2.2, 0.1, 0.2, 1.0, 0.15, 2.0, 0.3, 0.12], dtype=torch.float64)
    groups = size_groups(areas, group_cost=0.5)
    assert sorted(torch.cat(groups).tolist()) == list(range(8))
    assert len(groups) > 1
    assert {0, 5} <= set(groups[-1].tolist())  # the two big ones together
    assert len(size_groups(areas, group_cost=100.0)) == 1
