"""Community architectures through spandrel (the optional `[spandrel]` extra): detect, build, describe.

Why spandrel: it recognises 40+ super-resolution architectures (SPAN, OmniSR, DAT, SwinIR, ...)
from a state_dict's keys and shapes, the same declarative way `archs/` recognises the project's
own families. Our families are asked first (they have direct ncnn writers and importers); spandrel
is the fallback, and what it finds becomes an `ArchFamily` made for that one model (nothing is
registered). The module it loaded is the reference the exported ncnn graph is verified against.

The torchvision work-around: spandrel imports `torchvision.transforms.functional` at import time,
for two architectures we refuse anyway (LaMa inpainting, RestoreFormer face restoration). PyPI's
x86_64 torchvision wheels are CUDA builds whose `_C.so` needs `libc10_cuda.so`, so beside a CPU
build of torch `import torchvision` raises "operator torchvision::nms does not exist". When (and
only when) the real torchvision fails to import, spandrel is imported with a stand-in for that one
module whose functions raise if ever called; the stand-in is removed from `sys.modules` again
right after, so nothing else in the process sees it.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..archs.family import ArchFamily, ArchInfo, StateDict, UnsupportedModelError
from ..errors import one_line

#: Spandrel's purposes whose models map an image to an image by a whole scale (what the runtime runs).
_PURPOSES = ("SR", "Restoration")
_TV_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
#: The context every tile cut gets measured up to (spandrel knows no receptive fields).
MEASURE_LIMIT = 64
INSTALL_HINT = 'pip install "realesr-portable[spandrel]"'


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # RuntimeError from a CUDA wheel beside CPU torch, ImportError when absent
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        return False
    return True


def _unavailable(*_args: object, **_kwargs: object) -> object:
    raise RuntimeError("torchvision cannot be imported beside this torch build")


def _torchvision_stand_in() -> dict[str, ModuleType]:
    root, transforms, functional = (types.ModuleType(name) for name in _TV_NAMES)
    functional.rotate = functional.normalize = _unavailable  # type: ignore[attr-defined]
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest")  # type: ignore[attr-defined]
    root.transforms, transforms.functional = transforms, functional  # type: ignore[attr-defined]
    return dict(zip(_TV_NAMES, (root, transforms, functional)))


def import_spandrel() -> ModuleType:
    """The spandrel package (see the module docstring for torchvision); UnsupportedModelError when absent.

    Also called first in pnnx's child process, which unpickles spandrel's classes.
    """
    loaded = sys.modules.get("spandrel")
    if loaded is not None:
        return loaded
    if importlib.util.find_spec("spandrel") is None:
        raise UnsupportedModelError(f"spandrel is not installed ({INSTALL_HINT})")
    if _torchvision_imports():
        import spandrel

        return spandrel
    sys.modules.update(_torchvision_stand_in())
    try:
        import spandrel
    finally:
        for name in _TV_NAMES:
            sys.modules.pop(name, None)
    return spandrel


def _refuse(arch: str, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"spandrel found {arch}, which cannot be exported: {why}")


def _check_exportable(descriptor: Any) -> None:
    arch = descriptor.architecture.name
    if descriptor.purpose not in _PURPOSES:
        raise _refuse(arch, f"a {descriptor.purpose} model, not an image-to-image upscaler")
    # spandrel keeps no public flag for it: its default call function is a lambda of the descriptor's
    call = getattr(descriptor, "_call_fn", None)
    if call is not None and not getattr(call, "__qualname__", "").startswith("ImageModelDescriptor."):
        raise _refuse(arch, "it needs spandrel's own pre/post-processing around the network")
    if descriptor.size_requirements.square:
        raise _refuse(arch, "it only runs on square inputs")
    if not hasattr(descriptor.model, "hyperparameters"):
        raise _refuse(arch, "spandrel does not record its hyper-parameters")


def _family(descriptor: Any) -> ArchFamily:
    """The family of this one model: rebuilt from spandrel's class and hyper-parameters."""
    cls, hyper = type(descriptor.model), dict(descriptor.model.hyperparameters)

    def module(**_params: object) -> nn.Module:
        return cls(**hyper)

    return ArchFamily(
        name=descriptor.architecture.name,
        module=module,
        detect=lambda _sd: None,
        scale_arg="scale",
        size_multiple=lambda params: int(params["size_multiple"]),
        receptive_radius=lambda _params: MEASURE_LIMIT,
        measure_pad=True,
        foreign=True,
        child_import=import_spandrel,
    )


def _json_safe(value: object) -> object:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return getattr(value, "__name__", repr(value))  # classes such as norm_layer=nn.LayerNorm


def detect_with_spandrel(state_dict: StateDict) -> tuple[ArchInfo, dict[str, torch.Tensor]]:
    """(ArchInfo, the state_dict in the key layout of spandrel's module for it).

    UnsupportedModelError (one line) when spandrel is missing, knows no architecture for these
    keys, or finds one that the ncnn route cannot take (inpainting, face models, square-only).
    """
    spandrel = import_spandrel()
    try:
        with warnings.catch_warnings():  # SwinIR/OmniSR build with torch.meshgrid: two lines of torch's advice
            warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
            descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(dict(state_dict))
    except spandrel.UnsupportedModelError:
        raise UnsupportedModelError("spandrel knows no architecture for these keys either") from None
    except (RuntimeError, ValueError, KeyError, IndexError, AssertionError, TypeError) as err:
        # the whole message on one line: torch puts the key that does not fit on its second line
        detail = one_line(err)
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise UnsupportedModelError(f"spandrel could not load these weights: {detail}") from None
    _check_exportable(descriptor)
    module = descriptor.model.float().eval()
    params: dict[str, Any] = {
        "scale": int(descriptor.scale),
        "num_in_ch": int(descriptor.input_channels),
        "num_out_ch": int(descriptor.output_channels),
        "size_multiple": int(descriptor.size_requirements.multiple_of),
        "min_size": int(descriptor.size_requirements.minimum),
        "spandrel": str(descriptor.architecture.id),
        "hyperparameters": _json_safe(descriptor.model.hyperparameters),
    }
    notes: tuple[str, ...] = ()
    if descriptor.size_requirements.minimum > 1:
        notes += (f"{descriptor.architecture.name} needs inputs of at least {descriptor.size_requirements.minimum} px",)
    info = ArchInfo(descriptor.architecture.name, params, notes=notes, family=_family(descriptor))
    return info, {k: v.detach() for k, v in module.state_dict().items()}
