"""The sections of a report, one module each; :func:`build_sections` puts them in order."""

from __future__ import annotations

from collections.abc import Sequence

from advscale.report.blocks import Plots, Section
from advscale.report.runs import Run, by_section
from advscale.report.sections import (
    capacity,
    compare,
    label_leak,
    masking,
    other,
    overview,
    provenance,
    robust,
    training,
    transfer,
)


def build_sections(runs: Sequence[Run]) -> list[Section]:
    """The sections of a report on ``runs``; sections with nothing to show are left out."""
    make_plot = Plots()
    parts = by_section(runs)
    sections: list[Section | None] = [overview.build(runs)]
    shown, notes = robust.without_rechecked(parts["robust"], runs)
    robust_section = robust.build(shown, make_plot)
    if robust_section is not None:
        robust_section.blocks[:0] = notes
    sections.append(robust_section)
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
