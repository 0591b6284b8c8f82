"""Process-group set-up for ``torchrun``: NCCL on GPUs, gloo on CPU; rank helpers for "only rank 0 writes"."""

from __future__ import annotations

import os

import torch


def init_distributed() -> tuple[int, int]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); return (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend)
    return rank(), world_size()


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` (any picklable object) on every rank; ``value`` itself without a process group."""
    if world_size() == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def require_single_process(what: str) -> None:
    """Refuse to run ``what`` under torchrun with several processes (a search written for one process whose
    ranks would see different data shards and disagree): one clear line saying how to run it instead."""
    if world_size() > 1:
        raise RuntimeError(f"{what} runs in one process, not under torchrun with {world_size()}: run the cell once "
                           f"with `python -m repro run-cell ...` (its search result is cached), then under torchrun "
                           f"to retrain with DDP")
