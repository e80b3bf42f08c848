"""Fuzz of the model-loading path: official `.param` + `.bin` + sidecar JSON, mutated.

Every mutated model either runs (garbage output is fine) or is refused with one of the
project's one-line errors. Children run the cases (fork, so ncnn is already imported), so a
native crash (SIGSEGV/SIGFPE inside ncnn) is caught and names the mutation; a hang is caught too.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from fuzz_cases import Case, _mutate_line, make_cases, zoo_models
from fuzz_python import run_all

V3_CASES = 1800  # SRVGGNetCompact x2: 1.2 MB of weights, loads in ~30 ms
ANIME_CASES = 200  # 6-block RRDBNet: loads in ~0.2 s, exercises the split-trunk path
ZOO_CASES = int(os.environ.get("REALESR_ZOO_FUZZ", "300"))  # per zoo graph (foreign layer types)


def _assert_no_crash(cases: list[Case]) -> None:
    """Every case ran or was refused with one line; both outcomes common (a fuzz that only ever
    refuses, or only runs, would test nothing)."""
    outcomes = run_all(cases, workers=min(2, os.cpu_count() or 1))
    assert len(outcomes) == len(cases)
    bad = {i: outcome for i, outcome in outcomes.items() if outcome not in ("ran", "refused")}
    details = [f"{Path(cases[i].model).stem} [{cases[i].label}]: {outcome}" for i, outcome in sorted(bad.items())[:15]]
    assert not bad, f"{len(bad)} of {len(cases)} mutations crashed, hung or escaped:\n" + "\n".join(details)
    tally = Counter(outcomes.values())
    print(f"fuzz outcomes: {dict(tally)}")
    assert tally["ran"] >= len(cases) // 20 and tally["refused"] >= len(cases) // 5, tally


def test_mutated_official_models_never_crash_or_escape() -> None:
    _assert_no_crash(make_cases("realesr-animevideov3-x2", V3_CASES, seed=8)
                     + make_cases("realesrgan-x4plus-anime", ANIME_CASES, seed=9))


def test_the_runner_catches_a_native_crash_and_names_the_case(monkeypatch) -> None:
    """Without the graph checks, a known crasher must come back as CRASH for its own case only."""
    import json

    import realesr_portable.run.session as session
    from realesr_portable.model.catalog import resolve_model

    monkeypatch.setattr(session, "validate_graph", lambda *args, **kwargs: 0)  # inherited by the fork (0: no pre-padding)
    # the .bin reader types each layer by the same table (and would refuse the pad too)
    monkeypatch.setattr(session, "read_weights", lambda *args, **kwargs: None)
    files = resolve_model("realesr-animevideov3-x2")
    text, sidecar = files.param.read_text(), files.spec.to_json()
    conv2 = "Conv_2                   1 1 56 57 0=64 1=3 4=1 5=1 6=36864"
    crasher = text.replace(conv2, conv2.replace("4=1", "4=2147483647"))  # SIGSEGV inside ncnn
    assert crasher != text
    good = Case("realesr-animevideov3-x2", text, ("none", 0, 0), sidecar, "official")
    bad = Case("realesr-animevideov3-x2", crasher, ("none", 0, 0), json.dumps(json.loads(sidecar)), "pad 2147483647")
    outcomes = run_all([good, bad, good], workers=1, batch=3)
    assert outcomes[0] == outcomes[2] == "ran"
    assert outcomes[1].startswith("CRASH"), outcomes


def test_mutated_graphs_of_foreign_layer_types_never_crash_or_escape(tmp_path: Path) -> None:
    """The layer types of SPAN, RealCUGAN and transformer models (MemoryData, Deconvolution, Crop,
    Pooling, InnerProduct, Padding, Reshape, Permute, Slice, Softmax, LayerNorm,
    DeconvolutionDepthWise, ...), mutated."""
    _assert_no_crash([case for seed, model in enumerate(zoo_models(tmp_path / "zoo"))
                      for case in make_cases(model, ZOO_CASES, seed=30 + seed)])


def test_case_generation_works_for_any_seed(tmp_path: Path) -> None:
    """The harness itself (generation only, no model runs): CI's seeds are fixed, but a fuzz run
    by hand takes any; a "count" mutation that declares more blobs than the line names, followed
    by a "blob" mutation of that line, once raised IndexError (seed 105 here)."""
    models = [*zoo_models(tmp_path / "zoo"), "realesr-animevideov3-x2"]
    for model in models:
        for seed in range(200):
            cases = make_cases(model, 50, seed)
            assert len(cases) == 50 and all(case.label for case in cases), (model, seed)
    assert make_cases(models[0], 50, 105) == make_cases(models[0], 50, 105)  # a seed names its cases


def test_a_line_declaring_more_blobs_than_it_names_still_mutates() -> None:
    import random

    line = "Convolution c1 9 3 a b 0=8"  # after a "count" mutation: 9 bottoms, 3 tops, 2 names
    ops = set()
    for seed in range(300):
        mutated, op = _mutate_line(random.Random(seed), line, ["a", "b", "x"])
        ops.add(op)
        if op == "blob":  # one of the tokens ncnn would read as blob names, renamed in place
            tokens = mutated.split()
            assert tokens[:4] == line.split()[:4] and len(tokens) == 7, (seed, mutated)
    assert "blob" in ops
