"""Which architecture a state_dict belongs to, and its hyper-parameters, from keys and shapes alone.

Declarative, as spandrel does it: each family (`realesr_portable.archs`) recognises its own keys
and reads every hyper-parameter off a tensor shape. The guess is then checked against a
shape-only (meta device) instance, so a state_dict that merely resembles one is refused with the
differences named.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..archs.families import FAMILIES, arch_info
from ..archs.family import (ArchFamily, ArchInfo, StateDict, UnsupportedModelError, build_model,
                            check_state_dict, describe_mismatch, names)

__all__ = ["ArchInfo", "UnsupportedModelError", "arch_info", "build_model", "check_state_dict", "describe_mismatch",
           "build_loaded", "detect_architecture", "detect_weights", "load_model"]


def _describe(sd: StateDict, limit: int = 6) -> str:
    items = [f"{k} {list(v.shape)}" for k, v in list(sd.items())[:limit]]
    more = f", ... ({len(sd)} tensors)" if len(sd) > limit else ""
    return ", ".join(items) + more if items else "no tensors"


def detect_architecture(state_dict: StateDict, families: Sequence[ArchFamily] = FAMILIES) -> ArchInfo:
    """Detect the architecture of a bare state_dict (see `weights_io.load_state_dict`).

    Raises UnsupportedModelError naming the keys and shapes found when no family matches.
    """
    if not state_dict:
        raise UnsupportedModelError("unsupported model: the state_dict is empty")
    for family in families:
        info = family.detect(state_dict)
        if info is not None:
            check_state_dict(info, state_dict)
            return info
    raise UnsupportedModelError(
        f"unsupported model: no known architecture ({names(families)}) matches; found {_describe(state_dict)}"
    )


def detect_weights(state_dict: StateDict, families: Sequence[ArchFamily] = FAMILIES,
                   spandrel: bool = True) -> tuple[ArchInfo, dict[str, torch.Tensor]]:
    """`detect_architecture`, then spandrel for what `families` do not know (when installed).

    Returns the state_dict to use with the ArchInfo: spandrel's key layout for its architectures.
    Our families come first: they have direct ncnn writers and ncnn importers. The error for
    unknown weights names both attempts.
    """
    try:
        return detect_architecture(state_dict, families), dict(state_dict)
    except UnsupportedModelError as ours:
        if not spandrel:
            raise
        from .spandrel_arch import detect_with_spandrel

        try:
            info, canonical = detect_with_spandrel(state_dict)
        except UnsupportedModelError as theirs:
            raise UnsupportedModelError(f"{ours}; {theirs}") from None
        return info, canonical


def build_loaded(info: ArchInfo, state_dict: StateDict) -> nn.Module:
    """The module around `state_dict`'s tensors as float32, in eval mode (built on the meta device
    where the family allows it: no random init to pay for; fp16 checkpoints, common among
    community models, become float32 here)."""
    meta = not info.family.foreign
    with torch.device("meta" if meta else "cpu"):
        module = build_model(info)
    module.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True, assign=meta)
    return module.eval()


def load_model(state_dict: StateDict, families: Sequence[ArchFamily] = FAMILIES,
               spandrel: bool = True) -> tuple[ArchInfo, nn.Module]:
    """Detect (spandrel after `families`, see `detect_weights`), build and load strictly, in one step."""
    info, weights = detect_weights(state_dict, families, spandrel)
    return info, build_loaded(info, weights)
