"""The speed options on the CPU: typed keys, equal losses with each option on and off, the
deferred non-finite check of fused Adam, no tensor read back inside a step, the timing records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from realesr_portable.trainer import config as c
from realesr_portable.trainer import loop
from realesr_portable.trainer.distributed import setup
from realesr_portable.trainer.ema import ModelEMA
from realesr_portable.trainer.models import build_discriminator, build_generator
from realesr_portable.trainer.speedups import fuse_dense_blocks
from realesr_portable.trainer.stages import ESRGANStage, ESRNetStage, TrainingDiverged
from realesr_portable.trainer.timing import PhaseTimer
from realesr_portable.trainer.vgg import random_vgg19_state
from train_support import fixed_batch, make_folder, make_vgg_file, one_thread, tiny_config

INFO = setup("cpu")
_single_thread = pytest.fixture(autouse=True)(one_thread)


def _cfg(tmp_path: Path, stage: str = "esrgan", **speed: object) -> c.Config:
    raw = tiny_config(tmp_path, tmp_path / "vgg.pth", stage=stage, train={"lr_g": 2e-3, "lr_d": 1e-3, "ema_decay": 0.5},
                      speed=dict(speed))
    return c.from_dict(raw)


def _esrgan(cfg: c.Config) -> ESRGANStage:
    torch.manual_seed(0)
    g, d = build_generator(cfg.network_g, cfg.scale), build_discriminator(cfg.network_d)
    fuse_dense_blocks(g, cfg.speed.enabled("fused_dense", INFO.device))
    return ESRGANStage(cfg, g, INFO, d, random_vgg19_state(0))


def _losses(cfg: c.Config, steps: int = 4) -> list[dict[str, float]]:
    stage = _esrgan(cfg)
    lq, gt, gt_usm = fixed_batch()
    return [{k: float(v) for k, v in stage.step(lq, gt, gt_usm, it).items()} for it in range(1, steps + 1)]


def test_speed_keys_typed_with_auto_defaults(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    s = cfg.speed
    assert (s.cudnn_benchmark, s.fused_adam, s.fused_dense, s.channels_last, s.compile) == ("auto", "auto", "auto", "off", "off")
    assert cfg.train.amp_dtype == "bfloat16" and s.batched_degradations == "auto"
    assert s.enabled("fused_adam", torch.device("cuda")) and not s.enabled("fused_adam", torch.device("cpu"))
    assert not s.enabled("compile", "cuda")
    assert c.with_overrides(cfg, ["speed.fused_adam=off"]).speed.fused_adam == "off"  # YAML 1.1 bool
    on = c.with_overrides(cfg, ["speed.compile=on", "speed.check_every=50", "train.amp_dtype=float16"])
    assert on.speed.enabled("compile", "cpu") and on.speed.check_every == 50 and on.speed.compile_mode == "default"
    assert c.with_overrides(cfg, ["speed.compile_mode=reduce-overhead"]).speed.compile_mode == "reduce-overhead"
    for bad, name in (("speed.compile=fast", "speed.compile"), ("speed.check_every=-1", "speed.check_every"),
                      ("train.amp_dtype=fp8", "train.amp_dtype"), ("speed.compile_mode=fast", "speed.compile_mode"), ("speed.cuda_graphs=on", "speed.cuda_graphs")):
        with pytest.raises(c.ConfigError, match=name):
            c.with_overrides(cfg, [bad])


def test_fused_dense_blocks_are_bitwise_equal(tmp_path: Path) -> None:
    off = _losses(_cfg(tmp_path, fused_dense="off"))
    on = _losses(_cfg(tmp_path, fused_dense="on"))
    assert on == off


@pytest.mark.parametrize(("key", "rtol"), [("fused_adam", 1e-4), ("channels_last", 1e-4)])
def test_option_on_gives_the_same_losses(tmp_path: Path, key: str, rtol: float) -> None:
    """Each option alone: 4 steps of stage 2, every loss equal to float rounding (fused Adam
    and NHWC convolutions sum in another order)."""
    off = _losses(_cfg(tmp_path, **{key: "off"}))
    on = _losses(_cfg(tmp_path, **{key: "on"}))
    for a, b in zip(off, on):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=rtol, abs=1e-6), (k, a[k], b[k])
    assert off[-1]["l_pix"] < off[0]["l_pix"]  # the steps really trained


def test_fused_adam_skips_a_non_finite_step_and_reports_it_later(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "esrnet", fused_adam="on")
    torch.manual_seed(0)
    g = build_generator(cfg.network_g, cfg.scale)
    stage = ESRNetStage(cfg, g, INFO)
    lq, gt, gt_usm = fixed_batch()
    stage.step(lq, gt, gt_usm, 6)
    stage.check_finite()  # nothing to report yet
    before = {k: v.clone() for k, v in g.state_dict().items()}
    bad = lq.clone()
    bad[0, 0, 0, 0] = float("nan")
    stage.step(bad, gt, gt_usm, 7)  # no host check here: the step is skipped on the device
    assert all(torch.equal(v, before[k]) for k, v in g.state_dict().items())
    assert int(stage.opt_g.state[g.conv_first.weight]["step"]) == 1  # the skipped step is not counted
    stage.step(lq, gt, gt_usm, 8)  # finite again: trains on
    assert not torch.equal(g.conv_first.weight, before["conv_first.weight"])
    with pytest.raises(TrainingDiverged, match="non-finite loss at iteration 7: l_pix=nan"):
        stage.check_finite()


def test_fused_step_reads_no_tensor_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With fused Adam a stage-2 step turns no tensor into a Python value (on CUDA each would
    be a host sync); the plain path does, to check each loss before stepping."""
    reads: list[str] = []
    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        original = getattr(torch.Tensor, name)

        def spy(self: torch.Tensor, *a: object, _o=original, _n=name) -> object:
            reads.append(_n)
            return _o(self, *a)

        monkeypatch.setattr(torch.Tensor, name, spy)
    lq, gt, gt_usm = fixed_batch()
    for fused, expect_reads in (("on", False), ("off", True)):
        stage = _esrgan(_cfg(tmp_path, fused_adam=fused))
        stage.step(lq, gt, gt_usm, 1)  # first step: optimiser state is created
        reads.clear()
        logs = stage.step(lq, gt, gt_usm, 2)
        assert bool(reads) == expect_reads, (fused, reads)
        assert all(isinstance(v, torch.Tensor) for v in logs.values())


def test_ema_update_equals_the_per_tensor_formula() -> None:
    torch.manual_seed(1)
    net = build_generator({"type": "RRDBNet", "num_feat": 8, "num_block": 1, "num_grow_ch": 4}, 4)
    ema = ModelEMA(net, 0.9)
    want = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    ema.update(net)
    cur = net.state_dict()
    for k, v in want.items():
        v.mul_(0.9).add_(cur[k], alpha=1.0 - 0.9)
        assert torch.equal(ema.state_dict()[k], v), k


def test_phase_timer_reports_ms_per_iteration() -> None:
    timer = PhaseTimer(torch.device("cpu"))
    for _ in range(3):
        with timer.phase("data"):
            torch.ones(1)
        with timer.phase("g"):
            torch.randn(200, 200) @ torch.randn(200, 200)
        timer.step_done()
    rep = timer.report()
    assert set(rep) == {"ms_data", "ms_degrade", "ms_g", "ms_d", "ms_other", "data_share", "iters_per_s"}
    assert rep["ms_g"] > 0 and rep["ms_degrade"] == 0 and 0 <= rep["data_share"] < 1 and rep["iters_per_s"] > 0
    assert timer.report()["ms_g"] == 0  # a new interval starts empty
    with pytest.raises(ValueError, match="unknown phase"):
        with timer.phase("vgg"):
            pass


def test_run_logs_the_time_split_per_print_interval(tmp_path: Path) -> None:
    make_folder(tmp_path / "hr", 56)
    make_vgg_file(tmp_path / "vgg.pth")
    raw = tiny_config(tmp_path, tmp_path / "vgg.pth", train={"total_iter": 4}, logging={"print_every": 2, "plot": False},
                      checkpoint={"save_every": 100}, speed={"fused_adam": "on", "check_every": 1})
    import io

    stream = io.StringIO()
    result = loop.run(c.from_dict(raw), log_stream=stream)
    recs = [json.loads(line) for line in (tmp_path / "exp" / "tiny" / "log.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    assert [r["iter"] for r in train] == [2, 4]
    for r in train:
        assert r["ms_g"] > 0 and r["ms_d"] > 0 and r["ms_degrade"] > 0 and r["ms_data"] >= 0 and r["ms_other"] >= 0
        assert 0 <= r["data_share"] < 1 and r["iters_per_s"] > 0
        total = sum(r[k] for k in ("ms_data", "ms_degrade", "ms_g", "ms_d", "ms_other"))
        assert total == pytest.approx(1000 / r["iters_per_s"], rel=0.05)
    assert "ms/it data" in stream.getvalue() and "data wait" in stream.getvalue()
    assert not (tmp_path / "exp" / "tiny" / "curves.png").exists()  # logging.plot=false: no matplotlib needed
    assert set(result.last_losses) >= {"l_pix", "l_d_real"} and all(isinstance(v, float) for v in result.last_losses.values())


def test_gpu_bench_script_runs_its_paths_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bench/bench_train_gpu.py --tiny: every part and the first loop rows, with tiny nets on the
    CPU, so the script the GPU run depends on cannot rot unnoticed."""
    import importlib.util

    from train_support import REPO

    spec = importlib.util.spec_from_file_location("bench_train_gpu", REPO / "bench" / "bench_train_gpu.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    assert bench.main(["--tiny", "--iters", "2", "--every", "1", "--repeats", "1", "--max-loops", "2",
                       "--seconds", "300", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| G step with L1 + VGG + D(fake) |" in text and "| stage 1, defaults |" in text
    result = json.loads(out.read_text())
    assert len(result["parts"]) == 7 and all(row[1] > 0 for row in result["parts"])
    assert [r["label"] for r in result["loops"]] == ["stage 2, defaults", "stage 1, defaults"]
    assert all(r["it_s"] > 0 and r["ms_g"] > 0 for r in result["loops"])
