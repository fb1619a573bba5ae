"""Stopping a run on SIGTERM or SIGINT without losing it.

A signal handler runs between two bytecodes of whatever the process was doing, possibly in the
middle of an optimizer step; writing a checkpoint there would save half-updated state. So the
handler only notes the signal, and the training loop asks :meth:`StopSignals.agreed` at each step
boundary: there it writes a checkpoint and raises :class:`advscale.errors.RunInterrupted` (exit
status 128 + signal number, as a shell reports a process killed by it). Under DDP the processes
agree (a sum over them) so that every one stops after the same step, even when only one was
signalled. A second signal while the first is pending acts as it would without advscale.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from advscale.errors import RunInterrupted
from advscale.train.distributed import DistInfo

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """``with StopSignals() as stop:`` notes SIGTERM/SIGINT instead of dying; ``stop.agreed(d)``
    at a step boundary is the signal number to stop for (0: carry on), the same in every process.

    Outside the main thread (where Python cannot install handlers) it never asks to stop.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        # A second signal of any kind now gets the handler it had before: impatience wins.
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def agreed(self, info: DistInfo) -> int:
        """The signal every process stops for: this one's, or (under DDP) the largest noted in
        any process; 0 when none was. Every process must call it at the same step."""
        if not info.enabled:
            return self.signum
        t = torch.tensor([float(self.signum)], device=info.device)
        # SIGTERM (15) outranks SIGINT (2) when processes saw different signals: a scheduler's
        # SIGTERM is the stronger request.
        return int(all_reduce_max(t, info).item())

    @staticmethod
    def interrupted(
        signum: int, step: int, checkpoints: Path, log: Callable[[dict[str, Any]], None]
    ) -> RunInterrupted:
        """The error to stop with after the checkpoint in ``checkpoints`` was written at
        ``step``; its ``interrupted`` event goes to ``log``."""
        name = signal.Signals(signum).name
        log({"type": "event", "event": "interrupted", "signal": name, "step": step})
        return RunInterrupted(
            f"{name}: stopped after step {step}, checkpoint in {checkpoints}; continue with "
            "--resume",
            signum,
        )


def all_reduce_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise maximum of ``t`` over processes (in place)."""
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t
