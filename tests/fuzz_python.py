"""The Python runtime under the fuzz: a fork-based runner that survives native crashes.

Children run batches of cases (fuzz_cases.py) and report the case they start before running it,
so a child killed by a signal names the mutation that killed it.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import shutil
import tempfile
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from fuzz_cases import Case, apply_bin
from realesr_portable.device.select import cpu_device
from realesr_portable.errors import UserError
from realesr_portable.model.catalog import ModelNotFoundError, resolve_model
from realesr_portable.model.spec import ModelSpecError
from realesr_portable.run.engine import Engine, Options
from realesr_portable.run.session import ModelLoadError, Session, TileError

ALLOWED = (UserError, ModelLoadError, ModelSpecError, ModelNotFoundError, TileError)  # the project's one-line errors


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
        binary.write_bytes(apply_bin(weights[case.model], case.bin_edit))
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
