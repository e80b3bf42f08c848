"""Start-up of `realesr-portable --help` as a whole process, median of N runs, interleaved with yardsticks.

Run: `python -m pytest bench/bench_startup.py -s` (about a minute) or `python bench/bench_startup.py`.
Three commands run in turn N times each, so machine load hits them alike:
- `python -c pass`: the interpreter's own floor on this machine;
- `realesr-portable --help`: the console script, as a user runs it;
- the imports `--help` used to pull (typer + batch/imageio/engine: numpy and Pillow), for the ratio.
Wall time is what a user waits; CPU time (user + sys of the child) is what load does not inflate.
The target (<= 0.3 s median) is for a quiet machine.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
_OLD_IMPORTS = "import typer, realesr_portable.batch.pipeline, realesr_portable.image.io, realesr_portable.run.engine"


def _script() -> list[str]:
    found = shutil.which("realesr-portable", path=str(Path(sys.executable).parent)) or shutil.which("realesr-portable")
    return [found] if found else [sys.executable, "-c", "import sys; from realesr_portable.cli import main; sys.exit(main())"]


def _one(cmd: list[str]) -> tuple[float, float]:
    before = os.times()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def measure(runs: int = RUNS) -> dict[str, tuple[float, float]]:
    """Median (wall s, cpu s) per command."""
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "realesr-portable --help": [*_script(), "--help"],
        "old --help imports": [sys.executable, "-c", _OLD_IMPORTS],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            samples[name].append(_one(cmd))
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for name, s in samples.items()}


def report(results: dict[str, tuple[float, float]]) -> str:
    floor = results["python -c pass"]
    lines = [f"{'command':26} {'wall s':>7} {'cpu s':>7} {'cpu - floor':>11}"]
    for name, (wall, cpu) in results.items():
        lines.append(f"{name:26} {wall:7.3f} {cpu:7.3f} {cpu - floor[1]:11.3f}")
    return "\n".join(lines)


def test_help_startup() -> None:
    results = measure()
    print("\n" + report(results))
    help_cpu, old_cpu = results["realesr-portable --help"][1], results["old --help imports"][1]
    assert help_cpu < old_cpu  # the lazy imports must save something, whatever the load


if __name__ == "__main__":
    print(report(measure()))
