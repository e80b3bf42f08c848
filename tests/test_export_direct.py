"""Direct ncnn writer: graph shape, .bin layout and torch parity for every architecture and scale."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from export_support import ncnn_run, rrdb_info, small_model, srvgg_info, to_chw, torch_run
from realesr_portable.convert.detect import ArchInfo, UnsupportedModelError, arch_info
from realesr_portable.convert.direct_writer import NcnnModel, write_ncnn
from realesr_portable.convert.verify import FP16_MIN_PSNR, FP32_MAX_ABS, VerificationError, check_parity, psnr
from realesr_portable.graph.ncnn_files import FP16_TAG, NcnnParam, read_weights

CASES = [
    pytest.param(rrdb_info(1), id="rrdbnet-x1"),
    pytest.param(rrdb_info(2), id="rrdbnet-x2"),
    pytest.param(rrdb_info(4, feat=32, grow=16), id="rrdbnet-x4"),
    pytest.param(srvgg_info(2), id="srvgg-x2-prelu"),
    pytest.param(srvgg_info(3), id="srvgg-x3-prelu"),
    pytest.param(srvgg_info(4), id="srvgg-x4-prelu"),
    pytest.param(srvgg_info(2, act="relu"), id="srvgg-x2-relu"),
    pytest.param(srvgg_info(4, act="leakyrelu"), id="srvgg-x4-leakyrelu"),
]


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("info", CASES)
def test_parity_with_torch(info: ArchInfo, fp16: bool) -> None:
    model = small_model(info)
    exported = write_ncnn(info, model.state_dict(), fp16=fp16)
    parity = check_parity(model, exported, fp16, probe_size=32)
    assert parity.max_abs < FP32_MAX_ABS
    if fp16:
        assert parity.psnr >= FP16_MIN_PSNR


@pytest.mark.parametrize("info", CASES[:4])
def test_dynamic_non_square_input(info: ArchInfo, photo_crop) -> None:
    """pnnx-style graphs scale by factor, so one file serves every (valid) tile shape."""
    model = small_model(info, seed=3)
    exported = write_ncnn(info, model.state_dict(), fp16=False)
    chw = to_chw(photo_crop("chelsea.png", 40, 100, 20, 28))
    out, ref = ncnn_run(exported, chw), torch_run(model, chw)
    assert out.shape == ref.shape == (3, 20 * info.scale, 28 * info.scale)
    assert np.abs(out - ref).max() < FP32_MAX_ABS


@pytest.mark.parametrize("info", CASES)
def test_graph_is_well_formed(info: ArchInfo) -> None:
    exported = write_ncnn(info, small_model(info).state_dict(), fp16=True)
    param = NcnnParam.parse(exported.param_text)
    produced: set[str] = set()
    consumed = Counter()
    for layer in param.layers:
        for bottom in layer.bottoms:
            assert bottom in produced, f"{layer.name} reads {bottom} before it exists"
            consumed[bottom] += 1
        produced.update(layer.tops)
    assert max(consumed.values()) == 1, "a blob feeding two layers needs a Split"
    assert (exported.input_blob, exported.output_blob) == ("in0", "out0")
    assert "out0" in produced and "out0" not in consumed
    kinds = Counter(layer.type for layer in param.layers)
    if info.name == "RRDBNet":
        blocks = info.params["num_block"]
        assert kinds["Convolution"] == 15 * blocks + 6
        assert kinds["Eltwise"] == 4 * blocks
        assert kinds["Reorg"] == (0 if info.scale == 4 else 1)
        assert kinds["Interp"] == 2
    else:
        prelus = info.params["num_conv"] + 1 if info.params["act_type"] == "prelu" else 0
        assert kinds["PReLU"] == prelus
        assert kinds["Convolution"] == info.params["num_conv"] + 2
        assert kinds["PixelShuffle"] == 1


def test_fp16_bin_stores_rounded_weights_and_fp32_biases() -> None:
    info = srvgg_info(4)
    sd = small_model(info).state_dict()
    fp16 = write_ncnn(info, sd, fp16=True)
    fp32 = write_ncnn(info, sd, fp16=False)
    assert fp16.bin_bytes[:4] == FP16_TAG.to_bytes(4, "little")
    assert len(fp16.bin_bytes) < 0.6 * len(fp32.bin_bytes)
    arrays = list(read_weights(NcnnParam.parse(fp16.param_text), fp16.bin_bytes).values())
    np.testing.assert_array_equal(arrays[0][0], sd["body.0.weight"].half().float().numpy().ravel())
    np.testing.assert_array_equal(arrays[0][1], sd["body.0.bias"].numpy())  # biases are never rounded
    np.testing.assert_array_equal(arrays[1][0], sd["body.1.weight"].numpy())  # nor PReLU slopes


def test_verification_catches_a_wrong_graph() -> None:
    info = rrdb_info(4)
    model = small_model(info)
    good = write_ncnn(info, model.state_dict(), fp16=False)
    broken = NcnnModel(good.param_text.replace("-23310=1,0.2", "-23310=1,0.25", 1), good.bin_bytes)
    with pytest.raises(VerificationError, match="max abs"):
        check_parity(model, broken, fp16=False, probe_size=32)


def test_architectures_without_a_writer_are_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="pnnx"):
        write_ncnn(arch_info("UNetDiscriminatorSN", {"num_in_ch": 3, "num_feat": 8}), {}, fp16=True)
    info = srvgg_info(2)
    partial = dict(small_model(info).state_dict())
    del partial["body.4.weight"]
    with pytest.raises(UnsupportedModelError, match="body.4.weight"):
        write_ncnn(info, partial, fp16=True)


@pytest.mark.parametrize("info", [rrdb_info(2), srvgg_info(4)], ids=["rrdbnet-x2", "srvgg-x4"])
def test_fp16_model_with_fp16_arithmetic_on_vulkan(info: ArchInfo, photo_crop) -> None:
    """The GPU path stores and computes in fp16: still >= 45 dB from fp32 torch (lavapipe counts as a device)."""
    import ncnn

    if ncnn.get_gpu_count() == 0:
        pytest.skip("no Vulkan device (not even lavapipe); the CPU fp16 path is covered by test_parity_with_torch")
    model = small_model(info, seed=5)
    exported = write_ncnn(info, model.state_dict(), fp16=True)
    chw = to_chw(photo_crop("coffee.png", 120, 220, 24, 24))
    net = ncnn.Net()
    net.opt.use_vulkan_compute = True  # default options: fp16 storage and arithmetic where supported
    assert net.load_param_mem(exported.param_text) == 0
    weights = exported.bin_bytes
    net.load_model_mem(weights)
    assert net.opt.use_vulkan_compute and net.opt.use_fp16_storage
    with net.create_extractor() as ex:
        ex.input("in0", ncnn.Mat(chw))
        rc, out = ex.extract("out0")
        assert rc == 0
        gpu = np.array(out)
    del net, weights
    assert psnr(gpu, torch_run(model, chw)) >= FP16_MIN_PSNR
