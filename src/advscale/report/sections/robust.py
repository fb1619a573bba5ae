""" "Robust accuracy": accuracy against ε per attack and model, without the end-of-training
check of a training run that an evaluation in the report attacks again."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from advscale.report import plots
from advscale.report.blocks import Block, Plots, Section, Table, Text, fmt
from advscale.report.labels import attack_label
from advscale.report.runs import EVAL_KINDS, TRAIN_KINDS, Run, evaluates
from advscale.results import is_number

CLEAN_ATTACKS = ("clean", "none")


def _model_name(run: Run, r: dict[str, Any], multi: bool, several_runs: bool) -> str:
    """A run with records of several models (``model`` field) shows each under its own name."""
    m = r.get("model")
    if not (multi and isinstance(m, str) and m):
        return run.shown
    name = m
    if several_runs:
        return f"{run.shown}/{name}"
    return name if run.results.complete else f"{name} (incomplete)"


def build(items: list[tuple[Run, dict[str, Any]]], make_plot: Plots) -> Section | None:
    if not items:
        return None
    models_per_run: dict[str, set] = defaultdict(set)
    for run, r in items:
        if isinstance(r.get("model"), str):
            models_per_run[run.label].add(r["model"])
    # model -> attack -> eps -> accuracy; the last record of a point wins (a rerun appends).
    acc: dict[str, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    clean: dict[str, float] = {}
    extra: dict[str, list[dict[str, Any]]] = defaultdict(list)
    several_runs = len({run.label for run, _ in items}) > 1
    norm_of: dict[str, str | None] = {}
    for run, r in items:
        model = _model_name(run, r, len(models_per_run[run.label]) > 1, several_runs)
        if r.get("norm") in ("l2", "l1"):  # another threat model: its own rows, never mixed
            model = f"{model} ({r['norm'].upper()})"
        norm_of[model] = r.get("norm")
        attack, eps, a = str(r["attack"]), float(r["eps"]), float(r["accuracy"])
        if attack in CLEAN_ATTACKS or eps == 0:
            clean[model] = a
        else:
            acc[model][attack][eps] = a
        if is_number(r.get("clean_accuracy")):
            clean.setdefault(model, float(r["clean_accuracy"]))
        extra[model].append(r)
    for run, _ in items:
        s = run.results.summary
        if isinstance(s, dict) and is_number(s.get("clean_accuracy")):
            name = run.shown
            if name in acc:
                clean.setdefault(name, float(s["clean_accuracy"]))
    blocks: list[Block] = []
    models = list(dict.fromkeys(m for m in list(acc) + list(clean)))
    series = {m: {att: sorted(pts.items()) for att, pts in acc[m].items()} for m in models}
    if any(series.values()):
        fig = plots.accuracy_vs_eps(series, clean)
        blocks.append(make_plot("accuracy_vs_eps", "Accuracy against ε per attack", fig))
    for m in models:
        blocks.append(Text(f"**{m}** — clean accuracy: {fmt('accuracy', clean.get(m))}"))
        eps_all = sorted({e for pts in acc[m].values() for e in pts})
        if eps_all:
            rows = [
                [attack_label(att)]
                + [fmt("accuracy", acc[m][att].get(e)) if e in acc[m][att] else "" for e in eps_all]
                for att in acc[m]
            ]
            blocks.append(
                Table(
                    ["attack"] + [f"ε={plots.eps_label(e, norm_of.get(m))}" for e in eps_all],
                    rows,
                    f"{m}: accuracy under attack",
                )
            )
    return Section("Robust accuracy", blocks)


def without_rechecked(
    items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run]
) -> tuple[list[tuple[Run, dict[str, Any]]], list[Block]]:
    """Robust records without the end-of-training check of training runs that an evaluation in
    the report attacks again (that evaluation is the robustness to show; the small check would
    only crowd its plots), and a note per training run saying what was left out and where it is.
    """
    evaluations = list(
        {run.label: run for run, _ in items if run.results.kind in EVAL_KINDS}.values()
    )
    notes: list[Block] = []
    hidden: set[str] = set()
    for run in runs:
        if run.results.kind not in TRAIN_KINDS:
            continue
        by = [ev.shown for ev in evaluations if evaluates(ev, run)]
        count = sum(1 for r, _ in items if r.label == run.label)
        if not by or not count:
            continue
        hidden.add(run.label)
        notes.append(
            Text(
                f"{run.shown}: its end-of-training robustness check ({count} records) is left out "
                f"of this section because {', '.join(by)} evaluates the same model; those numbers "
                f"stay in {run.source}.",
                "note",
            )
        )
    return [(run, r) for run, r in items if run.label not in hidden], notes
