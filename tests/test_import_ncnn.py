"""Official ncnn weights imported into our PyTorch architectures reproduce ncnn's own output.

Parity threshold (docs/architecture.md): max abs < 1e-4 on [0, 1] outputs, ncnn fp32 on the CPU, inputs
cut from real photos shipped with scikit-image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pnnx
import pytest
import torch

from realesr_portable.convert.detect import UnsupportedModelError, build_model, detect_architecture
from realesr_portable.convert.importer import import_ncnn, import_official, import_to_pth, official_files, source_forward
from realesr_portable.convert.weights_io import load_state_dict
from realesr_portable.device.select import cpu_device
from realesr_portable.model.catalog import ModelFiles
from realesr_portable.graph.ncnn_files import NcnnFormatError, NcnnParam, write_weights
from realesr_portable.run.session import Session
from realesr_portable.model.spec import ModelSpec
from realesr_portable.archs.rrdbnet.module import RRDBNet
from realesr_portable.archs.srvgg.module import SRVGGNetCompact

PARITY = 1e-4


def _chw(img: np.ndarray) -> np.ndarray:
    """HWC uint8 -> CHW float32 in [0, 1], contiguous (ncnn.Mat reads the buffer as is)."""
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _run_ncnn(param: Path, weights: Path, x: np.ndarray, scale: int) -> np.ndarray:
    """ncnn fp32 on the CPU, through the runtime's own Session."""
    spec = ModelSpec(name=param.stem, scale=scale, input_blob="data", output_blob="output")
    return Session(ModelFiles(param, weights, spec, "path"), cpu_device(), fp32=True, threads=1).run(x)


def _run_torch(info, sd, x: np.ndarray) -> np.ndarray:
    model = build_model(info).eval()
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        return source_forward(info, model, torch.from_numpy(x)[None])[0].numpy()


def _parity(name: str, x: np.ndarray) -> float:
    info, sd = import_official(name)
    ours = _run_torch(info, sd, x)
    theirs = _run_ncnn(*official_files(name), x, round(info.scale * info.output_resize))
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max())


@pytest.mark.parametrize(
    "name, scale, params",
    [
        ("realesrgan-x4plus-anime", 4, {"num_block": 6, "num_feat": 64, "num_grow_ch": 32, "scale": 4}),
        ("realesr-animevideov3-x2", 2, {"num_conv": 16, "num_feat": 64, "upscale": 4, "act_type": "prelu"}),
        ("realesr-animevideov3-x3", 3, {"num_conv": 16, "num_feat": 64, "upscale": 4, "act_type": "prelu"}),
        ("realesr-animevideov3-x4", 4, {"num_conv": 16, "num_feat": 64, "upscale": 4, "act_type": "prelu"}),
    ],
)
def test_official_import_matches_ncnn(name: str, scale: int, params: dict, photo_crop) -> None:
    info, sd = import_official(name)
    assert params.items() <= info.params.items()
    assert info.scale * info.output_resize == scale  # x2/x3 are the x4 net plus a bicubic resize
    x = _chw(photo_crop("astronaut.png", 120, 190, 28, 28))  # face and helmet edge: real texture
    err = _parity(name, x)
    assert err < PARITY, f"{name}: max abs {err:.2e}"
    # Imported weights are an ordinary state_dict: detection agrees with the import.
    assert detect_architecture(sd).params == info.params


@pytest.mark.slow
def test_official_x4plus_import_matches_ncnn(photo_crop) -> None:
    err = _parity("realesrgan-x4plus", _chw(photo_crop("chelsea.png", 100, 140, 32, 32)))
    assert err < PARITY, f"x4plus: max abs {err:.2e}"


def test_import_to_pth_loads_safely_and_strictly(tmp_path: Path) -> None:
    info, out = import_to_pth(*official_files("realesr-animevideov3-x4"), tmp_path / "v3.pth")
    sd = load_state_dict(out)
    assert torch.load(out, weights_only=True).keys() == {"params_ema"}
    model = build_model(detect_architecture(sd))
    model.load_state_dict(sd, strict=True)
    assert detect_architecture(sd) == info


def _hand_made_srvgg(act_params: str | None, fused: str, tmp_path: Path) -> tuple[Path, Path]:
    """An SRVGG-shaped ncnn graph (2 convs, upscale 2) with a ReLU layer or a fused activation."""
    gen = np.random.default_rng(3)
    conv0_top = "c0" if act_params is not None else "a0"
    acts = [f"ReLU act0 1 1 c0 a0 {act_params}".rstrip()] if act_params is not None else []
    lines = [
        "Input data 0 1 data",
        "Split split 1 2 data d0 d1",
        f"Convolution conv0 1 1 d0 {conv0_top} 0=6 1=3 4=1 5=1 6=162 {fused}".rstrip(),
        *acts,
        "Convolution conv1 1 1 a0 c1 0=12 1=3 4=1 5=1 6=648",
        "PixelShuffle ps 1 1 c1 p 0=2",
        "Interp up 1 1 d1 u 0=1 1=2.0 2=2.0",
        "BinaryOp add 2 1 p u output 0=0",
    ]
    text = f"7767517\n{len(lines)} {len(lines) + 3}\n" + "\n".join(lines) + "\n"
    weights = {
        "conv0": [gen.normal(0, 0.3, 162).astype(np.float32), gen.normal(0, 0.1, 6).astype(np.float32)],
        "conv1": [gen.normal(0, 0.3, 648).astype(np.float32), gen.normal(0, 0.1, 12).astype(np.float32)],
    }
    blob = write_weights(NcnnParam.parse(text), weights, fp16=False)
    (tmp_path / "m.param").write_text(text)
    (tmp_path / "m.bin").write_bytes(blob)
    return tmp_path / "m.param", tmp_path / "m.bin"


@pytest.mark.parametrize(
    "act_params, fused, act_type",
    [("", "", "relu"), ("0=0.1", "", "leakyrelu"), (None, "9=1", "relu"), (None, "9=2 -23310=1,0.1", "leakyrelu")],
)
def test_relu_variants_import_and_match_ncnn(
    tmp_path: Path, act_params: str | None, fused: str, act_type: str, photo_crop
) -> None:
    files = _hand_made_srvgg(act_params, fused, tmp_path)
    info, sd = import_ncnn(*files)
    assert info.name == "SRVGGNetCompact"
    assert info.params == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 6, "num_conv": 0, "upscale": 2, "act_type": act_type}
    x = _chw(photo_crop("coffee.png", 200, 250, 12, 12))
    err = float(np.abs(_run_torch(info, sd, x) - _run_ncnn(*files, x, 2)).max())
    assert err < PARITY


def _copy_official(name: str, tmp_path: Path) -> tuple[Path, Path]:
    param, weights = official_files(name)
    dst = tmp_path / param.name, tmp_path / weights.name
    dst[0].write_text(param.read_text())
    dst[1].write_bytes(weights.read_bytes())
    return dst


def _one_line_error(exc: type[Exception], *args: Path) -> str:
    with pytest.raises(exc) as err:
        import_ncnn(*args)
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_param_and_bin_of_different_models(tmp_path: Path) -> None:
    anime_param, _ = official_files("realesrgan-x4plus-anime")
    _, v3_bin = official_files("realesr-animevideov3-x4")
    assert "do not match" in _one_line_error(NcnnFormatError, anime_param, v3_bin)


def test_truncated_bin(tmp_path: Path) -> None:
    param, weights = _copy_official("realesr-animevideov3-x4", tmp_path)
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "do not match" in _one_line_error(NcnnFormatError, param, weights)


def test_param_layer_edited_to_disagree_with_bin(tmp_path: Path) -> None:
    param, weights = _copy_official("realesr-animevideov3-x4", tmp_path)
    # conv 0 claims 32 outputs instead of 64: the .bin then holds more bytes than described.
    param.write_text(param.read_text().replace("0=64 1=3 4=1 5=1 6=1728", "0=32 1=3 4=1 5=1 6=864", 1))
    _one_line_error(NcnnFormatError, param, weights)


def test_missing_files_and_garbage_param(tmp_path: Path) -> None:
    param, weights = _copy_official("realesr-animevideov3-x4", tmp_path)
    assert "not found" in _one_line_error(NcnnFormatError, tmp_path / "none.param", weights)
    param.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    _one_line_error(NcnnFormatError, param, weights)


def test_unknown_graph_is_refused(tmp_path: Path) -> None:
    text = "7767517\n2 2\nInput data 0 1 data\nSoftmax sm 1 1 data output 0=0\n"
    (tmp_path / "s.param").write_text(text)
    (tmp_path / "s.bin").write_bytes(b"")
    assert "Softmax" in _one_line_error(UnsupportedModelError, tmp_path / "s.param", tmp_path / "s.bin")
    text = "7767517\n2 2\nInput data 0 1 data\nConvolution c 1 1 data output 0=3 1=3 4=1 5=0 6=81\n"
    (tmp_path / "c.param").write_text(text)
    (tmp_path / "c.bin").write_bytes(write_weights(NcnnParam.parse(text), {"c": [np.zeros(81, np.float32)]}, fp16=True))
    assert "none of" in _one_line_error(UnsupportedModelError, tmp_path / "c.param", tmp_path / "c.bin")


@pytest.mark.parametrize(
    "arch, params",
    [
        (RRDBNet, {"scale": 2, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}),
        (RRDBNet, {"scale": 1, "num_feat": 8, "num_block": 2, "num_grow_ch": 4}),
        (SRVGGNetCompact, {"num_feat": 8, "num_conv": 2, "upscale": 3, "act_type": "prelu"}),
        (SRVGGNetCompact, {"num_feat": 8, "num_conv": 1, "upscale": 2, "act_type": "leakyrelu"}),
    ],
)
def test_import_of_pnnx_export_recovers_weights(tmp_path: Path, arch, params: dict, photo_crop) -> None:
    """pnnx graphs (Reorg for pixel-unshuffle, fused LeakyReLU, blobs in0/out0) import too, exactly."""
    torch.manual_seed(0)
    net = arch(**params).eval()
    pnnx.export(net, str(tmp_path / "m.pt"), torch.rand(1, 3, 16, 16), fp16=False)
    param, weights = tmp_path / "m.ncnn.param", tmp_path / "m.ncnn.bin"
    assert param.is_file() and weights.is_file(), "pnnx returned without writing ncnn files"
    info, sd = import_ncnn(param, weights)
    assert info.params == {"num_in_ch": 3, "num_out_ch": 3, **params}
    assert sd.keys() == net.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in net.state_dict().items())
    # ncnn running pnnx's graph agrees with our module (pixel-unshuffle vs Reorg channel order).
    x = _chw(photo_crop("rocket.jpg", 150, 200, 16, 16))
    spec = ModelSpec(name="m", scale=info.scale, input_blob="in0", output_blob="out0")
    theirs = Session(ModelFiles(param, weights, spec, "path"), cpu_device(), fp32=True, threads=1).run(x)
    assert float(np.abs(_run_torch(info, sd, x) - theirs).max()) < PARITY


def test_conv_geometry_other_than_3x3_stride_1_is_refused(tmp_path: Path) -> None:
    files = _hand_made_srvgg(None, "9=1 3=2", tmp_path)  # stride 2 in the first conv
    assert "stride-1" in _one_line_error(UnsupportedModelError, *files)
