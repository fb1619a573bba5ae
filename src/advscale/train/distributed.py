"""Process-group setup for ``torchrun``, the DDP wrapper and the few collectives the training
loop needs."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from advscale.errors import UserError
from advscale.utils import resolve_device


@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its device, and whether
    :func:`init_distributed` created the process group (and so must destroy it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def process_rank() -> int:
    """This process's global rank as ``torchrun`` sets it (``RANK``); 0 outside ``torchrun``."""
    return int(os.environ.get("RANK", "0"))


class PeerLostError(UserError):
    """Another process of the run died or stopped answering: this one stops too, in bounded time
    (``distributed.timeout_s``), keeping the last checkpoint."""


# What gloo and NCCL say when a peer is gone or a collective timed out (raised from C++, e.g. in
# DDP's forward or backward, where no torch.distributed frame is on top).
GROUP_FAILURES = (
    "gloo",
    "nccl",
    "pair closure",
    "closed by peer",
    "reset by peer",
    "timed out waiting",
)


def is_comm_error(err: BaseException) -> bool:
    """Whether ``err`` is a failure of the process group (a peer gone, a collective timed out)
    rather than of the computation: a DistError, or a RuntimeError raised by a collective of
    torch.distributed or saying what :data:`GROUP_FAILURES` say (gloo raises RuntimeError)."""
    if isinstance(err, dist.DistError):
        return True
    if not isinstance(err, RuntimeError):
        return False
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename.replace(os.sep, "/") if tb is not None else ""
    inside = "torch/distributed/" in where  # a collective; not DDP's own usage errors
    return inside or any(w in str(err).lower() for w in GROUP_FAILURES)


def peer_lost(err: BaseException, info: DistInfo | None, checkpoint: Any) -> PeerLostError:
    """The one-line error of a process whose peer was lost (``err`` from the collective)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    cause = (lines[0] if lines else type(err).__name__)[:300]
    where = f"process {info.rank} of {info.world_size}" if info is not None else "this process"
    kept = f"the last checkpoint ({checkpoint}) is intact" if checkpoint else "no checkpoint yet"
    return PeerLostError(
        f"training stopped in {where}: another process of the run ended or stopped answering "
        f"({cause}); {kept}. Start the run again with --resume, or launch it with torchrun "
        "--max-restarts N to resume automatically"
    )


def restarted_by_torchrun() -> bool:
    """True in a worker that ``torchrun`` started again after a failure (``--max-restarts``):
    the run must continue from its last checkpoint, not start over."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def _attempt_store(rank: int, world: int, timeout: _dt.timedelta) -> dict[str, Any]:
    """Under torchrun, the key-value store of this attempt: keys under a prefix naming the
    restart, so that a restarted group never reads the addresses its failed predecessor left in
    the agent's store (gloo would connect to a dead process). ``{}`` (the default ``env://``)
    elsewhere."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or "MASTER_ADDR" not in os.environ:
        return {}
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        is_master=not agent and rank == 0,
        timeout=timeout,
        multi_tenant=not agent,
    )
    prefixed = dist.PrefixStore(f"advscale/attempt_{attempt}/", store)
    return {"store": prefixed, "rank": rank, "world_size": world}


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK).

    Without those variables (or with WORLD_SIZE=1) this is a single process. The backend is
    nccl for CUDA devices and gloo otherwise; each process takes GPU ``LOCAL_RANK``. Every
    collective waits at most ``timeout_s`` for the other processes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = process_rank()
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device={device!r} asks for CUDA but none is available; use device: cpu"
            )
        if world > 1 or dev.index is None:
            dev = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, False)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = _dt.timedelta(seconds=timeout_s)
        dist.init_process_group(
            backend=backend, timeout=timeout, **_attempt_store(rank, world, timeout)
        )
        owns = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, owns)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``t`` over processes (in place; ``t`` itself in a single process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast(t: torch.Tensor, info: DistInfo, src: int = 0) -> torch.Tensor:
    """``t`` as process ``src`` has it, so that every process takes the same decision."""
    if info.enabled:
        dist.broadcast(t, src)
    return t


def main_says(flag: bool, info: DistInfo) -> bool:
    """Process 0's ``flag`` in every process (a decision only process 0 can take)."""
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    return bool(broadcast(t, info).item())


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` in a single process)."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


@torch.no_grad()
def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Average ``model``'s floating-point buffers (batch-norm running statistics) over processes.

    Each process updates them from its own share of the batch; averaged after every step, every
    process holds the same statistics — those of the whole batch for the means — so adversarial
    examples made in eval mode come from the same model everywhere, and the checkpoint (written
    by process 0) holds what every process used.
    """
    if not info.enabled:
        return
    bufs = [b for b in model.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.detach().reshape(-1).double() for b in bufs])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for b in bufs:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """``model`` in DistributedDataParallel when several processes train; else ``model``."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
