"""Speed against the two yardsticks, one run side by side, same thread count, each case in its
own process (whole-process peak RSS): the runtime (default options) vs PyTorch (the project's
torch architecture with the same weights, fp32, untiled, RealESRGANer's 10 px pre-pad) vs
ncnn's own untiled run of the whole net, without and with the same pre-pad (so a gap to the
ceiling splits into what the borders cost and what the engine costs).

Run: `python -m pytest bench/bench_runtime_speed.py -s` (x4plus 256x256: minutes); the 1024x1024
x4plus case is marked slow (`-m slow`). Results go to `extra_info` and are printed as a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("speed_child.py")
THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def measure(kind: str, model: str, size: int, **options: str) -> dict:
    args = [sys.executable, str(CHILD), kind, model, str(size), str(THREADS), *(f"{k}={v}" for k, v in options.items())]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    lines = ["| case | compute s | CPU s | process s | peak RSS MiB |", "|---|---|---|---|---|"]
    for r in rows:
        label = f"{r['kind']} {r['model']} {r['size']}x{r['size']} {r['options'] or ''}".strip()
        lines.append(f"| {label} | {r['compute_s']:.1f} | {r['cpu_s']:.1f} | {r['process_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def _record(benchmark, rows: list[dict], base: dict) -> None:
    ratios = {f"{r['kind']}{'_prepad' if r['options'].get('pad') else ''}_over_ours": r["compute_s"] / base["compute_s"]
              for r in rows if r is not base}
    benchmark.extra_info.update(rows=rows, ratios=ratios)
    print("\n" + _table(rows) + "\n" + json.dumps(ratios))


@pytest.mark.parametrize("model,size", [("realesrgan-x4plus", 256), ("realesr-animevideov3-x4", 512)])
def test_speed_against_pytorch_and_ncnn(benchmark, model: str, size: int) -> None:
    cases = [("ours", {}), ("ncnn", {}), ("ncnn", {"pad": "1"}), ("torch", {})]
    rows = benchmark.pedantic(lambda: [measure(k, model, size, **o) for k, o in cases], rounds=1, iterations=1)
    _record(benchmark, rows, rows[0])
    assert all(r["compute_s"] > 0 for r in rows)


@pytest.mark.slow
def test_x4plus_1024_is_sixteen_times_256(benchmark) -> None:
    rows = benchmark.pedantic(lambda: [measure("ours", "realesrgan-x4plus", s) for s in (256, 1024)], rounds=1, iterations=1)
    _record(benchmark, rows, rows[0])
    benchmark.extra_info["ratio_to_16x"] = rows[1]["compute_s"] / (16 * rows[0]["compute_s"])
    assert rows[1]["compute_s"] > rows[0]["compute_s"]
