"""Process-group set-up for runs launched by torchrun (one process per device; NCCL on GPUs, gloo on CPU), and
the few collectives the loop uses.

A collective returns only when every process has called it, in the same order: a decision that leads to one
must come out the same on every rank. Take it from state every rank shares (the update count, the config, an
all-reduced figure), or decide on rank 0 and hand the answer to the others with `broadcast_from_main`; never
from what each process sees on its own (the file system, its own batches).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group torchrun describes in the environment; a plain launch is a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank)


def all_reduce_sum(values: list, info: DistInfo, device) -> list[float]:
    """Element-wise sum over all processes of numbers or 0-d tensors, as floats (float64, one collective and
    one device synchronization)."""
    if not values:
        return []
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(device) for v in values])
    if info.enabled:
        dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_main(obj, info: DistInfo):
    """Rank 0's `obj` on every rank (picklable)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
