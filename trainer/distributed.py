"""torch.distributed set-up for `torchrun` (one node or many): DDP, NCCL on GPUs, gloo on CPU.

torchrun exports RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous address), so the same
`train.py` command runs alone or under `torchrun --nproc_per_node=N [--nnodes ...]`.
Only rank 0 writes files; every rank seeds its own degradation generator with `seed + rank`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: `rank` of `world` processes, its device, whether it writes."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(name: str, local_rank: int) -> torch.device:
    """`auto` -> the local GPU if CUDA is usable, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available")
    if name.startswith("cuda:"):
        if int(name[5:]) >= torch.cuda.device_count():  # torch would fail later, deep in a kernel launch
            raise UserError(f"device '{name}' requested but only {torch.cuda.device_count()} CUDA device(s) are visible")
        return torch.device(name)
    return torch.device("cuda", local_rank)


def setup(device_name: str) -> DistInfo:
    """Initialise the process group when launched by torchrun; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around `model` when running distributed, else `model` itself."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` (picklable) on every rank."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on all ranks if `flag` is true on any rank (to stop every rank together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def max_reduce_(t: torch.Tensor, info: DistInfo) -> None:
    """In place: the maximum of `t` over ranks (queued on the device, no host sync)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)


def mean_scalars(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar logs over ranks (same keys on every rank)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return {k: float(v) / info.world for k, v in zip(keys, t.tolist())}


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
