"""Terminal and Markdown text of every command's results: tables, warnings, summaries.

Each function takes results data (records, summaries, :class:`advscale.results.Results`) and
returns a string; the commands print it.

Example:
    >>> print(format_warnings([{"check": "unbounded", "message": "PGD at 255/255 leaves 12%"}]))
    warning [unbounded]: PGD at 255/255 leaves 12%
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from advscale.report.plots import eps_label
from advscale.results import Results


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of eval records: attack, ε, clean %, adversarial %, top-5 %, ratio,
    final % (one-step attacks), seconds, forward and backward passes."""
    # Top-5 under attack is shown only where an attack measured it (records of older files).
    top5 = any(r.get("top5") is not None for r in records)
    head = ["attack", "eps", "clean %", "adv %"] + (["top-5 %"] if top5 else [])
    head += ["ratio", "final %", "seconds", "fwd", "bwd"]
    rows = [
        [
            str(r["attack"]),
            eps_label(float(r["eps"]), r.get("norm")),
            _pct(r.get("clean_accuracy")),
            _pct(r.get("accuracy")),
            *([_pct(r.get("top5"))] if top5 else []),
            "-" if r.get("ratio") is None else f"{r['ratio']:.3f}",
            _pct(r.get("accuracy_final")),
            f"{r.get('seconds', 0.0):.2f}",
            f"{r.get('forward', 0):,}",
            f"{r.get('backward', 0):,}",
        ]
        for r in records
    ]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        # Attack names read left-aligned, numbers right-aligned.
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


def format_warnings(warnings: Sequence[dict[str, Any]]) -> str:
    """One ``warning [check]: message`` line per warning (empty string when there are none)."""
    return "\n".join(f"warning [{w['check']}]: {w['message']}" for w in warnings)


def format_matrix(results: Results) -> str:
    """Plain-text matrices of transfer rates (%), one per attack and ε."""
    models = list(results.config.get("models") or [])
    lines = []
    for attack, e in dict.fromkeys((r["attack"], r["eps"]) for r in results.records):
        cell = {(r["source"], r["target"]): r for r in results.select(attack=attack, eps=e)}
        width = max([len(m) for m in models] + [8])
        lines.append(f"{attack} ε={e:g}/255: transfer rate % (rows: source, columns: target)")
        lines.append(" " * width + "".join(f"  {t:>{width}}" for t in models))
        for s in models:
            cells = []
            for t in models:
                rate = cell.get((s, t), {}).get("transfer_rate")
                cells.append(f"  {'-' if rate is None else f'{100 * rate:.1f}':>{width}}")
            lines.append(f"{s:<{width}}" + "".join(cells))
        lines.append("")
    return "\n".join(lines)


def format_sweep(res: Results) -> str:
    """A plain-text table: variant, value, attack, ε, clean %, adversarial %, ratio."""
    lines = [
        f"{'variant':<12} {'value':>7} {'attack':<12} {'eps':>7} {'clean %':>8} {'adv %':>7} {'ratio':>6}"
    ]
    for r in res.records:
        if r.get("status") != "done":
            lines.append(
                f"{r['variant']:<12} {r['value']!s:>7} {r.get('status')}: {r.get('error', '')}"
            )
            continue
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(
            f"{r['variant']:<12} {r['value']!s:>7} {r['attack']:<12} {r['eps']:>5g}/255 "
            f"{100 * r['clean_accuracy']:>8.1f} {100 * r['accuracy']:>7.1f} {ratio:>6}"
        )
    return "\n".join(lines)


def compare_markdown(records: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The records of a compare run and its FGSM-vs-PGD pairs as Markdown (``compare.md``)."""
    lines = [
        "| method | mode | ε | clean % | PGD % | APGD % | robust % | train s | × cheapest | CO events | trainable params | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["mode"], r["eps"], r["method"])):
        lines.append(
            f"| {r['method']} | {r['mode']} | {r['eps']:g} | {_pct(r.get('clean_accuracy'))} | "
            f"{_pct(r.get('pgd_accuracy'))} | {_pct(r.get('apgd_accuracy'))} | {_pct(r.get('robust_accuracy'))} | "
            f"{r['wall_time_s']:.1f} | {r.get('time_ratio', 0):.2f} | {r.get('co_events', 0)} | "
            f"{r.get('trainable_params', 0):,} | done |"
            if r.get("status") == "done"
            else f"| {r['method']} | {r['mode']} | {r['eps']:g} | - | - | - | - | - | - | - | - | failed: "
            f"{str(r.get('error', '')).splitlines()[0][:80]} |"
        )
    if summary.get("pairs"):
        lines += [
            "",
            "Gap = PGD fine-tuning minus fast fine-tuning, in accuracy points (positive: PGD is more robust).",
            "",
            "| fast | mode | ε | robust gap | PGD-acc gap | clean gap | PGD time / fast time | fast CO events |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in summary["pairs"]:

            def g(key: str, p: dict[str, Any] = p) -> str:
                v = p.get(key)
                return f"{v:+.2f}" if v is not None else "-"

            ratio = f"{p['time_ratio']:.2f}" if p.get("time_ratio") else "-"
            lines.append(
                f"| {p['fast']} | {p['mode']} | {p['eps']:g} | {g('robust_accuracy_gap_points')} | "
                f"{g('pgd_accuracy_gap_points')} | {g('clean_accuracy_gap_points')} | {ratio} | {p['fast_co_events']} |"
            )
    return "\n".join(lines) + "\n"


def format_summary(summary: dict[str, Any], keys: Sequence[str]) -> str:
    """The ``keys`` of a training or fine-tuning summary as JSON, then one line per event
    (catastrophic overfitting...)."""
    lines = [json.dumps({k: summary.get(k) for k in keys if k in summary}, indent=2)]
    for ev in summary.get("events", []):
        lines.append(f"event: {ev.get('event')} at step {ev.get('step')}: {ev.get('reason', '')}")
    return "\n".join(lines)


# The ε of the demo's closing table: the one its report compares at unless told otherwise.
DEMO_TABLE_EPS = 8.0


def format_demo_summary(results: Results, eps: float = DEMO_TABLE_EPS) -> str:
    """The demo's closing lines: its time, then top-1 accuracy (%) of every model clean and
    under every attack at ``eps`` (pixel levels), label leaking marked."""
    attacks = list(results.config.get("attacks") or [])
    lines = [
        f"\n[demo] done in {results.summary['seconds']:.0f} s. "
        f"Top-1 accuracy (%) at eps {eps:g}/255:"
    ]
    lines.append(f"  {'model':18s} {'clean':>6s} " + " ".join(f"{a:>10s}" for a in attacks))
    for name in results.config.get("models") or {}:
        accs = []
        for a in attacks:
            rec = [
                r
                for r in results.records
                if r.get("model") == name and r.get("attack") == a and r.get("eps") == eps
            ]
            accs.append(f"{100 * rec[0]['accuracy']:10.1f}" if rec else f"{'-':>10s}")
        clean = 100 * results.summary[name]["clean_accuracy"]
        s = results.summary[name]
        leak = (
            "  <- label leaking"
            if s["label_leak"]
            else "  <- prefers perturbed inputs (not a label leak)"
            if s.get("prefers_perturbed")
            else ""
        )
        lines.append(f"  {name:18s} {clean:6.1f} " + " ".join(accs) + leak)
    return "\n".join(lines)


__all__ = [
    "DEMO_TABLE_EPS",
    "format_demo_summary",
    "compare_markdown",
    "format_matrix",
    "format_summary",
    "format_sweep",
    "format_table",
    "format_warnings",
]
