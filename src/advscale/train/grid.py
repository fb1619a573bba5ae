"""One runner for a grid of training runs (sweeps, comparisons): each point is a run directory.

On a rerun a point whose run finished with the same config is reused, a started one resumes,
and one started by another config is refused or overwritten (as the caller says). A point that
fails is recorded with its error and the others still run; on Ctrl-C what was done is saved.

Example:
    >>> points = [GridPoint("pgd eps=8", Path("runs/g/pgd8"), config_to_dict(cfg),
    ...                     lambda start: train(cfg, "runs/g/pgd8", resume=start.resume))]  # doctest: +SKIP
    >>> outcomes = run_grid(points, save=lambda outcomes, final: None)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from advscale.errors import RunInterrupted, UserError
from advscale.train.rundir import RunDir, RunState


@dataclass(frozen=True)
class PointStart:
    """How a point's run starts: ``state`` of its run directory before it ran."""

    state: RunState

    @property
    def reuse(self) -> bool:
        """The run finished with this config: read its results, train nothing."""
        return self.state == "finished"

    @property
    def resume(self) -> bool:
        """Continue the run in the directory (``train(..., resume=True)``)."""
        return self.state in ("started", "finished")

    @property
    def force(self) -> bool:
        """Overwrite a run started by another config (``train(..., force=True)``)."""
        return self.state == "changed"


@dataclass
class GridPoint:
    """One point: ``name`` (shown in the log), its ``run_dir``, the ``config`` that identifies
    its run (``config_to_dict`` of its training config) and ``run``, which trains (or reuses)
    the point and returns what the caller records."""

    name: str
    run_dir: Path
    config: dict[str, Any]
    run: Callable[[PointStart], Any]


class PointFailed(Exception):
    """Raised by a point's ``run`` that failed but has something to record (``value``); the
    message is the error (``TypeName: what``)."""

    def __init__(self, error: str, value: Any) -> None:
        super().__init__(error)
        self.value = value


@dataclass
class PointOutcome:
    """What became of one point: ``done`` (``value`` is what its ``run`` returned), ``failed``
    (``error``, ``exception``; ``value`` from a :class:`PointFailed`) or ``interrupted``."""

    point: GridPoint
    status: Literal["done", "failed", "interrupted"]
    value: Any = None
    error: str | None = None
    exception: BaseException | None = None
    reused: bool = False


SaveFn = Callable[[list[PointOutcome], bool], None]


def run_grid(
    points: Sequence[GridPoint],
    *,
    save: SaveFn,
    on_changed: Literal["refuse", "overwrite"] = "refuse",
    log: Callable[[str], None] | None = None,
) -> list[PointOutcome]:
    """Run every point in order and return their outcomes.

    Args:
        points: the grid, in the order to run it.
        save: called with the outcomes so far after every point (``final`` False), on Ctrl-C
            (the interrupted point last, then the interrupt goes on) and at the end (``final``
            True).
        on_changed: a run directory holding a run by another config: ``refuse`` (the point
            fails, naming the differences) or ``overwrite`` it.
        log: progress lines (default: stderr).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    outcomes: list[PointOutcome] = []
    for i, p in enumerate(points, 1):
        tag = f"[{i}/{len(points)}] {p.name}"
        try:
            start = PointStart(RunDir(p.run_dir).state(p.config))
            if start.state == "changed" and on_changed == "refuse":
                diffs = RunDir(p.run_dir).diff(p.config)
                raise UserError(
                    f"{p.run_dir} holds a run by a different config ("
                    + "; ".join(diffs or ["its results.json"])
                    + "); delete that directory to rerun this point"
                )
            if start.reuse:
                log(f"{tag}: finished earlier, reused ({p.run_dir})")
            else:
                log(f"{tag}: {'resuming' if start.resume else 'training'} in {p.run_dir}")
            outcomes.append(PointOutcome(p, "done", p.run(start), reused=start.reuse))
        except Exception as e:  # noqa: BLE001 - a failed point is recorded, the grid goes on
            error = str(e) if isinstance(e, PointFailed) else f"{type(e).__name__}: {e}"
            log(f"{tag}: FAILED: {error.splitlines()[0] if error else ''}")
            value = e.value if isinstance(e, PointFailed) else None
            outcomes.append(PointOutcome(p, "failed", value, error=error, exception=e))
        except (KeyboardInterrupt, RunInterrupted):
            outcomes.append(PointOutcome(p, "interrupted"))
            save(outcomes, False)
            raise
        save(outcomes, False)
    save(outcomes, True)
    return outcomes


# -- shares of a grid, one per machine ----------------------------------------------------------
def parse_shard(text: str | None, environ: Any = None) -> tuple[int, int] | None:
    """``--shard``: ``I/N`` (1 <= I <= N) or ``slurm``, which reads SLURM_ARRAY_TASK_ID,
    SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN (an array ``--array=0-3`` or ``1-4`` of
    consecutive tasks); None without sharding.

    Raises:
        UserError: a malformed value, I outside 1..N, SLURM variables missing or inconsistent.
    """
    if text is None:
        return None
    env = os.environ if environ is None else environ
    if text.strip().lower() == "slurm":
        names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
        missing = [k for k in names if not str(env.get(k, "")).strip()]
        if missing:
            raise UserError(
                f"--shard slurm: {', '.join(missing)} not set; run it in a SLURM array job "
                "(sbatch --array=1-N) or give --shard I/N"
            )
        try:
            task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
            low = int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
        except ValueError:
            raise UserError(
                "--shard slurm: SLURM_ARRAY_TASK_ID/COUNT/MIN are not integers "
                f"({env.get('SLURM_ARRAY_TASK_ID')!r}, {env.get('SLURM_ARRAY_TASK_COUNT')!r})"
            ) from None
        index = task - low + 1
        if not 1 <= index <= count:
            raise UserError(
                f"--shard slurm: task {task} of an array from {low} with {count} tasks is not "
                "one of consecutive tasks; use --array=1-N (or 0-(N-1)) or --shard I/N"
            )
        return index, count
    i, sep, n = text.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index = count = 0
    if not sep or not 1 <= index <= count:
        raise UserError(f"--shard {text!r}: expected I/N with 1 <= I <= N (e.g. 2/4), or slurm")
    return index, count


def shard_dir(out: Path, shard: tuple[int, int]) -> Path:
    """Where share ``shard`` = (I, N) of a sweep into ``out`` is written."""
    return out / f"shard-{shard[0]}-of-{shard[1]}"
