"""Cost of checking an ncnn graph in-process vs isolating model loads in a child process.

Issue 8 item 7 offered two ways to survive `.param` files that crash ncnn: validate the graph
before ncnn sees it (`portable/graph_check.py`), or load untrusted models in a child process that
reports a crash. This measures, side by side in one run and per official model: the graph check,
an in-process ncnn load (what every run pays anyway), a forked child that loads and exits, and a
fresh interpreter that imports ncnn and loads (what a `spawn`-style isolation costs). A child
only protects loading, though: most crashes found by fuzzing happen in `extract`, which would
need the whole inference (pixels in and out) in the child.

Run explicitly: `.venv/bin/python -m pytest bench/bench_graph_check.py -s`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from realesr_portable.model.catalog import resolve_model
from realesr_portable.run.session import parse_model, validate_graph

MODELS = ["realesr-animevideov3-x2", "realesrgan-x4plus-anime", "realesrgan-x4plus"]


def _load(param: str, weights: str) -> None:
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_vulkan_compute = False
    assert net.load_param(param) == 0 and net.load_model(weights) == 0


def _fork_load(param: str, weights: str) -> None:
    pid = os.fork()
    if pid == 0:
        _load(param, weights)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0


def _spawn_load(param: str, weights: str) -> None:
    code = f"import ncnn; n = ncnn.Net(); n.opt.num_threads = 1; n.load_param({param!r}); n.load_model({weights!r})"
    subprocess.run([sys.executable, "-c", code], check=True)


def _best_ms(func, *args, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func(*args)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


@pytest.mark.parametrize("name", MODELS)
def test_graph_check_costs_a_fraction_of_a_load(name: str) -> None:
    files = resolve_model(name)
    text, param, weights = files.param.read_text(), str(files.param), str(files.bin)
    check = _best_ms(lambda: validate_graph(files.param, parse_model(files.param, text), files.spec))  # parse included
    inproc = _best_ms(_load, param, weights)
    forked = _best_ms(_fork_load, param, weights)
    spawned = _best_ms(_spawn_load, param, weights)
    print(f"\n{name}: graph check {check:.1f} ms, load {inproc:.1f} ms, forked child load {forked:.1f} ms, "
          f"fresh child load {spawned:.1f} ms; check/load {check / inproc:.2f}, child overhead "
          f"{(spawned - inproc) / inproc:+.0%} of a load (before the parent loads it again)")
    assert check < inproc  # the check must stay cheaper than the load it guards
