"""PSNR and SSIM on the Y channel, computed the way SR papers (and BasicSR) report them.

Images are 8-bit-quantised [0, 1] RGB tensors; Y is ITU-R BT.601 luma in [16, 235]; `crop_border`
pixels are dropped on each side (the scale, by convention); SSIM uses an 11x11 Gaussian window
(sigma 1.5) over valid positions only. Computed in float64 so the numbers are reproducible.

The no-reference NIQE lives in `niqe.py`.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def quantize(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> the values an 8-bit PNG of it would hold, back in [0, 1] (float64)."""
    return (img.detach().double().clamp(0, 1) * 255.0).round() / 255.0


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) Y in [16, 235] (BT.601, as MATLAB's rgb2ycbcr)."""
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _crop(img: torch.Tensor, border: int) -> torch.Tensor:
    return img[..., border:-border, border:-border] if border > 0 else img


def psnr_y(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0) -> float:
    """PSNR (dB) on Y between two (1, 3, H, W) images in [0, 1]; inf when identical."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    a = _crop(rgb_to_y(quantize(pred)), crop_border)
    b = _crop(rgb_to_y(quantize(target)), crop_border)
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_y(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0) -> float:
    """SSIM on Y between two (1, 3, H, W) images in [0, 1] (needs H, W >= 11 after cropping)."""
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    a = _crop(rgb_to_y(quantize(pred)), crop_border)
    b = _crop(rgb_to_y(quantize(target)), crop_border)
    if min(a.shape[-2:]) < 11:
        raise ValueError("SSIM needs images of at least 11x11 pixels after cropping the border")
    win = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, win), F.conv2d(b, win)
    var_a = F.conv2d(a * a, win) - mu_a**2
    var_b = F.conv2d(b * b, win) - mu_b**2
    cov = F.conv2d(a * b, win) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
