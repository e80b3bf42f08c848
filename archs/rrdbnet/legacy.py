"""Rename old-style ESRGAN keys (`model.0`, `model.1.sub.N.RDB1.conv1.0`) to RRDBNet's.

Why: many community x4 models (and the original ESRGAN release) were saved from the first
ESRGAN code, whose RRDBNet was one `nn.Sequential` named `model`. The network is the same as
our RRDBNet at scale 4, so renaming the keys lets them convert and fine-tune like official ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# Old top-level Sequential: 0 conv_first, 1 ShortcutBlock(RRDBs + conv_body), 2 upsample,
# 3 conv_up1, 4 lrelu, 5 upsample, 6 conv_up2, 7 lrelu, 8 conv_hr, 9 lrelu, 10 conv_last.
_X4_OUTER = {"0": "conv_first", "3": "conv_up1", "6": "conv_up2", "8": "conv_hr", "10": "conv_last"}
_RDB_KEY = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$")
_OUTER_KEY = re.compile(r"model\.(\d+)\.(weight|bias)$")
_BODY_CONV_KEY = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)$")


def is_legacy_esrgan(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for an old-layout ESRGAN x4 state_dict (the only upsampler depth RRDBNet has)."""
    return "model.0.weight" in state_dict and "model.10.weight" in state_dict and "model.1.sub.0.RDB1.conv1.0.weight" in state_dict


def rename_legacy_esrgan(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """RRDBNet keys for an old-layout ESRGAN x4 state_dict; other state_dicts come back unchanged."""
    if not is_legacy_esrgan(state_dict):
        return dict(state_dict)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if m := _RDB_KEY.match(key):
            block, rdb, conv, kind = m.groups()
            renamed[f"body.{block}.rdb{rdb}.conv{conv}.{kind}"] = value
        elif (m := _BODY_CONV_KEY.match(key)):  # the conv closing the trunk, after the last RRDB
            renamed[f"conv_body.{m.group(2)}"] = value
        elif (m := _OUTER_KEY.match(key)) and m.group(1) in _X4_OUTER:
            renamed[f"{_X4_OUTER[m.group(1)]}.{m.group(2)}"] = value
        else:
            renamed[key] = value  # left as is: detection will name it as unexpected
    return renamed
