""" "Label leaking" (paper A): label-leak records and the verdicts in run summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advscale.report.blocks import Block, Section, Text, fmt, records_table
from advscale.report.runs import Run, summaries

# The per-control test details stay in results.json; the tables show accuracies and verdicts.
HIDDEN = {"check", "leak_tests", "perturbed_tests", "alpha", "min_effect", "confidence"}


def build(items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run]) -> Section | None:
    blocks: list[Block] = []
    if items:
        # "check" only says what put the record here; "model" repeats the run in all but a demo.
        recs = [
            {"run": run.shown, **{k: v for k, v in r.items() if k not in HIDDEN}}
            for run, r in items
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
                    "step_ll_accuracy",
                    "step_rnd_accuracy",
                    "random_sign_accuracy",
                    "leak_effect",
                    "leak_p_value",
                    "leak",
                    "prefers_perturbed",
                ],
            )
        )
    for label, s in (pair for run in runs for pair in summaries(run)):
        found = s.get("label_leak")
        if isinstance(found, bool):
            if found:
                blocks.append(Text(f"{label}: label leaking detected.", "warning"))
            elif s.get("prefers_perturbed"):
                blocks.append(
                    Text(
                        f"{label}: more accurate on perturbed than on clean inputs at ε = "
                        f"{', '.join(f'{e:g}/255' for e in s.get('prefers_perturbed_eps', []))} "
                        "(prefers perturbed inputs, typical after very large-ε or overfitted "
                        "one-step training); this is not label leaking.",
                        "note",
                    )
                )
            continue
        if found:
            rows = found if isinstance(found, list) else [found]
            if all(isinstance(x, dict) for x in rows):
                blocks.append(
                    records_table(
                        [
                            {"run": label, **{k: v for k, v in x.items() if k not in HIDDEN}}
                            for x in rows
                        ],
                        first=["run"],
                    )
                )
            else:
                blocks.append(Text(f"{label}: {fmt('label_leak', found)}"))
    if not blocks:
        return None
    blocks.insert(
        0,
        Text(
            "Label leaking (paper A): a model trained on true-label one-step examples (FGSM) can "
            "read the label off the perturbation. It is flagged only when FGSM examples are "
            "classified right measurably more often than every label-free perturbation of the "
            "same ε (FGSM-pred, step l.l., step rnd, random ±ε signs; exact one-sided McNemar "
            "test on the same examples, p < 0.01, at least 1 point). Being more accurate on "
            "perturbed than on clean inputs is reported as prefers_perturbed, not as a leak.",
            "note",
        ),
    )
    return Section("Label leaking", blocks)
