"""Losses of the Real-ESRGAN recipe: L1, VGG19 perceptual (pre-activation), vanilla GAN.

Each loss validates its arguments at construction (a `ValueError` naming the argument), so a
bad config fails before the first iteration, not hours later.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .vgg import VGGFeatureExtractor

_REDUCTIONS = ("mean", "sum")


def _check_weight(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class L1Loss(nn.Module):
    """Weighted mean absolute error.

    Args:
        loss_weight: multiplier of the loss (default 1.0).
        reduction: `mean` (default) or `sum`.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.loss_weight = _check_weight("loss_weight", loss_weight)
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * F.l1_loss(pred, target, reduction=self.reduction)


class PerceptualLoss(nn.Module):
    """Weighted L1 distance between VGG19 pre-ReLU features of output and target.

    Args:
        layer_weights: e.g. `{"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}`.
        vgg_state: torchvision-layout VGG19 weights.
        perceptual_weight: multiplier of the summed feature distances (default 1.0).
        use_input_norm: ImageNet normalisation of [0, 1] inputs (default True).
        range_norm: inputs are in [-1, 1] (default False).
    """

    def __init__(
        self, layer_weights: dict[str, float], vgg_state: dict[str, torch.Tensor], perceptual_weight: float = 1.0,
        use_input_norm: bool = True, range_norm: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(layer_weights, dict) or not layer_weights:
            raise ValueError(f"layer_weights must be a non-empty mapping of VGG layer names, got {layer_weights!r}")
        self.layer_weights = {k: _check_weight(f"layer_weights[{k}]", v) for k, v in layer_weights.items()}
        self.perceptual_weight = _check_weight("perceptual_weight", perceptual_weight)
        self.vgg = VGGFeatureExtractor(list(layer_weights), vgg_state, use_input_norm, range_norm)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_f = self.vgg(pred)
        with torch.no_grad():
            target_f = self.vgg(target.detach())
        loss = pred.new_zeros(())
        for name, weight in self.layer_weights.items():
            loss = loss + weight * F.l1_loss(pred_f[name], target_f[name])
        return loss * self.perceptual_weight


class GANLoss(nn.Module):
    """Vanilla GAN loss (binary cross-entropy on logits), as Real-ESRGAN uses with its U-Net D.

    Args:
        gan_type: only `vanilla` is supported.
        real_label / fake_label: target values (default 1.0 / 0.0).
        loss_weight: applied to the generator's loss only; the discriminator's loss is unweighted
            (as in BasicSR), so D learns at the same pace whatever the G weight.
    """

    def __init__(
        self, gan_type: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0, loss_weight: float = 1.0
    ) -> None:
        super().__init__()
        if gan_type != "vanilla":
            raise ValueError(f"gan_type must be 'vanilla', got {gan_type!r}")
        self.real_label, self.fake_label = float(real_label), float(fake_label)
        self.loss_weight = _check_weight("loss_weight", loss_weight)

    def forward(self, logits: torch.Tensor, target_is_real: bool, is_disc: bool = False) -> torch.Tensor:
        target = torch.full_like(logits, self.real_label if target_is_real else self.fake_label)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        return loss if is_disc else loss * self.loss_weight
