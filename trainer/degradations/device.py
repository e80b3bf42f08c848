"""Moving the pipeline's small host-built tensors (resize matrices, kernels, index tables) to
the images' device without stalling it.

A plain `.to("cuda")` of a pageable CPU tensor synchronises the CUDA stream: the host waits
until every queued kernel has run, so the next batch's work cannot be queued behind the
current one. Copying through pinned memory with `non_blocking=True` only queues the copy
(PyTorch's pinned-memory cache keeps the block alive until the copy has run).
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_device(t: Tensor, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """`t` on `like`'s device (as `dtype`, default t's own), queued rather than waited for on CUDA."""
    dtype = dtype or t.dtype
    if like.device.type != "cuda" or t.device.type == "cuda":
        return t.to(device=like.device, dtype=dtype)
    return t.to(dtype).pin_memory().to(like.device, non_blocking=True)
