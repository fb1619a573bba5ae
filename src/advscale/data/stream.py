"""Streamed training batches: images decoded and augmented in worker processes.

:class:`StreamLoader` puts ``torch.utils.data.DataLoader`` (worker processes, persistent
between epochs, prefetching, pinned memory on CUDA) behind the loaders' interface
(``set_epoch(epoch, skip_batches)``, ``len``, iteration). What is loaded is decided in this
process by a *plan*, one list of keys per batch; workers only turn a key into an example
(``source[key]``). So the batches, their order and their augmentation (drawn from (seed,
epoch, example index)) do not depend on the number of workers, and a resumed epoch starts at
batch ``k`` without decoding the batches before it.

On the CPU, a batch travels from a worker to this process in a ring of shared-memory buffers
made before the workers start: the worker stacks the batch into a free slot and sends only the
slot's number, and this process makes the float batch from it and frees the slot. Sending a
tensor through torch's queues instead allocates shared memory, passes its file descriptor over
a socket and frees the pages again, every batch: on a 2-core machine that cost ~200 µs of CPU
per 96x96 image, as much as decoding it (``benchmarks/results/data_scale.md``). On CUDA,
batches take DataLoader's own path (pinned memory, copied by its pinning thread).

A bad file ends the run with one line naming it, raised in this process from what the worker
reported (``on_corrupt: error``), or is left out of its batch and counted on stderr
(``on_corrupt: skip``), never silently. A worker that dies or stalls for :data:`TIMEOUT`
seconds ends the run with a message saying so, instead of a hang.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import signal
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

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

    batch_size: int

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


class _Task(NamedTuple):
    """A batch for a worker: its keys, and the ring slot to stack it in (-1: none free)."""

    slot: int
    keys: list[Any]


class _InRing(NamedTuple):
    """What a worker sends back for a batch it stacked in the ring: the slot and the shape."""

    slot: int
    shape: tuple[int, ...]


class _Ring:
    """``slots`` shared buffers of ``capacity`` bytes, and which of them are free (kept in this
    process: a slot is taken when its batch is handed to a worker and given back once this
    process has made the float batch from it).

    DataLoader keeps at most ``prefetch x workers`` batches handed out, and this process holds
    one while converting it, so that many slots plus one never run out; if they did, the
    batch would travel the ordinary way (slot -1), not overwrite one.
    """

    def __init__(self, slots: int, capacity: int) -> None:
        self.buffers = torch.empty((slots, capacity), dtype=torch.uint8).share_memory_()
        self.free = list(range(slots))

    def reset(self) -> None:
        """Every slot free: at the start of an iteration, after DataLoader has drained the
        batches of the one before."""
        self.free = list(range(len(self.buffers)))

    def take(self) -> int:
        return self.free.pop() if self.free else -1

    def give(self, slot: int) -> None:
        self.free.append(slot)


class _Examples(Dataset):
    """What a worker runs: ``source[key]``, with a bad file reported instead of raised (the
    main process decides what to do with it), and the batch stacked in the ring if any."""

    def __init__(self, source: Source, ring: Tensor | None = None) -> None:
        self.source, self.ring = source, ring

    def __getitem__(self, key: Any) -> tuple[np.ndarray | None, int, str | None]:
        try:
            img, label = self.source[key]
        except DataError as e:
            return None, -1, str(e)
        except (OSError, ValueError, SyntaxError, MemoryError) as e:
            where = self.source.describe(key) if hasattr(self.source, "describe") else "an example"
            return None, -1, f"{where}: cannot read the example ({type(e).__name__}: {e})"
        return img, label, None

    def __getitems__(self, task: _Task | list[Any]) -> tuple[Any, Any, list[str]]:
        """The batch of ``task`` (DataLoader's fetcher calls this with what the batch sampler
        gave), collated."""
        slot, keys = task if isinstance(task, _Task) else (-1, task)
        ring = self.ring if slot >= 0 else None
        return _collate([self[k] for k in keys], ring, slot)


class _Batches:
    """The batch sampler DataLoader iterates: the plan's batches of the epoch set last, each
    with a free ring slot when there is a ring."""

    def __init__(self, plan: Plan, ring: _Ring | None = None) -> None:
        self.plan, self.ring, self.epoch, self.skip = plan, ring, 0, 0

    def __iter__(self) -> Iterator[list[Any] | _Task]:
        # The body runs at DataLoader's first request for a batch, after it has collected the
        # batches its workers were still making for an earlier iteration: all slots are free.
        if self.ring is not None:
            self.ring.reset()
        for keys in self.plan.batches(self.epoch, self.skip):
            yield keys if self.ring is None else _Task(self.ring.take(), keys)

    def __len__(self) -> int:
        return len(self.plan) - self.skip


def _collate(
    items: list[tuple[np.ndarray | None, int, str | None]],
    ring: Tensor | None = None,
    slot: int = -1,
) -> tuple[Tensor | _InRing, Tensor | np.ndarray, list[str]]:
    """A batch ``(uint8 images, labels, errors)`` from a worker's examples; with ``ring``, the
    images are stacked in ``ring[slot]`` and ``_InRing(slot, shape)`` stands for them, and the
    labels are a NumPy array (a tensor would travel by shared memory)."""
    good = [(img, lab) for img, lab, err in items if err is None]
    errors = [err for _, _, err in items if err is not None]
    shapes = {img.shape for img, _ in good}
    if len(shapes) > 1:
        errors.append(
            f"images of different shapes {sorted(shapes)} in one batch; set data.image_size"
        )
    if not good or len(shapes) > 1:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), errors
    labels = np.array([lab for _, lab in good], dtype=np.int64)
    shape = (len(good), *good[0][0].shape)
    if ring is not None and math.prod(shape) <= ring.shape[1]:
        out = ring[slot, : math.prod(shape)].numpy().reshape(shape)
        np.stack([img for img, _ in good], out=out)
        return _InRing(slot, shape), labels, errors
    return torch.from_numpy(np.stack([img for img, _ in good])), torch.from_numpy(labels), errors


def _identity(batch: Any) -> Any:
    return batch


def as_float(images: np.ndarray) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1] in NumPy, bit for bit :func:`to_float`: one thread, so
    that a process feeding the model does not wake torch's thread pool for it."""
    out = np.empty(images.shape, dtype=np.float32)
    np.divide(images, np.float32(255.0), out=out, dtype=np.float32)
    return torch.from_numpy(out)


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
        example_shape: the most (C, H, W) an example can have: with workers on the CPU,
            batches travel in a ring of shared buffers of that size (None: the ordinary way).
    """

    def __init__(self, source: Source, plan: Plan, *, device: str | torch.device = "cpu",
                 workers: int = 0, prefetch: int = 2, on_corrupt: str = "error",
                 name: str = "data",
                 example_shape: tuple[int, ...] | None = None) -> None:  # fmt: skip
        if on_corrupt not in ON_CORRUPT:
            raise DataError(f"on_corrupt {on_corrupt!r} unknown; allowed: {', '.join(ON_CORRUPT)}")
        if workers < 0 or prefetch < 1:
            raise DataError(f"workers must be >= 0 and prefetch >= 1, got {workers}, {prefetch}")
        self.source, self.plan, self.device = source, plan, torch.device(device)
        self.workers, self.on_corrupt, self.name = workers, on_corrupt, name
        self.skipped: list[str] = []
        self._ring: _Ring | None = None
        if workers and self.device.type == "cpu" and example_shape is not None:
            slots = workers * prefetch + 1
            # Shared memory refused (a small /dev/shm): batches go the ordinary way.
            with contextlib.suppress(RuntimeError, OSError):
                self._ring = _Ring(slots, plan.batch_size * math.prod(example_shape))
        self._batches = _Batches(plan, self._ring)
        self._loader = DataLoader(
            _Examples(source, self._ring.buffers if self._ring else None),
            batch_sampler=self._batches,
            num_workers=workers,
            collate_fn=_identity,
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

    @property
    def ring_slots(self) -> tuple[int, int] | None:
        """(free, all) slots of the shared ring batches travel in (a slot freed twice counts
        once); None without a ring."""
        return None if self._ring is None else (len(set(self._ring.free)), len(self._ring.buffers))

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
            if isinstance(x, _InRing):
                assert self._ring is not None
                size = math.prod(x.shape)
                images = as_float(self._ring.buffers[x.slot, :size].numpy().reshape(x.shape))
                self._ring.give(x.slot)
                yield images, torch.from_numpy(y)
            elif self.device.type == "cpu":
                yield as_float(x.numpy()), y
            else:
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
