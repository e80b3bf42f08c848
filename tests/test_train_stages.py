"""Both training stages on a fixed batch, divergence stop, checkpoints (atomic, keep N, full disk), init errors."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from realesr_portable.trainer import checkpoint as ckpt
from realesr_portable.trainer import config as c
from realesr_portable.trainer.distributed import setup
from realesr_portable.trainer.models import InitError, build_discriminator, build_generator, load_pretrained
from realesr_portable.trainer.stages import ESRGANStage, ESRNetStage, TrainingDiverged
from realesr_portable.trainer.vgg import random_vgg19_state
from train_support import fixed_batch, one_thread, tiny_config

INFO = setup("cpu")

_single_thread = pytest.fixture(autouse=True)(one_thread)


def _cfg(tmp_path: Path, stage: str, **train: object) -> c.Config:
    raw = tiny_config(tmp_path, tmp_path / "vgg.pth", stage=stage, train={"lr_g": 2e-3, "lr_d": 1e-3, "ema_decay": 0.5, **train})
    (tmp_path / "hr").mkdir(exist_ok=True)
    return c.from_dict(raw)


def _nets(cfg: c.Config) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return build_generator(cfg.network_g, cfg.scale), build_discriminator(cfg.network_d)


def test_esrnet_l1_decreases_on_fixed_batch(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "esrnet")
    g, _ = _nets(cfg)
    stage = ESRNetStage(cfg, g, INFO)
    lq, gt, gt_usm = fixed_batch()
    losses = [stage.step(lq, gt, gt_usm, it)["l_pix"] for it in range(1, 9)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]
    # L1 targets the USM-sharpened GT when l1_gt_usm is on
    with torch.no_grad():
        out = stage.generator()(lq)
    assert torch.nn.functional.l1_loss(out, gt_usm) < torch.nn.functional.l1_loss(out, gt) + 0.05
    assert stage.lr == pytest.approx(2e-3 * 0.5)  # MultiStepLR milestone 3, gamma 0.5
    ema_w, g_w = stage.ema.module.conv_first.weight, stage.generator().conv_first.weight
    assert not torch.equal(ema_w, g_w)  # EMA lags behind


def test_esrgan_step_trains_g_and_d(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "esrgan")
    g, d = _nets(cfg)
    d_before = {k: v.clone() for k, v in d.state_dict().items()}
    stage = ESRGANStage(cfg, g, INFO, d, random_vgg19_state(0))
    lq, gt, gt_usm = fixed_batch()
    logs = [stage.step(lq, gt, gt_usm, it) for it in range(1, 9)]
    assert set(logs[0]) >= {"l_pix", "l_percep", "l_g_gan", "l_d_real", "l_d_fake"}
    assert all(torch.isfinite(torch.tensor(list(rec.values()))).all() for rec in logs)
    assert logs[-1]["l_pix"] < logs[0]["l_pix"] and logs[-1]["l_percep"] < logs[0]["l_percep"]
    assert logs[-1]["l_d_real"] < logs[0]["l_d_real"]  # D learns to call the GT real
    grads = [p.grad for p in d.parameters()]
    assert all(gr is not None and float(gr.abs().sum()) > 0 for gr in grads)  # D receives gradients
    assert all(p.requires_grad for p in d.parameters())
    assert not torch.equal(d.state_dict()["conv1.weight_orig"], d_before["conv1.weight_orig"])
    state = stage.state_dict()
    assert {"params", "params_ema", "net_d", "opt_g", "opt_d", "sched_g", "sched_d"} <= set(state)


def test_esrgan_d_warmup_skips_g(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "esrgan", net_d_init_iters=2, perceptual_weight=0.0)
    g, d = _nets(cfg)
    stage = ESRGANStage(cfg, g, INFO, d, None)
    before = g.conv_first.weight.clone()
    lq, gt, gt_usm = fixed_batch()
    first = stage.step(lq, gt, gt_usm, 1)
    assert "l_pix" not in first and "l_d_real" in first and torch.equal(g.conv_first.weight, before)
    assert "l_pix" in stage.step(lq, gt, gt_usm, 3)


def test_non_finite_loss_stops_before_stepping(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "esrnet")
    g, _ = _nets(cfg)
    stage = ESRNetStage(cfg, g, INFO)
    lq, gt, gt_usm = fixed_batch()
    before = g.conv_first.weight.clone()
    lq[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="non-finite loss at iteration 7: l_pix=nan"):
        stage.step(lq, gt, gt_usm, 7)
    assert torch.equal(g.conv_first.weight, before)


def test_checkpoints_atomic_keep_last_and_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    for it in (2, 4, 6):
        ckpt.save(run, it, {"w": torch.full((3,), float(it))}, keep_last=2)
    assert [i for i, _ in ckpt.list_checkpoints(run)] == [4, 6]
    path, state = ckpt.load_latest(run)
    assert state["iteration"] == 6 and torch.equal(state["w"], torch.full((3,), 6.0))

    real_save = torch.save

    def disk_full(obj: object, fh: object) -> None:
        real_save(obj, fh)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    with pytest.raises(ckpt.CheckpointError, match=r"iteration 8 \(No space left on device\); the previous checkpoint .*iter_00000006.pth is intact"):
        ckpt.save(run, 8, {"w": torch.zeros(3)}, keep_last=2)
    monkeypatch.undo()
    assert [i for i, _ in ckpt.list_checkpoints(run)] == [4, 6]
    assert not [p for p in ckpt.checkpoint_dir(run).iterdir() if "tmp" in p.name]
    assert ckpt.load_latest(run)[1]["iteration"] == 6
    # a torn newest file (e.g. copied in by hand) falls back to the previous one
    ckpt.checkpoint_path(run, 10).write_bytes(b"torn")
    assert ckpt.load_latest(run)[1]["iteration"] == 6


def test_pretrained_init_errors(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "esrnet")
    g, _ = _nets(cfg)
    with pytest.raises(InitError, match="do not exist"):
        load_pretrained(g, str(tmp_path / "nope.pth"), "generator")
    other = build_generator({**cfg.network_g, "num_block": 3}, 4)
    torch.save({"params_ema": other.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(InitError, match=r"does not match the configured network: 30 unexpected key.*num_block=3"):
        load_pretrained(g, str(tmp_path / "other.pth"), "generator")
    msg = load_pretrained(g, str(tmp_path / "other.pth"), "generator", strict=False)
    assert "initialised" in msg and torch.equal(g.conv_first.weight, other.conv_first.weight)
    # a trainer checkpoint: its EMA generator (stage 1 -> stage 2), its D for pretrain_d
    d = build_discriminator(cfg.network_d)
    ckpt.save(tmp_path / "run", 5, {"params": other.state_dict(), "params_ema": g.state_dict(), "net_d": d.state_dict()}, 1)
    fresh, fresh_d = _nets(cfg)
    load_pretrained(fresh, str(ckpt.checkpoint_path(tmp_path / "run", 5)), "generator")
    load_pretrained(fresh_d, str(ckpt.checkpoint_path(tmp_path / "run", 5)), "discriminator")
    assert torch.equal(fresh.conv_last.weight, g.conv_last.weight)
    assert torch.equal(fresh_d.conv0.weight, d.conv0.weight)
    with pytest.raises(InitError, match="not an official model"):
        load_pretrained(g, "official:nonexistent", "generator")


def test_init_from_official_ncnn_model(tmp_path: Path) -> None:
    from realesr_portable.convert.importer import official_files

    cfg = _cfg(tmp_path, "esrnet")
    anime = build_generator({"type": "RRDBNet", "num_block": 6}, 4)
    msg = load_pretrained(anime, "official:realesrgan-x4plus-anime", "generator")
    assert "192/192 tensors" in msg
    param, _ = official_files("realesrgan-x4plus-anime")
    again = build_generator({"type": "RRDBNet", "num_block": 6}, 4)
    load_pretrained(again, str(param), "generator")  # the .param path (its .bin beside it)
    assert torch.equal(again.conv_first.weight, anime.conv_first.weight)
    tiny, _ = _nets(cfg)
    with pytest.raises(InitError, match="num_block=6"):
        load_pretrained(tiny, "official:realesrgan-x4plus-anime", "generator")
