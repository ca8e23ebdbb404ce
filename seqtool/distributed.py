"""Just enough torch.distributed for `torchrun --nproc-per-node N -m seqtool train ...`.

torchrun sets RANK / WORLD_SIZE / MASTER_ADDR; without them everything here is a no-op, so a plain
`seqtool train` never touches torch.distributed.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def init(device: torch.device) -> None:
    """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA)."""
    if world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl collectives (and all_gather_object) use the current device
        dist.init_process_group(backend=backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a list of one when not distributed)."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(value: float) -> float:
    if not dist.is_initialized():
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())
