"""Training speed on this machine: iterations/s of stage 1 (Real-ESRNet) and stage 2 (Real-ESRGAN).

One iteration = degradation of a GT batch (x4plus recipe) + paired crop + pool exchange + the
stage's optimisation step (G; in stage 2 also VGG19 perceptual, D and EMA). Batch 1, gt_size
128, CPU, fixed seeds; VGG19 weights are random (same cost as ImageNet's).

Run explicitly: `OMP_NUM_THREADS=1 .venv/bin/python -m pytest bench/bench_train.py -m "slow or not slow"`
(the full x4plus cases are `slow`). On busy shared cores one thread gives stable numbers: with
2 threads (load 5-6 on 2 cores) the tiny cases' medians were 8-17x worse (OpenMP threads
spinning at barriers between many small ops) while x4plus stage 2 was 1.9x faster.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from realesr_portable.trainer import config as c
from realesr_portable.trainer.distributed import setup
from realesr_portable.trainer.loop import BatchMaker
from realesr_portable.trainer.models import build_discriminator, build_generator
from realesr_portable.trainer.stages import ESRGANStage, ESRNetStage
from realesr_portable.trainer.vgg import random_vgg19_state

REPO = Path(__file__).resolve().parents[1]
NETS = {
    "tiny": {"type": "RRDBNet", "num_feat": 16, "num_block": 2, "num_grow_ch": 8},
    "x4plus": {"type": "RRDBNet", "num_feat": 64, "num_block": 23, "num_grow_ch": 32},
}
D_NETS = {"tiny": {"type": "UNetDiscriminatorSN", "num_feat": 16}, "x4plus": {"type": "UNetDiscriminatorSN", "num_feat": 64}}


def _setup(size: str, stage: str) -> tuple[ESRNetStage, BatchMaker, torch.Tensor]:
    preset = REPO / "trainer" / "presets" / ("realesrnet_x4plus.yml" if stage == "esrnet" else "realesrgan_x4plus.yml")
    cfg = c.load(preset, [
        "data.batch_size=1", "data.gt_size=128", "data.pool_size=4", "device=cpu", "path.pretrain_g=",
    ])
    cfg.network_g, cfg.network_d = dict(NETS[size]), dict(D_NETS[size])
    info = setup("cpu")
    torch.manual_seed(0)
    g = build_generator(cfg.network_g, 4)
    if stage == "esrnet":
        runner: ESRNetStage = ESRNetStage(cfg, g, info)
    else:
        runner = ESRGANStage(cfg, g, info, build_discriminator(cfg.network_d), random_vgg19_state(0))
    maker = BatchMaker(cfg, info.device, torch.Generator().manual_seed(0))
    gt = torch.rand(1, 3, 200, 200, generator=torch.Generator().manual_seed(1))
    return runner, maker, gt


def _bench(benchmark, size: str, stage: str, rounds: int) -> None:
    runner, maker, gt = _setup(size, stage)
    state = {"it": 0}

    def one_iteration() -> dict[str, float]:
        state["it"] += 1
        lq, g, g_usm = maker({"gt": gt})
        return runner.step(lq, g, g_usm, state["it"])

    for _ in range(2):  # warm-up: first calls allocate and pick kernels
        one_iteration()
    losses = benchmark.pedantic(one_iteration, rounds=rounds, iterations=1)
    benchmark.extra_info["iters_per_s"] = 1.0 / benchmark.stats.stats.median
    benchmark.extra_info["threads"] = torch.get_num_threads()
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


@pytest.mark.parametrize("stage", ["esrnet", "esrgan"])
def test_tiny(benchmark, stage: str) -> None:
    _bench(benchmark, "tiny", stage, rounds=10)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["esrnet", "esrgan"])
def test_x4plus(benchmark, stage: str) -> None:
    _bench(benchmark, "x4plus", stage, rounds=3)


def test_degradation_only(benchmark) -> None:
    """The data side of one iteration alone (x4plus degradations + crop + pool), for comparison."""
    _, maker, gt = _setup("tiny", "esrnet")
    for _ in range(2):
        maker({"gt": gt})
    lq, _, _ = benchmark.pedantic(maker, args=({"gt": gt},), rounds=10, iterations=1)
    benchmark.extra_info["iters_per_s"] = 1.0 / benchmark.stats.stats.median
    assert lq.shape == (1, 3, 32, 32)
