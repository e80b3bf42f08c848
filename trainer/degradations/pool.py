"""The training-pair pool: mixes degraded pairs across batches (Real-ESRGAN's queue).

Pairs from one batch share a source image set and come out of one degradation call; the pool
keeps `size` pairs and hands each step a random mix of stored pairs, so a batch's samples come
from different earlier batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .device import to_device


class TrainingPairPool:
    """A pool of `size` (LQ, GT) pairs; `size=0` disables it (exchange returns its input).

    While filling, `exchange` stores the batch and returns it unchanged; once full, it shuffles
    the pool with the given generator, returns its first B pairs and stores the new batch in
    their place - the reference's `_dequeue_and_enqueue`, except that the pool size need not be
    a multiple of the batch size (the batch that overflows a filling pool is stored in part).
    """

    def __init__(self, size: int = 180) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = int(size)
        self._lq: Tensor | None = None
        self._gt: Tensor | None = None
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    @torch.no_grad()
    def exchange(self, lq: Tensor, gt: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Store this batch, return a (possibly different) batch of the same shape."""
        if self.size == 0:
            return lq, gt
        b = lq.shape[0]
        if gt.shape[0] != b:
            raise ValueError(f"LQ and GT batch sizes differ: {lq.shape[0]} vs {gt.shape[0]}")
        if b > self.size:
            raise ValueError(f"batch size {b} is larger than the pool ({self.size})")
        if self._lq is None:
            self._lq = lq.new_zeros((self.size, *lq.shape[1:]))
            self._gt = gt.new_zeros((self.size, *gt.shape[1:]))
        assert self._gt is not None
        if self._lq.device != lq.device or self._lq.dtype != lq.dtype:  # e.g. restored on the CPU
            self._lq = self._lq.to(device=lq.device, dtype=lq.dtype)
            self._gt = self._gt.to(device=gt.device, dtype=gt.dtype)
        if self._lq.shape[1:] != lq.shape[1:] or self._gt.shape[1:] != gt.shape[1:]:
            raise ValueError(
                f"pool holds LQ {tuple(self._lq.shape[1:])} / GT {tuple(self._gt.shape[1:])} pairs, "
                f"got {tuple(lq.shape[1:])} / {tuple(gt.shape[1:])}"
            )
        if self._filled < self.size:
            n = min(b, self.size - self._filled)
            self._lq[self._filled : self._filled + n] = lq[:n]
            self._gt[self._filled : self._filled + n] = gt[:n]
            self._filled += n
            return lq, gt
        perm = to_device(torch.randperm(self.size, generator=generator, device=generator.device), self._lq)
        self._lq = self._lq[perm]
        self._gt = self._gt[perm]
        out_lq, out_gt = self._lq[:b].clone(), self._gt[:b].clone()
        self._lq[:b] = lq
        self._gt[:b] = gt
        return out_lq, out_gt

    def state_dict(self) -> dict[str, Any]:
        """The stored pairs (only the filled part) and the pool size, for checkpoints."""
        n = self._filled
        return {
            "size": self.size,
            "lq": None if self._lq is None else self._lq[:n].clone(),
            "gt": None if self._gt is None else self._gt[:n].clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; the sizes must agree."""
        if int(state["size"]) != self.size:
            raise ValueError(f"pool size mismatch: state has {state['size']}, this pool {self.size}")
        lq, gt = state["lq"], state["gt"]
        if lq is None or gt is None:
            self._lq = self._gt = None
            self._filled = 0
            return
        self._lq = lq.new_zeros((self.size, *lq.shape[1:]))
        self._gt = gt.new_zeros((self.size, *gt.shape[1:]))
        self._lq[: lq.shape[0]] = lq
        self._gt[: gt.shape[0]] = gt
        self._filled = int(lq.shape[0])
