""" "Transferability: RUN": transfer-rate heatmaps and tables of a transfer matrix."""

from __future__ import annotations

from typing import Any

from advscale.report import plots
from advscale.report.blocks import Block, Plots, Section, Table, Text, fmt, records_table
from advscale.report.runs import Run, group_by_run


def build(items: list[tuple[Run, dict[str, Any]]], make_plot: Plots) -> list[Section]:
    sections = []
    for run, recs in group_by_run(items):
        blocks: list[Block] = [
            Text(
                "Transfer rate (paper A): of the examples the source model classifies correctly when "
                "clean and incorrectly when attacked, the share the target model also misclassifies. "
                "Rows: source (where the examples were generated); columns: target.",
                "note",
            )
        ]
        cells = [r for r in recs if "source" in r and "target" in r and "attack" in r]
        models = list(dict.fromkeys([r["source"] for r in cells] + [r["target"] for r in cells]))
        keys = list(dict.fromkeys((r["attack"], float(r.get("eps", 0))) for r in cells))
        for attack, eps in keys:
            sel = {
                (r["source"], r["target"]): r
                for r in cells
                if r["attack"] == attack and float(r.get("eps", 0)) == eps
            }
            for metric, what in (
                ("transfer_rate", "transfer rate"),
                ("error_rate", "target error rate"),
            ):
                if not any(metric in r for r in sel.values()):
                    continue
                values = [[sel.get((s, t), {}).get(metric) for t in models] for s in models]
                title = f"{what}, {attack}, ε={plots.eps_label(eps)}"
                if metric == "transfer_rate":
                    fig = plots.heatmap(values, models, models, title)
                    blocks.append(make_plot(f"transfer_{attack}_{eps:g}", title, fig))
                rows = [
                    [s] + [fmt(metric, v) for v in row]
                    for s, row in zip(models, values, strict=True)
                ]
                blocks.append(Table(["source \\ target"] + models, rows, title))
        rest = [r for r in recs if r not in cells]
        if rest:
            blocks.append(records_table(rest))
        sections.append(Section(f"Transferability: {run.shown}", blocks))
    return sections
