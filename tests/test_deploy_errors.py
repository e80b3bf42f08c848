"""Bad model files and bad flags: the C++ runner says what is wrong in one line and exits non-zero."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from deploy_support import build_runner, model_dir, run_cli
from realesr_portable.model.catalog import resolve_model


@pytest.fixture(scope="module")
def runner() -> Path:
    return build_runner("x86_64")


def _truncate_bin(param: Path) -> None:
    data = param.with_suffix(".bin").read_bytes()
    param.with_suffix(".bin").write_bytes(data[: len(data) // 2])


def _extend_bin(param: Path) -> None:
    with open(param.with_suffix(".bin"), "ab") as f:
        f.write(b"\0" * 64)


def _corrupt_param(param: Path) -> None:
    lines = param.read_text().splitlines()
    lines[5] = "Convolution conv_broken 1"  # a layer line cut short
    param.write_text("\n".join(lines) + "\n")


def _unknown_layer(param: Path) -> None:
    text = param.read_text().replace("PReLU", "TotallyNewLayer", 1)
    param.write_text(text)


def _layer_left_out(param: Path) -> None:
    """BatchNorm (the Python runtime's table has it) with the right statistics count: a valid
    graph whose layer this ncnn build switched off."""
    text = param.read_text().replace("PReLU   ", "BatchNorm", 1)
    param.write_text(text)


def _sidecar(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(param: Path) -> None:
        path = param.with_suffix(".json")
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return apply


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing bin": (lambda p: p.with_suffix(".bin").unlink(), "cannot read the model weights"),
    "truncated bin": (_truncate_bin, "ends inside layer"),
    "bin too long": (_extend_bin, "do not belong together"),
    "not a param": (lambda p: p.write_text("hello\n"), "missing magic number"),
    "corrupt param": (_corrupt_param, "malformed layer header"),
    "unknown layer": (_unknown_layer, "unknown layer type 'TotallyNewLayer'"),
    "layer not in this ncnn": (_layer_left_out, "BatchNorm is not built into this ncnn"),
    "missing sidecar": (lambda p: p.with_suffix(".json").unlink(), "no sidecar beside the model; `realesr-portable models DIR --write-sidecars`"),
    "sidecar not json": (lambda p: p.with_suffix(".json").write_text("{scale: 2"), "not valid JSON"),
    "scale is a string": (_sidecar(lambda d: d.update(scale="2")), "'scale' must be an integer"),
    "value_range wrong": (_sidecar(lambda d: d.update(value_range="0-1")), "'value_range' must be two numbers"),
    "unknown key": (_sidecar(lambda d: d.update(colour="red")), "unknown sidecar keys: colour"),
    "wrong blob": (_sidecar(lambda d: d.update(input_blob="in0")), "exactly one Input layer producing 'in0'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_model_files(runner: Path, photo_crop, tmp_path: Path, case: str) -> None:
    param = model_dir(resolve_model("realesr-animevideov3-x2"), tmp_path / "model")
    damage, message = CASES[case]
    damage(param)
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(photo_crop("rocket.jpg", 100, 100, 12, 12)).save(src)
    proc = run_cli(runner, ["-i", src, "-o", out, "-m", param, "-t", "0", "--fp32"])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out.png*"))


def test_good_files_work_and_bad_flags_are_refused(runner: Path, photo_crop, tmp_path: Path) -> None:
    param = model_dir(resolve_model("realesr-animevideov3-x2"), tmp_path / "model")
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(photo_crop("rocket.jpg", 100, 100, 12, 10)).save(src)
    ok = run_cli(runner, ["-i", src, "-o", out, "-m", param])
    assert ok.returncode == 0, ok.stderr
    with Image.open(out) as im:
        assert im.size == (20, 24) and im.mode == "RGB"
    for args, message in (
        (["-i", src, "-o", out], "-i, -o and -m are required"),
        (["-i", src, "-o", out, "-m", param, "-t", "big"], "-t needs an integer"),
        (["-i", tmp_path / "none.png", "-o", out, "-m", param], "cannot read the image"),
        (["-i", param, "-o", out, "-m", param], "not an image"),
        (["-i", src, "-o", out, "-m", param, "-g", "7"], "no Vulkan device 7"),
    ):
        proc = run_cli(runner, args)
        assert proc.returncode != 0 and proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
