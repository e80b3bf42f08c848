"""Community architectures through spandrel: random-weight instances of spandrel's own classes,
saved as state_dicts, go through `convert` (or are refused in one line) and match the module.

Small widths and depths keep each conversion to seconds; nothing is downloaded.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from export_support import load_files, ncnn_run, to_chw, torch_run
from realesr_portable.api import Upscaler
from realesr_portable.archs.families import rename_keys
from realesr_portable.convert.api import convert_file
from realesr_portable.convert.cli import main
from realesr_portable.convert.spandrel_arch import import_spandrel
from realesr_portable.convert.verify import psnr
from realesr_portable.convert.weights_io import save_state_dict


def _spandrel_class(arch: str, name: str) -> Callable[..., nn.Module]:
    import_spandrel()
    module = __import__(f"spandrel.architectures.{arch}", fromlist=[name])
    return getattr(module, name)


def _random(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build().eval()


def span() -> nn.Module:
    return _random(lambda: _spandrel_class("SPAN", "SPAN")(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2))


def compact() -> nn.Module:
    return _random(lambda: _spandrel_class("Compact", "Compact")(num_feat=8, num_conv=2, upscale=2))


def esrgan() -> nn.Module:
    """The first ESRGAN code's layout (`model.0`, `model.1.sub.N.RDB1...`), as spandrel builds it."""
    return _random(lambda: _spandrel_class("ESRGAN", "ESRGAN")(num_filters=8, num_blocks=1, scale=4))


def omnisr() -> nn.Module:
    return _random(lambda: _spandrel_class("OmniSR", "OmniSR")(num_feat=8, block_num=1, window_size=4, up_scale=2))


def swinir() -> nn.Module:
    return _random(lambda: _spandrel_class("SwinIR", "SwinIR")(
        img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=2.0, upscale=2,
        upsampler="pixelshuffledirect"))


def rcan() -> nn.Module:
    return _random(lambda: _spandrel_class("RCAN", "RCAN")(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16,
                                                           reduction=4))


def safmn() -> nn.Module:
    return _random(lambda: _spandrel_class("SAFMN", "SAFMN")(dim=8, n_blocks=1, upscaling_factor=2))


def _run(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _photo(photo_crop, height: int = 20, width: int = 24) -> np.ndarray:
    return to_chw(photo_crop("chelsea.png", 80, 150, height, width))


def test_spandrel_imports_without_leaving_a_torchvision_stand_in() -> None:
    """Where torchvision cannot import beside this torch, spandrel still loads, and afterwards
    `sys.modules` holds either the real torchvision or none (the stand-in is gone)."""
    spandrel = import_spandrel()
    assert "SPAN" in spandrel.MAIN_REGISTRY and "OmniSR" in spandrel.MAIN_REGISTRY
    tv = sys.modules.get("torchvision")
    assert tv is None or getattr(tv, "__file__", None)


def test_span_fp16_through_the_command_and_the_runtime(tmp_path: Path, capsys, photo_crop) -> None:
    net = span()
    src = save_state_dict(net.state_dict(), tmp_path / "in" / "span-x2.safetensors")
    code, stdout, stderr = _run(["convert", src, "-o", tmp_path / "out"], capsys)
    assert code == 0, stderr
    sidecar = json.loads((tmp_path / "out" / "span-x2.json").read_text())
    assert sidecar["arch"] == "SPAN" and sidecar["scale"] == 2 and sidecar["fp16_weights"] is True
    assert sidecar["arch_params"]["hyperparameters"]["feature_channels"] == 8
    assert "PSNR" in stdout and sidecar["tile_pad"] >= 0
    assert stdout.splitlines()[1].endswith(" dB (PSNR >= 45 dB)")  # the bound applied: not max abs < 1e-4
    # The runtime runs it by path, and its picture is the spandrel module's within fp16 storage
    # (the module run on the runtime's pre-pad: 10 px mirrored at the bottom and the right).
    image = photo_crop("chelsea.png", 80, 150, 20, 24)
    out = Upscaler(tmp_path / "out" / "span-x2.param", gpu=-1, threads=1).upscale(image)
    padded = np.pad(to_chw(image), ((0, 0), (0, 10), (0, 10)), mode="reflect")
    reference = torch_run(net, padded)[:, :40, :48]
    assert out.shape == (40, 48, 3)
    assert psnr(out.transpose(2, 0, 1).astype(np.float32) / 255.0, reference) >= 40.0  # uint8 output


def test_span_fp32_from_a_pth(tmp_path: Path, photo_crop) -> None:
    net = span()
    src = save_state_dict(net.state_dict(), tmp_path / "span.pth")  # read back with weights_only=True
    result = convert_file(src, tmp_path / "out", fp16=False)
    assert result.route == "pnnx" and result.spec.arch == "SPAN"
    assert result.psnr is not None and result.psnr >= 60.0
    chw = _photo(photo_crop)
    assert np.abs(ncnn_run(load_files(result.param), chw) - torch_run(net, chw)).max() < 1e-4


def test_compact_takes_the_projects_own_family(tmp_path: Path, photo_crop) -> None:
    """spandrel's Compact is SRVGGNetCompact: our direct writer, checked against spandrel's module."""
    net = compact()
    result = convert_file(save_state_dict(net.state_dict(), tmp_path / "compact.pth"), tmp_path / "out", fp16=False)
    assert result.route == "direct" and result.spec.arch == "SRVGGNetCompact"
    chw = _photo(photo_crop)
    assert np.abs(ncnn_run(load_files(result.param), chw) - torch_run(net, chw)).max() < 1e-4


def test_esrgan_old_and_new_key_names_give_the_same_model(tmp_path: Path, photo_crop) -> None:
    net = esrgan()
    old = save_state_dict(net.state_dict(), tmp_path / "old.pth")
    new = save_state_dict(rename_keys(net.state_dict()), tmp_path / "new.safetensors")
    assert "model.0.weight" in torch.load(old, weights_only=True)["params_ema"]
    assert "conv_first.weight" in load_file(new)
    results = [convert_file(src, tmp_path / src.stem, fp16=False) for src in (old, new)]
    assert [r.spec.arch for r in results] == ["RRDBNet", "RRDBNet"] and results[0].route == "direct"
    assert results[0].bin.read_bytes() == results[1].bin.read_bytes()
    chw = _photo(photo_crop, 16, 16)
    assert np.abs(ncnn_run(load_files(results[0].param), chw) - torch_run(net, chw)).max() < 1e-4


@pytest.mark.parametrize("build, arch", [(omnisr, "OmniSR"), (swinir, "SwinIR")], ids=["omnisr", "swinir"])
def test_window_attention_is_refused_in_one_line(build: Callable[[], nn.Module], arch: str, tmp_path: Path,
                                                 capsys) -> None:
    """Their 6-dimensional window reshapes have no ncnn layer: one line naming the architecture and
    the operators, exit 1, no file written. (OmniSR also shows the trace got past its autograd Function.)"""
    src = save_state_dict(build().state_dict(), tmp_path / f"{arch}.pth")
    code, stdout, stderr = _run(["convert", src, "-o", tmp_path / "out"], capsys)
    assert code == 1
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{arch} cannot be exported" in lines[0] and "Tensor.reshape" in lines[0], stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_module_that_scales_its_input_in_place_still_verifies(tmp_path: Path, capsys) -> None:
    """RCAN multiplies its input by rgb_range in place: verification must hand torch its own copy
    (it once compared ncnn on that 255x probe and refused a correct export at 6 dB)."""
    src = save_state_dict(rcan().state_dict(), tmp_path / "RCAN.pth")
    code, stdout, stderr = _run(["convert", src, "-o", tmp_path / "out", "--fp32"], capsys)
    assert code == 0, stderr
    sidecar = json.loads((tmp_path / "out" / "RCAN.json").read_text())
    assert sidecar["arch"] == "RCAN" and sidecar["scale"] == 2
    psnr = float(re.search(r"PSNR ([\d.]+) dB", stdout).group(1))
    assert psnr >= 60.0, stdout


def test_input_sized_adaptive_pooling_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    """SAFMN pools to a size that follows the input (adaptive max pooling): pnnx freezes the traced
    size into the graph, which the layer table refuses; one line, no files."""
    src = save_state_dict(safmn().state_dict(), tmp_path / "SAFMN.pth")
    code, stdout, stderr = _run(["convert", src, "-o", tmp_path / "out", "--fp32"], capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "SAFMN cannot be exported" in lines[0], stderr
    assert "Pooling takes no parameter" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_weights_name_both_attempts(tmp_path: Path, capsys) -> None:
    src = save_state_dict({"encoder.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "unknown.pth")
    code, _, stderr = _run(["convert", src, "-o", tmp_path / "out"], capsys)
    assert code == 1 and "no known architecture" in stderr and "spandrel knows no architecture" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_without_spandrel_the_refusal_says_how_to_get_it(tmp_path: Path) -> None:
    """A SPAN file where spandrel is not installed: one line naming the extra, exit 1."""
    src = save_state_dict(span().state_dict(), tmp_path / "span.pth")
    code = ("import sys; sys.modules['spandrel'] = None\n"  # `import spandrel` now fails as if not installed
            "from realesr_portable.convert.cli import main\n"
            f"sys.exit(main(['convert', {str(src)!r}, '-o', {str(tmp_path / 'out')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no known architecture" in done.stderr and "realesr-portable[spandrel]" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_refusal_is_one_line_outside_pytests_warning_capture(tmp_path: Path) -> None:
    """torch's two-line `torch.meshgrid` UserWarning (SwinIR builds with it) came before the one
    error line; pytest captures warnings, so only a real process shows it."""
    import subprocess
    import sys

    src = save_state_dict(swinir().state_dict(), tmp_path / "SwinIR.pth")
    proc = subprocess.run([sys.executable, "-m", "realesr_portable", "convert", str(src), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "SwinIR cannot be exported" in proc.stderr
