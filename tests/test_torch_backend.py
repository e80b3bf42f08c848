"""The torch backend (`--backend torch`): the same model files and the same pixels as ncnn.

CPU runs here are what CI checks (torch's CPU build); the CUDA tests at the end skip without a
GPU and check the GPU-only switches (fp16, CUDA graphs) against the same code on the CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from export_support import rrdb_info, small_model
from realesr_portable.run import backend as backend_mod
from realesr_portable.api import Upscaler
from realesr_portable.image.io import Picture
from realesr_portable.run.backend import BackendError, TorchOptions, torch_gpu_possible
from realesr_portable.cli import app
from realesr_portable.convert.api import convert_file
from realesr_portable.convert.weights_io import save_state_dict
from realesr_portable.distributed.worker import assigned_cuda_device
from realesr_portable.run.engine import Options

runner = CliRunner()
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA/ROCm GPU (the same path runs on the CPU above)")


def _diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


@pytest.mark.parametrize("name", ["realesr-animevideov3-x2", "realesr-animevideov3-x3", "realesrgan-x4plus-anime"])
def test_torch_on_the_cpu_equals_ncnn_on_the_cpu(name: str, photo_crop) -> None:
    """Official files imported into our torch architectures: within 1 level of ncnn on a photo
    (x3 is the x4 net plus the graph's bicubic resize)."""
    image = photo_crop("astronaut.png", 100, 150, 40, 52)
    ncnn = Upscaler(name, gpu=-1, fp32=True, backend="ncnn")
    torch_up = Upscaler(name, gpu=-1, backend="torch")
    assert torch_up.backend == "torch" and "backend torch" in torch_up.description and "fp32" in torch_up.description
    assert _diff(torch_up.upscale(image), ncnn.upscale(image)) <= 1


def test_gray_alpha_16_bit_outscale_and_tta_as_on_ncnn(photo_crop) -> None:
    """What the runtime does around the net is the same for both engines."""
    rgb = photo_crop("chelsea.png", 100, 150, 20, 24)
    rgba = np.dstack([rgb, np.linspace(0, 255, 20 * 24).reshape(20, 24).astype(np.uint8)])
    cases = [
        ({}, rgb[..., 0]),  # gray into an RGB model: the host path (channels adapted in numpy)
        ({"alpha": "model"}, rgba),
        ({}, rgb.astype(np.uint16) * 257),
        ({"outscale": 1.5}, rgb),
        ({"tta": True}, rgb),
    ]
    for kwargs, image in cases:
        ncnn = Upscaler("realesr-animevideov3-x2", gpu=-1, fp32=True, backend="ncnn", **kwargs).upscale(image)
        ours = Upscaler("realesr-animevideov3-x2", gpu=-1, backend="torch", **kwargs).upscale(image)
        limit = 257 if image.dtype == np.uint16 else 1
        assert _diff(ours, ncnn) <= limit, kwargs


def test_tiles_with_the_models_tile_pad_equal_the_whole_image(photo_crop) -> None:
    image = photo_crop("coffee.png", 60, 90, 44, 56)
    for name, tile in (("realesr-animevideov3-x4", 16), ("realesrgan-x4plus-anime", 24)):
        whole = Upscaler(name, gpu=-1, backend="torch")
        tiled = Upscaler(name, gpu=-1, backend="torch", tile=tile)
        assert tiled.engine.tile_size(tiled.options) == tile
        assert _diff(tiled.upscale(image), whole.upscale(image)) <= 1


def test_out_of_memory_splits_the_tile_without_seams(photo_crop, monkeypatch) -> None:
    """A tile that runs out of memory is cut in four with the tile_pad as context."""
    image = photo_crop("astronaut.png", 200, 200, 40, 48)
    up = Upscaler("realesr-animevideov3-x2", gpu=-1, backend="torch")
    whole = up.upscale(image)
    session = up.engine.sessions[0]
    call = session._call
    sizes: list[int] = []

    def small_only(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[2] * x.shape[3])
        if x.shape[2] * x.shape[3] > 50 * 50:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return call(x)

    monkeypatch.setattr(session, "_call", small_only)
    assert _diff(up.upscale(image), whole) <= 1
    assert len(sizes) > 4 and sizes[0] > 50 * 50 >= max(sizes[1:])


def test_channels_last_and_bf16_on_the_cpu(photo_crop) -> None:
    """The GPU's switches run the same code on the CPU: channels_last is exact, bf16 close."""
    image = photo_crop("astronaut.png", 120, 160, 32, 40)
    fp32 = Upscaler("realesr-animevideov3-x2", gpu=-1, backend="torch").upscale(image)
    nhwc = Upscaler("realesr-animevideov3-x2", gpu=-1, backend="torch", torch_options=TorchOptions(channels_last=True))
    assert "channels_last" in nhwc.description
    assert _diff(nhwc.upscale(image), fp32) <= 1
    bf16 = Upscaler("realesr-animevideov3-x2", gpu=-1, backend="torch", torch_options=TorchOptions(precision="bf16"))
    assert "bf16" in bf16.description
    err = bf16.upscale(image).astype(np.float64) - fp32
    assert 0 < np.abs(err).max() and 10 * np.log10(255**2 / np.mean(err**2)) >= 35


def test_dn_blends_the_same_weights_as_ncnn_for_a_converted_model(tmp_path: Path, photo_crop) -> None:
    """A user's converted RRDBNet x2 (pixel-unshuffle, size multiple 2) blended with its twin."""
    info = rrdb_info(2, blocks=1)
    paths = [save_state_dict(small_model(info, seed=s).state_dict(), tmp_path / f"m{s}.pth") for s in (4, 5)]
    a, b = (convert_file(p, tmp_path / "out", fp16=False, verify=False, tile_pad=8) for p in paths)
    image = photo_crop("chelsea.png", 90, 140, 21, 27)
    outs = [Upscaler(a.param, gpu=-1, fp32=True, backend=name, dn=0.3, dn_model=b.param).upscale(image)
            for name in ("ncnn", "torch")]
    assert _diff(outs[0], outs[1]) <= 1
    plain = Upscaler(a.param, gpu=-1, backend="torch").upscale(image)
    assert _diff(plain, outs[1]) > 1  # the blend changed the pixels


def test_cli_torch_backend_line_and_output(tmp_path: Path, photo_crop) -> None:
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(photo_crop("coffee.png", 100, 200, 16, 20)).save(src)
    args = ["-i", str(src), "-n", "realesr-animevideov3-x2", "-g", "-1"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "t.png"), "--backend", "torch"])
    assert result.exit_code == 0, result.output
    line = [row for row in result.output.splitlines() if "backend torch" in row]
    assert len(line) == 1 and "CPU" in line[0] and "fp32" in line[0] and "tile auto" in line[0]
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "n.png"), "--backend", "ncnn"]).exit_code == 0
    with Image.open(tmp_path / "t.png") as t, Image.open(tmp_path / "n.png") as n:
        assert _diff(np.asarray(t), np.asarray(n)) <= 1


def test_cli_torch_without_torch_is_one_line_and_exit_1(tmp_path: Path, photo_crop) -> None:
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(photo_crop("coffee.png", 100, 200, 8, 8)).save(src)
    code = ("import sys; sys.modules['torch'] = None\n"  # `import torch` now fails as if not installed
            "from realesr_portable.cli import main\n"
            f"sys.exit(main(['-i', {str(src)!r}, '-o', {str(tmp_path / 'b.png')!r}, '-n', 'realesr-animevideov3-x2', "
            "'--backend', 'torch']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "needs PyTorch" in done.stderr
    assert not (tmp_path / "b.png").exists()


def _unmappable_model(folder: Path) -> Path:
    """animevideov3-x2 with a Clip appended: ncnn runs it, no family writes it."""
    from realesr_portable.model.catalog import resolve_model

    files = resolve_model("realesr-animevideov3-x2")
    (folder / "odd.bin").write_bytes(files.bin.read_bytes())
    magic, counts, *layers = files.param.read_text().strip().splitlines()
    layer_count, blob_count = map(int, counts.split())
    layers[-1] = layers[-1].replace(" output ", " pre ")
    layers.append("Clip clip_out 1 1 pre output 0=0.0 1=1.0")
    (folder / "odd.param").write_text("\n".join([magic, f"{layer_count + 1} {blob_count + 1}", *layers]) + "\n")
    (folder / "odd.json").write_text(files.spec.__class__(**{**files.spec.__dict__, "name": "odd"}).to_json())
    return folder / "odd.param"


def test_a_model_the_importer_cannot_map(tmp_path: Path, photo_crop, monkeypatch) -> None:
    """`torch`: one line, exit 1; `auto` (where torch sees a GPU): a note, then ncnn's pixels."""
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(photo_crop("coffee.png", 100, 200, 12, 12)).save(src)
    args = ["-i", str(src), "-m", str(_unmappable_model(tmp_path)), "-g", "-1"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "t.png"), "--backend", "torch"])
    assert result.exit_code == 1 and not (tmp_path / "t.png").exists()
    assert [row for row in result.output.splitlines() if row.strip()] == [result.output.strip()]
    assert "cannot map" in result.output
    monkeypatch.setattr(backend_mod, "torch_gpu_possible", lambda: True)  # as on a GPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    result = runner.invoke(app, [*args[:-2], "-o", str(tmp_path / "auto.png")])  # -g auto
    assert result.exit_code == 0, result.output
    assert "note: the torch backend cannot map" in result.output and "backend ncnn" in result.output


def test_auto_without_a_gpu_picks_ncnn_and_no_torch() -> None:
    """`auto` on a machine where torch cannot reach a GPU never imports torch."""
    code = ("import sys\n"
            "from realesr_portable.run.backend import torch_gpu_possible\n"
            "from realesr_portable.api import Upscaler\n"
            "up = Upscaler('realesr-animevideov3-x2')\n"
            "assert torch_gpu_possible() or up.backend == 'ncnn', up.backend\n"
            "assert torch_gpu_possible() or 'torch' not in sys.modules\n"
            "up = Upscaler('realesr-animevideov3-x2', gpu=-1, backend='ncnn')\n"
            "print(up.backend, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split()[0] == "ncnn"
    if not torch_gpu_possible():
        assert done.stdout.split()[1] == "False"


def test_torch_gpu_possible_reads_the_build_without_importing_torch(tmp_path: Path, monkeypatch) -> None:
    import importlib.machinery
    import importlib.util

    fake = tmp_path / "torch"
    fake.mkdir()
    node = tmp_path / "nvidiactl"
    spec = importlib.machinery.ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(fake)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    monkeypatch.setattr(backend_mod, "_GPU_NODES", (str(node),))
    cases = [("cuda: Optional[str] = '12.4'\nhip: Optional[str] = None\n", True, True),
             ("cuda: Optional[str] = None\nhip: Optional[str] = '6.2.4'\n", True, True),
             ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", True, False),
             ("cuda: Optional[str] = '12.4'\n", False, os.name == "nt")]
    for text, has_node, expected in cases:
        (fake / "version.py").write_text(text)
        if has_node:
            node.touch()
        elif node.exists():
            node.unlink()
        assert torch_gpu_possible() is expected, text


def test_backend_values_and_the_ray_gpu_mapping() -> None:
    assert backend_mod.choose_backend("ncnn", 0) == "ncnn" and backend_mod.choose_backend("torch", -1) == "torch"
    assert backend_mod.choose_backend("auto", -1) == "ncnn"
    with pytest.raises(ValueError, match="expected one of"):
        backend_mod.choose_backend("cuda", 0)
    with pytest.raises(BackendError, match="one GPU per process"):
        Upscaler("realesr-animevideov3-x2", gpu="0,1", backend="torch")
    assert assigned_cuda_device([3], "3") == 0  # Ray's usual case: one visible GPU
    assert assigned_cuda_device([5], "4,5") == 1
    assert assigned_cuda_device([2], None) == 2  # Ray told not to set CUDA_VISIBLE_DEVICES
    assert assigned_cuda_device([7], "0,1") is None and assigned_cuda_device([], "0") is None


# --- on a CUDA/ROCm GPU (the lead's GPU run); each switch is also exercised on the CPU above ---


@needs_cuda
def test_cuda_fp16_is_within_one_level_of_fp32_inside(photo_crop) -> None:
    image = photo_crop("astronaut.png", 60, 60, 96, 128)
    fp32 = Upscaler("realesrgan-x4plus", gpu=0, fp32=True, backend="torch").upscale(image)
    fp16 = Upscaler("realesrgan-x4plus", gpu=0, backend="torch")
    assert "fp16" in fp16.description
    out = fp16.upscale(image)
    err = out.astype(np.float64) - fp32
    assert np.abs(err[16:-16, 16:-16]).max() <= 1 and 10 * np.log10(255**2 / max(np.mean(err**2), 1e-12)) >= 50


@needs_cuda
def test_cuda_switches_give_the_same_pixels(photo_crop) -> None:
    image = photo_crop("coffee.png", 100, 100, 64, 80)
    plain = Upscaler("realesr-animevideov3-x4", gpu=0, backend="torch").upscale(image)
    for options in (TorchOptions(channels_last=True), TorchOptions(cuda_graphs=True),
                    TorchOptions(channels_last=True, cuda_graphs=True)):
        up = Upscaler("realesr-animevideov3-x4", gpu=0, backend="torch", torch_options=options)
        assert _diff(up.upscale(image), plain) <= 1 and _diff(up.upscale(image), plain) <= 1  # capture, replay
    cpu = Upscaler("realesr-animevideov3-x4", gpu=-1, backend="torch").upscale(image)
    err = plain.astype(np.float64) - cpu
    assert 10 * np.log10(255**2 / max(np.mean(err**2), 1e-12)) >= 50  # GPU fp16 vs CPU fp32


@needs_cuda
def test_cuda_threads_share_one_session(photo_crop) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = [photo_crop("astronaut.png", 40 * i, 40 * i, 48, 64) for i in range(4)]
    up = Upscaler("realesr-animevideov3-x2", gpu=0, backend="torch", torch_options=TorchOptions(cuda_graphs=True))
    alone = [up.upscale(image) for image in images]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(up.upscale, images))
    assert all(_diff(a, b) == 0 for a, b in zip(alone, together))


def test_engine_options_reach_the_torch_engine(photo_crop) -> None:
    """`Options(tile=...)` of the runtime's engine tiles the torch net (no segmenter)."""
    up = Upscaler("realesr-animevideov3-x2", gpu=-1, backend="torch")
    assert up.engine.sessions[0].segmenter is None and up.engine.tile_size(Options(tile=32)) == 32
    assert up.engine.sessions[0].net_bytes_px > 0


def test_video_and_a_batch_through_the_torch_backend(tmp_path: Path, photo_crop) -> None:
    """`-i clip.mkv` and a folder of images run the torch engine and match ncnn's frames."""
    from PIL import Image

    from video_support import decode_rgb, make_clip

    images = [photo_crop("astronaut.png", 30 * i, 40 * i, 24, 32) for i in range(3)]
    make_clip(tmp_path / "clip.mkv", 3, codec="ffv1", pix_fmt="bgr0", images=images)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"im{i}.png")
    outs = {}
    for name in ("ncnn", "torch"):
        args = ["-n", "realesr-animevideov3-x2", "-g", "-1", "--backend", name, "--codec", "ffv1", "--pix-fmt", "bgr0"]
        result = runner.invoke(app, ["-i", str(tmp_path / "clip.mkv"), "-o", str(tmp_path / f"{name}.mkv"), *args])
        assert result.exit_code == 0 and f"backend {name}" in result.output, result.output
        result = runner.invoke(app, ["-i", *(str(tmp_path / f"im{i}.png") for i in range(3)), "-o", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
        outs[name] = decode_rgb(tmp_path / f"{name}.mkv"), [np.asarray(Image.open(tmp_path / name / f"im{i}.png")) for i in range(3)]
    for ncnn_frames, torch_frames in zip(*outs.values()):
        assert len(ncnn_frames) == len(torch_frames) == 3
        assert all(_diff(a, b) <= 1 for a, b in zip(ncnn_frames, torch_frames))


def test_ray_actors_run_the_torch_backend(tmp_path: Path, photo_crop) -> None:
    """`upscale_many(backend="torch")` on a local Ray: the bytes the torch CLI writes."""
    import ray
    from PIL import Image

    from realesr_portable.cli import main
    from realesr_portable.distributed import upscale_many

    good = tmp_path / "good"
    good.mkdir()
    for i in range(2):
        Image.fromarray(photo_crop("chelsea.png", 60 + 30 * i, 120, 20, 24)).save(good / f"p{i}.png")
    options = ["-n", "realesr-animevideov3-x2", "-g", "-1", "-q", "--backend", "torch"]
    assert main(["-i", str(good), "-o", str(tmp_path / "cli"), *options]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, address="local")
    try:
        summary = upscale_many(str(good), tmp_path / "ray", model="realesr-animevideov3-x2", gpu=-1, backend="torch",
                               progress=False)
        odd = upscale_many(str(good), tmp_path / "odd", model=str(_unmappable_model(tmp_path)), gpu=-1,
                           backend="torch", progress=False)
    finally:
        ray.shutdown()
    assert len(summary.done) == 2 and summary.failed == []
    # the actors got the backend: the torch engine's own refusal, on every row
    assert len(odd.failed) == 2 and all("cannot map" in reason for _, reason in odd.failed)
    for name in ("p0.png", "p1.png"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()


def test_an_fp16_overflow_is_redone_at_fp32(tmp_path: Path) -> None:
    """What fp16 on CUDA does to a model whose activations pass 65504 (black or NaN frames in
    other tools), on the CPU with fp16 asked for: NaN/inf is never written; the image is redone at
    fp32 with a note, equal to a plain fp32 run, and the Upscaler stays at fp32."""
    from export_support import srvgg_info

    net = small_model(srvgg_info(2, convs=2))
    with torch.no_grad():
        net.body[0].weight.mul_(1e5)  # ~1e5 activations: inf in fp16
        net.body[2].weight.mul_(1e-5)  # and back to image scale in fp32
    weights = save_state_dict(net.state_dict(), tmp_path / "hot.pth")
    rgb = (np.random.default_rng(4).random((20, 24, 3)) * 255).astype(np.uint8)
    half = Upscaler(weights, backend="torch", gpu=-1, torch_options=TorchOptions(precision="fp16"))
    assert half.engine.sessions[0].precision == "fp16"
    out = half.upscale_picture(Picture(rgb, None))
    exact = Upscaler(weights, backend="torch", gpu=-1).upscale(rgb)
    assert _diff(out.color, exact) <= 1 and int(exact.max()) - int(exact.min()) > 20  # a real picture
    assert half.engine.sessions[0].precision == "fp32"
    (note,) = [n for n in out.notes if "NaN/inf" in n]
    assert "running at fp32" in note and "\n" not in note
