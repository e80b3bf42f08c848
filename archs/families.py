"""The explicit, ordered list of architecture families the project knows.

Order matters only for detection (the first family whose keys match wins; their key sets do
not overlap). A caller with its own architecture passes its own list, e.g.
`(*FAMILIES, MY_FAMILY)`; nothing is registered by importing a module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .errors import UnsupportedModelError
from .family import ArchFamily, ArchInfo, names
from .rrdbnet.family import FAMILY as RRDBNET
from .srvgg.family import FAMILY as SRVGG
from .unet_discriminator.family import FAMILY as UNET_DISCRIMINATOR

FAMILIES: tuple[ArchFamily, ...] = (RRDBNET, SRVGG, UNET_DISCRIMINATOR)


def generators(families: Sequence[ArchFamily] = FAMILIES) -> tuple[ArchFamily, ...]:
    """The image-to-image generators among `families` (what can be trained as G and exported)."""
    return tuple(f for f in families if f.is_generator)


def family_named(name: str, families: Sequence[ArchFamily] = FAMILIES) -> ArchFamily:
    """The family called `name`; UnsupportedModelError naming the known ones otherwise."""
    for family in families:
        if family.name == name:
            return family
    raise UnsupportedModelError(f"unknown architecture name {name!r} (known: {names(families)})")


def arch_info(name: str, params: dict[str, Any], families: Sequence[ArchFamily] = FAMILIES) -> ArchInfo:
    """`name` with its constructor arguments, as the family called `name` describes it."""
    return ArchInfo(name, params, family=family_named(name, families))


def rename_keys(state_dict: Mapping[str, torch.Tensor], families: Sequence[ArchFamily] = FAMILIES) -> dict[str, torch.Tensor]:
    """Each family's renaming of old key layouts (e.g. the first ESRGAN code's) applied in turn."""
    renamed = dict(state_dict)
    for family in families:
        if family.rename_keys is not None:
            renamed = dict(family.rename_keys(renamed))
    return renamed
