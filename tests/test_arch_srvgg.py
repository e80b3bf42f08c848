"""SRVGGNetCompact: shapes, residual over nearest upsampling, official keys, detect round trip."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from realesr_portable.convert.detect import build_model, detect_architecture
from realesr_portable.archs.srvgg.module import SRVGGNetCompact


@pytest.mark.parametrize("upscale", [1, 2, 3, 4])
@pytest.mark.parametrize("act", ["prelu", "relu", "leakyrelu"])
def test_output_shape(upscale: int, act: str) -> None:
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=upscale, act_type=act).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 7, 9))
    assert out.shape == (1, 3, 7 * upscale, 9 * upscale)


def test_zero_body_returns_nearest_upsampled_input() -> None:
    net = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=3).eval()
    with torch.no_grad():
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
        x = torch.rand(1, 3, 5, 6)
        assert torch.equal(net(x), F.interpolate(x, scale_factor=3, mode="nearest"))


def test_official_key_names() -> None:
    keys = list(SRVGGNetCompact(num_feat=8, num_conv=2).state_dict())
    # conv, prelu, conv, prelu, conv, prelu, conv -> body.0 .. body.6
    assert keys == ["body.0.weight", "body.0.bias", "body.1.weight", "body.2.weight", "body.2.bias",
                    "body.3.weight", "body.4.weight", "body.4.bias", "body.5.weight",
                    "body.6.weight", "body.6.bias"]


def test_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="act_type"):
        SRVGGNetCompact(act_type="gelu")


@pytest.mark.parametrize(
    "params",
    [
        {"num_feat": 64, "num_conv": 16, "upscale": 4, "act_type": "prelu"},  # animevideov3
        {"num_feat": 16, "num_conv": 4, "upscale": 2, "act_type": "prelu"},
        {"num_feat": 8, "num_conv": 1, "upscale": 3, "act_type": "prelu"},
        {"num_feat": 24, "num_conv": 0, "upscale": 1, "act_type": "prelu"},
        {"num_feat": 8, "num_conv": 3, "upscale": 4, "act_type": "relu"},
        {"num_in_ch": 1, "num_out_ch": 1, "num_feat": 8, "num_conv": 2, "upscale": 2, "act_type": "prelu"},
    ],
)
def test_state_dict_detects_same_hyper_parameters(params: dict) -> None:
    torch.manual_seed(0)
    net = SRVGGNetCompact(**params).eval()
    info = detect_architecture(net.state_dict())
    assert info.name == "SRVGGNetCompact"
    assert info.params == {"num_in_ch": 3, "num_out_ch": 3, **params}
    assert info.scale == params["upscale"]
    rebuilt = build_model(info).eval()
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(1, info.in_channels, 6, 5)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_weightless_activation_is_reported_as_an_assumption() -> None:
    info = detect_architecture(SRVGGNetCompact(num_feat=8, num_conv=2, act_type="leakyrelu").state_dict())
    assert info.params["act_type"] == "relu"
    assert any("leakyrelu" in note for note in info.notes)
