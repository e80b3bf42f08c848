"""A new architecture added from this file alone goes detect -> convert -> runtime -> import back.

Why: the architecture families are an explicit list that callers may extend; nothing in convert/,
trainer/ or the runtime may need an edit to support one more family.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from realesr_portable.api import Upscaler
from realesr_portable.archs.families import FAMILIES
from realesr_portable.archs.family import ArchFamily, ArchInfo
from realesr_portable.archs.ncnn_read import layers_of, put_conv
from realesr_portable.convert.api import STEPS, convert_file
from realesr_portable.convert.detect import detect_architecture
from realesr_portable.convert.importer import import_ncnn
from realesr_portable.convert.weights_io import save_state_dict


class ToyShuffle(nn.Module):
    """One 3x3 conv to `channels * upscale^2` maps, then pixel-shuffle: the smallest SR net."""

    def __init__(self, channels: int = 3, upscale: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(channels, channels * upscale * upscale, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.head(x))


def _detect(sd: Mapping[str, torch.Tensor]) -> ArchInfo | None:
    if set(sd) != {"head.weight", "head.bias"}:
        return None
    out_ch, in_ch = sd["head.weight"].shape[:2]
    return ArchInfo("ToyShuffle", {"channels": in_ch, "upscale": int(round((out_ch / in_ch) ** 0.5))}, family=TOY)


def _write(g: Any, sd: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> str:
    return g.add("PixelShuffle", "pixelshuffle", [g.conv(g.input, sd, "head")], {0: str(params["upscale"]), 1: "0"})


def _match(param: Any, weights: dict) -> tuple[ArchInfo, dict[str, torch.Tensor]] | None:
    convs, shuffles = layers_of(param, "Convolution"), layers_of(param, "PixelShuffle")
    if len(convs) != 1 or len(shuffles) != 1:
        return None
    sd: dict[str, torch.Tensor] = {}
    put_conv(sd, "head", convs[0], weights)
    params = {"channels": sd["head.weight"].shape[1], "upscale": shuffles[0].int_param(0)}
    return ArchInfo("ToyShuffle", params, family=TOY), sd


TOY = ArchFamily(name="ToyShuffle", module=ToyShuffle, detect=_detect, scale_arg="upscale",
                 receptive_radius=lambda params: 1, write_ncnn=_write, match_ncnn=_match,
                 ncnn_layers=frozenset({"Convolution", "PixelShuffle"}))


def test_toy_family_goes_through_convert_runtime_and_import(tmp_path: Path) -> None:
    families = (*FAMILIES, TOY)
    torch.manual_seed(0)
    net = ToyShuffle().eval()
    weights = save_state_dict(net.state_dict(), tmp_path / "toy.pth")
    assert detect_architecture(net.state_dict(), families).name == "ToyShuffle"

    steps: list[str] = []
    result = convert_file(weights, tmp_path / "out", fp16=False, families=families, step=steps.append)
    assert tuple(steps) == STEPS  # what the progress bar shows
    assert result.spec.arch == "ToyShuffle" and result.spec.scale == 2 and result.spec.tile_pad == 1
    assert result.max_abs is not None and result.max_abs < 1e-4
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (result.param, result.bin, result.json):  # readable like any file the user creates
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask

    image = np.random.default_rng(0).random((20, 24, 3), dtype=np.float32)
    upscaled = Upscaler(model=str(result.param), gpu=-1, tile=0, fp32=True).upscale(image)
    with torch.no_grad():
        expected = net(torch.from_numpy(image.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
    assert upscaled.shape == (40, 48, 3)
    # The runtime mirrors the image at its borders where torch pads with zeros: compare the interior.
    assert np.abs(upscaled - np.clip(expected, 0, 1))[2:-2, 2:-2].max() < 1e-4

    info, sd = import_ncnn(result.param, result.bin, families)
    assert info.name == "ToyShuffle" and info.params == {"channels": 3, "upscale": 2}
    for key, value in net.state_dict().items():
        assert torch.equal(sd[key], value), key
