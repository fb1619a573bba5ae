"""Fast versus multi-step adversarial training: robustness against training cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advscale.report import plots
from advscale.report.blocks import Block, Plots, Section, Text, fmt, records_table
from advscale.report.facts import amount
from advscale.report.runs import Run
from advscale.results import is_number

# The robust accuracy a cost/robustness plot shows, in order of preference (worst case first).
ROBUST_KEYS = ("robust_accuracy", "apgd_accuracy", "pgd_accuracy", "autoattack_accuracy")

TIME_KEYS = ("wall_time_s", "seconds", "train_time_s")


def build(
    items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run], make_plot: Plots
) -> Section | None:
    if not items:
        return None
    several = len({r.label for r, _ in items}) > 1
    recs = [({"run": run.shown} if several else {}) | r for run, r in items]
    ok = [r for r in recs if r.get("status", "done") == "done"]
    failed = [r for r in recs if r.get("status") == "failed"]
    blocks: list[Block] = []
    time_key = next((k for k in TIME_KEYS if any(is_number(r.get(k)) for r in ok)), None)
    robust_key = next((k for k in ROBUST_KEYS if any(is_number(r.get(k)) for r in ok)), None)
    pts = [
        r
        for r in ok
        if robust_key
        and time_key
        and is_number(r.get(robust_key))
        and (amount(r.get(time_key)) or 0) > 0  # a log axis: a time of 0, NaN or inf has no place
    ]
    if pts:
        fig = plots.cost_robustness_scatter(
            [{**r, "seconds": r[time_key]} for r in pts], robust_key
        )
        blocks.append(make_plot("cost_vs_robustness", "Robust accuracy against training time", fig))
    if ok:
        first = [
            "run",
            "method",
            "mode",
            "eps",
            "clean_accuracy",
            "pgd_accuracy",
            "apgd_accuracy",
            "robust_accuracy",
            *TIME_KEYS,
            "time_ratio",
            "co_events",
            "stopped_early",
        ]
        blocks.append(
            records_table(
                ok,
                first=first,
                skip=["status", "eps_unit"],
                caption="robustness against training cost, one row per run",
            )
        )
    for run in runs:
        s = run.results.summary if isinstance(run.results.summary, dict) else {}
        pairs = [p for p in (s.get("pairs") or []) if isinstance(p, dict)]
        if run.results.kind == "compare" and pairs:
            blocks.append(
                records_table(
                    pairs,
                    first=["fast", "slow", "mode", "eps"],
                    caption=f"{run.shown}: multi-step minus fast method, in accuracy points "
                    "(positive: the multi-step method is more robust), and the time ratio",
                )
            )
    for r in failed:
        where = ", ".join(f"{k}={fmt(k, r.get(k))}" for k in ("method", "mode", "eps") if k in r)
        blocks.append(Text(f"Failed: {where}: {r.get('error', 'no error message')}", "warning"))
    return Section("Fast versus multi-step adversarial training: cost and robustness", blocks)
