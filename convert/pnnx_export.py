"""Export any traceable generator to ncnn through pnnx, isolated in a child process.

Why a child process: pnnx's memory grows faster than linearly with model depth (a 23-block
RRDBNet needs ~23 GiB) and when the kernel kills it for memory, `pnnx.export` has been seen to
return normally without writing any file. Running it in a spawned process keeps such a kill from
taking the caller down, and the files are checked afterwards instead of trusting the return.
pnnx also litters its folder with intermediate files (.pt, .onnx, pnnx.param, Python scripts),
so it works in a temporary folder and only the two ncnn files' bytes come back.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from torch import nn

from ..errors import UserError
from ..graph.ncnn_files import NcnnFormatError, NcnnParam
from .direct_writer import NcnnModel


class ExportError(UserError, RuntimeError):
    """pnnx failed, was killed, or produced no usable ncnn files (one-line message)."""


class _InferenceCtx:
    """The `ctx` a custom autograd Function's forward gets when called for tracing (no backward)."""

    def save_for_backward(self, *_tensors: object) -> None:
        pass

    def mark_non_differentiable(self, *_tensors: object) -> None:
        pass

    def set_materialize_grads(self, _value: bool) -> None:
        pass


def _inline_autograd_functions(torch: ModuleType) -> None:
    """Make custom autograd Functions trace as the plain ops of their forward.

    Why: TorchScript cannot save a Python autograd Function (community modules use them, e.g.
    OmniSR's LayerNorm2d), and inference never needs their backward. Patched in the spawned
    child only, which exits after the export.
    """
    base_setup = torch.autograd.Function.setup_context

    def apply(cls: type, *args: object, **kwargs: object) -> object:
        if cls.setup_context is not base_setup:  # the newer style: forward takes no ctx
            return cls.forward(*args, **kwargs)
        return cls.forward(_InferenceCtx(), *args, **kwargs)

    torch.autograd.Function.apply = classmethod(apply)


def _child(prepare: Callable[[], object] | None, model_pickle: bytes, shape: tuple[int, ...], pt_path: str,
           fp16: bool, log_path: str) -> None:
    """Runs in the spawned process: trace and convert, with pnnx's chatter sent to a log file.

    The model comes pickled so that `prepare` runs before its classes are imported here.
    """
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if prepare is not None:
        prepare()
    import pnnx
    import torch

    _inline_autograd_functions(torch)
    model = pickle.loads(model_pickle)

    torch.manual_seed(0)
    example = torch.rand(*shape)
    with torch.no_grad():
        pnnx.export(model.eval(), pt_path, example, fp16=fp16)
    sys.stdout.flush()


def io_blobs(param: NcnnParam) -> tuple[str, str]:
    """The graph's input blob (the `Input` layer's top) and its single unconsumed output blob."""
    inputs = [layer.tops[0] for layer in param.layers if layer.type == "Input"]
    consumed = {b for layer in param.layers for b in layer.bottoms}
    outputs = [t for layer in param.layers for t in layer.tops if t not in consumed]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"exported graph has {len(inputs)} inputs and {len(outputs)} outputs; expected one each")
    return inputs[0], outputs[0]


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def export_with_pnnx(model: nn.Module, example_shape: tuple[int, int, int, int], fp16: bool = True,
                     timeout: float | None = None, prepare: Callable[[], object] | None = None) -> NcnnModel:
    """Trace `model` on a random input of `example_shape` (N, C, H, W) and return its ncnn files.

    pnnx keeps H and W dynamic (Interp by scale factor), so any small example size works, but it
    must be a valid input (a multiple of the model's size multiple). `prepare` (a module-level
    function) runs in the child before the model is unpickled there. Raises ExportError.
    """
    with tempfile.TemporaryDirectory(prefix="realesr-pnnx-") as tmp:
        folder = Path(tmp)
        pt_path, log_path = folder / "model.pt", folder / "pnnx.log"
        ctx = multiprocessing.get_context("spawn")
        try:
            payload = pickle.dumps(model)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise ExportError(f"the model cannot be handed to pnnx's process: {err}") from None
        proc = ctx.Process(target=_child, args=(prepare, payload, tuple(example_shape), str(pt_path), fp16, str(log_path)))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise ExportError(f"pnnx did not finish within {timeout:.0f} s")
        if proc.exitcode != 0:
            how = f"was killed by signal {-proc.exitcode} (out of memory?)" if proc.exitcode < 0 else f"exited with code {proc.exitcode}"
            detail = _last_line(log_path)
            raise ExportError(f"pnnx {how}" + (f": {detail}" if detail else ""))
        param_path, bin_path = folder / "model.ncnn.param", folder / "model.ncnn.bin"
        if not param_path.is_file() or not bin_path.is_file() or bin_path.stat().st_size == 0:
            raise ExportError("pnnx returned without writing the ncnn files (out of memory or an unsupported operator?)")
        text = param_path.read_text(encoding="utf-8")
        data = bin_path.read_bytes()
    try:
        param = NcnnParam.parse(text)
    except NcnnFormatError as err:
        raise ExportError(f"pnnx wrote an unreadable .param: {err}") from None
    left = sorted({layer.type for layer in param.layers if not layer.type.isidentifier()})
    if left:  # pnnx names what it could not map to ncnn by its torch name, e.g. Tensor.reshape
        raise ExportError(f"pnnx could not map {', '.join(left)} to ncnn layers")
    in_blob, out_blob = io_blobs(param)
    return NcnnModel(text, data, in_blob, out_blob)
