"""Architecture detection refuses what it does not know, and says what it found."""

from __future__ import annotations

import pytest
import torch

from realesr_portable.convert.detect import (
    UnsupportedModelError,
    arch_info,
    build_model,
    check_state_dict,
    describe_mismatch,
    detect_architecture,
    load_model,
)
from realesr_portable.archs.rrdbnet.module import RRDBNet
from realesr_portable.archs.srvgg.module import SRVGGNetCompact


def _small_rrdb() -> dict[str, torch.Tensor]:
    return RRDBNet(num_feat=8, num_block=2, num_grow_ch=4).state_dict()


def test_unknown_state_dict_names_what_was_found() -> None:
    sd = {"encoder.weight": torch.zeros(16, 3, 3, 3), "decoder.bias": torch.zeros(3)}
    with pytest.raises(UnsupportedModelError) as err:
        detect_architecture(sd)
    message = str(err.value)
    assert "\n" not in message
    assert "encoder.weight [16, 3, 3, 3]" in message and "decoder.bias [3]" in message


def test_empty_state_dict() -> None:
    with pytest.raises(UnsupportedModelError, match="empty"):
        detect_architecture({})


def test_missing_block_key_is_named() -> None:
    sd = _small_rrdb()
    del sd["body.1.rdb2.conv3.weight"]
    with pytest.raises(UnsupportedModelError, match=r"looks like RRDBNet.*missing key.*body\.1\.rdb2\.conv3\.weight"):
        detect_architecture(sd)


def test_extra_key_is_named() -> None:
    sd = _small_rrdb()
    sd["conv_extra.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(UnsupportedModelError, match="unexpected key.*conv_extra.weight"):
        detect_architecture(sd)


def test_inconsistent_shape_is_named() -> None:
    sd = _small_rrdb()
    sd["conv_hr.weight"] = torch.zeros(8, 9, 3, 3)
    with pytest.raises(UnsupportedModelError, match=r"shape mismatch.*conv_hr.weight \[8, 9, 3, 3\]"):
        detect_architecture(sd)


def test_x8_rrdbnet_is_refused_explicitly() -> None:
    sd = _small_rrdb()
    sd["conv_up3.weight"] = torch.zeros(8, 8, 3, 3)
    with pytest.raises(UnsupportedModelError, match="conv_up3"):
        detect_architecture(sd)


def test_srvgg_last_conv_must_be_a_square_multiple() -> None:
    sd = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=2).state_dict()
    sd["body.4.weight"] = torch.zeros(5 * 3, 8, 3, 3)
    sd["body.4.bias"] = torch.zeros(15)
    with pytest.raises(UnsupportedModelError, match="15 outputs"):
        detect_architecture(sd)


def test_load_model_returns_loaded_eval_module() -> None:
    torch.manual_seed(1)
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2).eval()
    info, model = load_model(net.state_dict())
    assert info.scale == 2 and not model.training
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))


def test_check_state_dict_against_explicit_info() -> None:
    sd = _small_rrdb()
    check_state_dict(arch_info("RRDBNet", {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}), sd)
    with pytest.raises(UnsupportedModelError, match="missing"):
        check_state_dict(arch_info("RRDBNet", {"num_feat": 8, "num_block": 3, "num_grow_ch": 4}), sd)


def test_build_model_rejects_unknown_name() -> None:
    with pytest.raises(UnsupportedModelError, match="EDSR"):
        build_model(arch_info("EDSR", {}))


def test_describe_mismatch_is_empty_when_shapes_agree() -> None:
    sd = _small_rrdb()
    shapes = {k: v.shape for k, v in sd.items()}
    assert describe_mismatch(shapes, sd) == ""
    shapes["extra.weight"] = torch.Size([1])
    assert describe_mismatch(shapes, sd) == "1 missing key(s) e.g. extra.weight"
