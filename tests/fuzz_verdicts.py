"""The C++ runner's checks under the fuzz: the cases (fuzz_cases.py) through
`realesr-portable-check`, and the Python validators' verdicts on the same cases, side by side."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

from fuzz_cases import Case, apply_bin
from realesr_portable.model.catalog import resolve_model


def python_validator() -> SimpleNamespace:
    """The Python runtime's validators (graph, its layer table and parameters, weights, sidecar),
    imported in this one place so a move of their modules changes one line here."""
    from realesr_portable.graph import check, layers, ncnn_files, params
    from realesr_portable.model import spec
    from realesr_portable.run import session

    return SimpleNamespace(graph=check, table=layers, params=params, weights=ncnn_files, spec=spec, session=session)


def python_layer_rules() -> str:
    """The Python validator's layer table in the text of `realesr-portable-check --rules`."""
    lines = []
    for name, kind in sorted(python_validator().table.LAYER_KINDS.items()):
        parts = [name, f"bottoms={kind.bottoms[0]}..{kind.bottoms[1]}", f"tops={kind.tops[0]}..{kind.tops[1]}"]
        parts += [f"int:{key}={lo}..{hi}" for key, (lo, hi) in sorted(kind.ints.items())]
        parts += [f"float:{key}={'%.17g' % lo}..{'%.17g' % hi}" for key, (lo, hi) in sorted(kind.floats.items())]
        parts += [f"array:{key}={longest}" for key, longest in sorted(kind.arrays.items())]
        parts += [f"intarray:{key}={longest}" for key, longest in sorted(kind.int_arrays.items())]
        parts += ["flat"] if kind.flat else []
        lines.append(" ".join(parts) + "\n")
    return "".join(lines)


def python_verdict(case: Case, weights: bytes) -> str:
    """The Python runtime's checks on a case, in its order: sidecar, graph, weights ("ok" or the
    one-line refusal)."""
    v = python_validator()
    try:
        data = json.loads(case.sidecar)
        if not isinstance(data, dict):
            return "refused: model sidecar is not a JSON object"
        spec = v.spec.ModelSpec.from_dict(data)
        try:
            parsed = v.weights.NcnnParam.parse(case.param)
        except v.weights.NcnnFormatError as exc:
            raise v.params.GraphError(str(exc)) from None
        v.session.graph_pre_pad(parsed, spec)  # what the Python runtime accepts, pre-padded graphs included
        v.weights.read_weights(parsed, apply_bin(weights, case.bin_edit))
    except (v.spec.ModelSpecError, v.params.GraphError, v.weights.NcnnFormatError) as exc:
        return f"refused: {exc}"
    return "ok"


# Refusals only the C++ runner makes, by design: layers its ncnn build leaves out (docs/deploy.md),
# RGBA models (the Python runtime upscales alpha separately) and graphs that consume a border of
# their input (RealCUGAN-style pre-padding, which only the Python Session adds).
CPP_ONLY_REFUSALS = ("is not built into this ncnn", "4-channel (RGBA) models run in the Python runtime only",
                     "such models run in the Python runtime only")


def cpp_verdicts(program: Path, cases: list[Case], run: bool, batch: int = 250, timeout: float = 600.0,
                 stderr: list[str] | None = None) -> list[str]:
    """`realesr-portable-check` on every case ("ok"/"ran"/"refused: ..."); a case it dies on is
    "CRASH <signal or exit code>" (the rest of its batch goes to a fresh process), a stall "HANG".
    What the processes print on stderr (ncnn's own complaints) is appended to `stderr`."""
    weights = {model: resolve_model(model).bin.read_bytes() for model in {case.model for case in cases}}
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cppfuzz_") as tmp:
        folder = Path(tmp)
        todo = list(range(len(cases)))
        while todo:
            chunk, todo = todo[:batch], todo[batch:]
            lines = []
            for index in chunk:
                case = cases[index]
                stem = folder / f"c{index}"
                stem.with_suffix(".param").write_text(case.param)
                stem.with_suffix(".json").write_text(case.sidecar)
                binary = stem.with_suffix(".bin")
                if case.bin_edit[0] == "none":
                    binary.symlink_to(resolve_model(case.model).bin)
                else:
                    binary.write_bytes(apply_bin(weights[case.model], case.bin_edit))
                lines.append(f"{stem}.param\t{binary}\t{stem}.json\n")
            try:
                proc = subprocess.run([str(program), *(["--run"] if run else [])], input="".join(lines),
                                      capture_output=True, text=True, timeout=timeout)
                out, rc, err = proc.stdout.splitlines(), proc.returncode, proc.stderr
            except subprocess.TimeoutExpired as exc:
                out, rc, err = (exc.stdout or b"").decode().splitlines(), None, ""
            if stderr is not None and err:
                stderr.append(err)
            for line in out[: len(chunk)]:
                verdicts.append(line.replace("\t", ": ", 1))
            done = len(out)
            if done < len(chunk):  # it died (or stalled) on the case after the last answer
                verdicts.append("HANG" if rc is None else f"CRASH exit {rc}")
                todo = chunk[done + 1 :] + todo
            for index in chunk:
                for suffix in (".param", ".json", ".bin"):
                    (folder / f"c{index}").with_suffix(suffix).unlink(missing_ok=True)
    return verdicts
