""" "Summary": what buys the most robustness for its compute, in one table, one sentence and
one plot (:mod:`advscale.report.decide`)."""

from __future__ import annotations

from collections.abc import Sequence

from advscale.report import decide, plots
from advscale.report.blocks import Block, Plots, Section, Table, Text
from advscale.report.labels import attack_list, covers_multi_step


def build(
    cands: Sequence[decide.Candidate], e: float | None, make_plot: Plots, chosen: bool = False
) -> Section | None:
    """The summary at ``e`` (pixel levels; ``chosen``: given by the reader, not the ε the runs'
    own summaries use or the largest ε every run shares)."""
    if e is None or not cands:
        return None
    shown = [(c, c.at(e)) for c in cands]
    measured = [(c, v) for c, v in shown if v is not None]
    missing = [c.name for c, v in shown if v is None]
    costed = [(c, v) for c, v in measured if c.seconds is not None and covers_multi_step(v[1])]
    front = dict(
        zip(
            (c.name for c, _ in costed),
            decide.pareto([(c.seconds or 0.0, v[0]) for c, v in costed]),
            strict=True,
        )
    )
    rows = []
    for c, (acc, covered) in sorted(measured, key=lambda t: -t[1][0]):
        multi = covers_multi_step(covered)
        rows.append(
            [
                c.name,
                "–" if c.clean is None else f"{100 * c.clean:.1f}",
                f"{100 * acc:.1f}" + ("" if multi else " (one-step only: upper bound)"),
                attack_list(covered) or "–",
                "–" if c.seconds is None else f"{c.seconds:.1f}",
                "–" if c.passes is None else f"{c.passes:,}",
                "yes" if front.get(c.name) else "",
                "; ".join(c.flags),
            ]
        )
    label = plots.eps_label(e)
    blocks: list[Block] = [
        Text(s, "p" if i == 0 else "note") for i, s in enumerate(decide.verdict(cands, e))
    ]
    if blocks and blocks[0].style == "p":
        blocks[0].text = f"**{blocks[0].text}**"
    blocks.append(
        Table(
            [
                "model / recipe",
                "clean acc. (%)",
                f"worst-case robust acc. at ε={label} (%)",
                "attacks in the worst case",
                "training time (s)",
                "training passes (fwd+bwd)",
                "Pareto",
                "caveats",
            ],
            rows,
            f"ε = {label}"
            + (
                " (chosen)"
                if chosen
                else " (the ε the runs' own summaries use)"
                if decide.declared_eps(cands) == e
                else " (the largest ε every run was evaluated at)"
            )
            + "; training passes: images through the model, forward plus backward, as the run "
            "recorded them or counted from its recipe",
        )
    )
    if missing:
        blocks.append(Text(f"Not evaluated at ε = {label}: {', '.join(missing)}.", "note"))
    pts = [
        (c.name, c.seconds, v[0], bool(front.get(c.name)), covers_multi_step(v[1]))
        for c, v in measured
        if c.seconds is not None
    ]
    if pts:
        fig = plots.frontier_plot(pts, e)
        blocks.append(
            make_plot(
                "robustness_vs_cost",
                "Worst-case robust accuracy against training time (filled: Pareto front)",
                fig,
            )
        )
    return Section("Summary", blocks)
