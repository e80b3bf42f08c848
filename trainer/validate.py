"""Validation every N iterations: PSNR/SSIM on Y, NIQE of the output, a PNG grid LQ / output / GT.

The LQ images are made once at start (or read from `val.dataroot_lq`), with a fixed seed per
image, so every validation of a run — and of a resumed run — sees the same inputs and the
numbers form a curve, not noise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..atomic import write_atomic
from .config import Config, ConfigError
from .data import PairedDataset, SampleKey, list_images, read_image
from .metrics import psnr_y, quantize, rgb_to_y, ssim_y
from .niqe import PATCH as NIQE_PATCH
from .niqe import NIQEUnavailable, load_params, niqe

#: How many validation images the PNG grid shows.
GRID_ROWS = 4


def _center_crop(img: np.ndarray, max_size: int, multiple: int, path: Path | str = "") -> np.ndarray:
    h, w = img.shape[:2]
    th = min(h, max_size) // multiple * multiple
    tw = min(w, max_size) // multiple * multiple
    if th == 0 or tw == 0:  # a user's file, not a bug: once an "internal error"
        raise ConfigError(f"validation image {path}: {w}x{h} is smaller than {multiple} px (scale x 4); "
                          "use larger images in val.dataroot_gt")
    top, left = (h - th) // 2, (w - tw) // 2
    return img[top : top + th, left : left + tw]


def _to_batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def bicubic_down(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 3, H/scale, W/scale), antialiased bicubic, clamped to [0, 1]."""
    return F.interpolate(gt, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


class Validator:
    """Holds the validation pairs of a run and evaluates a generator on them.

    Args:
        cfg: the run's config (`val` section, `scale`).
        degrade: `(gt (1,3,H,W), seed) -> lq` used when `val.lq_mode` is `degrade`.
    """

    def __init__(self, cfg: Config, degrade: Callable[[torch.Tensor, int], torch.Tensor] | None) -> None:
        self.scale = cfg.scale
        self.pairs: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        try:
            self.niqe_params: tuple[np.ndarray, np.ndarray] | None = load_params()
            self.niqe_note = ""
        except NIQEUnavailable as exc:
            self.niqe_params, self.niqe_note = None, f"NIQE not computed: {exc}"
        v = cfg.val
        if v.dataroot_lq:
            ds = PairedDataset(v.dataroot_gt, v.dataroot_lq, 0, cfg.scale, use_hflip=False)
            for i in range(min(len(ds), v.max_images)):
                sample = ds[SampleKey(i, 0)]
                if not sample["ok"]:
                    raise ValueError(f"validation pair unreadable: {sample['bad']}")
                self.pairs.append((ds.files[i].stem, sample["lq"][None], sample["gt"][None]))
            return
        for i, path in enumerate(list_images(v.dataroot_gt)[: v.max_images]):
            gt = _to_batch(_center_crop(read_image(path), v.max_size, cfg.scale * 4, path))
            if v.lq_mode == "degrade" and degrade is not None:
                lq = degrade(gt, 1000 + i)
            else:
                lq = bicubic_down(gt, cfg.scale)
            self.pairs.append((path.stem, lq.float().clamp(0, 1), gt))

    @torch.no_grad()
    def run(self, model: nn.Module, device: torch.device) -> tuple[dict[str, float], list[tuple[np.ndarray, ...]]]:
        """Mean PSNR/SSIM (Y, border = scale) and the rows of the picture grid."""
        was_training = model.training
        model.eval()
        psnrs, ssims, niqes, rows = [], [], [], []
        for _, lq, gt in self.pairs:
            out = model(lq.to(device)).float().clamp(0, 1).cpu()
            out = out[..., : gt.shape[-2], : gt.shape[-1]]
            psnrs.append(psnr_y(out, gt, self.scale))
            ssims.append(ssim_y(out, gt, self.scale))
            if self.niqe_params is not None and min(out.shape[-2:]) > 2 * NIQE_PATCH:
                niqes.append(niqe(rgb_to_y(quantize(out))[0, 0].numpy(), self.niqe_params))
            if len(rows) < GRID_ROWS:
                up = F.interpolate(lq, size=gt.shape[-2:], mode="nearest")
                rows.append(tuple(_to_uint8(t) for t in (up, out, gt)))
        model.train(was_training)
        finite = [p for p in psnrs if np.isfinite(p)]
        metrics = {"psnr_y": float(np.mean(finite)) if finite else float("inf"), "ssim_y": float(np.mean(ssims))}
        if niqes:  # only outputs larger than 192x192 can be scored
            metrics["niqe"] = float(np.mean(niqes))
        return metrics, rows


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def save_grid(rows: list[tuple[np.ndarray, ...]], path: Path, gap: int = 4) -> None:
    """One row per image: LQ (nearest-upscaled) | output | GT, written atomically as PNG."""
    if not rows:
        return
    height = sum(r[0].shape[0] for r in rows) + gap * (len(rows) - 1)
    width = max(sum(img.shape[1] for img in r) + gap * (len(r) - 1) for r in rows)
    canvas = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for row in rows:
        x = 0
        for img in row:
            canvas[y : y + img.shape[0], x : x + img.shape[1]] = img
            x += img.shape[1] + gap
        y += row[0].shape[0] + gap
    save_png(Image.fromarray(canvas), path)


def save_png(img: Image.Image, path: Path) -> None:
    """Write a PNG via a temporary file + rename (readers never see a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda fh: img.save(fh, format="PNG"))
