"""Crash-safe checkpoints: temporary file + fsync + rename, the last N kept.

A checkpoint is one `torch.save` dict of tensors and plain containers (loadable with
`weights_only=True`): generator, EMA, discriminator, optimisers, schedulers, RNG states, the
training pair pool and the iteration. A kill at any moment leaves either the old or the new
file, never a torn one; a full disk leaves the previous checkpoint in place and stops the run.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import threading
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..archs.family import describe_mismatch
from ..convert.weights_io import TorchFileError, read_torch_file
from ..errors import UserError
from ..atomic import remove_stale, write_atomic

_NAME = re.compile(r"^iter_(\d{8,})\.pth$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be written or read; the message names the file."""


class RunBusyError(UserError):
    """Another training holds the run folder's lock (two runs once interleaved one folder's
    checkpoints and log)."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir/.lock` (an advisory flock, gone with the process, SIGKILL included) while a
    training writes the folder; a second training into it fails at once instead."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(f"another training is writing {run_dir}; wait for it or choose another name") from None
        remove_stale(checkpoint_dir(run_dir))  # a SIGKILLed save's temporary file (hundreds of MB)
        yield
    finally:
        os.close(fd)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    return checkpoint_dir(run_dir) / f"iter_{iteration:08d}.pth"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of the run's checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically, flushed to disk (a checkpoint lost to a power cut costs hours)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda fh: torch.save(obj, fh), fsync=True)


def save(run_dir: Path, iteration: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write the checkpoint of `iteration`, then delete all but the newest `keep_last`."""
    path = checkpoint_path(run_dir, iteration)
    try:
        with signals_held():
            atomic_save({**state, "iteration": iteration}, path)
    except OSError as exc:
        previous = list_checkpoints(run_dir)
        kept = f"; the previous checkpoint {previous[-1][1]} is intact" if previous else ""
        raise CheckpointError(
            f"could not write checkpoint {path} at iteration {iteration} ({exc.strerror or exc}){kept}"
        ) from None
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C or SIGTERM waits until the checkpoint is written (a few seconds at most): arriving
    inside torch's zip writer it once ended as "internal error: RuntimeError: [enforce fail ...]"
    with the checkpoint lost. Python runs signal handlers in the main thread only, so the handlers
    are swapped for one that notes the signal, and the noted one is handled right after the write
    (KeyboardInterrupt, the CLI's Terminated: exit 130/143). Elsewhere than the main thread this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    before = {sig: signal.signal(sig, lambda signum, _frame: noted.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if noted:
            handler = before[noted[0]]
            if callable(handler):
                handler(noted[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(noted[0])


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint (the bounded, restricted reader every `.pth` goes through)."""
    try:
        if Path(path).exists() and not Path(path).is_file():  # a FIFO would block torch.load for good
            raise CheckpointError(f"cannot read checkpoint {path}: not a regular file")
        if Path(path).stat().st_size == 0:  # a full disk or a copy cut short; torch says only "EOFError"
            raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
        state = read_torch_file(Path(path))
    except TorchFileError as exc:  # torch's own text for some of these is a paragraph
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.reason}") from None
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except CheckpointError:
        raise
    except OSError as exc:  # a link loop, no permission: the reason, not "[Errno 40] ..."
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not isinstance(state, dict) or "iteration" not in state:
        raise CheckpointError(f"{path} is not a trainer checkpoint (no 'iteration')")
    return state


def load_latest(run_dir: Path, skipped: Callable[[str], object] = lambda _: None) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run (an unreadable newest one falls back to older).

    `skipped` gets one line per unreadable checkpoint passed over, for the user to see: resuming
    from an older checkpoint repeats iterations, which they should not learn from the log alone.
    """
    errors = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            found = path, load(path)
        except CheckpointError as exc:
            errors.append(str(exc))
            continue
        for error in errors:
            skipped(f"skipped: {error}; using {path}")
        return found
    if errors:
        raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(run_dir)}: {errors[0]}")
    return None


def check_network(path: Path, key: str, module: nn.Module, state: dict[str, Any]) -> None:
    """Refuse `state[key]` unless it fits `module`, naming the first differing keys and both shapes.

    Why before `load_state_dict`: torch's error starts with "Error(s) in loading state_dict", a
    first line that says nothing about which layer of the changed network differs.
    """
    saved = state.get(key)
    if not isinstance(saved, dict) or not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise CheckpointError(f"checkpoint {path} has no '{key}' weights")
    problem = describe_mismatch({k: v.shape for k, v in module.state_dict().items()}, saved)
    if problem:
        raise CheckpointError(f"checkpoint {path} does not match the configured network ('{key}'): {problem}")


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """RNG states worth restoring: torch CPU, every CUDA device, the degradation generator."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["degradation"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "degradation" in state:
        generator.set_state(state["degradation"])
