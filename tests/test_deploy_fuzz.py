"""The C++ runner's model checks under the in-CI fuzz, and side by side with the Python validator.

`realesr-portable-check` (deploy/tools) runs the library's checks on thousands of models in a few
processes: the fuzz loads and runs every model it accepts, so a native crash inside ncnn shows as
CRASH for the mutation that caused it. The differential test feeds the same mutated models to the
Python validator and to the C++ one: both must accept and refuse alike; and the C++ layer table
must equal the Python one entry for entry (issue 21: one table of rules, checked from both sides).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from deploy_support import build_runner
from fuzz_cases import Case, make_cases, rule_cases, zoo_models
from fuzz_verdicts import CPP_ONLY_REFUSALS, cpp_verdicts, python_layer_rules, python_verdict
from realesr_portable.model.catalog import resolve_model

V3_CASES = 1800
ANIME_CASES = 250
ZOO_CASES = 300  # per zoo graph: the layer types of SPAN, RealCUGAN and transformer models


@pytest.fixture(scope="module")
def checker() -> Path:
    program = build_runner("x86_64").parent / "realesr-portable-check"
    assert program.is_file(), program
    return program


@pytest.fixture(scope="module")
def fuzzed(checker: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Case], list[str], str]:
    """The mutated models, the checker's verdict on each (one pass, loading and running what the
    checks accept) and what it printed on stderr."""
    zoo = [case for seed, model in enumerate(zoo_models(tmp_path_factory.mktemp("zoo")))
           for case in make_cases(model, ZOO_CASES, seed=40 + seed)]
    cases = (rule_cases() + make_cases("realesr-animevideov3-x2", V3_CASES, seed=18)
             + make_cases("realesrgan-x4plus-anime", ANIME_CASES, seed=19) + zoo)
    printed: list[str] = []
    verdicts = cpp_verdicts(checker, cases, run=True, stderr=printed)
    return cases, verdicts, "".join(printed)


def test_cpp_checks_never_crash_on_mutated_models(fuzzed: tuple[list[Case], list[str], str]) -> None:
    cases, verdicts, printed = fuzzed
    assert len(cases) >= 2000 and len(verdicts) == len(cases)
    bad = [f"{case.model} [{case.label}]: {v}" for case, v in zip(cases, verdicts)
           if v != "ran" and not (v.startswith(("refused: ", "failed: ")) and "\n" not in v and len(v) < 600)]
    assert not bad, f"{len(bad)} of {len(cases)} mutated models crashed, hung or escaped:\n" + "\n".join(bad[:15])
    assert "FATAL" not in printed, printed[:2000]  # ncnn's own alarms (issue 17 item 16)
    tally = Counter(v.split(":")[0] for v in verdicts)
    print(f"C++ fuzz outcomes: {dict(tally)}")
    assert tally["ran"] >= len(cases) // 40 and tally["refused"] >= len(cases) // 5, tally


def test_cpp_and_python_validators_agree(fuzzed: tuple[list[Case], list[str], str]) -> None:
    cases, verdicts, _ = fuzzed
    weights = {model: resolve_model(model).bin.read_bytes() for model in {case.model for case in cases}}
    python = [python_verdict(case, weights[case.model]) for case in cases]
    cpp = ["ok" if v == "ran" or v.startswith("failed: ") else v for v in verdicts]  # accepted by the checks
    differ = [f"[{case.label}] python: {p[:120]} | C++: {c[:120]}" for case, p, c in zip(cases, python, cpp)
              if (p == "ok") != (c == "ok") and not (p == "ok" and any(r in c for r in CPP_ONLY_REFUSALS))]
    assert not differ, f"{len(differ)} of {len(cases)} verdicts differ:\n" + "\n".join(differ[:15])
    accepted = sum(v == "ok" for v in python)
    assert accepted >= len(cases) // 40 and len(cases) - accepted >= len(cases) // 5, accepted
    # The rule classes of issue 17 items 12-14, one by one: the same verdict, and refusals that
    # name the same layer or field.
    rules = rule_cases()
    for case, p, c in zip(rules, python[: len(rules)], cpp[: len(rules)]):
        assert (p == "ok") == (c == "ok"), (case.label, p, c)
        if p != "ok":
            assert p.split(":")[1] == c.split(":")[1], (case.label, p, c)
    assert sum(v != "ok" for v in python[: len(rules)]) >= 30


def test_a_crash_is_named_and_the_rest_still_run(tmp_path: Path) -> None:
    """A checker that dies on its second model: that case is CRASH, the others get verdicts."""
    fake = tmp_path / "check"
    fake.write_text("#!/bin/sh\nread a; echo ok; read b; kill -SEGV $$\n")
    fake.chmod(0o755)
    cases = rule_cases()[:3]
    verdicts = cpp_verdicts(fake, cases, run=False)
    assert verdicts == ["ok", "CRASH exit -11", "ok"], verdicts


def test_cpp_layer_table_is_the_python_one(checker: Path) -> None:
    """Types, parameter ids and ranges, array lengths, blob counts: entry for entry (adding a layer
    type to the Python table fails here until validate.cpp has it too)."""
    cpp = subprocess.run([str(checker), "--rules"], capture_output=True, text=True, check=True).stdout
    python = python_layer_rules()
    assert len(python.splitlines()) >= 18
    assert cpp == python
