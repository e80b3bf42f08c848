"""SRVGGNetCompact, the small plain-conv generator of realesr-animevideov3 / realesr-general-x4v3.

`body` is one flat ModuleList (conv, act, conv, act, ..., conv) so parameter names are the
official `body.N.weight` / `body.N.bias`; with PReLU the activations carry weights too.
The net predicts a residual over the nearest-upsampled input.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ACT_TYPES = ("prelu", "relu", "leakyrelu")
#: Negative slope of the `leakyrelu` activation (as upstream).
LEAKY_SLOPE = 0.1


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU()
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=LEAKY_SLOPE)
    raise ValueError(f"act_type must be one of {', '.join(ACT_TYPES)}, got {act_type!r}")


class SRVGGNetCompact(nn.Module):
    """Compact VGG-style SR net: 3x3 convs at low resolution, pixel-shuffle, plus the upsampled input.

    Args:
        num_in_ch: image channels in (default 3).
        num_out_ch: image channels out (default 3).
        num_feat: feature channels (default 64).
        num_conv: number of hidden feat->feat convs (default 16; general-x4v3 uses 32).
        upscale: upscale factor (default 4); the last conv has num_out_ch * upscale**2 outputs.
        act_type: `prelu` (default), `relu` or `leakyrelu` (slope 0.1).

    Input and output are NCHW, values in [0, 1] (the output is not clamped).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if upscale < 1:
            raise ValueError(f"upscale must be >= 1, got {upscale}")
        if num_in_ch != num_out_ch:
            # The residual adds the upsampled input to the output, channel for channel.
            raise ValueError("SRVGGNetCompact needs num_in_ch == num_out_ch")
        self.upscale = upscale
        self.act_type = act_type
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")
