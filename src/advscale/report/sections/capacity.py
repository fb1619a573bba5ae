""" "Capacity: RUN": adversarial/clean accuracy ratio over the values of a sweep."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from advscale.report import plots
from advscale.report.blocks import Block, Plots, Section, Text, records_table
from advscale.report.runs import Run, group_by_run
from advscale.results import is_number


def build(items: list[tuple[Run, dict[str, Any]]], make_plot: Plots) -> list[Section]:
    sections = []
    for run, recs in group_by_run(items):
        ok = [r for r in recs if is_number(r.get("ratio")) and "value" in r]
        failed = [r for r in recs if r.get("status") == "failed"]
        field_name = str((ok or recs)[0].get("field") or run.results.config.get("field") or "value")
        panels: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for r in ok:
            panel = (
                f"{r.get('attack', '?')} ({r['attack_type']})"
                if r.get("attack_type")
                else str(r.get("attack", "?"))
            )
            line = str(r.get("variant", "run"))
            if is_number(r.get("eps")):
                line += f", ε={plots.eps_label(float(r['eps']))}"
            panels[panel][line].append((float(r["value"]), float(r["ratio"])))
        blocks: list[Block] = [
            Text(
                "Ratio = adversarial accuracy / clean accuracy (paper A, Fig. 1), for each point of "
                f"the sweep over {field_name}.",
                "note",
            )
        ]
        if panels:
            fig = plots.capacity_plot(panels, field_name, title=f"Capacity: {run.shown}")
            blocks.append(make_plot(f"capacity_{run.label}", f"Ratio against {field_name}", fig))
        if ok:
            blocks.append(
                records_table(
                    ok,
                    first=[
                        "variant",
                        "value",
                        "attack",
                        "attack_type",
                        "eps",
                        "clean_accuracy",
                        "accuracy",
                        "ratio",
                    ],
                    skip=["field", "status"],
                )
            )
        for r in failed:
            blocks.append(
                Text(
                    f"Failed: variant {r.get('variant')}, {field_name}={r.get('value')}: "
                    f"{r.get('error', 'no error message')}",
                    "warning",
                )
            )
        rest = [r for r in recs if r not in ok and r not in failed]
        if rest:
            blocks.append(records_table(rest, caption="other sweep records"))
        sections.append(Section(f"Capacity: {run.shown}", blocks))
    return sections
