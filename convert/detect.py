"""Which architecture a state_dict belongs to, and its hyper-parameters, from keys and shapes alone.

Declarative, as spandrel does it: each architecture is recognised by keys that must exist, and
every hyper-parameter is read off a tensor shape (feature width from the first conv's outputs,
block count from the highest `body.N`, scale from the first conv's inputs or the last conv's
outputs). The guess is then checked against a shape-only (meta device) instance of the
architecture, so a state_dict that merely resembles one is refused with the differences named.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..trainer.archs.discriminator import UNetDiscriminatorSN
from ..trainer.archs.rrdbnet import RRDBNet
from ..trainer.archs.srvgg import SRVGGNetCompact

StateDict = Mapping[str, torch.Tensor]


class UnsupportedModelError(ValueError):
    """The state_dict matches no supported architecture; the message says what was found."""


@dataclass(frozen=True)
class ArchInfo:
    """An architecture name plus its constructor arguments (`build_model` turns it into a module).

    Args:
        name: `RRDBNet`, `SRVGGNetCompact` or `UNetDiscriminatorSN`.
        params: constructor keyword arguments, complete (defaults spelled out).
        notes: hyper-parameters that the weights cannot reveal and were assumed.
        output_resize: a bicubic resize the source graph applies after the network (the
            official animevideov3 x2/x3 ncnn files are the x4 net then x0.5 / x0.75); 1.0 if none.
    """

    name: str
    params: dict[str, Any]
    notes: tuple[str, ...] = field(default=())
    output_resize: float = 1.0

    @property
    def scale(self) -> int:
        """The network's own upscale factor (before any `output_resize`); 1 for discriminators."""
        return int(self.params.get("scale", self.params.get("upscale", 1)))

    @property
    def in_channels(self) -> int:
        return int(self.params.get("num_in_ch", 3))

    @property
    def out_channels(self) -> int:
        return int(self.params.get("num_out_ch", 1 if self.name == "UNetDiscriminatorSN" else 3))

    @property
    def size_multiple(self) -> int:
        """Input H and W must divide by this: pixel-unshuffle RRDBNets (x2 -> 2, x1 -> 4), U-Net D -> 8."""
        if self.name == "RRDBNet":
            return 4 // self.scale
        if self.name == "UNetDiscriminatorSN":
            return 8
        return 1


def build_model(info: ArchInfo) -> nn.Module:
    """A freshly initialised module for `info` (load the weights with `strict=True` afterwards)."""
    if info.name == "RRDBNet":
        return RRDBNet(**info.params)
    if info.name == "SRVGGNetCompact":
        return SRVGGNetCompact(**info.params)
    if info.name == "UNetDiscriminatorSN":
        return UNetDiscriminatorSN(**info.params)
    raise UnsupportedModelError(f"unknown architecture name {info.name!r}")


def _shape(sd: StateDict, key: str) -> tuple[int, ...]:
    return tuple(sd[key].shape)


def _describe(sd: StateDict, limit: int = 6) -> str:
    items = [f"{k} {list(v.shape)}" for k, v in list(sd.items())[:limit]]
    more = f", ... ({len(sd)} tensors)" if len(sd) > limit else ""
    return ", ".join(items) + more if items else "no tensors"


def _rrdbnet(sd: StateDict) -> ArchInfo | None:
    if "conv_first.weight" not in sd or "body.0.rdb1.conv1.weight" not in sd:
        return None
    if "conv_up3.weight" in sd:
        raise UnsupportedModelError("RRDBNet with conv_up3 (x8 upsampler) is not supported; scales 1, 2, 4 are")
    if "conv_last.weight" not in sd:
        raise UnsupportedModelError("looks like RRDBNet but conv_last.weight is missing")
    blocks = [int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.rdb", k))]
    num_feat, first_in = _shape(sd, "conv_first.weight")[:2]
    out_ch = _shape(sd, "conv_last.weight")[0]
    # Scales 1 and 2 pixel-unshuffle the input by 4 and 2: conv_first sees 16x / 4x the channels.
    options = [(4, 1), (2, 4), (1, 16)]
    fits = [(s, first_in // f) for s, f in options if first_in % f == 0]
    scale, in_ch = next(
        (c for c in fits if c[1] == out_ch), next((c for c in fits if c[1] in (1, 3, 4)), (4, first_in))
    )
    params = {
        "num_in_ch": in_ch,
        "num_out_ch": out_ch,
        "scale": scale,
        "num_feat": num_feat,
        "num_block": max(blocks) + 1,
        "num_grow_ch": _shape(sd, "body.0.rdb1.conv1.weight")[0],
    }
    return ArchInfo("RRDBNet", params)


def _srvgg(sd: StateDict) -> ArchInfo | None:
    pattern = re.compile(r"body\.(\d+)\.(weight|bias)$")
    if "body.0.weight" not in sd or not all(pattern.match(k) for k in sd):
        return None
    convs = sorted(int(pattern.match(k).group(1)) for k, v in sd.items() if k.endswith("weight") and v.dim() == 4)
    acts = sorted(int(pattern.match(k).group(1)) for k, v in sd.items() if k.endswith("weight") and v.dim() == 1)
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
        raise UnsupportedModelError(f"looks like SRVGGNetCompact but its convs sit at body indices {convs[:8]}")
    num_feat, in_ch = _shape(sd, "body.0.weight")[:2]
    last_out = _shape(sd, f"body.{convs[-1]}.weight")[0]
    upscale = math.isqrt(max(last_out // in_ch, 1))
    if upscale * upscale * in_ch != last_out:
        raise UnsupportedModelError(
            f"looks like SRVGGNetCompact but its last conv has {last_out} outputs, not {in_ch} x upscale^2"
        )
    notes: tuple[str, ...] = ()
    if acts:
        act_type = "prelu"
    else:
        act_type = "relu"
        notes = ("activations carry no weights: relu and leakyrelu look alike; assumed relu",)
    params = {
        "num_in_ch": in_ch,
        "num_out_ch": in_ch,
        "num_feat": num_feat,
        "num_conv": len(convs) - 2,
        "upscale": upscale,
        "act_type": act_type,
    }
    return ArchInfo("SRVGGNetCompact", params, notes)


def _unet_discriminator(sd: StateDict) -> ArchInfo | None:
    if not {"conv0.weight", "conv1.weight_orig", "conv9.weight"} <= set(sd):
        return None
    num_feat, in_ch = _shape(sd, "conv0.weight")[:2]
    notes = ("skip_connection has no weights; assumed True (as released)",)
    return ArchInfo("UNetDiscriminatorSN", {"num_in_ch": in_ch, "num_feat": num_feat, "skip_connection": True}, notes)


_DETECTORS: tuple[Callable[[StateDict], ArchInfo | None], ...] = (_rrdbnet, _srvgg, _unet_discriminator)


def describe_mismatch(expected: Mapping[str, torch.Size | tuple[int, ...]], sd: StateDict) -> str:
    """One line naming missing keys, unexpected keys and shape mismatches; empty when they agree."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {list(sd[k].shape)} (expected {list(s)})" for k, s in expected.items() if k in sd and _shape(sd, k) != tuple(s)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) e.g. {', '.join(unexpected[:3])}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es) e.g. {'; '.join(wrong[:2])}")
    return "; ".join(problems)


def check_state_dict(info: ArchInfo, sd: StateDict) -> None:
    """Every key and shape must match a shape-only instance of `info`; else UnsupportedModelError."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in build_model(info).state_dict().items()}
    problems = describe_mismatch(expected, sd)
    if problems:
        args = ", ".join(f"{k}={v}" for k, v in info.params.items())
        raise UnsupportedModelError(f"looks like {info.name}({args}) but: {problems}")


def detect_architecture(state_dict: StateDict) -> ArchInfo:
    """Detect the architecture of a bare state_dict (see `weights_io.load_state_dict`).

    Raises UnsupportedModelError naming the keys and shapes found when nothing matches.
    """
    if not state_dict:
        raise UnsupportedModelError("unsupported model: the state_dict is empty")
    for detector in _DETECTORS:
        info = detector(state_dict)
        if info is not None:
            check_state_dict(info, state_dict)
            return info
    raise UnsupportedModelError(
        "unsupported model: no known architecture (RRDBNet, SRVGGNetCompact, UNetDiscriminatorSN) "
        f"matches; found {_describe(state_dict)}"
    )


def load_model(state_dict: StateDict) -> tuple[ArchInfo, nn.Module]:
    """Detect, build and load (`strict=True`) in one step; the module is returned in eval mode."""
    info = detect_architecture(state_dict)
    model = build_model(info)
    model.load_state_dict(state_dict, strict=True)
    return info, model.eval()
