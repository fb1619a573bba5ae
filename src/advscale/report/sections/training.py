""" "Training: RUN": curves at step resolution (``metrics.jsonl`` beside the results, else the
per-epoch records), the guard's checks and events (catastrophic overfitting...) and the summary."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from advscale.report import plots
from advscale.report.blocks import Block, Plots, Section, Text, fmt, records_table
from advscale.report.runs import Run
from advscale.results import RECORD_KIND_KEY, is_number

Series = dict[str, list[tuple[float, float]]]

# metrics.jsonl fields drawn, per record type: field -> legend label.
STEP_CURVES = {
    "step": {"loss": "training loss (batch)", "acc": "training acc. (batch)"},
    "epoch": {
        "train_loss": "training loss (epoch)",
        "train_acc": "training acc. (epoch)",
        "val_acc": "validation acc.",
    },
    "guard": {
        "clean_acc": "guard check: clean acc.",
        "fgsm_acc": "guard check: FGSM acc.",
        "pgd_acc": "guard check: PGD acc.",
    },
}


def _events_of(run: Run, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    s = run.results.summary if isinstance(run.results.summary, dict) else {}
    events = [e for e in (s.get("events") or []) if isinstance(e, dict)]
    return events + [e for e in items if e not in events]


def _step_series(lines: list[dict[str, Any]]) -> Series:
    """Curves against the optimizer step from the lines of ``metrics.jsonl``; a resumed run's
    repeated steps keep their last value."""
    metrics: dict[str, dict[float, float]] = defaultdict(dict)
    for rec in lines:
        fields = STEP_CURVES.get(str(rec.get("type", "step")), {})
        if not is_number(rec.get("step")):
            continue
        for key, label in fields.items():
            if is_number(rec.get(key)):
                metrics[label][float(rec["step"])] = float(rec[key])
    return {k: sorted(v.items()) for k, v in metrics.items()}


def _epoch_series(recs: list[dict[str, Any]]) -> Series:
    metrics: Series = defaultdict(list)
    for r in recs:
        if not is_number(r.get("epoch")):
            continue
        for k, v in r.items():
            if k != "epoch" and isinstance(v, float) and ("loss" in k or "acc" in k):
                metrics[k].append((float(r["epoch"]), v))
    return dict(metrics)


def _where(e: dict[str, Any]) -> str:
    parts = [f"{k} {e[k]}" for k in ("step", "epoch") if is_number(e.get(k))]
    return f" at {', '.join(parts)}" if parts else ""


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
        lines = run.steps()
        metrics = _step_series(lines)
        x_key, xlabel = "step", "optimizer step"
        if not metrics:
            metrics, x_key, xlabel = _epoch_series(recs), "epoch", "epoch"
        marks = [
            (float(e[x_key]), str(e.get("event") or e.get("type") or "event"))
            for e in evs
            if is_number(e.get(x_key))
        ]
        if metrics:
            fig = plots.training_curves(metrics, marks, f"Training: {run.shown}", xlabel)
            caption = f"Training curves of {run.shown}, per {xlabel}"
            if any(k.startswith("guard") for k in metrics):
                caption += "; diamonds: the catastrophic-overfitting guard's checks"
            blocks.append(make_plot(f"training_{run.label}", caption, fig))
        for e in evs:
            what = e.get("event") or e.get("type") or "event"
            skip = ("event", "type", "epoch", "step", RECORD_KIND_KEY)
            detail = (
                e.get("message")
                or e.get("reason")
                or ", ".join(f"{k}={fmt(k, v)}" for k, v in e.items() if k not in skip)
            )
            blocks.append(Text(f"{what}{_where(e)}: {detail}", "warning"))
        if recs:
            blocks.append(
                records_table(recs, first=["epoch"], skip=["type"], caption="per-epoch records")
            )
        s = run.results.summary if isinstance(run.results.summary, dict) else {}
        scalars = {k: v for k, v in s.items() if not isinstance(v, (list, dict))}
        if scalars:
            blocks.append(records_table([scalars], caption="summary").transposed("summary"))
        sections.append(Section(f"Training: {run.shown}", blocks))
    return sections
