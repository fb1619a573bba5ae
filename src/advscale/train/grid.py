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
