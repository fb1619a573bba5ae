"""Data-parallel evaluation: the processes of a ``torchrun`` group share the attacks' batches.

An evaluation splits the examples an attack runs on into batches of ``batch_size`` in a fixed
order; batch ``k`` goes to process ``k % world_size``, and its random generator is seeded from
(seed, attack, ε, k) alone. Each process therefore attacks exactly the batches a one-process run
attacks, with the same random draws, and after every attack the per-example verdicts are summed
over the processes, so every process holds the whole evaluation's masks (a cascade needs them
for the next attack) and the records equal a one-process run's. Attack time is the slowest
process's; forward and backward passes are summed.

The process group itself is the caller's (``torchrun`` sets it up; the ``advscale eval``
command joins it): this module only reads it.

Example:
    >>> shard = Shard.from_process_group()  # doctest: +SKIP
    >>> report = evaluate(model, test, attacks=["pgd"], eps=[8], shard=shard)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world_size`` evaluating processes.

    Attributes:
        rank: this process, 0 to ``world_size - 1``; rank 0 writes the results.
        world_size: processes sharing the evaluation (1: no sharing, no collectives).
        device: where collectives run: a CUDA device under the nccl backend, else CPU.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if not (self.world_size >= 1 and 0 <= self.rank < self.world_size):
            raise ValueError(f"rank {self.rank} is not in a group of {self.world_size}")

    @classmethod
    def from_process_group(cls, device: torch.device | str | None = None) -> Shard:
        """The shard of this process in the initialized default process group (one process
        when there is none). ``device`` is where collectives run: give the CUDA device of
        this process under nccl."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dist.get_backend() == "nccl" and dev.type != "cuda":
            raise ValueError("a nccl process group needs device= this process's CUDA device")
        return cls(dist.get_rank(), dist.get_world_size(), dev)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, batch: int) -> bool:
        """Whether batch number ``batch`` (0, 1, ... in the evaluation's order) is this process's."""
        return batch % self.world_size == self.rank

    def sum(self, t: Tensor) -> Tensor:
        """Element-wise sum of ``t`` over the processes (``t`` itself in one process).

        Bool tensors are summed as counts and returned as "true in some process".
        """
        if not self.enabled:
            return t
        buf = t.to(self.device, torch.int64 if not t.is_floating_point() else torch.float64)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        out = buf.to(t.device)
        return out > 0 if t.dtype == torch.bool else out.to(t.dtype)

    def max(self, value: float) -> float:
        """The largest ``value`` over the processes."""
        if not self.enabled:
            return value
        buf = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(buf, op=dist.ReduceOp.MAX)
        return float(buf.item())


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch number ``batch`` of an attack run seeded ``seed``: random draws depend
    on the batch, never on which process attacks it."""
    return (seed * 1_000_003 + batch * 7_919 + 1) % 2**31


__all__ = ["Shard", "batch_seed"]
