"""UNetDiscriminatorSN: per-pixel output shape, spectral-norm keys as in the official netD .pth."""

from __future__ import annotations

import pytest
import torch

from realesr_portable.convert.detect import build_model, detect_architecture
from realesr_portable.archs.unet_discriminator.module import UNetDiscriminatorSN


def test_per_pixel_output_and_gradients() -> None:
    net = UNetDiscriminatorSN(num_feat=8)
    x = torch.rand(2, 3, 32, 24, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 1, 32, 24)
    out.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_official_spectral_norm_keys() -> None:
    keys = set(UNetDiscriminatorSN(num_feat=8).state_dict())
    for i in range(1, 9):
        assert {f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"} <= keys
        assert f"conv{i}.bias" not in keys
    assert {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"} <= keys


def test_skip_connection_changes_output() -> None:
    torch.manual_seed(0)
    with_skip = UNetDiscriminatorSN(num_feat=8).eval()
    without = UNetDiscriminatorSN(num_feat=8, skip_connection=False).eval()
    without.load_state_dict(with_skip.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(with_skip(x), without(x))


@pytest.mark.parametrize("num_feat, num_in_ch", [(8, 3), (16, 1), (64, 3)])
def test_state_dict_detects_same_hyper_parameters(num_feat: int, num_in_ch: int) -> None:
    net = UNetDiscriminatorSN(num_in_ch=num_in_ch, num_feat=num_feat)
    info = detect_architecture(net.state_dict())
    assert info.name == "UNetDiscriminatorSN"
    assert info.params == {"num_in_ch": num_in_ch, "num_feat": num_feat, "skip_connection": True}
    build_model(info).load_state_dict(net.state_dict(), strict=True)
