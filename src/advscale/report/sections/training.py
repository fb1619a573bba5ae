""" "Training: RUN": curves, events (catastrophic overfitting...) and the summary of each run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from advscale.report import plots
from advscale.report.blocks import Block, Plots, Section, Table, Text, fmt, records_table
from advscale.report.runs import Run
from advscale.results import RECORD_KIND_KEY, is_number


def _events_of(run: Run, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    s = run.results.summary if isinstance(run.results.summary, dict) else {}
    events = [e for e in (s.get("events") or []) if isinstance(e, dict)]
    return events + items


def build(
    train: list[tuple[Run, dict[str, Any]]],
    events: list[tuple[Run, dict[str, Any]]],
    runs: Sequence[Run],
    make_plot: Plots,
) -> list[Section]:
    per_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ev_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run, r in train:
        per_run[run.label].append(r)
    for run, r in events:
        ev_run[run.label].append(r)
    sections = []
    for run in runs:
        recs, evs = per_run.get(run.label, []), _events_of(run, ev_run.get(run.label, []))
        if not recs and not evs:
            continue
        blocks: list[Block] = []
        metrics: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in recs:
            if not is_number(r.get("epoch")):
                continue
            for k, v in r.items():
                if k != "epoch" and is_number(v) and not isinstance(v, int) and _is_curve(k):
                    metrics[k].append((float(r["epoch"]), float(v)))
        marks = [
            (float(e["epoch"]), str(e.get("event") or e.get("type") or "event"))
            for e in evs
            if is_number(e.get("epoch"))
        ]
        if metrics:
            fig = plots.training_curves(metrics, marks, title=f"Training: {run.shown}")
            blocks.append(
                make_plot(f"training_{run.label}", f"Training curves of {run.shown}", fig)
            )
        for e in evs:
            what = e.get("event") or e.get("type") or "event"
            where = f" at epoch {e['epoch']}" if "epoch" in e else ""
            detail = (
                e.get("message")
                or e.get("reason")
                or ", ".join(
                    f"{k}={fmt(k, v)}"
                    for k, v in e.items()
                    if k not in ("event", "type", "epoch", RECORD_KIND_KEY)
                )
            )
            blocks.append(Text(f"{what}{where}: {detail}", "warning"))
        if recs:
            blocks.append(
                records_table(recs, first=["epoch"], skip=["type"], caption="per-epoch records")
            )
        s = run.results.summary if isinstance(run.results.summary, dict) else {}
        scalars = {k: v for k, v in s.items() if not isinstance(v, (list, dict))}
        if scalars:
            blocks.append(Table(["summary", "value"], [[k, fmt(k, v)] for k, v in scalars.items()]))
        sections.append(Section(f"Training: {run.shown}", blocks))
    return sections


def _is_curve(key: str) -> bool:
    """Per-epoch values worth plotting: losses and accuracies, not times or learning rates."""
    return "loss" in key or "acc" in key
