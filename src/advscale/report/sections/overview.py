"""The "Runs" section: every run, its kind, whether it finished, where it came from."""

from __future__ import annotations

from collections.abc import Sequence

from advscale.report.blocks import Block, Section, Table, Text
from advscale.report.runs import Run


def build(runs: Sequence[Run]) -> Section:
    rows = []
    for run in runs:
        res = run.results
        rows.append(
            [
                run.label,
                res.kind,
                "yes" if res.complete else "NO (incomplete)",
                res.created,
                str(len(res.records)),
                run.source,
            ]
        )
    blocks: list[Block] = [Table(["run", "kind", "complete", "created", "records", "source"], rows)]
    for run in runs:
        if not run.results.complete:
            err = (
                run.results.summary.get("error") if isinstance(run.results.summary, dict) else None
            )
            blocks.append(
                Text(
                    f"Run {run.label} did not finish (complete=false): its numbers are partial."
                    + (f" Error: {err}" if err else ""),
                    "warning",
                )
            )
    return Section("Runs", blocks)
