"""`--backend torch -m model.pth`: PyTorch weights run directly, without converting them first.

On the CPU (torch's CPU build, as in CI): a family of the project's own equals ncnn on its
converted files within 1 level; a spandrel architecture equals its own module; what cannot be
mapped, and a weights file asked of ncnn, are one line and a non-zero exit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from export_support import rrdb_info, small_model, to_chw, torch_run
from realesr_portable.api import Upscaler
from realesr_portable.cli import app
from realesr_portable.convert.api import convert_file
from realesr_portable.convert.spandrel_arch import import_spandrel
from realesr_portable.convert.weights_io import save_state_dict

runner = CliRunner()


def _diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def test_a_pth_of_our_family_equals_ncnn_on_its_converted_files(tmp_path: Path, photo_crop) -> None:
    """RRDBNet x2 (pixel-unshuffle: size multiple 2): the spec comes from the weights, the tile pad
    is measured on the torch module, and a tiled run stays within 1 level of ncnn's whole run."""
    pth = save_state_dict(small_model(rrdb_info(2, blocks=1), seed=3).state_dict(), tmp_path / "rrdb-x2.pth")
    image = photo_crop("chelsea.png", 90, 140, 21, 27)
    direct = Upscaler(pth, gpu=-1, backend="torch")
    assert direct.backend == "torch" and "backend torch" in direct.description
    spec = direct.spec
    assert (spec.scale, spec.size_multiple, spec.arch) == (2, 2, "RRDBNet") and spec.tile_pad > 0
    converted = convert_file(pth, tmp_path / "out", fp16=False)
    ncnn = Upscaler(converted.param, gpu=-1, fp32=True, backend="ncnn")
    assert _diff(direct.upscale(image), ncnn.upscale(image)) <= 1
    tiled = Upscaler(pth, gpu=-1, backend="torch", tile=16)
    assert _diff(tiled.upscale(image), ncnn.upscale(image)) <= 1


def _span() -> object:
    from spandrel.architectures.SPAN import SPAN

    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)


def _swinir() -> object:
    """A transformer: ncnn refuses it (`convert` says why), the torch backend runs it."""
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=2.0, upscale=2,
                  upsampler="pixelshuffledirect")


@pytest.mark.parametrize("build", [_span, _swinir], ids=["span", "swinir"])
def test_a_spandrel_architecture_runs_directly(build, tmp_path: Path, photo_crop) -> None:
    """spandrel's own classes, saved as safetensors: the command line runs them on the CPU, and
    the picture is the module's (run on the runtime's pre-pad) within 1 level."""
    import torch

    import_spandrel()
    torch.manual_seed(0)
    net = build().eval()
    weights = save_state_dict(net.state_dict(), tmp_path / "net.safetensors")
    image = photo_crop("coffee.png", 100, 200, 16, 20)
    Image.fromarray(image).save(tmp_path / "a.png")
    args = ["-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "-m", str(weights), "-g", "-1", "--backend", "torch"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "net x2 on CPU" in result.output and "backend torch" in result.output
    padded = np.pad(to_chw(image), ((0, 0), (0, 10), (0, 10)), mode="reflect")
    expected = np.clip(np.rint(torch_run(net, padded)[:, :32, :40] * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    with Image.open(tmp_path / "b.png") as out:
        assert _diff(np.asarray(out), expected) <= 1


@pytest.mark.parametrize("backend, extra, needle, code", [
    ("torch", [], "the torch backend cannot map this model", 1),
    ("auto", [], "the torch backend cannot map this model", 1),  # no ncnn to fall back on for weights
    ("ncnn", [], "PyTorch weights run with --backend torch", 2),
    ("torch", ["--dn", "0.5", "--dn-model", "other.param"], "--dn blends ncnn models", 2),
], ids=["unknown-architecture", "auto", "asked-of-ncnn", "dn"])
def test_weights_it_cannot_run_are_one_line(backend: str, extra: list[str], needle: str, code: int,
                                            tmp_path: Path, photo_crop) -> None:
    import torch

    weights = save_state_dict({"encoder.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "odd.pth")
    Image.fromarray(photo_crop("coffee.png", 100, 200, 8, 8)).save(tmp_path / "a.png")
    args = ["-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "-m", str(weights), "-g", "-1",
            "--backend", backend, *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == code and not (tmp_path / "b.png").exists()
    assert [row for row in result.output.splitlines() if row.strip()] == [result.output.strip()]
    assert needle in result.output and "Traceback" not in result.output


def test_weights_without_torch_are_one_line_and_exit_1(tmp_path: Path, photo_crop) -> None:
    """Where torch is not installed, a weights file says what it needs (and nothing is written)."""
    weights = save_state_dict(small_model(rrdb_info(2, blocks=1)).state_dict(), tmp_path / "w.pth")
    Image.fromarray(photo_crop("coffee.png", 100, 200, 8, 8)).save(tmp_path / "a.png")
    code = ("import sys; sys.modules['torch'] = None\n"  # `import torch` now fails as if not installed
            "from realesr_portable.cli import main\n"
            f"sys.exit(main(['-i', {str(tmp_path / 'a.png')!r}, '-o', {str(tmp_path / 'b.png')!r}, "
            f"'-m', {str(weights)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "needs PyTorch" in done.stderr and "w.pth" in done.stderr
    assert not (tmp_path / "b.png").exists()
