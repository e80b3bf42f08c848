"""RRDBNet: shapes per scale, official key names, and state_dict -> detect -> same hyper-parameters."""

from __future__ import annotations

import pytest
import torch

from realesr_portable.convert.detect import build_model, detect_architecture
from realesr_portable.archs.rrdbnet.module import RRDBNet


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_output_shape_per_scale(scale: int) -> None:
    net = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 8, 12))
    assert out.shape == (2, 3, 8 * scale, 12 * scale)
    assert torch.isfinite(out).all()


def test_channels_and_unshuffled_first_conv() -> None:
    net = RRDBNet(num_in_ch=1, num_out_ch=4, scale=1, num_feat=8, num_block=2, num_grow_ch=4)
    assert net.conv_first.in_channels == 16
    out = net(torch.rand(1, 1, 8, 8))
    assert out.shape == (1, 4, 8, 8)


def test_official_key_names() -> None:
    keys = set(RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).state_dict())
    expected = {"conv_first.weight", "conv_body.bias", "conv_up1.weight", "conv_up2.weight",
                "conv_hr.weight", "conv_last.bias", "body.0.rdb1.conv1.weight", "body.1.rdb3.conv5.bias"}
    assert expected <= keys
    assert len([k for k in keys if k.startswith("body.")]) == 2 * 3 * 5 * 2


def test_rejects_unsupported_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        RRDBNet(scale=3)


@pytest.mark.parametrize(
    "params",
    [
        {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
        {"scale": 2, "num_feat": 16, "num_block": 3, "num_grow_ch": 8},
        {"scale": 1, "num_feat": 12, "num_block": 2, "num_grow_ch": 6},
        {"scale": 4, "num_feat": 64, "num_block": 6, "num_grow_ch": 32},  # x4plus-anime's shape
        {"scale": 2, "num_in_ch": 1, "num_out_ch": 1, "num_feat": 8, "num_block": 2, "num_grow_ch": 4},
        {"scale": 1, "num_in_ch": 4, "num_out_ch": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    ],
)
def test_state_dict_detects_same_hyper_parameters(params: dict) -> None:
    torch.manual_seed(0)
    net = RRDBNet(**params).eval()
    info = detect_architecture(net.state_dict())
    expected = {"num_in_ch": 3, "num_out_ch": 3, **params}
    assert info.name == "RRDBNet"
    assert info.params == expected
    assert info.size_multiple == 4 // params["scale"]
    rebuilt = build_model(info).eval()
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(1, expected["num_in_ch"], 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
