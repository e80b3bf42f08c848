"""`realesr-portable convert`: produced files, printed parity, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export_support import load_files, ncnn_run, rrdb_info, small_model, srvgg_info, to_chw, torch_run
from realesr_portable.api import Upscaler
from realesr_portable.convert.cli import main
from realesr_portable.convert.detect import build_model
from realesr_portable.convert.weights_io import save_state_dict
from realesr_portable.model.catalog import OFFICIAL, official_model_dir
from realesr_portable.archs.unet_discriminator.module import UNetDiscriminatorSN


@pytest.fixture
def srvgg_pth(tmp_path: Path) -> Path:
    return save_state_dict(small_model(srvgg_info(2)).state_dict(), tmp_path / "in" / "tiny-x2.pth")


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_converts_a_pth_with_fp16_weights_by_default(srvgg_pth: Path, tmp_path: Path, capsys, photo_crop) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(["convert", srvgg_pth, "-o", out], capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["tiny-x2.bin", "tiny-x2.json", "tiny-x2.param"]
    sidecar = json.loads((out / "tiny-x2.json").read_text())
    assert sidecar["scale"] == 2 and sidecar["fp16_weights"] is True
    assert sidecar["arch"] == "SRVGGNetCompact" and sidecar["arch_params"]["num_conv"] == 3
    assert sidecar["tile_pad"] == 3 + 2 and sidecar["source"] == "converted from tiny-x2.pth"
    assert "max abs" in stdout and "PSNR" in stdout
    # Loads in the runtime by path with no further flags; the scale comes from the sidecar.
    image = photo_crop("coffee.png", 50, 50, 20, 24)
    assert Upscaler(out / "tiny-x2.param", gpu=-1, threads=1).upscale(image).shape == (40, 48, 3)


def test_fp32_safetensors_with_a_name(tmp_path: Path, capsys) -> None:
    src = save_state_dict(small_model(rrdb_info(2, blocks=1)).state_dict(), tmp_path / "w.safetensors")
    args = [src, "-o", tmp_path / "o", "--fp32", "--name", "mine", "--license", "CC0-1.0", "--tile-pad", "30"]
    code, stdout, stderr = _run(args, capsys)
    assert code == 0, stderr
    sidecar = json.loads((tmp_path / "o" / "mine.json").read_text())
    assert sidecar["fp16_weights"] is False and sidecar["size_multiple"] == 2 and sidecar["license"] == "CC0-1.0"
    assert sidecar["tile_pad"] == 30
    assert (tmp_path / "o" / "mine.bin").read_bytes()[:4] == b"\0\0\0\0"  # fp32 weight tag


def test_half_precision_checkpoint(tmp_path: Path, capsys) -> None:
    """Community weights often come as fp16 tensors; they convert like fp32 ones."""
    half = {k: v.half() for k, v in small_model(srvgg_info(3)).state_dict().items()}
    code, stdout, stderr = _run([save_state_dict(half, tmp_path / "half.pth"), "-o", tmp_path / "o"], capsys)
    assert code == 0, stderr
    assert json.loads((tmp_path / "o" / "half.json").read_text())["scale"] == 3 and "max abs" in stdout


def test_no_verify_says_so(srvgg_pth: Path, tmp_path: Path, capsys) -> None:
    code, stdout, _ = _run([srvgg_pth, "-o", tmp_path / "o", "--no-verify"], capsys)
    assert code == 0 and "not verified" in stdout and "max abs" not in stdout


def test_official_ncnn_pair_is_imported_to_pth(tmp_path: Path, capsys) -> None:
    param = official_model_dir() / f"{OFFICIAL['realesr-animevideov3-x4'][0]}.param"
    code, stdout, stderr = _run([param.with_suffix(".bin"), "-o", tmp_path, "--name", "av3"], capsys)  # either half
    assert code == 0, stderr
    assert (tmp_path / "av3.pth").is_file() and "torch vs source ncnn: max abs" in stdout
    assert json.loads((tmp_path / "av3.json").read_text())["license"] == "BSD-3-Clause"


def _malicious(tmp_path: Path) -> tuple[Path, Path]:
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    path = tmp_path / "evil.pth"
    torch.save({"params_ema": {"conv_first.weight": Payload()}}, path)
    return path, sentinel


def _truncated(tmp_path: Path, srvgg_pth: Path) -> Path:
    data = srvgg_pth.read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    return path


def _mismatched_pair(tmp_path: Path) -> Path:
    folder = official_model_dir()
    param = tmp_path / "pair.param"
    shutil.copy(folder / f"{OFFICIAL['realesrgan-x4plus-anime'][0]}.param", param)
    shutil.copy(folder / f"{OFFICIAL['realesr-animevideov3-x4'][0]}.bin", param.with_suffix(".bin"))
    return param


def _truncated_bin(tmp_path: Path) -> Path:
    folder = official_model_dir()
    param = tmp_path / "cut.param"
    stem = OFFICIAL["realesr-animevideov3-x4"][0]
    shutil.copy(folder / f"{stem}.param", param)
    data = (folder / f"{stem}.bin").read_bytes()
    param.with_suffix(".bin").write_bytes(data[: len(data) - 1000])
    return param


def _unknown(tmp_path: Path) -> Path:
    return save_state_dict({"encoder.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "unknown.pth")


def _discriminator(tmp_path: Path) -> Path:
    return save_state_dict(UNetDiscriminatorSN(num_feat=8).state_dict(), tmp_path / "net_d.pth")


BAD_INPUTS = {
    "truncated": (lambda t, s: [_truncated(t, s)], "truncated"),
    "unknown-architecture": (lambda t, s: [_unknown(t)], "no known architecture"),
    "param-bin-mismatch": (lambda t, s: [_mismatched_pair(t)], "do not"),
    "truncated-bin": (lambda t, s: [_truncated_bin(t)], "do not match"),
    "missing-file": (lambda t, s: [t / "nope.pth"], "not found"),
    "discriminator": (lambda t, s: [_discriminator(t)], "not an image-to-image generator"),
    "dn-without-weights": (lambda t, s: [s, "--dn", "0.5"], "--dn and --dn-weights"),
    "dn-out-of-range": (lambda t, s: [s, "--dn", "1.5", "--dn-weights", s], "--dn"),
    "dn-other-architecture": (
        lambda t, s: [s, "--dn", "0.5", "--dn-weights", save_state_dict(small_model(srvgg_info(4)).state_dict(), t / "x4.pth")],
        "different architectures",
    ),
    "bad-route": (lambda t, s: [s, "--route", "onnx"], "--route"),
    "bad-name": (lambda t, s: [s, "--name", "../escape"], "not a plain file name"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_non_zero(case: str, srvgg_pth: Path, tmp_path: Path, capsys) -> None:
    make_args, expected = BAD_INPUTS[case]
    out = tmp_path / "out"
    code, stdout, stderr = _run([*make_args(tmp_path, srvgg_pth), "-o", out], capsys)
    assert code != 0
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert expected in stderr
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_malicious_pickle_is_refused_without_running(tmp_path: Path, capsys) -> None:
    evil, sentinel = _malicious(tmp_path)
    code, _, stderr = _run([evil, "-o", tmp_path / "out"], capsys)
    assert code == 1 and len(stderr.strip().splitlines()) == 1
    assert "refused" in stderr and not sentinel.exists()


def test_missing_output_is_a_usage_error(srvgg_pth: Path, capsys) -> None:
    code, _, stderr = _run([srvgg_pth], capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--output" in stderr


def test_failed_verification_writes_nothing(srvgg_pth: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import realesr_portable.convert.api as api

    real = api.write_ncnn

    def wrong_graph(info, state_dict, fp16=True):
        model = real(info, state_dict, fp16)
        bilinear = model.param_text.replace("0=1 1=2.0 2=2.0", "0=2 1=2.0 2=2.0")  # nearest -> bilinear
        assert bilinear != model.param_text
        return type(model)(bilinear, model.bin_bytes)

    monkeypatch.setattr(api, "write_ncnn", wrong_graph)
    out = tmp_path / "out"
    code, _, stderr = _run([srvgg_pth, "-o", out], capsys)
    assert code == 1 and len(stderr.strip().splitlines()) == 1
    assert "disagree" in stderr and (not out.exists() or not any(out.iterdir()))


def test_help_exits_zero(capsys) -> None:
    code, stdout, _ = _run(["--help"], capsys)
    assert code == 0 and "--dn-weights" in stdout


def test_blend_matches_torch_on_blended_weights(tmp_path: Path, capsys, photo_crop) -> None:
    info = srvgg_info(2)
    a, b = small_model(info, seed=1).state_dict(), small_model(info, seed=2).state_dict()
    pa, pb = save_state_dict(a, tmp_path / "a.pth"), save_state_dict(b, tmp_path / "b.pth")
    code, _, stderr = _run([pa, "--dn", "0.3", "--dn-weights", pb, "-o", tmp_path / "o", "--fp32"], capsys)
    assert code == 0, stderr
    model = build_model(info).eval()
    model.load_state_dict({k: 0.3 * a[k] + 0.7 * b[k] for k in a})
    chw = to_chw(photo_crop("rocket.jpg", 100, 150, 16, 16))
    ours = ncnn_run(load_files(tmp_path / "o" / "a.param"), chw)
    assert np.abs(ours - torch_run(model, chw)).max() < 1e-4
    assert "blended dn=0.3 with b.pth" in json.loads((tmp_path / "o" / "a.json").read_text())["source"]


@pytest.mark.parametrize("info", [rrdb_info(2, blocks=1, channels=1), srvgg_info(2, channels=4)], ids=["gray-rrdbnet", "rgba-srvgg"])
def test_non_rgb_models_convert(info, tmp_path: Path, capsys) -> None:
    src = save_state_dict(small_model(info).state_dict(), tmp_path / "m.pth")
    code, stdout, stderr = _run([src, "-o", tmp_path / "o"], capsys)
    assert code == 0, stderr
    sidecar = json.loads((tmp_path / "o" / "m.json").read_text())
    assert sidecar["in_channels"] == sidecar["out_channels"] == info.in_channels and "max abs" in stdout


def test_ctrl_c_exits_130_with_one_line_and_writes_nothing(srvgg_pth: Path, tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    import realesr_portable.convert.api as api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "write_ncnn", interrupted)
    out = tmp_path / "out"
    code, _, stderr = _run(["convert", srvgg_pth, "-o", out], capsys)
    assert code == 130 and len(stderr.strip().splitlines()) == 1
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() or not any(out.iterdir())
