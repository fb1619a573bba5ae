""" "Gradient-masking checks": the warnings of every run and the checks that ran."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from advscale.report.blocks import Block, Section, Text, records_table
from advscale.report.runs import Run, classify, summaries


def _warnings_of(run: Run) -> list[str]:
    """Gradient-masking warnings of the run, each prefixed with the model it concerns."""
    out = []
    for label, s in summaries(run):
        for key in ("warnings", "masking_warnings"):
            found = s.get(key)
            for w in found if isinstance(found, list) else [] if found is None else [found]:
                if isinstance(w, dict):
                    msg = w.get("message") or json.dumps(w, default=str)
                    msg = f"[{w['check']}] {msg}" if w.get("check") else msg
                else:
                    msg = str(w)
                out.append(f"{label}: {msg}")
    return out


def build(items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run]) -> Section | None:
    blocks: list[Block] = []
    for run in runs:
        for w in _warnings_of(run):
            blocks.append(Text(w, "warning"))
    if items:
        recs = [{"run": run.shown, **r} for run, r in items]
        blocks.append(
            records_table(recs, first=["run", "check", "attack", "eps", "passed", "ok", "message"])
        )
    evaluated = [
        run for run in runs if any(classify(run, r) == "robust" for r in run.results.records)
    ]
    if not blocks and evaluated:
        for run in evaluated:
            s = run.results.summary if isinstance(run.results.summary, dict) else {}
            ran = ", ".join(map(str, s.get("checks") or []))
            blocks.append(
                Text(
                    f"{run.shown}: no gradient-masking warnings (checks run: {ran})."
                    if ran
                    else f"{run.shown}: no gradient-masking checks recorded with these numbers."
                )
            )
    return Section("Gradient-masking checks", blocks) if blocks else None
