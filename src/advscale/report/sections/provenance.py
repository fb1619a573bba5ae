""" "Configuration and environment": what produced every number, per run."""

from __future__ import annotations

import json
from collections.abc import Sequence

from advscale.report.blocks import Block, Code, Section, Text
from advscale.report.runs import Run


def build(runs: Sequence[Run]) -> Section:
    blocks: list[Block] = [
        Text("The configuration and environment behind every number above, per run.", "note")
    ]
    for run in runs:
        blocks.append(
            Code(
                json.dumps(run.results.config, indent=2, default=str), f"{run.shown}: configuration"
            )
        )
        blocks.append(
            Code(
                json.dumps(run.results.environment, indent=2, default=str),
                f"{run.shown}: environment",
            )
        )
    return Section("Configuration and environment", blocks)
