"""torch.distributed glue: one training loop for one process or many launched by ``torchrun``.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs as a single process
and every helper here is a no-op. The collective operations are PyTorch's own (gloo on CPU, nccl on
CUDA); this module only decides which to use and keeps the loop free of ``if distributed`` noise.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import first_line
from .network import pick_device


class DistributedError(RuntimeError):
    """A peer process failed or could not be reached; the last checkpoint is still valid."""


@dataclass
class Context:
    """This process' place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device for this rank: its own GPU under CUDA, else what ``requested`` resolves to."""
        device = pick_device(requested)
        if device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, net: nn.Module) -> nn.Module:
        """Wrap in DistributedDataParallel when there are several processes."""
        if not self.enabled:
            return net
        if next(net.parameters()).device.type == "cuda":
            return nn.parallel.DistributedDataParallel(net, device_ids=[self.local_rank])
        return nn.parallel.DistributedDataParallel(net)

    def sum(self, value: float) -> float:
        """The sum of a number over all ranks (every rank gets the same answer)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._collective_device())
        self._collective(dist.all_reduce, tensor)
        return float(tensor.item())

    def mean(self, value: float) -> float:
        """The mean of a number over all ranks."""
        return self.sum(value) / self.world_size

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, shared with every rank, so that all stop at the same step."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self._collective_device())
        self._collective(dist.broadcast, tensor, src=0)
        return bool(tensor.item())

    def _collective(self, op, *args, **kwargs) -> None:
        try:
            op(*args, **kwargs)
        except (RuntimeError, dist.DistBackendError) as exc:
            raise DistributedError(
                f"a peer process stopped ({first_line(exc)}); resume from the last checkpoint"
            ) from exc

    def _collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def context(timeout_s: float = 120.0) -> Context:
    """Join the process group torchrun describes, once; single-process without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        # A bounded timeout turns a dead peer into an error on the others instead of a hang.
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
