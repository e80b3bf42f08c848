"""Losses, VGG19 feature extractor, metrics, EMA."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import pytest
import torch
from scipy import ndimage

from realesr_portable.trainer.ema import ModelEMA
from realesr_portable.trainer.losses import GANLoss, L1Loss, PerceptualLoss
from realesr_portable.trainer.metrics import psnr_y, ssim_y
from realesr_portable.trainer.niqe import load_params, niqe
from realesr_portable.trainer.vgg import (
    VGG19_URL, VGGFeatureExtractor, VGGWeightsError, build_features, layer_indices, load_vgg19_state, random_vgg19_state,
)

from train_support import make_folder, one_thread, photo

RECIPE = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    return random_vgg19_state(0)

_single_thread = pytest.fixture(autouse=True)(one_thread)


def test_vgg_layout_matches_torchvision() -> None:
    idx = layer_indices()
    # torchvision's vgg19().features: conv1_2 = 2, conv2_2 = 7, conv3_4 = 16, conv4_4 = 25, conv5_4 = 34
    assert [idx[k] for k in RECIPE] == [2, 7, 16, 25, 34]
    feats = build_features(36)
    assert len(feats) == 37 and isinstance(feats[34], torch.nn.Conv2d) and feats[34].in_channels == 512
    keys = set(random_vgg19_state().keys())
    assert "features.0.weight" in keys and "features.34.bias" in keys and len(keys) == 32
    assert VGG19_URL.endswith("vgg19-dcbb9e9d.pth")


def test_vgg_features_are_pre_activation(vgg_state: dict[str, torch.Tensor]) -> None:
    ext = VGGFeatureExtractor(list(RECIPE), vgg_state)
    out = ext(torch.rand(1, 3, 32, 32))
    assert set(out) == set(RECIPE) and out["conv5_4"].shape == (1, 512, 2, 2)
    assert all(float(v.min()) < 0 for v in out.values())  # before the ReLU: negatives present
    assert not any(p.requires_grad for p in ext.parameters())
    ext.train()
    assert not ext.training  # a frozen loss network stays in eval mode


def test_vgg_weight_files(tmp_path: Path, vgg_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({**vgg_state, "classifier.0.weight": torch.zeros(2, 2)}, path)
    state = load_vgg19_state(path)
    assert torch.equal(state["features.34.weight"], vgg_state["features.34.weight"])
    with pytest.raises(VGGWeightsError, match="does not exist"):
        load_vgg19_state(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(VGGWeightsError, match="cannot read VGG19 weights"):
        load_vgg19_state(tmp_path / "junk.pth")
    partial = {k: v for k, v in vgg_state.items() if not k.startswith("features.34")}
    with pytest.raises(VGGWeightsError, match="lack features.34"):
        VGGFeatureExtractor(["conv5_4"], partial)
    VGGFeatureExtractor(["conv2_2"], partial)  # only the layers up to the deepest used one are needed


def test_perceptual_loss_recipe(vgg_state: dict[str, torch.Tensor]) -> None:
    loss = PerceptualLoss(RECIPE, vgg_state, perceptual_weight=1.0)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    y = torch.rand(2, 3, 32, 32)
    value = loss(x, y)
    assert value.item() > 0 and float(loss(y, y)) == 0.0
    value.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    half = PerceptualLoss(RECIPE, vgg_state, perceptual_weight=0.5)
    assert float(half(x, y).detach()) == pytest.approx(0.5 * float(value.detach()), rel=1e-5)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda s: L1Loss(reduction="median"), "reduction"),
        (lambda s: L1Loss(loss_weight=-1), "loss_weight"),
        (lambda s: GANLoss("wgan"), "gan_type"),
        (lambda s: GANLoss(loss_weight="big"), "loss_weight"),
        (lambda s: PerceptualLoss({}, s), "layer_weights"),
        (lambda s: PerceptualLoss({"conv9_9": 1.0}, s), "unknown VGG19 layer"),
        (lambda s: PerceptualLoss({"conv1_2": -0.1}, s), r"layer_weights\[conv1_2\]"),
    ],
)
def test_bad_loss_arguments(make, match: str, vgg_state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(ValueError, match=match):
        make(vgg_state)


def test_gan_loss_values() -> None:
    gan = GANLoss("vanilla", loss_weight=0.1)
    zeros = torch.zeros(1, 1, 4, 4)
    assert float(gan(zeros, True, is_disc=True)) == pytest.approx(math.log(2))
    assert float(gan(zeros, True)) == pytest.approx(0.1 * math.log(2))  # weight on G only
    assert float(gan(torch.full((1, 1, 2, 2), 20.0), True, is_disc=True)) < 1e-6


def test_psnr_ssim_on_y() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 40, 40, generator=g)
    assert psnr_y(a, a) == math.inf and ssim_y(a, a) == pytest.approx(1.0)
    b = (a + 0.02 * torch.randn(1, 3, 40, 40, generator=g)).clamp(0, 1)
    p = psnr_y(b, a, crop_border=4)
    assert 30 < p < 45
    s = ssim_y(b, a, crop_border=4)
    assert 0.5 < s < 1.0
    c = (a + 0.1 * torch.randn(1, 3, 40, 40, generator=g)).clamp(0, 1)
    assert psnr_y(c, a, 4) < p and ssim_y(c, a, 4) < s
    gray = torch.full((1, 3, 16, 16), 100 / 255)
    # raising every channel by one 8-bit level moves Y (16 + 219 * gray) by 219/255 levels
    shifted = gray + 1 / 255
    expected = 10 * math.log10(255**2 / (219 / 255) ** 2)
    assert psnr_y(shifted, gray) == pytest.approx(expected, abs=0.05)


def test_ema() -> None:
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, start + 0.1)
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(model, decay=1.0)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


def test_niqe_ranks_distortions() -> None:
    params = load_params()
    assert params[0].shape == (36,) and params[1].shape == (36, 36)
    y = _luma(photo("astronaut.png").astype(np.float64))  # 512x512: enough 96 px patches for stable statistics
    clean = niqe(y, params)
    noisy = niqe(np.clip(y + np.random.default_rng(0).normal(0, 15, y.shape), 0, 255), params)
    blurred = niqe(ndimage.gaussian_filter(y, 2.0), params)
    assert 0 < clean < noisy and clean < blurred
    with pytest.raises(ValueError, match="larger than 192x192"):
        niqe(y[:150], params)


def test_validator_reports_psnr_ssim_niqe(tmp_path: Path) -> None:
    from realesr_portable.trainer import config as c
    from realesr_portable.trainer.validate import Validator, save_grid

    make_folder(tmp_path / "val", 208, offset=20, names=("coffee.png",), nested=False)
    cfg = c.from_dict({"data": {"dataroot_gt": "unused"},
                       "val": {"dataroot_gt": str(tmp_path / "val"), "lq_mode": "bicubic", "max_size": 208}})
    val = Validator(cfg, None)
    assert val.niqe_note == "" and val.pairs[0][1].shape == (1, 3, 52, 52)
    bicubic = torch.nn.Upsample(scale_factor=4, mode="bicubic", align_corners=False)
    metrics, rows = val.run(bicubic, torch.device("cpu"))
    assert 20 < metrics["psnr_y"] < 40 and 0.3 < metrics["ssim_y"] < 1 and metrics["niqe"] > 0
    save_grid(rows, tmp_path / "grid.png")
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:
        assert im.size == (3 * 208 + 2 * 4, 208)
