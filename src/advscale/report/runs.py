"""Runs of a report: results files (or in-memory results) loaded, named and their records
sorted by what they measure (:func:`advscale.results.record_kind`)."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advscale.errors import UserError
from advscale.report.shares import group_shares, is_share, merge_shares
from advscale.results import (
    Results,
    ResultsError,
    bad_accuracy,
    is_number,
    load_results,
    record_kind,
)


@dataclass
class Run:
    """One results file in a report, with the name it is shown under."""

    label: str
    source: str
    results: Results

    @property
    def shown(self) -> str:
        """The label, marked when the run did not finish."""
        return self.label if self.results.complete else f"{self.label} (incomplete)"

    @property
    def directory(self) -> Path | None:
        """The directory of the results file (None for results given in memory)."""
        return None if self.source == IN_MEMORY else Path(self.source).parent

    def steps(self) -> list[dict[str, Any]]:
        """The records of the run's ``metrics.jsonl`` (steps, epochs, guard checks, events),
        or [] without one; unreadable lines are skipped (a run killed mid-write)."""
        path = self.directory / "metrics.jsonl" if self.directory else None
        if path is None or not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def examples_file(self) -> Path | None:
        """The adversarial examples saved with this run: the file its config names
        (``adversarial_examples``, relative to the results file), else one of that name or
        ``examples.safetensors`` beside the results file."""
        cfg = self.results.config if isinstance(self.results.config, dict) else {}
        named = cfg.get("adversarial_examples")
        where = self.directory
        candidates: list[Path] = []
        if isinstance(named, str) and named:
            p = Path(named)
            candidates.append(p if p.is_absolute() or where is None else where / p)
            if where is not None:
                candidates.append(where / p.name)
        if where is not None and self.results.kind in EVAL_KINDS:
            candidates.append(where / "examples.safetensors")
        return next((c for c in candidates if c.is_file()), None)


IN_MEMORY = "(in memory)"

RunInput = Results | str | os.PathLike | tuple[str, Results | str | os.PathLike]


def _results_files(path: Path) -> list[Path]:
    """``path`` itself, its results.json, or (for a directory of runs) every results.json below it."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise ResultsError(f"{path}: no such run directory or results file")
    if (path / "results.json").is_file():
        return [path / "results.json"]
    found = sorted(path.rglob("results.json"))
    if not found:
        raise ResultsError(f"{path}: no results.json in this directory or below it")
    return found


def _default_label(results: Results, source: Path | None) -> str:
    cfg = results.config or {}
    # The name a command gave its run or model (eval writes the checkpoint's short name).
    for key in ("name", "model"):
        v = cfg.get(key)
        if isinstance(v, str) and v.strip():
            return v
    if source is not None:
        return source.parent.name if source.name == "results.json" else source.stem
    return results.kind


def _demo_parts(res: Results, f: Path) -> list[Run]:
    """The runs a demo's results file stands for, as the demo's own report shows them: each
    model's evaluation (``eval/<model>.json``) and training run (``train/<model>/``)."""
    if res.kind != "demo" or not isinstance(res.config.get("models"), dict):
        return []
    parts = []
    for model in res.config["models"]:
        for label, path in (
            (model, f.parent / "eval" / f"{model}.json"),
            (f"{model} (training)", f.parent / "train" / model / "results.json"),
        ):
            if path.is_file():
                parts.append(Run(label, str(path), load_results(path)))
    return parts


def collect_runs(items: Iterable[RunInput]) -> list[Run]:
    """Load and name every run; labels are made unique. Raises ResultsError naming a bad file.

    A demo's results file stands for the evaluations and training runs beside it (as the
    demo's own report shows them), when they are there.
    """
    runs: list[Run] = []
    for item in items:
        name: str | None = None
        if isinstance(item, tuple):
            name, item = item
        if isinstance(item, Results):
            runs.append(Run(name or _default_label(item, None), IN_MEMORY, item))
            continue
        files = _results_files(Path(item))
        for f in files:
            try:
                res = load_results(f)
            except ResultsError as e:
                if str(f) in str(e):
                    raise
                raise ResultsError(f"{f}: {e}") from None
            parts = _demo_parts(res, f)
            if parts:
                runs += parts
                continue
            label = name if (name and len(files) == 1) else _default_label(res, f)
            runs.append(Run(label, str(f), res))
    if not runs:
        raise UserError(
            "no results to report on: give run directories or results.json files written by advscale"
        )
    for run in runs:
        check_accuracies(run.results, run.source)
    # The shares of a sweep run on several machines are one sweep.
    runs = [
        run if len(part) == 1 and not is_share(run.results) else _merged(run, part)
        for run, part in group_shares(runs, lambda r: r.results)
    ]
    # A file found twice (a demo's training runs, also found below a directory given) is one
    # run, named where it was first found.
    files: set[Path] = set()
    kept = []
    for run in runs:
        if run.source != IN_MEMORY:
            if Path(run.source).resolve() in files:
                continue
            files.add(Path(run.source).resolve())
        kept.append(run)
    runs = kept
    # A model's training run and its evaluation share the model's name: the training run is the
    # one renamed.
    shared = {lb for lb in (r.label for r in runs) if sum(r.label == lb for r in runs) > 1}
    for run in runs:
        if run.label in shared and run.results.kind in TRAIN_KINDS:
            run.label = f"{run.label} (training)"
    seen: dict[str, int] = defaultdict(int)
    for run in runs:
        seen[run.label] += 1
        if seen[run.label] > 1:
            run.label = f"{run.label} ({seen[run.label]})"
    return runs


def _merged(first: Run, shares: list[Run]) -> Run:
    merged = merge_shares([r.results for r in shares])
    label = merged.config.get("name") or first.label
    return Run(label if isinstance(label, str) else first.label, first.source, merged)


def check_accuracies(results: Results, source: str) -> None:
    """Refuse results whose accuracies are not finite or lie outside [0, 1] (or whose ε is not
    a finite budget >= 0): a report would otherwise print "nan%" or "5700%" and rank the model
    by it.

    Raises:
        ResultsError: naming the file, the record (or the summary) and the field.
    """
    for i, r in enumerate(results.records):
        if not isinstance(r, dict):
            raise ResultsError(f"{source}: record {i} must be an object, got {type(r).__name__}")
        e = r.get("eps")
        if is_number(e) and not (0 <= e < math.inf):
            raise ResultsError(
                f"{source}: record {i}: eps is {_shown(e)}; ε is a finite budget >= 0 (pixel "
                "levels for L∞): fix or remove that record"
            )
        found = bad_accuracy(r)
        if found is not None:
            what = ", ".join(f"{k} {r[k]!r}" for k in ("model", "attack", "eps") if k in r)
            raise ResultsError(
                f"{source}: record {i}" + (f" ({what})" if what else "") + f": {found[0]} is "
                f"{_shown(found[1])}; accuracies are shares, finite and in [0, 1] (0.57, not 57): "
                "fix or remove that record"
            )
    if isinstance(results.summary, dict):
        found = bad_accuracy(results.summary)
        if found is not None:
            raise ResultsError(
                f"{source}: summary {found[0]} is {_shown(found[1])}; accuracies are shares, finite "
                "and in [0, 1] (0.57, not 57): fix or remove it"
            )


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 24 else text[:20] + "..."


def classify(run: Run, r: dict[str, Any]) -> str:
    """The kind of record ``r`` of ``run`` (:data:`advscale.results.RECORD_KINDS`)."""
    return record_kind(run.results.kind, r)


def by_section(runs: Sequence[Run]) -> dict[str, list[tuple[Run, dict[str, Any]]]]:
    out: dict[str, list[tuple[Run, dict[str, Any]]]] = defaultdict(list)
    for run in runs:
        for r in run.results.records:
            if isinstance(r, dict):
                out[classify(run, r)].append((run, r))
            else:
                out["other"].append((run, {"value": r}))
    return out


def group_by_run(
    items: list[tuple[Run, dict[str, Any]]],
) -> list[tuple[Run, list[dict[str, Any]]]]:
    """Records grouped by run, runs in order of first appearance."""
    groups: dict[str, tuple[Run, list[dict[str, Any]]]] = {}
    for run, r in items:
        groups.setdefault(run.label, (run, []))[1].append(r)
    return list(groups.values())


def summaries(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """The run's summary, and the per-model summaries nested in it (as the demo writes them)."""
    s = run.results.summary if isinstance(run.results.summary, dict) else {}
    nested = [
        (f"{run.shown}/{k}", v)
        for k, v in s.items()
        if isinstance(v, dict) and ("warnings" in v or "label_leak" in v)
    ]
    return [(run.shown, s), *nested]


def _same_path(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def evaluates(evaluation: Run, training: Run) -> bool:
    """Whether ``evaluation`` names ``training`` as the run whose model it attacked: its config's
    ``train_run`` (a run directory or its results file, or a list of them, as the demo writes
    it), or a ``model``/``checkpoint`` saved in that run's directory."""
    if training.source == IN_MEMORY:
        return False
    results_file = Path(training.source)
    cfg = evaluation.results.config if isinstance(evaluation.results.config, dict) else {}
    named = cfg.get("train_run")
    for p in named if isinstance(named, list) else [named]:
        if (
            isinstance(p, str)
            and p
            and (_same_path(Path(p), results_file.parent) or _same_path(Path(p), results_file))
        ):
            return True
    for key in ("model", "checkpoint"):
        p = cfg.get(key)
        if isinstance(p, str) and p and _same_path(Path(p).parent, results_file.parent):
            return True
    return False


TRAIN_KINDS = ("train", "finetune")

EVAL_KINDS = ("eval", "demo")
