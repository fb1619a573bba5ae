""" "Other records": records no section shows, listed rather than dropped."""

from __future__ import annotations

from typing import Any

from advscale.report.blocks import Block, Section, records_table
from advscale.report.runs import Run, group_by_run


def build(items: list[tuple[Run, dict[str, Any]]]) -> Section | None:
    if not items:
        return None
    blocks: list[Block] = []
    for run, recs in group_by_run(items):
        blocks.append(records_table(recs, caption=f"{run.shown} ({run.results.kind})"))
    return Section("Other records", blocks)
