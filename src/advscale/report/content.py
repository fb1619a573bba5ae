"""What a report says, independent of its format: runs in, sections of tables and plots out.

``collect_runs`` loads results (files, run directories or in-memory ``Results``) and names
them; ``build_sections`` turns them into :class:`Section` objects that the Markdown and HTML
writers render. Records are dispatched by their shape (the fields they carry), so a report
keeps working when a command adds fields; a record no section recognises is listed under
"Other records" rather than dropped, and every run appears in the overview.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advscale.errors import UserError
from advscale.report import plots
from advscale.results import Results, ResultsError, load_results

# -- building blocks ----------------------------------------------------------------------


@dataclass
class Table:
    """A table of already formatted cells."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Plot:
    """A rendered figure: ``name`` is unique in the report and safe as a file name."""

    name: str
    title: str
    png: bytes


@dataclass
class Text:
    """A paragraph; ``style`` is "p", "warning" (shown highlighted) or "note"."""

    text: str
    style: str = "p"


@dataclass
class Code:
    """Preformatted text (JSON configuration), collapsed by default in HTML."""

    text: str
    caption: str = ""


Block = Table | Plot | Text | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Run:
    """One results file in a report, with the name it is shown under."""

    label: str
    source: str
    results: Results

    @property
    def shown(self) -> str:
        """The label, marked when the run did not finish."""
        return self.label if self.results.complete else f"{self.label} (incomplete)"


RunInput = Results | str | os.PathLike | tuple[str, Results | str | os.PathLike]

# -- loading ------------------------------------------------------------------------------


def _results_files(path: Path) -> list[Path]:
    """``path`` itself, its results.json, or (for a directory of runs) every results.json below it."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise ResultsError(f"{path}: no such run directory or results file")
    if (path / "results.json").is_file():
        return [path / "results.json"]
    found = sorted(path.rglob("results.json"))
    if not found:
        raise ResultsError(f"{path}: no results.json in this directory or below it")
    return found


def _default_label(results: Results, source: Path | None) -> str:
    cfg = results.config or {}
    # The name a command gave its run or model (eval writes the checkpoint's short name).
    for key in ("name", "model"):
        v = cfg.get(key)
        if isinstance(v, str) and v.strip():
            return v
    if source is not None:
        return source.parent.name if source.name == "results.json" else source.stem
    return results.kind


def collect_runs(items: Iterable[RunInput]) -> list[Run]:
    """Load and name every run; labels are made unique. Raises ResultsError naming a bad file."""
    runs: list[Run] = []
    for item in items:
        name: str | None = None
        if isinstance(item, tuple):
            name, item = item
        if isinstance(item, Results):
            runs.append(Run(name or _default_label(item, None), "(in memory)", item))
            continue
        files = _results_files(Path(item))
        for f in files:
            try:
                res = load_results(f)
            except ResultsError as e:
                if str(f) in str(e):
                    raise
                raise ResultsError(f"{f}: {e}") from None
            label = name if (name and len(files) == 1) else _default_label(res, f)
            runs.append(Run(label, str(f), res))
    if not runs:
        raise UserError(
            "no results to report on: give run directories or results.json files written by advscale"
        )
    seen: dict[str, int] = defaultdict(int)
    for run in runs:
        seen[run.label] += 1
        if seen[run.label] > 1:
            run.label = f"{run.label} ({seen[run.label]})"
    return runs


# -- formatting ---------------------------------------------------------------------------


def _is_share(key: str) -> bool:
    """Fields holding a share in [0, 1] shown as a percentage (accuracies, rates)."""
    return "acc" in key or key.endswith("rate") or key in ("leaked", "share")


def fmt(key: str, value: Any) -> str:
    """One table cell: accuracies and rates as %, ε as "8/255", times in seconds."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in ("eps", "train_eps") and isinstance(value, (int, float)):
        return plots.eps_label(float(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if key == "ratio" or key.endswith("_ratio"):
            return f"{value:.3f}"
        if _is_share(key) and -0.001 <= value <= 1.001:
            return f"{100 * value:.1f}%"
        if ("second" in key or key.endswith("_s") or key == "time") and not key.endswith("per_s"):
            return f"{value:.1f} s"
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


def _scalar_keys(
    records: Sequence[dict[str, Any]], first: Sequence[str] = (), skip: Iterable[str] = ()
) -> list[str]:
    """Columns for a table: ``first`` (those present), then every other key in order of appearance."""
    # ε is shown as "8/255", so its unit column says nothing more.
    skip = set(skip) | {"eps_unit"}
    present: dict[str, None] = {}
    for r in records:
        for k in r:
            if k not in skip:
                present.setdefault(k, None)
    return [k for k in first if k in present] + [k for k in present if k not in first]


def records_table(
    records: Sequence[dict[str, Any]],
    first: Sequence[str] = (),
    skip: Iterable[str] = (),
    caption: str = "",
    limit: int = 200,
) -> Table:
    """A table of ``records`` with the columns they carry (missing fields are blank)."""
    cols = _scalar_keys(records, first, skip)
    rows = [[fmt(c, r.get(c)) if c in r else "" for c in cols] for r in records[:limit]]
    if len(records) > limit:
        caption = (caption + " " if caption else "") + f"(first {limit} of {len(records)} rows)"
    return Table(cols, rows, caption)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "plot"


class _Plots:
    """Renders figures to PNG with unique names."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __call__(self, name: str, title: str, fig) -> Plot:
        base = _slug(name)
        unique, i = base, 2
        while unique in self.names:
            unique, i = f"{base}_{i}", i + 1
        self.names.add(unique)
        return Plot(unique, title, plots.figure_png(fig))


# -- record kinds -------------------------------------------------------------------------

CLEAN_ATTACKS = ("clean", "none")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_label_leak(r: dict[str, Any]) -> bool:
    return (
        r.get("check") == "label_leak"
        or r.get("kind") == "label_leak"
        or any(k.startswith("label_leak") or k in ("leaked", "leak") for k in r)
    )


def _is_masking(r: dict[str, Any]) -> bool:
    return r.get("kind") in ("masking", "masking_check") or (
        "check" in r
        and r.get("check") != "label_leak"
        and ("passed" in r or "ok" in r or "warning" in r)
    )


def classify(run: Run, r: dict[str, Any]) -> str:
    """The section a record belongs to: capacity, transfer, compare, event, train, label_leak,
    masking, robust or other."""
    kind = run.results.kind
    if kind == "sweep":
        return "capacity"
    if kind == "transfer_matrix":
        return "transfer"
    if "event" in r:
        return "event"
    if "epoch" in r and "attack" not in r:
        return "train"
    if kind == "compare" or ("method" in r and "seconds" in r):
        return "compare"
    if _is_label_leak(r):
        return "label_leak"
    if _is_masking(r):
        return "masking"
    if "attack" in r and _is_number(r.get("eps")) and _is_number(r.get("accuracy")):
        return "robust"
    if "epoch" in r:
        return "train"
    return "other"


def _by_section(runs: Sequence[Run]) -> dict[str, list[tuple[Run, dict[str, Any]]]]:
    out: dict[str, list[tuple[Run, dict[str, Any]]]] = defaultdict(list)
    for run in runs:
        for r in run.results.records:
            if isinstance(r, dict):
                out[classify(run, r)].append((run, r))
            else:
                out["other"].append((run, {"value": r}))
    return out


def _group_by_run(
    items: list[tuple[Run, dict[str, Any]]],
) -> list[tuple[Run, list[dict[str, Any]]]]:
    """Records grouped by run, runs in order of first appearance."""
    groups: dict[str, tuple[Run, list[dict[str, Any]]]] = {}
    for run, r in items:
        groups.setdefault(run.label, (run, []))[1].append(r)
    return list(groups.values())


# -- sections -----------------------------------------------------------------------------


def _overview(runs: Sequence[Run]) -> Section:
    rows = []
    for run in runs:
        res = run.results
        rows.append(
            [
                run.label,
                res.kind,
                "yes" if res.complete else "NO (incomplete)",
                res.created,
                str(len(res.records)),
                run.source,
            ]
        )
    blocks: list[Block] = [Table(["run", "kind", "complete", "created", "records", "source"], rows)]
    for run in runs:
        if not run.results.complete:
            err = (
                run.results.summary.get("error") if isinstance(run.results.summary, dict) else None
            )
            blocks.append(
                Text(
                    f"Run {run.label} did not finish (complete=false): its numbers are partial."
                    + (f" Error: {err}" if err else ""),
                    "warning",
                )
            )
    return Section("Runs", blocks)


def _model_name(run: Run, r: dict[str, Any], multi: bool, several_runs: bool) -> str:
    """A run with records of several models (``model`` field) shows each under its own name."""
    m = r.get("model")
    if not (multi and isinstance(m, str) and m):
        return run.shown
    name = m
    if several_runs:
        return f"{run.shown}/{name}"
    return name if run.results.complete else f"{name} (incomplete)"


def _robust(items: list[tuple[Run, dict[str, Any]]], make_plot: _Plots) -> Section | None:
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
    for run, r in items:
        model = _model_name(run, r, len(models_per_run[run.label]) > 1, several_runs)
        attack, eps, a = str(r["attack"]), float(r["eps"]), float(r["accuracy"])
        if attack in CLEAN_ATTACKS or eps == 0:
            clean[model] = a
        else:
            acc[model][attack][eps] = a
        if _is_number(r.get("clean_accuracy")):
            clean.setdefault(model, float(r["clean_accuracy"]))
        extra[model].append(r)
    for run, _ in items:
        s = run.results.summary
        if isinstance(s, dict) and _is_number(s.get("clean_accuracy")):
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
                [att]
                + [fmt("accuracy", acc[m][att].get(e)) if e in acc[m][att] else "" for e in eps_all]
                for att in acc[m]
            ]
            blocks.append(
                Table(
                    ["attack"] + [f"ε={plots.eps_label(e)}" for e in eps_all],
                    rows,
                    f"{m}: accuracy under attack",
                )
            )
    return Section("Robust accuracy", blocks)


def _leak(items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run]) -> Section | None:
    blocks: list[Block] = []
    if items:
        recs = [{"run": run.shown, **r} for run, r in items]
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
    for label, s in (pair for run in runs for pair in _summaries(run)):
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


def _summaries(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """The run's summary, and the per-model summaries nested in it (as the demo writes them)."""
    s = run.results.summary if isinstance(run.results.summary, dict) else {}
    nested = [
        (f"{run.shown}/{k}", v)
        for k, v in s.items()
        if isinstance(v, dict) and ("warnings" in v or "label_leak" in v)
    ]
    return [(run.shown, s), *nested]


def _warnings_of(run: Run) -> list[str]:
    """Gradient-masking warnings of the run, each prefixed with the model it concerns."""
    out = []
    for label, s in _summaries(run):
        for key in ("warnings", "masking_warnings"):
            for w in s.get(key) or []:
                if isinstance(w, dict):
                    msg = w.get("message") or json.dumps(w, default=str)
                    msg = f"[{w['check']}] {msg}" if w.get("check") else msg
                else:
                    msg = str(w)
                out.append(f"{label}: {msg}")
    return out


def _masking(items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run]) -> Section | None:
    blocks: list[Block] = []
    for run in runs:
        for w in _warnings_of(run):
            blocks.append(Text(w, "warning"))
    if items:
        recs = [{"run": run.shown, **r} for run, r in items]
        blocks.append(
            records_table(recs, first=["run", "check", "attack", "eps", "passed", "ok", "message"])
        )
    evaluated = [
        run for run in runs if any(classify(run, r) == "robust" for r in run.results.records)
    ]
    if not blocks and evaluated:
        for run in evaluated:
            s = run.results.summary if isinstance(run.results.summary, dict) else {}
            ran = ", ".join(map(str, s.get("checks") or []))
            blocks.append(
                Text(
                    f"{run.shown}: no gradient-masking warnings (checks run: {ran})."
                    if ran
                    else f"{run.shown}: no gradient-masking checks recorded with these numbers."
                )
            )
    return Section("Gradient-masking checks", blocks) if blocks else None


def _events_of(run: Run, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    s = run.results.summary if isinstance(run.results.summary, dict) else {}
    events = [e for e in (s.get("events") or []) if isinstance(e, dict)]
    return events + items


def _training(
    train: list[tuple[Run, dict[str, Any]]],
    events: list[tuple[Run, dict[str, Any]]],
    runs: Sequence[Run],
    make_plot: _Plots,
) -> list[Section]:
    per_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ev_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run, r in train:
        per_run[run.label].append(r)
    for run, r in events:
        ev_run[run.label].append(r)
    sections = []
    for run in runs:
        recs, evs = per_run.get(run.label, []), _events_of(run, ev_run.get(run.label, []))
        if not recs and not evs:
            continue
        blocks: list[Block] = []
        metrics: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in recs:
            if not _is_number(r.get("epoch")):
                continue
            for k, v in r.items():
                if k != "epoch" and _is_number(v) and not isinstance(v, int) and _is_curve(k):
                    metrics[k].append((float(r["epoch"]), float(v)))
        marks = [
            (float(e["epoch"]), str(e.get("event") or e.get("type") or "event"))
            for e in evs
            if _is_number(e.get("epoch"))
        ]
        if metrics:
            fig = plots.training_curves(metrics, marks, title=f"Training: {run.shown}")
            blocks.append(
                make_plot(f"training_{run.label}", f"Training curves of {run.shown}", fig)
            )
        for e in evs:
            what = e.get("event") or e.get("type") or "event"
            where = f" at epoch {e['epoch']}" if "epoch" in e else ""
            detail = (
                e.get("message")
                or e.get("reason")
                or ", ".join(
                    f"{k}={fmt(k, v)}" for k, v in e.items() if k not in ("event", "type", "epoch")
                )
            )
            blocks.append(Text(f"{what}{where}: {detail}", "warning"))
        if recs:
            blocks.append(
                records_table(recs, first=["epoch"], skip=["type"], caption="per-epoch records")
            )
        s = run.results.summary if isinstance(run.results.summary, dict) else {}
        scalars = {k: v for k, v in s.items() if not isinstance(v, (list, dict))}
        if scalars:
            blocks.append(Table(["summary", "value"], [[k, fmt(k, v)] for k, v in scalars.items()]))
        sections.append(Section(f"Training: {run.shown}", blocks))
    return sections


def _is_curve(key: str) -> bool:
    """Per-epoch values worth plotting: losses and accuracies, not times or learning rates."""
    return "loss" in key or "acc" in key


def _transfer(items: list[tuple[Run, dict[str, Any]]], make_plot: _Plots) -> list[Section]:
    sections = []
    for run, recs in _group_by_run(items):
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


def _capacity(items: list[tuple[Run, dict[str, Any]]], make_plot: _Plots) -> list[Section]:
    sections = []
    for run, recs in _group_by_run(items):
        ok = [r for r in recs if _is_number(r.get("ratio")) and "value" in r]
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
            if _is_number(r.get("eps")):
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


# The robust accuracy a cost/robustness plot shows, in order of preference (worst case first).
ROBUST_KEYS = ("robust_accuracy", "apgd_accuracy", "pgd_accuracy", "autoattack_accuracy")
TIME_KEYS = ("wall_time_s", "seconds", "train_time_s")


def _compare(
    items: list[tuple[Run, dict[str, Any]]], runs: Sequence[Run], make_plot: _Plots
) -> Section | None:
    if not items:
        return None
    several = len({r.label for r, _ in items}) > 1
    recs = [({"run": run.shown} if several else {}) | r for run, r in items]
    ok = [r for r in recs if r.get("status", "done") == "done"]
    failed = [r for r in recs if r.get("status") == "failed"]
    blocks: list[Block] = []
    time_key = next((k for k in TIME_KEYS if any(_is_number(r.get(k)) for r in ok)), None)
    robust_key = next((k for k in ROBUST_KEYS if any(_is_number(r.get(k)) for r in ok)), None)
    pts = [
        r
        for r in ok
        if robust_key and time_key and _is_number(r.get(robust_key)) and _is_number(r.get(time_key))
    ]
    if pts:
        fig = plots.cost_robustness_scatter(
            [{**r, "seconds": r[time_key]} for r in pts], robust_key
        )
        blocks.append(make_plot("cost_vs_robustness", "Robust accuracy against training time", fig))
    if ok:
        first = [
            "run",
            "method",
            "mode",
            "eps",
            "clean_accuracy",
            "pgd_accuracy",
            "apgd_accuracy",
            "robust_accuracy",
            *TIME_KEYS,
            "time_ratio",
            "co_events",
            "stopped_early",
        ]
        blocks.append(
            records_table(
                ok,
                first=first,
                skip=["status", "eps_unit"],
                caption="robustness against training cost, one row per run",
            )
        )
    for run in runs:
        s = run.results.summary if isinstance(run.results.summary, dict) else {}
        pairs = [p for p in (s.get("pairs") or []) if isinstance(p, dict)]
        if run.results.kind == "compare" and pairs:
            blocks.append(
                records_table(
                    pairs,
                    first=["fast", "slow", "mode", "eps"],
                    caption=f"{run.shown}: multi-step minus fast method, in accuracy points "
                    "(positive: the multi-step method is more robust), and the time ratio",
                )
            )
    for r in failed:
        where = ", ".join(f"{k}={fmt(k, r.get(k))}" for k in ("method", "mode", "eps") if k in r)
        blocks.append(Text(f"Failed: {where}: {r.get('error', 'no error message')}", "warning"))
    return Section("Fast versus multi-step adversarial training: cost and robustness", blocks)


def _other(items: list[tuple[Run, dict[str, Any]]]) -> Section | None:
    if not items:
        return None
    blocks: list[Block] = []
    for run, recs in _group_by_run(items):
        blocks.append(records_table(recs, caption=f"{run.shown} ({run.results.kind})"))
    return Section("Other records", blocks)


def _provenance(runs: Sequence[Run]) -> Section:
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


TRAIN_KINDS = ("train", "finetune")
EVAL_KINDS = ("eval", "demo")


def _same_path(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def _evaluates(evaluation: Run, training: Run) -> bool:
    """Whether ``evaluation`` names ``training`` as the run whose model it attacked: its config's
    ``train_run`` (a run directory or its results file, or a list of them, as the demo writes
    it), or a ``model``/``checkpoint`` saved in that run's directory."""
    if training.source == "(in memory)":
        return False
    results_file = Path(training.source)
    cfg = evaluation.results.config if isinstance(evaluation.results.config, dict) else {}
    named = cfg.get("train_run")
    for p in named if isinstance(named, list) else [named]:
        if (
            isinstance(p, str)
            and p
            and (_same_path(Path(p), results_file.parent) or _same_path(Path(p), results_file))
        ):
            return True
    for key in ("model", "checkpoint"):
        p = cfg.get(key)
        if isinstance(p, str) and p and _same_path(Path(p).parent, results_file.parent):
            return True
    return False


def _without_rechecked(
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
        by = [ev.shown for ev in evaluations if _evaluates(ev, run)]
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


def build_sections(runs: Sequence[Run]) -> list[Section]:
    """The sections of a report on ``runs``; sections with nothing to show are left out."""
    make_plot = _Plots()
    parts = _by_section(runs)
    sections: list[Section | None] = [_overview(runs)]
    robust, notes = _without_rechecked(parts["robust"], runs)
    robust_section = _robust(robust, make_plot)
    if robust_section is not None:
        robust_section.blocks[:0] = notes
    sections.append(robust_section)
    sections.append(_leak(parts["label_leak"], runs))
    sections.append(_masking(parts["masking"], runs))
    sections += _training(parts["train"], parts["event"], runs, make_plot)
    sections.append(_compare(parts["compare"], runs, make_plot))
    sections += _transfer(parts["transfer"], make_plot)
    sections += _capacity(parts["capacity"], make_plot)
    sections.append(_other(parts["other"]))
    sections.append(_provenance(runs))
    return [s for s in sections if s is not None]
