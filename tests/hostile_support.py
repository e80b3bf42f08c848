"""Shared pieces of the hostile-input tests: official models copied with edits, and a forked
child that reports a native crash (SIGSEGV, SIGFPE) as a result instead of taking pytest down, and
a net that overflows fp16 (or fp32) on purpose."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from realesr_portable.graph.ncnn_files import NcnnParam, write_weights
from realesr_portable.model.catalog import resolve_model


def official_sidecar(name: str) -> dict[str, Any]:
    """The spec of an official model as the sidecar JSON `convert` would write for it."""
    return json.loads(resolve_model(name).spec.to_json())


def edited_model(tmp_path: Path, name: str, param_edit: Callable[[str], str] = lambda t: t,
                 sidecar: dict[str, Any] | str | None = None, stem: str = "m") -> Path:
    """`stem.param` (edited), `stem.bin` (a link to the official weights) and `stem.json`."""
    files = resolve_model(name)
    param, weights = files.param, files.bin
    text = param.read_text()
    edited = param_edit(text)
    (tmp_path / f"{stem}.param").write_text(edited)
    (tmp_path / f"{stem}.bin").symlink_to(weights)
    data = official_sidecar(name) if sidecar is None else sidecar
    (tmp_path / f"{stem}.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return tmp_path / f"{stem}.param"


def replace_once(old: str, new: str) -> Callable[[str], str]:
    """A `.param` edit that must change exactly one place (so a test cannot silently edit nothing)."""

    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        return text.replace(old, new)

    return edit


def _child(conn: Any, func: Callable[[], Any]) -> None:
    try:
        conn.send(("ok", func()))
    except BaseException as exc:  # noqa: BLE001 - report everything to the parent
        conn.send(("raised", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
        os._exit(0)


def in_child(func: Callable[[], Any], timeout: float = 120.0) -> tuple[str, Any]:
    """Run `func` in a forked child: ("ok", value), ("raised", "Type: message") or ("signal", name)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, func))
    proc.start()
    child.close()
    result: tuple[str, Any] | None = None
    if parent.poll(timeout):
        try:
            result = parent.recv()
        except EOFError:
            result = None
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return ("hang", f"no answer in {timeout} s")
    if result is None:
        code = proc.exitcode or 0
        return ("signal", signal.Signals(-code).name if code < 0 else f"exit {code}")
    return result


OVERFLOW = """7767517
4 4
Input in 0 1 data
Convolution up 1 1 data big 0=12 1=3 4=1 5=1 6=324
Convolution down 1 1 big small 0=12 1=1 5=1 6=144
PixelShuffle ps 1 1 small output 0=2
"""


def overflow_model(folder: Path, up: float = 3e5) -> Path:
    """`overflow.param/.bin`, x2: activations ~1e6 after `up` (fp16's max is 65504), brought back
    to ~1 by `down`; `up=1e38` overflows fp32 too (inf weights on purpose)."""
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):
        big = rng.normal(0, 1, 324).astype(np.float32) * np.float32(up)
    weights = {"up": [big, np.zeros(12, np.float32)],
               "down": [rng.normal(0, 1, 144).astype(np.float32) * np.float32(1e-6), np.full(12, 0.5, np.float32)]}
    param = folder / "overflow.param"
    param.write_text(OVERFLOW)
    param.with_suffix(".bin").write_bytes(write_weights(NcnnParam.parse(OVERFLOW), weights, fp16=False))
    return param


#: The fast model on the CPU, quiet: hostile CLI cases on tiny images.
FAST = ["-n", "realesr-animevideov3-x2", "-g", "-1", "-q"]


def noise_image(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def good_image(folder: Path, name: str, seed: int = 0) -> Path:
    """A small noise image saved as `folder/name` (the format from the suffix)."""
    from PIL import Image

    path = folder / name
    Image.fromarray(noise_image(seed=seed)).save(path)
    return path


def assert_clean(output: str) -> None:
    """The CLI's promise: only its own one-line messages, never a traceback or an internal error."""
    assert "Traceback" not in output and "internal error" not in output, output
    assert all(line.startswith(("realesr-portable: ", "  ")) for line in output.splitlines()), output
