"""Batch bookkeeping: choosing size groups, selecting and writing back samples.

After the first random resize, samples of one batch range from 0.15x to 1.5x the input
size; padding them all to the largest would waste most of the work (noise, JPEG, second
blur). The pipeline therefore splits the batch into a few groups of similar size, each
processed as its own batch; the split depends only on drawn parameters, never on pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .device import to_device


def size_groups(areas: Tensor, group_cost: float, max_groups: int = 4) -> list[Tensor]:
    """Split samples into at most `max_groups` groups minimising
    sum over groups (n_g * max area in g) + group_cost * number of groups.

    areas: (B,) sizes of the samples (any unit, same as group_cost). Returns index tensors
    (long, CPU), each sorted, groups ordered by size. Exact dynamic programme over the sorted
    areas, O(max_groups * B^2), trivial for training batch sizes.
    """
    order = torch.argsort(areas, stable=True)
    a = areas[order].tolist()
    n = len(a)
    inf = float("inf")
    # best[k][j]: cost of splitting the first j sorted samples into k groups
    best = [[inf] * (n + 1) for _ in range(max_groups + 1)]
    cut = [[0] * (n + 1) for _ in range(max_groups + 1)]
    best[0][0] = 0.0
    for k in range(1, max_groups + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                c = best[k - 1][i] + (j - i) * a[j - 1] + group_cost
                if c < best[k][j]:
                    best[k][j], cut[k][j] = c, i
    k = min(range(1, max_groups + 1), key=lambda kk: best[kk][n]) if n else 0
    groups: list[Tensor] = []
    j = n
    while k > 0:
        i = cut[k][j]
        groups.append(torch.sort(order[i:j]).values)
        j, k = i, k - 1
    return groups[::-1]


def select(x: Tensor, idx: Tensor) -> Tensor:
    """x[idx] along dim 0 (advanced indexing: measured ~8x faster than index_select on CPU)."""
    if idx.numel() == x.shape[0] and bool((idx == torch.arange(x.shape[0])).all()):
        return x
    return x[to_device(idx, x)]


def put(x: Tensor, idx: Tensor, values: Tensor) -> Tensor:
    """A copy of x with x[idx] = values along dim 0 (x itself is not modified)."""
    if idx.numel() == x.shape[0] and bool((idx == torch.arange(x.shape[0])).all()):
        return values
    out = x.clone()
    out[to_device(idx, x)] = values
    return out
