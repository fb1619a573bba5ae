""" "Label leaking" (paper A): label-leak records and the verdicts in run summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advscale.report.blocks import Block, Section, Text, fmt, records_table
from advscale.report.runs import Run, summaries


def build(items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run]) -> Section | None:
    blocks: list[Block] = []
    if items:
        # "check" only says what put the record here; "model" repeats the run in all but a demo.
        recs = [
            {"run": run.shown, **{k: v for k, v in r.items() if k != "check"}} for run, r in items
        ]
        if all(r.get("model") in (None, run.label) for run, r in items):
            recs = [{k: v for k, v in r.items() if k != "model"} for r in recs]
        blocks.append(
            records_table(
                recs,
                first=[
                    "run",
                    "eps",
                    "clean_accuracy",
                    "fgsm_accuracy",
                    "fgsm_pred_accuracy",
                    "leaked",
                    "leak",
                ],
            )
        )
    for label, s in (pair for run in runs for pair in summaries(run)):
        found = s.get("label_leak")
        if isinstance(found, bool):
            if found:
                blocks.append(Text(f"{label}: label leaking detected.", "warning"))
            continue
        if found:
            rows = found if isinstance(found, list) else [found]
            if all(isinstance(x, dict) for x in rows):
                blocks.append(records_table([{"run": label, **x} for x in rows], first=["run"]))
            else:
                blocks.append(Text(f"{label}: {fmt('label_leak', found)}"))
    if not blocks:
        return None
    blocks.insert(
        0,
        Text(
            "Label leaking (paper A): a model trained on true-label one-step examples (FGSM) can be "
            "more accurate on those examples than on clean ones; its robustness to them is then not "
            "robustness.",
            "note",
        ),
    )
    return Section("Label leaking", blocks)
