"""The sections of a report, one module each; :func:`build_sections` puts them in order."""

from __future__ import annotations

from collections.abc import Sequence

from advscale.report import decide
from advscale.report.blocks import Plots, Section
from advscale.report.runs import Run, by_section
from advscale.report.sections import (
    capacity,
    compare,
    gallery,
    label_leak,
    masking,
    other,
    overview,
    provenance,
    robust,
    summary,
    training,
    transfer,
)


def build_sections(runs: Sequence[Run], eps: float | None = None) -> list[Section]:
    """The sections of a report on ``runs``; sections with nothing to show are left out.

    ``eps`` (pixel levels) is the ε the summary compares robustness at and the galleries show;
    by default the ε the runs' own summaries use (:func:`advscale.report.decide.declared_eps`),
    else the largest ε every run was evaluated at.
    """
    make_plot = Plots()
    parts = by_section(runs)
    cands = decide.candidates(runs)
    headline = decide.headline_eps(cands, eps)
    sections: list[Section | None] = [
        summary.build(cands, headline, make_plot, chosen=eps is not None),
        overview.build(runs),
    ]
    shown, notes = robust.without_rechecked(parts["robust"], runs)
    robust_section = robust.build(shown, make_plot)
    if robust_section is not None:
        robust_section.blocks[:0] = notes
    sections.append(robust_section)
    sections += gallery.build(runs, make_plot, headline)
    sections.append(label_leak.build(parts["label_leak"], runs))
    sections.append(masking.build(parts["masking"], runs))
    sections += training.build(parts["epoch"], parts["event"], runs, make_plot)
    sections.append(compare.build(parts["compare"], runs, make_plot))
    sections += transfer.build(parts["transfer"], make_plot)
    sections += capacity.build(parts["capacity"], make_plot)
    sections.append(other.build(parts["other"]))
    sections.append(provenance.build(runs))
    return [s for s in sections if s is not None]


__all__ = ["build_sections"]
