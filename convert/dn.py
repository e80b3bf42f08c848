"""Denoise strength: blend two weight sets of one architecture, `w = dn * w_a + (1 - dn) * w_b`.

Why: realesr-general-x4v3 ships with a `-wdn` twin trained for less denoising; any mix of the two
is a valid model of the same graph, so a user picks the strength once at convert time (the
runtime can do the same on two `.bin` files with `ncnn_weights.blend_bins`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..errors import UserError
from .detect import ArchInfo


class BlendError(UserError, ValueError):
    """The two weight sets cannot be blended (strength out of range, or different architectures)."""


def blend_state_dicts(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], dn: float,
                      info_a: ArchInfo | None = None, info_b: ArchInfo | None = None) -> dict[str, torch.Tensor]:
    """`dn * a + (1 - dn) * b` per tensor, in float64, returned in a's dtypes; dn 1 and 0 return a and b exactly.

    Raises BlendError when `dn` is not in [0, 1], the architectures differ, or keys or shapes differ.
    """
    if not (isinstance(dn, (int, float)) and math.isfinite(dn) and 0.0 <= dn <= 1.0):
        raise BlendError(f"denoise strength must be a number in [0, 1], got {dn}")
    if info_a is not None and info_b is not None and (info_a.name, info_a.params) != (info_b.name, info_b.params):
        raise BlendError(f"cannot blend different architectures: {info_a.describe()} vs {info_b.describe()}")
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise BlendError(f"cannot blend: the weight sets differ in {len(only)} key(s), e.g. {only[0]}")
    blended: dict[str, torch.Tensor] = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise BlendError(f"cannot blend: {key} has shape {list(ta.shape)} vs {list(tb.shape)}")
        if dn == 1.0 or dn == 0.0:
            blended[key] = (ta if dn == 1.0 else tb).clone().to(ta.dtype)
            continue
        mixed = dn * ta.to(torch.float64) + (1.0 - dn) * tb.to(torch.float64)
        blended[key] = mixed.to(ta.dtype)
    return blended
