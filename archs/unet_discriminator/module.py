"""UNetDiscriminatorSN, Real-ESRGAN's per-pixel U-Net discriminator with spectral normalisation.

Uses `torch.nn.utils.spectral_norm` (not the parametrization API) so the state_dict keys are the
official ones: `conv1.weight_orig`, `conv1.weight_u`, `conv1.weight_v`, ... and the released
`RealESRGAN_x4plus_netD.pth` loads with `strict=True`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

LRELU_SLOPE = 0.2


class UNetDiscriminatorSN(nn.Module):
    """Three stride-2 downsampling convs, three bilinear x2 upsampling stages with skips, 1-channel map.

    Args:
        num_in_ch: image channels in (default 3).
        num_feat: base feature channels (default 64); the bottleneck has 8x as many.
        skip_connection: add encoder features to decoder features (default True).

    Input NCHW with H, W divisible by 8; output (N, 1, H, W) of real/fake logits per pixel.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        nf = num_feat

        def sn_conv(cin: int, cout: int, k: int, s: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, k, s, 1, bias=False))

        self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        # encoder
        self.conv1 = sn_conv(nf, nf * 2, 4, 2)
        self.conv2 = sn_conv(nf * 2, nf * 4, 4, 2)
        self.conv3 = sn_conv(nf * 4, nf * 8, 4, 2)
        # decoder
        self.conv4 = sn_conv(nf * 8, nf * 4, 3, 1)
        self.conv5 = sn_conv(nf * 4, nf * 2, 3, 1)
        self.conv6 = sn_conv(nf * 2, nf, 3, 1)
        # extra convs
        self.conv7 = sn_conv(nf, nf, 3, 1)
        self.conv8 = sn_conv(nf, nf, 3, 1)
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, LRELU_SLOPE)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self._act(self.conv0(x))
        x1 = self._act(self.conv1(x0))
        x2 = self._act(self.conv2(x1))
        x3 = self._act(self.conv3(x2))

        x4 = self._act(self.conv4(self._up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = self._act(self.conv5(self._up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = self._act(self.conv6(self._up(x5)))
        if self.skip_connection:
            x6 = x6 + x0

        out = self._act(self.conv7(x6))
        out = self._act(self.conv8(out))
        return self.conv9(out)
