"""The distributed context of a comparison run: one process, or one rank of a ``torchrun`` job (gloo on CPU,
nccl on CUDA), with the all-reduce helpers the training loop uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup_distributed"]


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def all_max(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def main_first(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 first (e.g. a download), then on the other ranks; an error on rank 0 is raised on all."""
        if not self.distributed:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:  # re-raised below after telling the other ranks
                error = e
        msg = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(msg, src=0)
        if error is not None:
            raise error
        if msg[0] is not None:
            raise ValueError(f"rank 0 failed: {msg[0]}")
        return result if self.is_main else fn()

    def close(self) -> None:
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: str = "auto") -> DistContext:
    """Initialise the process group when launched by ``torchrun`` with more than one process; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("compare: device must be 'cpu' or 'auto' on a machine without CUDA, got 'cuda'")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    ctx = DistContext(rank=rank, world=world, local_rank=local_rank, device=dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        ctx.initialised_here = True
    return ctx
