"""Streamed training batches: images decoded and augmented in worker processes.

:class:`StreamLoader` puts ``torch.utils.data.DataLoader`` (worker processes, persistent
between epochs, prefetching, pinned memory on CUDA) behind the loaders' interface
(``set_epoch(epoch, skip_batches)``, ``len``, iteration). What is loaded is decided in this
process by a *plan*, one list of keys per batch; workers only turn a key into an example
(``source[key]``). So the batches, their order and their augmentation (drawn from (seed,
epoch, example index)) do not depend on the number of workers, and a resumed epoch starts at
batch ``k`` without decoding the batches before it.

A bad file ends the run with one line naming it, raised in this process from what the worker
reported (``on_corrupt: error``), or is left out of its batch and counted on stderr
(``on_corrupt: skip``), never silently. A worker that dies or stalls for :data:`TIMEOUT`
seconds ends the run with a message saying so, instead of a hang.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from collections.abc import Iterator
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from advscale.data.base import DataError, to_float
from advscale.data.loaders import batches_per_epoch, rank_indices

ON_CORRUPT = ("error", "skip")
PR_SET_PDEATHSIG = 1
#: Seconds a batch may take in a worker before the run is ended as stalled.
TIMEOUT = 600


class Plan(Protocol):
    """The keys of each batch of an epoch, decided in the main process."""

    def __len__(self) -> int: ...

    def batches(self, epoch: int, skip: int) -> Iterator[list[Any]]: ...


class Source(Protocol):
    """A map from a plan's key to ``(uint8 image (C, H, W) array, label)``; it may also have
    ``describe(key)``, naming the example's file in messages."""

    def __getitem__(self, key: Any) -> tuple[np.ndarray, int]: ...


class IndexPlan:
    """Keys ``(epoch, i)`` of a dataset of ``n`` examples: :func:`rank_indices`'s order,
    cut into batches (the last partial one dropped with ``drop_last``)."""

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int, world_size: int,
                 shuffle: bool = True, drop_last: bool = True) -> None:  # fmt: skip
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.shuffle, self.drop_last = (
            rank,
            world_size,
            shuffle,
            drop_last,
        )

    def __len__(self) -> int:
        return batches_per_epoch(self.n, self.batch_size, self.world_size, self.drop_last)

    def batches(self, epoch: int, skip: int) -> Iterator[list[Any]]:
        idx, _ = rank_indices(self.n, self.seed, epoch, self.shuffle, self.rank, self.world_size)
        idx = idx.tolist()
        for b in range(skip, len(self)):
            yield [(epoch, i) for i in idx[b * self.batch_size : (b + 1) * self.batch_size]]


class _Examples(Dataset):
    """What a worker runs: ``source[key]``, with a bad file reported instead of raised (the
    main process decides what to do with it)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __getitem__(self, key: Any) -> tuple[np.ndarray | None, int, str | None]:
        try:
            img, label = self.source[key]
        except DataError as e:
            return None, -1, str(e)
        except (OSError, ValueError, SyntaxError, MemoryError) as e:
            where = self.source.describe(key) if hasattr(self.source, "describe") else "an example"
            return None, -1, f"{where}: cannot read the example ({type(e).__name__}: {e})"
        return img, label, None


class _Batches:
    """The batch sampler DataLoader iterates: the plan's batches of the epoch set last."""

    def __init__(self, plan: Plan) -> None:
        self.plan, self.epoch, self.skip = plan, 0, 0

    def __iter__(self) -> Iterator[list[Any]]:
        return self.plan.batches(self.epoch, self.skip)

    def __len__(self) -> int:
        return len(self.plan) - self.skip


def _collate(
    items: list[tuple[np.ndarray | None, int, str | None]], as_float: bool = False
) -> tuple[Tensor, Tensor, list[str]]:
    good = [(img, lab) for img, lab, err in items if err is None]
    errors = [err for _, _, err in items if err is not None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), errors
    shapes = {img.shape for img, _ in good}
    if len(shapes) > 1:
        errors.append(
            f"images of different shapes {sorted(shapes)} in one batch; set data.image_size"
        )
    x = torch.from_numpy(np.stack([img for img, _ in good]))
    return (
        to_float(x) if as_float else x,
        torch.tensor([lab for _, lab in good], dtype=torch.long),
        errors,
    )


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one decoding process per core, not a thread pool each
    if sys.platform.startswith("linux"):
        # Die with the training process: a worker outliving a SIGKILL would hold the run's
        # lock (inherited) until DataLoader's own watchdog notices, seconds later.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class StreamLoader:
    """Batches ``(x float [0,1], y int64)`` on ``device``, examples made by ``source`` in
    ``workers`` processes (0: in this process) as ``plan`` orders them.

    Args:
        source: key -> (uint8 image, label); runs in the workers (picklable, no CUDA).
        plan: the keys of each batch per epoch (e.g. :class:`IndexPlan`).
        device: where batches go (pinned host memory first when it is CUDA).
        workers, prefetch: worker processes and batches each keeps ready.
        on_corrupt: "error" (end with the file named) or "skip" (leave it out, counted).
        name: what the data is called in messages.
    """

    def __init__(self, source: Source, plan: Plan, *, device: str | torch.device = "cpu",
                 workers: int = 0, prefetch: int = 2, on_corrupt: str = "error",
                 name: str = "data") -> None:  # fmt: skip
        if on_corrupt not in ON_CORRUPT:
            raise DataError(f"on_corrupt {on_corrupt!r} unknown; allowed: {', '.join(ON_CORRUPT)}")
        if workers < 0 or prefetch < 1:
            raise DataError(f"workers must be >= 0 and prefetch >= 1, got {workers}, {prefetch}")
        self.source, self.plan, self.device = source, plan, torch.device(device)
        self.workers, self.on_corrupt, self.name = workers, on_corrupt, name
        self.skipped: list[str] = []
        self._batches = _Batches(plan)
        self._loader = DataLoader(
            _Examples(source),
            batch_sampler=self._batches,
            num_workers=workers,
            # Training on the CPU: the workers also make the float batch, so that the
            # training process, which needs the cores too, only receives it. A GPU gets uint8
            # (a quarter of the bytes to copy) and converts it itself.
            collate_fn=partial(_collate, as_float=workers > 0 and self.device.type == "cpu"),
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if workers else None,
            persistent_workers=workers > 0,
            prefetch_factor=prefetch if workers else None,
            timeout=TIMEOUT if workers else 0,
        )

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """The next iteration gives ``epoch``'s batches from batch ``skip_batches`` on; the
        batches before it are not made."""
        self._batches.epoch, self._batches.skip = epoch, skip_batches

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        it = iter(self._loader)
        while True:
            try:
                x, y, errors = next(it)
            except StopIteration:
                return
            except RuntimeError as e:
                if not self.workers:
                    raise
                raise DataError(self._worker_failure(e)) from None
            if errors:
                self._bad(errors)
            if len(y) == 0:
                raise DataError(
                    f"{self.name}: every example of a batch was unreadable ({errors[0]})"
                )
            yield (to_float(x.to(self.device, non_blocking=True)),
                   y.to(self.device, non_blocking=True))  # fmt: skip

    def _bad(self, errors: list[str]) -> None:
        if self.on_corrupt == "error" or any("different shapes" in e for e in errors):
            raise DataError(
                errors[0] + ("" if self.on_corrupt == "skip" else
                             " (data.on_corrupt: skip leaves unreadable files out, counted)")
            )  # fmt: skip
        for e in errors:
            self.skipped.append(e)
            print(f"skipped ({len(self.skipped)} so far): {e}", file=sys.stderr, flush=True)

    def _worker_failure(self, e: RuntimeError) -> str:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        return (
            f"{self.name}: a data loader worker failed: {text}. A worker killed by the system is "
            f"often out of memory: lower data.workers (now {self.workers}) or data.prefetch, or "
            "run with data.workers: 0 to see the error in this process"
        )
