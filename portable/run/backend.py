"""Which engine runs the net: ncnn (always installed) or PyTorch (optional, for CUDA/ROCm GPUs).

Both engines serve the same seam, a session: `run(CHW float32) -> CHW float32` on one padded tile
(plus `device_job`, which lets an engine convert pixels where it runs the net). Everything
around it (pre-pad, borders, tiles, alpha, 16-bit, outscale, TTA, `--dn` blending) stays the
runtime's (run/engine.py), so both backends produce the same pixels.

`auto` decides without importing torch where it can: torch's build info (`torch/version.py`, read
as text) and the GPU device nodes say whether a CUDA/ROCm run is possible at all; only then is
torch imported, through importlib, from the torch code (`realesr_portable.torch_backend`), which
the runtime never imports at import time (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..device.precision import ncnn_options
from ..device.select import Device
from ..errors import UserError
from ..model.catalog import ModelFiles

BACKENDS = ("auto", "ncnn", "torch")
PRECISIONS = ("fp32", "fp16", "bf16")
TORCH_ENGINE = "realesr_portable.torch_backend.session"
INSTALL_HINT = "install PyTorch for your GPU (README: 'The torch backend')"
# Device nodes of an NVIDIA driver, AMD's ROCm (kfd) and WSL's GPU bridge.
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


class BackendError(UserError, ValueError):
    """The torch backend cannot run here: no torch, no such device, or a model it cannot map."""

    exit_code = 1  # a failure of this machine, not bad usage, even while the command sets up (cli/commands.py)


@dataclass(frozen=True)
class TorchOptions:
    """Speed switches of the torch engine, each measured on its own by bench/torch_speed.py.

    Args:
        precision: None (fp16 on a GPU, fp32 on the CPU; `fp32=True` forces fp32), or one of
            fp32, fp16, bf16.
        channels_last: NHWC memory layout (tensor cores prefer it for convolutions).
        cudnn_benchmark: let cuDNN time its algorithms per input shape (torch's process-wide flag).
        cuda_graphs: capture the forward pass once per input shape and replay it (no launch cost).
        compile: a `torch.compile` mode ("default", "reduce-overhead", "max-autotune"), None for eager.
    """

    precision: str | None = None
    channels_last: bool = False
    cudnn_benchmark: bool = True
    cuda_graphs: bool = False
    compile: str | None = None

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def torch_gpu_possible() -> bool:
    """Without importing torch: torch is installed, built for CUDA or ROCm, and a GPU is present."""
    try:
        found = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return False
    if found is None or not found.submodule_search_locations:
        return False
    try:
        version = (Path(list(found.submodule_search_locations)[0]) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return False
    built_for_gpu = re.search(r"^(cuda|hip)\b[^=\n]*=\s*['\"]", version, re.MULTILINE) is not None
    return built_for_gpu and (os.name == "nt" or any(Path(node).exists() for node in _GPU_NODES))


def choose_backend(backend: str, gpu: str | int | None) -> str:
    """`ncnn` or `torch` for a `--backend` value; `auto` picks torch only where a GPU run is possible."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if str(gpu).strip() == "-1":
        return "ncnn"
    return "torch" if torch_gpu_possible() else "ncnn"


def load_torch_sessions(model: ModelFiles, gpu: str | int | None, fp32: bool, threads: int | None,
                        weights: bytes | None, options: TorchOptions, need_gpu: bool) -> list:
    """The torch engine's session for `model` (weights: `--dn` blended `.bin` bytes, else the file's).

    `need_gpu`: refuse the CPU (what `auto` wants: torch on the CPU is no gain over ncnn).
    """
    try:
        engine = importlib.import_module(TORCH_ENGINE)
    except (ImportError, OSError) as exc:
        raise BackendError(f"the torch backend needs PyTorch ({str(exc).splitlines()[0]}); {INSTALL_HINT}") from None
    return [engine.TorchSession.load(model, gpu, fp32=fp32, threads=threads, weights=weights, options=options,
                                     need_gpu=need_gpu)]


def load_torch_weights(path: Path, gpu: str | int | None, fp32: bool, threads: int | None,
                       options: TorchOptions) -> tuple[ModelFiles, list]:
    """A `.pth`/`.safetensors` run directly by the torch engine: (its files and spec, the session).

    The spec (scale, channels, size multiple, tile padding) comes from the architecture detected
    in the weights, as `convert` would write it; BackendError (one line) for what it cannot map.
    """
    try:
        engine = importlib.import_module(TORCH_ENGINE)
    except (ImportError, OSError) as exc:
        raise BackendError(f"{path.name}: PyTorch weights need the torch backend, which needs PyTorch "
                           f"({str(exc).splitlines()[0]}); {INSTALL_HINT}") from None
    session = engine.TorchSession.load_weights(path, gpu, fp32=fp32, threads=threads, options=options)
    return session.model, [session]


def describe_sessions(backend: str, sessions: list, fp32: bool, fp16_arith: bool = False) -> str:
    """The device line's middle: device(s), backend and precision."""
    if backend == "torch":
        return " + ".join(session.describe() for session in sessions)
    devices: list[Device] = [session.device for session in sessions]
    precisions = dict.fromkeys(ncnn_options(d, fp16_arith, fp32).describe() for d in devices)
    return f"{' + '.join(d.describe() for d in devices)}, backend ncnn, {' / '.join(precisions)}"
