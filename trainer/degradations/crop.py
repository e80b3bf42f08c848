"""Paired random crop of GT and LQ batches, a different window per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .filters import gather_2d
from .rand import choice


def _windows(start: Tensor, length: int) -> Tensor:
    return start[:, None] + torch.arange(length, dtype=torch.long)[None, :]


def paired_random_crop(
    gt: Tensor | Sequence[Tensor], lq: Tensor, gt_size: int, scale: int, generator: torch.Generator
) -> tuple[Tensor | list[Tensor], Tensor]:
    """Crop gt_size x gt_size from GT and the matching (gt_size // scale)^2 from LQ.

    gt: (B, C, H, W) or a list of such (e.g. [gt, gt_usm], all cropped alike); lq: (B, C, H /
    scale, W / scale). Each sample gets its own window (the reference crops a whole batch at
    one position). Returns (gt, lq) with gt in the form it was given. Raises ValueError when
    the sizes do not match or the LQ is smaller than the patch.
    """
    gts = [gt] if isinstance(gt, Tensor) else list(gt)
    if gt_size % scale:
        raise ValueError(f"gt_size {gt_size} is not a multiple of scale {scale}")
    lq_size = gt_size // scale
    b, _, h, w = lq.shape
    for t in gts:
        if t.shape[0] != b or t.shape[-2:] != (h * scale, w * scale):
            raise ValueError(
                f"GT {tuple(t.shape)} does not match LQ {tuple(lq.shape)} at scale {scale}"
            )
    if h < lq_size or w < lq_size:
        raise ValueError(f"LQ ({h}, {w}) is smaller than the patch ({lq_size}, {lq_size}); lower gt_size")
    top = choice(h - lq_size + 1, b, generator)
    left = choice(w - lq_size + 1, b, generator)
    lq_out = gather_2d(lq, _windows(top, lq_size), _windows(left, lq_size))
    rows, cols = _windows(top * scale, gt_size), _windows(left * scale, gt_size)
    gt_out = [gather_2d(t, rows, cols) for t in gts]
    return (gt_out[0] if isinstance(gt, Tensor) else gt_out), lq_out
