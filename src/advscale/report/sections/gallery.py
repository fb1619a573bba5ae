""" "Adversarial examples: MODEL": what the attacks that broke a model did to its images, from the
examples file saved beside its results (``advscale eval --save-adv``, the demo)."""

from __future__ import annotations

from collections.abc import Sequence

from advscale.report.blocks import Block, Plots, Section, Text
from advscale.report.gallery import gallery_figure, read_examples
from advscale.report.labels import attack_list
from advscale.report.plots import eps_label
from advscale.report.runs import Run
from advscale.results import ResultsError


def build(runs: Sequence[Run], make_plot: Plots, eps: float | None = None) -> list[Section]:
    """One section per run with saved examples, at ``eps`` when it has examples there, else at
    the largest ε it has."""
    sections = []
    for run in runs:
        path = run.examples_file()
        if path is None:
            continue
        try:
            ex = read_examples(path)
        except ResultsError as e:
            # The numbers stand without the pictures: say what is wrong, show the rest.
            sections.append(
                Section(f"Adversarial examples: {run.shown}", [Text(str(e), "warning")])
            )
            continue
        have = sorted({float(e) for e in ex.eps.tolist()})
        if not have:
            blocks: list[Block] = [Text(f"{path}: no attack broke any example that was kept.")]
            sections.append(Section(f"Adversarial examples: {run.shown}", blocks))
            continue
        at = eps if eps is not None and any(abs(e - eps) < 1e-6 for e in have) else have[-1]
        groups = ex.groups(at)
        broke = [a for a, _, _ in groups]
        blocks = [
            Text(
                f"Attacks that broke {run.shown} at ε = {eps_label(at)}: "
                f"{attack_list(broke, short=len(broke))}. Each triplet: the clean image with its "
                "true label, the adversarial image with the model's prediction, and the "
                "perturbation (adversarial minus clean) scaled so that ±ε spans the colour range. "
                f"All ε with examples: {', '.join(eps_label(e) for e in have)} (in {path}).",
                "note",
            )
        ]
        fig = gallery_figure(ex, eps=at)
        if fig is not None:
            blocks.append(
                make_plot(
                    f"gallery_{run.label}",
                    f"Adversarial examples of {run.shown} at ε={eps_label(at)}",
                    fig,
                )
            )
        sections.append(Section(f"Adversarial examples: {run.shown}", blocks))
    return sections
