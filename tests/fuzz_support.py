"""Mutations of official model files, and a fork-based runner that survives native crashes.

Each case is a mutated `.param` text, a `.bin` mutation (described, applied in the child to the
official bytes) and a mutated sidecar JSON. Children run batches of cases and report the case
they start before running it, so a child killed by a signal names the mutation that killed it.
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from realesr_portable.device.select import cpu_device
from realesr_portable.run.engine import Engine, Options
from realesr_portable.errors import UserError
from realesr_portable.model.catalog import ModelNotFoundError, resolve_model
from realesr_portable.run.session import ModelLoadError, Session, TileError
from realesr_portable.model.spec import ModelSpecError

ALLOWED = (UserError, ModelLoadError, ModelSpecError, ModelNotFoundError, TileError)  # the project's one-line errors
VALUES = ["0", "1", "-1", "2", "3", "4", "5", "7", "16", "63", "64", "65", "255", "4096", "2147483647",
          "-2147483648", "-233", "-234", "1.0", "0.5", "2.000000e+00", "16.0", "1e400", "inf", "nan",
          "-0.0", "x", "", "99999999999", "1,2.0", "0,", "3,1.0"]
TYPES = ["Convolution", "ConvolutionDepthWise", "PReLU", "ReLU", "Split", "Concat", "Eltwise", "BinaryOp",
         "Interp", "PixelShuffle", "Reorg", "Input", "Noop", "Clip", "BatchNorm", "MatMul", "Deconvolution",
         "Crop", "Softmax", "InnerProduct", "Reshape", "Permute", "Slice", "Padding", "MemoryData", "Pooling"]
JSON_VALUES: list[Any] = [None, True, False, -1, 0, 1, 2, 3, 4, 5, 16, 17, 2**40, 1.5, "x", "", [], [0],
                          [0, 1], [1, 0], [None, 1], [0, 255], {}, "data", "output", "54", "106", 1e308]


@dataclass(frozen=True)
class Case:
    model: str
    param: str
    bin_edit: tuple[str, int, int]  # (kind, position, value); kind "none" keeps the official bytes
    sidecar: str
    label: str  # what was mutated, for the failure message


def _mutate_line(rng: random.Random, line: str, blobs: list[str]) -> tuple[str, str]:
    tokens = line.split()
    n_bottom, n_top = int(tokens[2]), int(tokens[3])
    first_param = 4 + n_bottom + n_top
    op = rng.choice(["value", "value", "value", "key", "add", "drop", "type", "blob", "count"])
    if op == "value" and len(tokens) > first_param:
        i = rng.randrange(first_param, len(tokens))
        key = tokens[i].split("=", 1)[0]
        tokens[i] = f"{key}={rng.choice(VALUES)}"
    elif op == "key" and len(tokens) > first_param:
        i = rng.randrange(first_param, len(tokens))
        value = tokens[i].split("=", 1)[1] if "=" in tokens[i] else "1"
        tokens[i] = f"{rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 18, 19, 31, 32, 100, -23310, -23301, -23399])}={value}"
    elif op == "add":
        tokens.append(f"{rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 15, 19, -23310])}={rng.choice(VALUES)}")
    elif op == "drop" and len(tokens) > first_param:
        del tokens[rng.randrange(first_param, len(tokens))]
    elif op == "type":
        tokens[0] = rng.choice(TYPES)
    elif op == "blob" and first_param > 4:
        tokens[rng.randrange(4, first_param)] = rng.choice(blobs + ["nowhere"])
    elif op == "count":
        tokens[rng.choice([2, 3])] = str(rng.choice([0, 1, 2, 3, 9]))
    return " ".join(tokens), op


def mutate_param(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.strip().splitlines()
    blobs = sorted({tok for line in lines[2:] for tok in line.split()[4 : 4 + sum(map(int, line.split()[2:4]))]})
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        where = rng.randrange(2, len(lines))
        op = rng.choice(["line"] * 8 + ["header", "swap", "dup", "delete"])
        if op == "line":
            lines[where], what = _mutate_line(rng, lines[where], blobs)
            op = f"line {where} {what}"
        elif op == "header":
            counts = lines[1].split()
            counts[rng.randrange(2)] = rng.choice(["0", "1", "7", "41", "42", "1000", "2147483647", "-1"])
            lines[1] = " ".join(counts)
        elif op == "swap":
            other = rng.randrange(2, len(lines))
            lines[where], lines[other] = lines[other], lines[where]
        elif op == "dup":
            lines.insert(where, lines[where])
        else:
            del lines[where]
        done.append(op)
    return "\n".join(lines) + "\n", "; ".join(done)


def mutate_sidecar(rng: random.Random, sidecar: dict[str, Any]) -> tuple[str, str]:
    data = dict(sidecar)
    key = rng.choice(sorted(data) + ["spec_version", "unknown_key"])
    op = rng.choice(["set", "set", "set", "delete"])
    if op == "delete":
        data.pop(key, None)
    else:
        data[key] = rng.choice(JSON_VALUES)
    return json.dumps(data), f"json {op} {key}"


def bin_edit(rng: random.Random, size: int) -> tuple[str, int, int]:
    kind = rng.choice(["truncate", "append", "byte", "byte", "tag"])
    if kind == "truncate":
        return kind, rng.choice([1, 2, 4, 100, size // 2, size]), 0
    if kind == "append":
        return kind, rng.choice([1, 4, 100]), 0
    if kind == "tag":
        return kind, 0, rng.choice([0, 1, 0x01306B47 + 1, 0xFFFFFFFF])
    return kind, rng.randrange(size), rng.randrange(256)


# Small graphs of the layer types foreign models bring (SPAN: MemoryData, Swish, Sigmoid;
# RealCUGAN: Deconvolution, global Pooling, InnerProduct, spatial Crop; transformers: Permute,
# LayerNorm, Reshape, Softmax, GELU), each valid as written and x2, so mutations start from a model
# that runs. "zoo-image" uses only layers the C++ runner's ncnn holds; "zoo-global" also the rest
# (Deconvolution, Pooling, Softmax, LayerNorm, GELU: refused there as not built in);
# "zoo-border" eats 2 px per side (unpadded convolutions, pre-padded by the Python Session).
ZOO = {
    "zoo-image": """Input in 0 1 data
MemoryData mean 0 1 cst 0=1 1=1 2=3
BinaryOp sub 2 1 data cst x0 0=1
Convolution c1 1 1 x0 x1 0=8 1=3 4=1 5=1 6=216
Swish s1 1 1 x1 x2
Padding pad 1 1 x2 x3 0=1 1=1 2=1 3=1 4=1
Convolution c2 1 1 x3 x4 0=8 1=3 5=1 6=576
Split sp 1 2 x4 x5 x6
Slice sl 1 2 x5 x7 x8 -23300=2,4,-233 1=0
Mish m 1 1 x7 x9
HardSwish hs 1 1 x8 x10 0=2.000000e-01 1=5.000000e-01
Concat cat 2 1 x9 x10 x11 0=0
Permute p1 1 1 x11 x12 0=1
Permute p2 1 1 x12 x13 0=1
BinaryOp add 2 1 x13 x6 x15 0=0
Sigmoid sg 1 1 x15 x16
Convolution c3 1 1 x16 x17 0=12 1=3 4=1 5=1 6=864
PixelShuffle ps 1 1 x17 output 0=2
""",
    "zoo-global": """Input in 0 1 data
Convolution c1 1 1 data a 0=8 1=3 4=1 5=1 6=216
GELU g 1 1 a b
Split sp 1 3 b b1 b2 b3
Pooling gp 1 1 b1 v 0=1 4=1
InnerProduct ip1 1 1 v w 0=4 1=1 2=32 9=1
InnerProduct ip2 1 1 w z 0=8 1=1 2=32 9=4
BinaryOp mul 2 1 b2 z se 0=2
Softmax sm 1 1 se s1 0=0 1=1
Deconvolution dc 1 1 s1 up 0=8 1=4 3=2 4=1 5=1 6=1024
Deconvolution dc2 1 1 b3 up2 0=8 1=2 3=2 5=1 6=256
Padding pd 1 1 up2 pp 0=1 1=1 2=1 3=1
Crop cr 1 1 pp cc -23309=2,1,1 -23310=2,-1,-1 -23311=2,-2,-1
Crop cc2 1 1 cc cd -23309=1,0 -23310=1,8 -23311=1,0
BinaryOp add 2 1 up cd sum 0=0
Permute p1 1 1 sum t 0=3
LayerNorm ln 1 1 t n 0=8 1=1.000000e-05 2=1
Permute p2 1 1 n u 0=4
Reshape rs 1 1 u r 0=0 1=-1 2=8
Convolution c2 1 1 r output 0=3 1=3 4=1 5=1 6=216
""",
    "zoo-border": """Input in 0 1 data
Convolution c1 1 1 data a 0=8 1=3 5=1 6=216 9=1
Convolution c2 1 1 a b 0=12 1=3 5=1 6=864
PixelShuffle ps 1 1 b output 0=2
""",
}


def zoo_models(folder: Path) -> list[str]:
    """Write the ZOO graphs with random weights and sidecars into `folder`; their .param paths
    (usable as `Case.model`)."""
    from realesr_portable.graph.ncnn_files import NcnnParam, array_layout, write_weights
    from realesr_portable.model.spec import ModelSpec

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(21)
    paths = []
    for name, body in ZOO.items():
        lines = body.strip().splitlines()
        blobs = {tok for line in lines for tok in line.split()[4 : 4 + sum(map(int, line.split()[2:4]))]}
        text = "\n".join(["7767517", f"{len(lines)} {len(blobs)}", *lines]) + "\n"
        param = NcnnParam.parse(text)
        weights = {layer.name: [rng.normal(0, 0.3, count).astype(np.float32) for count, _ in array_layout(layer)]
                   for layer in param.layers if array_layout(layer)}
        path = folder / f"{name}.param"
        path.write_text(text)
        path.with_suffix(".bin").write_bytes(write_weights(param, weights, fp16=False))
        ModelSpec(name=name, scale=2, input_blob="data", output_blob="output").save(path.with_suffix(".json"))
        paths.append(str(path))
    return paths


def make_cases(model: str, count: int, seed: int) -> list[Case]:
    """`count` mutated variants of an official model: mostly the graph, some sidecar, few weights."""
    files = resolve_model(model)
    text, size = files.param.read_text(), files.bin.stat().st_size
    sidecar = json.loads(files.spec.to_json())
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        roll = rng.random()
        param, json_text, edit, label = text, json.dumps(sidecar), ("none", 0, 0), ""
        if roll < 0.7:
            param, label = mutate_param(rng, text)
        elif roll < 0.9:
            json_text, label = mutate_sidecar(rng, sidecar)
        else:
            edit = bin_edit(rng, size)
            label = f"bin {edit}"
        cases.append(Case(model, param, edit, json_text, label))
    return cases


def _apply_bin(data: bytes, edit: tuple[str, int, int]) -> bytes:
    kind, pos, value = edit
    if kind == "truncate":
        return data[: len(data) - pos]
    if kind == "append":
        return data + b"\x01" * pos
    if kind == "tag":
        return value.to_bytes(4, "little") + data[4:]
    if kind == "byte":
        return data[:pos] + bytes([value]) + data[pos + 1 :]
    return data


def run_case(case: Case, folder: Path, weights: dict[str, bytes]) -> str:
    """"ran", "refused" or "ESCAPE ..." (anything but the project's one-line errors)."""
    param = folder / "m.param"
    param.write_text(case.param)
    (folder / "m.json").write_text(case.sidecar)
    binary = folder / "m.bin"
    binary.unlink(missing_ok=True)
    if case.bin_edit[0] == "none":
        binary.symlink_to(resolve_model(case.model).bin)
    else:
        binary.write_bytes(_apply_bin(weights[case.model], case.bin_edit))
    try:
        files = resolve_model(str(param))
        session = Session(files, cpu_device(), fp32=True, threads=1)
        channels = files.spec.in_channels
        session.run(np.random.default_rng(0).random((channels, 8, 8), dtype=np.float32))
        image = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Engine([session]).run_model(image, Options())  # the runtime's own path: padding, segments
    except ALLOWED as exc:
        text = str(exc)
        return "refused" if text and "\n" not in text and len(text) < 600 else f"ESCAPE multi-line message: {text[:200]!r}"
    except Exception as exc:  # noqa: BLE001 - this is what the fuzz looks for
        return f"ESCAPE {type(exc).__name__}: {str(exc)[:200]}"
    return "ran"


def _worker(conn: Connection, cases: list[tuple[int, Case]]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fuzz_"))
    weights = {model: resolve_model(model).bin.read_bytes() for model in {case.model for _, case in cases}}
    faulthandler.disable()  # a crash is the expected report here, not a dump on pytest's terminal
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # ncnn prints its own complaints on C stderr; the outcome is what counts
    try:
        for index, case in cases:
            conn.send(("start", index))
            conn.send(("done", index, run_case(case, folder, weights)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        conn.close()
        os._exit(0)


def run_all(cases: list[Case], workers: int, batch: int = 50, stall_s: float = 120.0) -> dict[int, str]:
    """Outcome per case index; a child that dies reports "CRASH <how>" for the case it was on and
    the rest of its batch goes to a new child. A child silent for `stall_s` is a "HANG"."""
    ctx = multiprocessing.get_context("fork")
    pending = [list(enumerate(cases))[i : i + batch] for i in range(0, len(cases), batch)]
    outcomes: dict[int, str] = {}
    running: dict[Connection, tuple[Any, list[tuple[int, Case]], list[int]]] = {}

    def launch(todo: list[tuple[int, Case]]) -> None:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(child, todo))
        proc.start()
        child.close()
        running[parent] = (proc, todo, [])

    while pending or running:
        while pending and len(running) < workers:
            launch(pending.pop())
        ready = wait(list(running), timeout=stall_s)
        if not ready:  # every running child is stuck
            for conn, (proc, todo, started) in list(running.items()):
                proc.kill()
                proc.join()
                stuck = started[-1] if started else todo[0][0]
                outcomes[stuck] = "HANG"
                rest = [item for item in todo if item[0] not in outcomes and item[0] != stuck]
                if rest:
                    pending.append(rest)
                del running[conn]
            continue
        for conn in ready:
            proc, todo, started = running[conn]
            try:
                message = conn.recv()
            except EOFError:
                proc.join()
                del running[conn]
                unfinished = [item for item in todo if item[0] not in outcomes]
                if unfinished:  # a child that ends before its batch is done crashed on the case it was on
                    victim = started[-1] if started and started[-1] not in outcomes else unfinished[0][0]
                    outcomes[victim] = f"CRASH exit {proc.exitcode}"
                    unfinished = [item for item in unfinished if item[0] != victim]
                if unfinished:
                    pending.append(unfinished)
                continue
            if message[0] == "start":
                started.append(message[1])
            else:
                outcomes[message[1]] = message[2]
    return outcomes


# --- The C++ runner's checks: the same cases through `realesr-portable-check`, and the verdicts
# --- of both validators side by side.

CONV2 = "Conv_2                   1 1 56 57 0=64 1=3 4=1 5=1 6=36864"  # realesr-animevideov3-x2's 2nd conv
RESIZE = "Resize_37                1 1 input.1_splitncnn_0 111 0=1 1=4.000000e+00 2=4.000000e+00"


def rule_cases(model: str = "realesr-animevideov3-x2") -> list[Case]:
    """One case per bound of the rule classes both validators must share (issue 17 items 12-14):
    dilation, kernel, stride and pad ranges, weight count vs input channels, Interp scale, and the
    sidecar's size_multiple, tile_pad, in_channels and scale; each just inside and just outside."""
    files = resolve_model(model)
    text, sidecar = files.param.read_text(), json.loads(files.spec.to_json())
    assert CONV2 in text and RESIZE in text, "the official graph changed: update CONV2/RESIZE"
    conv = {"dilation": ["2=16", "2=17", "2=1000", "12=0"], "kernel": ["1=31", "1=32", "11=0"],
            "stride": ["3=16", "3=17", "13=0"], "pad": ["4=256", "4=257", "4=100000", "15=-1", "4=-233", "4=-235"],
            "weights": ["6=36863", "6=36865", "6=1728", "6=73728"], "outputs": ["0=63", "0=8193"]}
    cases = []
    for rule, edits in conv.items():
        for edit in edits:
            key = edit.split("=")[0]
            line = " ".join(t for t in CONV2.split() if not t.startswith(f"{key}=")) + f" {edit}"
            cases.append(Case(model, text.replace(CONV2, line), ("none", 0, 0), json.dumps(sidecar), f"{rule} {edit}"))
    for scale in ("16.0", "16.5", "100000.0", "0.0625", "0.06"):
        line = RESIZE.replace("1=4.000000e+00 2=4.000000e+00", f"1={scale} 2={scale}")
        cases.append(Case(model, text.replace(RESIZE, line), ("none", 0, 0), json.dumps(sidecar), f"interp scale {scale}"))
    for key, values in {"size_multiple": [1, 64, 65, 100000, 0], "tile_pad": [0, 1024, 1025, -1],
                        "in_channels": [1, 3, 2], "out_channels": [1, 3], "scale": [0, 1, 2, 16, 17, 2**40]}.items():
        for value in values:
            cases.append(Case(model, text, ("none", 0, 0), json.dumps({**sidecar, key: value}), f"sidecar {key}={value}"))
    return cases


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
        v.weights.read_weights(parsed, _apply_bin(weights, case.bin_edit))
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
                    binary.write_bytes(_apply_bin(weights[case.model], case.bin_edit))
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
