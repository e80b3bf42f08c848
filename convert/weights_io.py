"""Load and save generator weights safely (.pth through `weights_only=True`, or .safetensors).

Why: a `.pth` is a pickle and a pickle can run arbitrary code on load. Community weights are
downloaded from anywhere, so only the restricted unpickler is ever used; a file that needs more
is refused, never run. Training checkpoints nest the weights (`params_ema`, `params`,
`state_dict`) and DDP prefixes keys with `module.`; old ESRGAN files use other key names.
Callers get the bare state_dict with our architectures' key names.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import UserError, one_line
from ..archs.families import rename_keys
from ..atomic import special_kind, write_atomic, write_bytes_atomic
from .pth_guard import UnsafeWeightsError, check_torch_zip

#: Keys under which checkpoints nest the weights, in order of preference (EMA weights first,
#: as the official Real-ESRGAN releases are meant to be used).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
_SAFETENSORS_SUFFIXES = (".safetensors",)


class WeightsError(UserError, ValueError):
    """A weights file is missing, unreadable, unsafe, or does not hold a state_dict (one-line message)."""


class TorchFileError(WeightsError):
    """A `.pth` the restricted reader refused or could not read; `reason` is the message without
    the path, for callers that name the file their own way ("cannot read checkpoint X: ...")."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def read_torch_file(path: Path) -> object:
    """`torch.load` as every `.pth` reader here uses it (weights, trainer checkpoints, VGG19):
    a bounded look inside first, then `weights_only=True`; every failure one TorchFileError."""
    try:
        check_torch_zip(path)  # bounded look inside first: torch.load trusts sizes
    except UnsafeWeightsError as err:
        raise TorchFileError(path, f"refused: {err}") from None
    except OSError as err:
        raise TorchFileError(path, f"cannot read ({err.strerror or err})") from None
    try:
        with warnings.catch_warnings():  # protocol-version chatter; errors still raise
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # The restricted unpickler met a global it does not allow (code or an unknown class).
        detail = one_line(err)
        if not _starts_like_a_pickle(path):  # a PNG, a text file: their bytes read as opcodes or globals
            raise TorchFileError(path, "not a PyTorch weights file (neither a torch.save archive nor a pickle)") from None
        operand = re.search(r"Unsupported operand (\d+)", detail)
        if operand is not None:  # pickle.dump's protocol 4/5 framing: torch's paragraph says "operand 149"
            raise TorchFileError(path, f"refused: the pickle uses opcode {int(operand[1]):#04x} (protocol 4 or newer), "
                                       "which the restricted reader does not read (nothing was executed); re-save it "
                                       "with torch.save's defaults or as .safetensors") from None
        if "weights only load failed" in detail.lower() or "unsupported global" in str(err).lower():
            raise TorchFileError(
                path, "refused: the pickle references code or classes outside plain tensors "
                "(read with weights_only=True, nothing was executed); if you trust it, re-save it as "
                "torch.save(model.state_dict(), path) or as .safetensors"
            ) from None
        raise TorchFileError(path, f"not a readable PyTorch weights file ({detail})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError) as err:
        raise TorchFileError(path, f"truncated or not a PyTorch weights file ({one_line(err)})") from None
    except (KeyError, IndexError, AttributeError, struct.error):
        # garbage read as a legacy (non-zip) pickle fails inside the restricted unpickler with
        # whatever its opcode handlers raise (unknown memo keys, short stacks): nothing to quote
        raise TorchFileError(path, "truncated or not a PyTorch weights file (a corrupt pickle)") from None


def _starts_like_a_pickle(path: Path) -> bool:
    """Whether the file is shaped as torch.save writes: a zip archive, or (legacy) a pickle that
    begins with the PROTO opcode."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{path}: truncated or not a safetensors file ({one_line(err)})") from None


def _unwrap(obj: object, path: Path) -> Mapping[str, object]:
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            return inner
    return obj


def unwrap_state_dict(obj: object, path: Path | str = "<memory>") -> dict[str, torch.Tensor]:
    """The bare state_dict inside a loaded checkpoint; WeightsError if there is none."""
    inner = _unwrap(obj, Path(path))
    tensors = {str(k): v for k, v in inner.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(list(map(str, inner))[:6]) or "nothing"
        raise WeightsError(f"{path}: no tensors found (top-level keys: {keys}); not a state_dict")
    complex_key = next((k for k, v in tensors.items() if v.is_complex()), None)
    if complex_key is not None:
        raise WeightsError(f"{path}: entry {complex_key!r} holds complex values; a super-resolution network has real weights")
    for key, value in tensors.items():
        why = _unusable(value)
        if why is not None:
            raise WeightsError(f"{path}: entry {key!r} {why}")
    if len(tensors) != len(inner):
        odd = next(k for k, v in inner.items() if not isinstance(v, torch.Tensor))
        raise WeightsError(f"{path}: entry {odd!r} is a {type(inner[odd]).__name__}, not a tensor; not a state_dict")
    if all(k.startswith("module.") for k in tensors):  # saved from a DDP-wrapped model
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return rename_keys(tensors)


#: Integer types that only quantized weights use: int8 weights read as floats once converted
#: "successfully" into garbage. (int32/int64 stay: SwinIR and DAT keep position indices in them.)
_QUANTIZED_DTYPES = (torch.bool, torch.int8, torch.uint8, torch.int16)


def _unusable(value: torch.Tensor) -> str | None:
    """Why a tensor cannot be a weight here (sparse, meta, quantized), or None. Each once ended
    as an "internal error" thousands of characters long, or as a silently wrong model."""
    if value.layout != torch.strided:
        return f"is a {str(value.layout).removeprefix('torch.')} tensor; save dense weights (tensor.to_dense())"
    if value.is_meta:
        return "is a meta tensor: it holds no values (saved from a model that was never materialised)"
    if value.is_quantized or value.dtype in _QUANTIZED_DTYPES:
        return f"holds {str(value.dtype).removeprefix('torch.')} values: quantized weights are not supported; use float weights"
    return None


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read weights from `.pth`/`.pt`/`.ckpt` (restricted unpickler) or `.safetensors`.

    Returns float tensors on the CPU keyed like `model.state_dict()`. Raises WeightsError.
    """
    path = Path(path)
    if not path.is_file():  # a FIFO would block the reader; a folder or device is no weights file
        kind = special_kind(path)
        raise WeightsError(f"{path}: weights file not found" if kind is None else f"{path}: not a regular file ({kind})")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: file is empty")
    if path.suffix.lower() in _SAFETENSORS_SUFFIXES:
        obj: object = _read_safetensors(path)
    else:
        obj = read_torch_file(path)
    return unwrap_state_dict(obj, path)


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike[str], key: str = "params_ema"
) -> Path:
    """Write `{key: state_dict}` (the official release layout) atomically: temp file, then rename.

    `.safetensors` paths get a flat safetensors file instead (that format has no nesting).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if path.suffix.lower() in _SAFETENSORS_SUFFIXES:
        from safetensors.torch import save

        write_bytes_atomic(path, save(tensors))
    else:
        write_atomic(path, lambda fh: torch.save({key: tensors}, fh))
    return path
