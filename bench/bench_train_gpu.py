"""Training speed on one CUDA GPU (issue 20): the parts of a stage-2 step, and the it/s of the
stage-2 and stage-1 loops with the defaults and with each speed option switched alone.

As a script, the table of the issue for the current code, within a time budget:

    python bench/bench_train_gpu.py --seconds 100 [--compile] [--out gpu_train.json]

Parts: x4plus RRDBNet, batch 12, LQ 64x64 / GT 256x256, median of several runs after warm-up,
fp32 (cuDNN's TF32 default) and bf16 autocast; degradations of 12 GT crops of 256x256 on the
GPU path and on the per-sample path. Loops: `trainer/loop.run` on the x4plus presets (batch 12,
gt 256, 4 loader workers, 16 synthetic 512x512 photos), it/s of the print intervals after the
first (the first holds the warm-up: cuDNN autotuning, compilation); the last interval's time
split (data wait, degradations, G, D, other) is printed too. Runs go in priority order and
stop when the next would not fit in `--seconds`. torch.compile costs 30-60 s of compilation
per run, so its rows run only with `--compile`. VGG19 weights are random (no download; same
cost as ImageNet's).

Under pytest (`python -m pytest bench/bench_train_gpu.py`) the same parts are pytest-benchmark
cases. Without CUDA the script prints one line and exits 0; the cases skip.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # a plain script measures this checkout, as trainer/train.py runs it
    import importlib.util

    _spec = importlib.util.spec_from_file_location("_train_script", Path(__file__).resolve().parents[1] / "trainer" / "train.py")
    assert _spec is not None and _spec.loader is not None
    _script = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_script)
    _script.bootstrap_checkout()

import numpy as np
import torch
from PIL import Image

from realesr_portable.trainer import config as c
from realesr_portable.trainer import loop
from realesr_portable.trainer.degradations import Degrader
from realesr_portable.trainer.losses import PerceptualLoss
from realesr_portable.trainer.models import build_discriminator, build_generator
from realesr_portable.trainer.speedups import fuse_dense_blocks
from realesr_portable.trainer.vgg import random_vgg19_state

PRESETS = {"esrgan": Path(loop.__file__).parent / "presets" / "realesrgan_x4plus.yml",
           "esrnet": Path(loop.__file__).parent / "presets" / "realesrnet_x4plus.yml"}
G_NET = {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
D_NET = {"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 64, "skip_connection": True}
LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
BATCH = 12
#: `--tiny`: a CPU smoke run of every code path of this script (tests/test_train_speed.py).
TINY = {"g": {"type": "RRDBNet", "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
        "d": {"type": "UNetDiscriminatorSN", "num_feat": 8}, "batch": 2, "gt": 32,
        "loop": ["network_g.num_feat=8", "network_g.num_block=1", "network_g.num_grow_ch=4",
                 "data.gt_size=32", "data.crop_size=48", "data.batch_size=2", "data.pool_size=4", "data.num_workers=0"],
        "loop_d": ["network_d.num_feat=8"]}
ALL_OFF = [f"speed.{k}=off" for k in ("cudnn_benchmark", "channels_last", "compile", "fused_adam", "fused_dense",
                                      "batched_degradations")]
NO_CUDA = "bench_train_gpu: no CUDA device here, nothing measured (the CPU loop is bench/bench_train.py)"

def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], object], n: int = 10, warmup: int = 2) -> float:
    """Median wall time of `fn` in ms, the device synchronised around each run."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


class Parts:
    """The pieces of a stage-2 step, built once with the trainer's own modules."""

    def __init__(self, compile_g: bool = False, tiny: bool = False) -> None:
        dev = torch.device("cpu" if tiny else "cuda")
        self.cuda = dev.type == "cuda"
        torch.manual_seed(0)
        self.g = build_generator(TINY["g"] if tiny else G_NET, 4).to(dev)
        fuse_dense_blocks(self.g, True)
        self.d = build_discriminator(TINY["d"] if tiny else D_NET).to(dev)
        self.percep = PerceptualLoss(LAYERS, random_vgg19_state(0), 1.0).to(dev)
        self.opt_g = torch.optim.Adam(self.g.parameters(), 1e-4, betas=(0.9, 0.99), fused=True)
        self.opt_d = torch.optim.Adam(self.d.parameters(), 1e-4, betas=(0.9, 0.99), fused=True)
        gen = torch.Generator(device=dev).manual_seed(1)
        b, size = (TINY["batch"], TINY["gt"]) if tiny else (BATCH, 256)
        self.lq = torch.rand(b, 3, size // 4, size // 4, device=dev, generator=gen)
        self.gt = torch.rand(b, 3, size, size, device=dev, generator=gen)
        self.g_call: Callable[..., torch.Tensor] = torch.compile(self.g) if compile_g else self.g

    def _ctx(self, bf16: bool) -> Any:
        return torch.autocast("cuda" if self.cuda else "cpu", dtype=torch.bfloat16, enabled=bf16)

    def g_only(self, bf16: bool) -> None:
        with self._ctx(bf16):
            loss = self.g_call(self.lq).float().mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()

    def g_step(self, bf16: bool) -> None:
        self.d.requires_grad_(False)
        with self._ctx(bf16):
            out = self.g_call(self.lq)
            loss = (out.float() - self.gt).abs().mean() + self.percep(out, self.gt) + self.d(out).float().mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.d.requires_grad_(True)

    def d_step(self, bf16: bool) -> None:
        with self._ctx(bf16):
            loss = self.d(self.gt).float().mean() - self.d(self.gt.flip(3)).float().mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()

    @torch.no_grad()
    def vgg(self, bf16: bool) -> None:
        with self._ctx(bf16):
            self.percep.vgg(self.gt)


def degrade_fn(batched: bool, size: int = 256, batch: int = BATCH) -> Callable[[], object]:
    """One degradation call on 12 GT crops, parameters from a host generator (as the loop does)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gt = torch.rand(batch, 3, size, size, device=dev, generator=torch.Generator(device=dev).manual_seed(2))
    deg = Degrader(batched=batched)
    seeds = iter(range(10**6))
    return lambda: deg(gt, torch.Generator().manual_seed(next(seeds)))


def part_rows(parts: Parts, n: int, tiny: bool = False) -> list[tuple[str, float | None, float | None]]:
    rows: list[tuple[str, float | None, float | None]] = []
    for name, fn in (("G forward + backward + Adam", parts.g_only), ("G step with L1 + VGG + D(fake)", parts.g_step),
                     ("D step, real + fake", parts.d_step), ("VGG forward of the GT batch", parts.vgg)):
        rows.append((name, median_ms(lambda: fn(False), n), median_ms(lambda: fn(True), n)))
        print(f"  {name}: fp32 {rows[-1][1]:.1f} ms, bf16 {rows[-1][2]:.1f} ms", flush=True)
    for label, batched, size in (("degradations, batch of 12 (GPU path)", True, 256),
                                 ("degradations, batch of 12 (per-sample path)", False, 256),
                                 ("degradations, 12 crops of 400 as trained (GPU path)", True, 400)):
        fn = degrade_fn(batched, TINY["gt"], TINY["batch"]) if tiny else degrade_fn(batched, size)
        rows.append((label, median_ms(fn, n), None))
        print(f"  {label}: {rows[-1][1]:.1f} ms", flush=True)
    return rows


def make_photos(folder: Path, n: int = 16, size: int = 512) -> Path:
    """Synthetic photos: smooth colour fields with edges and texture (no downloads)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.random((size // 16, size // 16, 3)) * 255
        img = Image.fromarray(small.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        a = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (size, size, 3))
        a[size // 3 : size // 3 + 8] = 255 * (i % 2)  # a hard edge
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


def loop_rate(stage: str, extra: list[str], root: Path, index: int, iters: int, every: int,
              device: str = "cuda") -> dict[str, float]:
    """it/s of the real training loop (median over the print intervals after the first) and the
    last interval's time split."""
    run = f"run{index:02d}"
    cfg = c.load(PRESETS[stage], [
        f"data.dataroot_gt={root / 'photos'}", f"path.vgg_weights={root / 'vgg19.pth'}", "path.pretrain_g=",
        f"path.experiments_root={root / 'exp'}", f"name={run}", f"train.total_iter={iters}",
        f"logging.print_every={every}", "logging.plot=false", "checkpoint.save_every=1000000000", "val.every=0", "export.at_end=false",
        "data.num_workers=4", f"device={device}", *extra,
    ])
    loop.run(cfg, log_stream=io.StringIO())
    recs = [json.loads(x) for x in (root / "exp" / run / "log.jsonl").read_text().splitlines()]
    train = [r for r in recs if r.get("kind") == "train"]
    rates = [r["iters_per_s"] for r in train[1:]] or [train[-1]["iters_per_s"]]
    last = train[-1]
    out = {"it_s": statistics.median(rates), **{k: last[k] for k in last if k.startswith("ms_")},
           "data_share": last["data_share"]}
    out.update({k: last[k] for k in last if k.startswith("l_")})
    return out


def loop_plan(with_compile: bool) -> list[tuple[str, str, list[str]]]:
    """(label, stage, overrides) in priority order: defaults, all off, then each option alone."""
    plan = [
        ("stage 2, defaults", "esrgan", []),
        ("stage 1, defaults", "esrnet", []),
        ("stage 2, every speed option off", "esrgan", ALL_OFF),
        ("stage 2, train.amp=true (bf16)", "esrgan", ["train.amp=true"]),
    ]
    plan.append(("stage 2, speed.batched_degradations=off", "esrgan", ["speed.batched_degradations=off"]))
    if with_compile:
        plan.append(("stage 2, speed.compile=on", "esrgan", ["speed.compile=on"]))
        plan.append(("stage 2, speed.compile=on, compile_mode=reduce-overhead (CUDA graphs)", "esrgan",
                     ["speed.compile=on", "speed.compile_mode=reduce-overhead"]))
    plan += [(f"stage 2, speed.{k}=off", "esrgan", [f"speed.{k}=off"])
             for k in ("fused_adam", "fused_dense", "cudnn_benchmark")]
    plan += [("stage 2, speed.channels_last=on", "esrgan", ["speed.channels_last=on"]),
             ("stage 1, every speed option off", "esrnet", ALL_OFF),
             ("stage 1, train.amp=true (bf16)", "esrnet", ["train.amp=true"])]
    if with_compile:
        plan.append(("stage 1, speed.compile=on", "esrnet", ["speed.compile=on"]))
    return plan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=100.0, help="total time budget (default 100)")
    ap.add_argument("--iters", type=int, default=24, help="iterations per loop run (default 24)")
    ap.add_argument("--every", type=int, default=6, help="print interval of the loop runs (default 6)")
    ap.add_argument("--repeats", type=int, default=8, help="timed runs per part (default 8)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (30-60 s compile per run)")
    ap.add_argument("--skip-parts", action="store_true", help="only the loops")
    ap.add_argument("--max-loops", type=int, default=None, help="run at most this many loop rows")
    ap.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    ap.add_argument("--tiny", action="store_true", help="tiny nets on the CPU: a smoke run of this script's paths")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() and not args.tiny:
        print(NO_CUDA)
        return 0
    device = "cpu" if args.tiny else "cuda"
    start = time.perf_counter()
    deadline = start + args.seconds
    name = "CPU (--tiny)" if args.tiny else torch.cuda.get_device_name()
    print(f"# {name} | torch {torch.__version__} | CUDA {torch.version.cuda} | budget {args.seconds:.0f} s", flush=True)
    result: dict[str, Any] = {"device": name, "torch": torch.__version__, "parts": [], "loops": []}
    if not args.skip_parts:
        print("parts:", flush=True)
        parts = Parts(tiny=args.tiny)
        result["parts"] = part_rows(parts, args.repeats, args.tiny)
        if args.compile and time.perf_counter() + 60 < deadline:
            t0 = time.perf_counter()
            compiled = Parts(compile_g=True, tiny=args.tiny)
            compiled.g_only(False)
            first = time.perf_counter() - t0
            row = ("G forward + backward + Adam, torch.compile", median_ms(lambda: compiled.g_only(False), args.repeats), None)
            result["parts"].append(row)
            print(f"  {row[0]}: {row[1]:.1f} ms (first call incl. compilation {first:.0f} s)", flush=True)
            del compiled
        del parts
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory(prefix="bench_train_gpu_") as tmp:
        root = Path(tmp)
        make_photos(root / "photos", 4 if args.tiny else 16, 64 if args.tiny else 512)
        torch.save(random_vgg19_state(0), root / "vgg19.pth")
        last_cost: dict[str, float] = {}
        print("loops:", flush=True)
        for index, (label, stage, extra) in enumerate(loop_plan(args.compile)[: args.max_loops]):
            guess = last_cost.get(stage, 20.0) + (60.0 if any("compile=on" in e for e in extra) else 0.0)
            if time.perf_counter() + guess > deadline:
                print(f"  {label}: not run (budget)", flush=True)
                result["loops"].append({"label": label, "skipped": "budget"})
                continue
            t0 = time.perf_counter()
            try:
                tiny = TINY["loop"] + (TINY["loop_d"] if stage == "esrgan" else []) if args.tiny else []
                rec = loop_rate(stage, extra + tiny, root, index, args.iters, args.every, device)
            except Exception as exc:  # one failing option must not hide the others
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                print(f"  {label}: failed: {type(exc).__name__}: {first}", flush=True)
                result["loops"].append({"label": label, "failed": first})
                continue
            finally:
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            last_cost[stage] = time.perf_counter() - t0
            result["loops"].append({"label": label, **rec, "wall_s": last_cost[stage]})
            split = " / ".join(f"{rec[k]:.0f}" for k in ("ms_data", "ms_degrade", "ms_g", "ms_d", "ms_other"))
            print(f"  {label}: {rec['it_s']:.2f} it/s; ms/it data/degrade/G/D/other {split}; "
                  f"data wait {100 * rec['data_share']:.0f}% ({last_cost[stage]:.0f} s)", flush=True)
    print_table(result)
    print(f"# total {time.perf_counter() - start:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def print_table(result: dict[str, Any]) -> None:
    ms = lambda v: "" if v is None else f"{v:.1f} ms"  # noqa: E731
    print("\n| part | fp32 (TF32) | bf16 autocast |\n|---|---|---|")
    for name, fp32, bf16 in result["parts"]:
        print(f"| {name} | {ms(fp32)} | {ms(bf16)} |")
    print("\n| loop | it/s | ms/it: data / degrade / G / D / other | data wait |\n|---|---|---|---|")
    for r in result["loops"]:
        if "it_s" not in r:
            print(f"| {r['label']} | {r.get('skipped') or 'failed: ' + r['failed']} | | |")
            continue
        split = " / ".join(f"{r[k]:.0f}" for k in ("ms_data", "ms_degrade", "ms_g", "ms_d", "ms_other"))
        print(f"| {r['label']} | {r['it_s']:.2f} | {split} | {100 * r['data_share']:.0f}% |")
    parity = loss_parity(result["loops"])
    if parity is not None:
        print(f"\nloss parity, mean losses of the last print interval, same seed and degradation path: "
              f"defaults (per-sample degradations) vs every option off: max relative difference {parity:.2e}")


def loss_parity(loops: list[dict[str, Any]]) -> float | None:
    """Max relative difference of the logged losses between the defaults with the per-sample
    degradations (the only default that changes random streams) and every option off."""
    by = {r["label"]: r for r in loops if "it_s" in r}
    a, b = by.get("stage 2, speed.batched_degradations=off"), by.get("stage 2, every speed option off")
    if a is None or b is None:
        return None
    keys = [k for k in a if k.startswith("l_") and k in b]
    return max((abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in keys), default=None)


# pytest-benchmark cases (same parts; `python -m pytest bench/bench_train_gpu.py`); the script
# itself needs no pytest.
try:
    import pytest
except ImportError:  # a GPU machine with torch but without pytest: the script still runs
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

    @pytest.fixture(scope="module")
    def parts() -> Parts:
        return Parts()

    @pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
    def test_g_step_with_all_losses(benchmark, parts: Parts, bf16: bool) -> None:
        parts.g_step(bf16)
        benchmark.pedantic(lambda: (parts.g_step(bf16), torch.cuda.synchronize()), rounds=8, iterations=1)
        assert all(p.grad is not None for p in parts.g.parameters())

    @pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
    def test_d_step(benchmark, parts: Parts, bf16: bool) -> None:
        parts.d_step(bf16)
        benchmark.pedantic(lambda: (parts.d_step(bf16), torch.cuda.synchronize()), rounds=8, iterations=1)
        assert all(p.grad is not None for p in parts.d.parameters())

    @pytest.mark.parametrize("batched", [True, False], ids=["gpu_path", "per_sample"])
    def test_degradations_batch_of_12(benchmark, batched: bool) -> None:
        fn = degrade_fn(batched)
        fn()
        lq, _ = benchmark.pedantic(lambda: (fn(), torch.cuda.synchronize())[0], rounds=8, iterations=1)
        benchmark.extra_info["ms_median"] = round(1000 * benchmark.stats.stats.median, 2)
        assert lq.shape == (BATCH, 3, 64, 64) and lq.is_cuda


if __name__ == "__main__":
    sys.exit(main())
