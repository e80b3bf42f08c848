"""Degradation pipeline throughput: LQ images/s for batches of 16 GT crops of 256x256.

Run explicitly: `.venv/bin/python -m pytest bench/bench_degradations.py -s` (prints a per-step
breakdown). Target (issue 4): >= 20 images/s with 2 CPU threads on a quiet 2-core machine; the
reference (basicsr 1.4.2 + realesrgan 0.3.0) managed ~2.6 images/s there (docs/architecture.md).

Metadata recorded in extra_info: images/s, threads, torch version, the machine's load average
(the numbers mean little on a busy machine), OMP_WAIT_POLICY, and per-step milliseconds.

On a machine shared with other busy processes, run with `OMP_WAIT_POLICY=PASSIVE`: OpenMP's
default spin-waiting made 2 threads ~5x *slower* than 1 thread here at load average 10
(3.7 vs 25 images/s); passive waiting gave 21 images/s with 2 threads at the same load.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from realesr_portable.trainer.degradations import Degrader

BATCH, SIZE, THREADS = 16, 256, 2
_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")


def gt_batch() -> torch.Tensor:
    """16 real-photo crops of 256x256 (fixed positions), float in [0, 1]."""
    data = Path(skimage.__file__).parent / "data"
    crops = []
    for i in range(BATCH):
        with Image.open(data / _PHOTOS[i % len(_PHOTOS)]) as im:
            a = np.asarray(im.convert("RGB"))
        top = (37 * i) % (a.shape[0] - SIZE)
        left = (53 * i) % (a.shape[1] - SIZE)
        crops.append(a[top : top + SIZE, left : left + SIZE])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255).contiguous()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _meta(benchmark) -> None:
    benchmark.extra_info["threads"] = THREADS
    benchmark.extra_info["torch"] = torch.__version__
    benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    benchmark.extra_info["cpus"] = os.cpu_count()
    benchmark.extra_info["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "")


def test_pipeline_images_per_second(benchmark, two_threads):
    gt = gt_batch()
    degrader = Degrader()
    seeds = iter(range(10_000))
    degrader(gt, torch.Generator().manual_seed(999))  # warm-up

    def run():
        return degrader(gt, torch.Generator().manual_seed(next(seeds)))

    lq, gt_usm = benchmark.pedantic(run, rounds=8, iterations=1)
    _meta(benchmark)
    rate = BATCH / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s_median"] = round(rate, 2)
    benchmark.extra_info["images_per_s_best"] = round(BATCH / benchmark.stats.stats.min, 2)
    print(f"\ndegradations: {rate:.1f} LQ images/s (median), {BATCH / benchmark.stats.stats.min:.1f} "
          f"(best round), {THREADS} threads, load average {os.getloadavg()[0]:.1f}")
    assert lq.shape == (BATCH, 3, SIZE // 4, SIZE // 4) and gt_usm.shape == gt.shape


def test_per_step_breakdown(benchmark, two_threads):
    """Wall time per step (torch.profiler ranges `deg.*`), summed over rounds of fixed seeds,
    and the single-thread CPU time of a whole batch (less sensitive to other processes)."""
    gt = gt_batch()
    degrader = Degrader()
    degrader(gt, torch.Generator().manual_seed(999))
    rounds = 6

    def profiled():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for seed in range(rounds):
                degrader(gt, torch.Generator().manual_seed(seed))
        return prof

    prof = benchmark.pedantic(profiled, rounds=1, iterations=1)
    steps = collections.Counter()
    for e in prof.key_averages():
        if e.key.startswith("deg."):
            steps[e.key] += e.cpu_time_total / 1000 / rounds  # ms per batch
    plain = []
    for seed in range(rounds):
        t = time.perf_counter()
        degrader(gt, torch.Generator().manual_seed(seed))
        plain.append(time.perf_counter() - t)
    torch.set_num_threads(1)
    cpu = []
    for seed in range(3):
        t = time.process_time()
        degrader(gt, torch.Generator().manual_seed(seed))
        cpu.append(time.process_time() - t)
    torch.set_num_threads(THREADS)
    _meta(benchmark)
    benchmark.extra_info["ms_per_batch_by_step"] = {k: round(v, 1) for k, v in steps.most_common()}
    benchmark.extra_info["single_thread_cpu_s_per_batch"] = round(min(cpu), 3)
    total = benchmark.stats.stats.min / rounds * 1000
    benchmark.extra_info["unprofiled_ms_per_batch"] = round(1000 * sum(plain) / rounds, 1)
    print(f"\nper-step wall ms per batch of {BATCH} (profiled batch {total:.0f} ms, "
          f"unprofiled {1000 * sum(plain) / rounds:.0f} ms):")
    for k, v in steps.most_common():
        print(f"  {k:24s} {v:7.1f}  {100 * v / total:5.1f} %")
    other = total - sum(steps.values())
    print(f"  {'other (glue + profiler)':24s} {other:7.1f}  {100 * other / total:5.1f} %")
    print(f"single-thread CPU per batch: {min(cpu) * 1000:.0f} ms "
          f"-> {BATCH / min(cpu):.1f} images/s per core")
    assert {"deg.usm", "deg.first.blur", "deg.first.jpeg", "deg.final.jpeg"} <= set(steps)
