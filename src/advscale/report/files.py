"""Figure and text files that commands write beside their results (heatmaps, compare.md)."""

from __future__ import annotations

from pathlib import Path

from advscale.report.plots import cost_robustness_scatter, eps_label, figure_png, heatmap
from advscale.report.text import compare_markdown
from advscale.results import Results
from advscale.utils import atomic_write_bytes, atomic_write_text


def write_heatmaps(results: Results, out_dir: str | Path) -> list[Path]:
    """One PNG heatmap of transfer rates per attack and ε: ``transfer_<attack>_eps<ε>.png``."""
    out_dir = Path(out_dir)
    models = list(
        results.config.get("models") or dict.fromkeys(r["source"] for r in results.records)
    )
    paths = []
    for attack, e in dict.fromkeys((r["attack"], r["eps"]) for r in results.records):
        cell = {
            (r["source"], r["target"]): r["transfer_rate"]
            for r in results.select(attack=attack, eps=e)
        }
        values = [[cell.get((s, t)) for t in models] for s in models]
        fig = heatmap(values, models, models, f"transfer rate, {attack}, ε={eps_label(e)}")
        paths.append(
            atomic_write_bytes(out_dir / f"transfer_{attack}_eps{e:g}.png", figure_png(fig))
        )
    return paths


def write_compare_files(results: Results, out_dir: str | Path, plot: bool = True) -> list[Path]:
    """``compare.md`` (the table and FGSM-vs-PGD gaps) and, with ``plot``, ``compare.png``
    (robust accuracy against training time) of a compare run."""
    out_dir = Path(out_dir)
    paths = [
        atomic_write_text(
            out_dir / "compare.md", compare_markdown(results.records, results.summary)
        )
    ]
    done = [
        {**r, "seconds": r["wall_time_s"]}
        for r in results.records
        if r.get("status") == "done" and r.get("robust_accuracy") is not None
    ]
    if plot and done:
        fig = cost_robustness_scatter(
            done,
            "robust_accuracy",
            title="Fine-tuning: robust accuracy against training time\n"
            "(black edge: catastrophic overfitting seen during training)",
        )
        paths.append(atomic_write_bytes(out_dir / "compare.png", figure_png(fig, dpi=120)))
    return paths
