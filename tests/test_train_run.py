"""Whole runs on CPU with a tiny config: resume after SIGKILL, 2-process DDP, export to the runtime, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from realesr_portable.trainer import checkpoint as ckpt
from realesr_portable.trainer import config as c
from realesr_portable.trainer import loop
from realesr_portable.trainer.cli import main as train_main
from train_support import PYTHON, REPO, TRAIN_PY, make_folder, make_vgg_file, one_thread, photo, script_env, tiny_config, write_config

_single_thread = pytest.fixture(autouse=True)(one_thread)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_run")
    make_folder(root / "hr", 56)
    make_folder(root / "val", 48, offset=120, names=("chelsea.png",), nested=False)
    make_vgg_file(root / "vgg.pth")
    return root


def _losses(run_dir: Path) -> dict[int, dict[str, float]]:
    """Per-iteration training records of a run; a later record (a resumed run) wins."""
    out = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "train":
            out[rec["iter"]] = {k: v for k, v in rec.items() if k.startswith(("l_", "out_"))}
    return out


def test_resume_after_sigkill_gives_the_same_losses(data_root: Path, tmp_path: Path) -> None:
    raw = tiny_config(tmp_path, data_root / "vgg.pth", stage="esrgan", train={"total_iter": 8},
                      data={"dataroot_gt": str(data_root / "hr")})
    reference = loop.run(c.from_dict({**raw, "name": "uninterrupted"}))
    assert reference.iteration == 8
    expected = _losses(tmp_path / "exp" / "uninterrupted")

    cfg_path = write_config(tmp_path / "tiny.yml", raw)
    run_dir = tmp_path / "exp" / "tiny"
    proc = subprocess.Popen([PYTHON, str(TRAIN_PY), "--config", str(cfg_path)], env=script_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not ckpt.checkpoint_path(run_dir, 4).exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = max(i for i, _ in ckpt.list_checkpoints(run_dir))
    assert done < 8, "the run finished before it was killed"

    resumed = subprocess.run([PYTHON, str(TRAIN_PY), "--config", str(cfg_path), "--resume", "auto"],
                             env=script_env(), capture_output=True, text=True, timeout=240, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {ckpt.checkpoint_path(run_dir, done)} at iteration {done}" in resumed.stdout
    got = _losses(run_dir)
    assert sorted(got) == list(range(1, 9))
    for it in range(done + 1, 9):
        assert got[it].keys() == expected[it].keys()
        for key, value in expected[it].items():
            assert got[it][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (it, key)
    a = ckpt.load(ckpt.checkpoint_path(run_dir, 8))
    b = ckpt.load(ckpt.checkpoint_path(tmp_path / "exp" / "uninterrupted", 8))
    for key, tensor in a["params_ema"].items():
        torch.testing.assert_close(tensor, b["params_ema"][key], rtol=1e-5, atol=1e-6)


def test_ddp_two_processes_gloo(data_root: Path, tmp_path: Path) -> None:
    raw = tiny_config(tmp_path, data_root / "vgg.pth", stage="esrgan", train={"total_iter": 2},
                      data={"dataroot_gt": str(data_root / "hr"), "batch_size": 1, "pool_size": 2},
                      checkpoint={"save_every": 2})
    cfg_path = write_config(tmp_path / "ddp.yml", raw)
    # `python -m torch.distributed.run` is torchrun without relying on its console script's location.
    proc = subprocess.run([PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(TRAIN_PY), "--config", str(cfg_path)],
                          env=script_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "exp" / "tiny"
    log = (run_dir / "train.log").read_text()
    assert "world 2 on cpu" in log and log.count("iter 2:") == 1  # one writer
    state = ckpt.load(ckpt.checkpoint_path(run_dir, 2))
    assert len(state["ranks"]) == 2  # each rank's own degradation stream and pool
    assert not torch.equal(state["ranks"][0]["rng"]["degradation"], state["ranks"][1]["rng"]["degradation"])
    assert not torch.equal(state["ranks"][0]["pool"]["gt"], state["ranks"][1]["pool"]["gt"])


def test_export_runs_in_the_runtime(data_root: Path, tmp_path: Path) -> None:
    from realesr_portable.api import Upscaler

    raw = tiny_config(tmp_path, data_root / "vgg.pth", stage="esrnet", train={"total_iter": 2},
                      data={"dataroot_gt": str(data_root / "hr")},
                      val={"every": 2, "dataroot_gt": str(data_root / "val"), "max_images": 1},
                      export={"at_end": True, "fp16": False, "name": "tiny_x4"})
    result = loop.run(c.from_dict(raw))
    run_dir = tmp_path / "exp" / "tiny"
    assert result.export is not None and result.export.param == run_dir / "export" / "tiny_x4.param"
    assert result.export.max_abs is not None and result.export.max_abs < 1e-4
    assert (run_dir / "visualization" / "val_00000002.png").is_file() and (run_dir / "curves.png").is_file()
    assert any(json.loads(line)["kind"] == "val" for line in (run_dir / "log.jsonl").read_text().splitlines())

    img = (photo("coffee.png")[100:116, 200:220].astype(np.float32) / 255.0)
    up = Upscaler(str(result.export.param), gpu=-1, fp32=True).upscale(img)
    state = ckpt.load(ckpt.checkpoint_path(run_dir, 2))
    from realesr_portable.trainer.models import build_generator

    g = build_generator(raw["network_g"], 4)
    g.load_state_dict(state["params_ema"])
    with torch.no_grad():
        ref = g(torch.from_numpy(img).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert up.shape == (64, 80, 3)
    # the runtime mirrors the borders before tiling, so compare the network itself through a Session
    from realesr_portable.device.select import select_devices
    from realesr_portable.model.catalog import resolve_model
    from realesr_portable.run.session import Session

    session = Session(resolve_model(str(result.export.param)), select_devices(-1)[0], fp32=True)
    out = session.run(np.ascontiguousarray(img.transpose(2, 0, 1))).clip(0, 1).transpose(1, 2, 0)
    assert float(np.abs(out - ref).max()) < 1e-4
    centre = (slice(24, 40), slice(24, 56))
    assert float(np.abs(up[centre] - ref[centre]).mean()) < 0.01

    # on demand: the newest checkpoint's EMA generator, named after its iteration
    cfg_path = write_config(tmp_path / "e.yml", raw)
    assert train_main(["--config", str(cfg_path), "--export"], "test") == 0
    again = resolve_model(str(run_dir / "export" / "tiny_x4_iter2.param"))
    assert again.spec.scale == 4 and again.bin.read_bytes() != b""


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = train_main(argv, "test")
    return code, capsys.readouterr().err.strip()


def test_empty_data_folder_and_nan_stop(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    raw = tiny_config(tmp_path, data_root / "vgg.pth", data={"dataroot_gt": str(tmp_path / "empty")})
    code, err = _cli(["--config", str(write_config(tmp_path / "a.yml", raw))], capsys)
    assert code == 1 and err.count("\n") == 0 and err.startswith("realesr-portable train: error: no images (png, jpg, jpeg, webp) found under")

    raw = tiny_config(tmp_path, data_root / "vgg.pth", stage="esrnet", train={"total_iter": 6, "lr_g": 1e30},
                      data={"dataroot_gt": str(data_root / "hr")}, checkpoint={"save_every": 1})
    code, err = _cli(["--config", str(write_config(tmp_path / "b.yml", raw))], capsys)
    assert code == 1 and err.count("\n") == 0, err
    assert err.startswith("realesr-portable train: error: non-finite loss at iteration ")
    it = int(err.split("iteration ")[1].split(":")[0])
    assert 1 < it <= 6
    last = ckpt.checkpoint_path(tmp_path / "exp" / "tiny", it - 1)
    assert f"last good checkpoint {last}" in err and ckpt.load(last)["iteration"] == it - 1

    code, err = _cli(["--config", str(write_config(tmp_path / "c.yml", {**raw, "path": {**raw["path"], "pretrain_g": "missing.pth"}})), "--set", "name=other"], capsys)
    # a missing file the config names is bad usage, found before any data or weights load
    assert code == 2 and "config key 'path.pretrain_g': missing.pth does not exist" in err and err.count("\n") == 0


def test_script_runs_from_a_plain_checkout_copy(data_root: Path, tmp_path: Path) -> None:
    """train.py bootstraps the package from the folders beside it (no install needed)."""
    import shutil

    copy = tmp_path / "checkout"
    for folder in ("portable", "archs", "convert", "trainer"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    raw = tiny_config(tmp_path, data_root / "vgg.pth", data={"dataroot_gt": str(data_root / "hr")})
    cfg_path = write_config(tmp_path / "d.yml", raw)
    proc = subprocess.run([PYTHON, str(copy / "trainer" / "train.py"), "--config", str(cfg_path), "--dry-run"],
                          env=script_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ok: tiny, stage esrgan, 4 training images" in proc.stdout
    assert f"code from checkout {copy}" in proc.stdout


@pytest.mark.parametrize("variant", ["paired_x4", "degrade_x2", "srvgg_x4"])
def test_other_modes_run(variant: str, data_root: Path, tmp_path: Path) -> None:
    """Paired LQ/GT data (USM from the degradation config), the x2 RRDBNet, the compact generator."""
    from PIL import Image

    raw = tiny_config(tmp_path, data_root / "vgg.pth", stage="esrnet", train={"total_iter": 2},
                      data={"dataroot_gt": str(data_root / "hr")})
    if variant == "paired_x4":
        lq_root = tmp_path / "lq"
        for p in (data_root / "hr").rglob("*.png"):
            target = lq_root / p.relative_to(data_root / "hr")
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(p) as im:
                im.resize((14, 14), Image.Resampling.BICUBIC).save(target)
        raw["data"].update(mode="paired", dataroot_lq=str(lq_root), pool_size=0, crop_size=0)
        raw["train"]["stage"] = "esrgan"
    elif variant == "degrade_x2":
        raw["scale"] = 2
    else:
        raw["network_g"] = {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 4}
    result = loop.run(c.from_dict(raw))
    assert result.iteration == 2 and all(np.isfinite(v) for v in result.last_losses.values())
    state = ckpt.load(ckpt.checkpoint_path(tmp_path / "exp" / "tiny", 2))
    if variant == "degrade_x2":
        assert state["params_ema"]["conv_first.weight"].shape[1] == 12  # pixel-unshuffled input
    if variant == "paired_x4":
        assert "net_d" in state and state["ranks"][0]["pool"] is None


def test_resume_refuses_settings_the_checkpoint_overrides(data_root: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A resumed run with another lr_g kept the checkpoint's (the optimizer state) while config.yml
    claimed the new one; a total_iter below the checkpoint's iteration logged "iterations 7..3"."""
    raw = tiny_config(tmp_path, data_root / "vgg.pth", stage="esrnet", train={"total_iter": 2},
                      data={"dataroot_gt": str(data_root / "hr")}, checkpoint={"save_every": 1}, export={"at_end": False})
    cfg_path = write_config(tmp_path / "r.yml", raw)
    assert train_main(["--config", str(cfg_path)], "test") == 0
    capsys.readouterr()
    newest = ckpt.checkpoint_path(tmp_path / "exp" / "tiny", 2)
    code, err = _cli(["--config", str(cfg_path), "--set", "train.total_iter=4", "--set", "train.lr_g=1e-7",
                      "--resume", "auto"], capsys)
    assert code == 1 and err.count("\n") == 0 and f"--resume from {newest}: train.lr_g" in err and "would not take effect" in err
    code, err = _cli(["--config", str(cfg_path), "--set", "train.total_iter=1", "--resume", "auto"], capsys)
    assert code == 1 and "train.total_iter 1 is below the checkpoint's iteration 2" in err, err
    assert train_main(["--config", str(cfg_path), "--set", "train.total_iter=3", "--resume", "auto"], "test") == 0
