"""RRDBNet, the ESRGAN / Real-ESRGAN generator (x4plus, x4plus-anime, x2plus).

Parameter names follow the official releases (`conv_first`, `body.N.rdbK.convM`, `conv_body`,
`conv_up1`, `conv_up2`, `conv_hr`, `conv_last`) so their `.pth` files load with `strict=True`.
Scales 1 and 2 work at x4 internally: the input is pixel-unshuffled by 4 or 2 first, which is
why such models need an input size that is a multiple of 4 or 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Residual scaling of every dense block and every RRDB (keeps deep stacks trainable).
RESIDUAL_SCALE = 0.2
#: Negative slope of every LeakyReLU in the generator.
LRELU_SLOPE = 0.2


def _conv3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the output is scaled by 0.2 and added to the input.

    Args:
        num_feat: channels in and out (default 64).
        num_grow_ch: channels each of conv1..conv4 adds to the dense concatenation (default 32).
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = _conv3(num_feat, num_grow_ch)
        self.conv2 = _conv3(num_feat + num_grow_ch, num_grow_ch)
        self.conv3 = _conv3(num_feat + 2 * num_grow_ch, num_grow_ch)
        self.conv4 = _conv3(num_feat + 3 * num_grow_ch, num_grow_ch)
        self.conv5 = _conv3(num_feat + 4 * num_grow_ch, num_feat)

    #: In-place LeakyReLU on each conv's fresh output (training sets it: one tensor less per conv,
    #: bitwise the same result); off by default so traced exports see the plain operator.
    inplace_act = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, inp = [x], x  # conv1 reads x itself: a concatenation of one tensor is only a copy
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(inp), LRELU_SLOPE, inplace=self.inplace_act))
            inp = torch.cat(feats, 1)
        return self.conv5(inp) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks plus a scaled outer residual."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """ESRGAN generator: conv, `num_block` RRDBs, two nearest x2 upsampling stages, two convs.

    Args:
        num_in_ch: image channels in (default 3).
        num_out_ch: image channels out (default 3).
        scale: upscale factor, 1, 2 or 4 (default 4). 1 and 2 pixel-unshuffle the input by 4
            and 2, so `conv_first` sees 16x or 4x the channels and H, W must divide by 4 or 2.
        num_feat: feature channels (default 64).
        num_block: number of RRDB blocks (default 23; the anime model uses 6).
        num_grow_ch: dense-block growth channels (default 32).

    Input and output are NCHW, values in [0, 1] (the output is not clamped).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.unshuffle = 4 // scale  # 4 for x1, 2 for x2, 1 for x4
        self.conv_first = _conv3(num_in_ch * self.unshuffle**2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv3(num_feat, num_feat)
        self.conv_up1 = _conv3(num_feat, num_feat)
        self.conv_up2 = _conv3(num_feat, num_feat)
        self.conv_hr = _conv3(num_feat, num_feat)
        self.conv_last = _conv3(num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            up = F.interpolate(feat, scale_factor=2, mode="nearest")
            feat = F.leaky_relu(conv(up), LRELU_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LRELU_SLOPE))
