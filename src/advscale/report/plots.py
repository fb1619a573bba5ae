"""Figures of the reports, as matplotlib ``Figure`` objects (no pyplot, no global state).

Each function takes plain data (no Results objects) and returns a Figure, so the Markdown
report (PNG files) and the HTML report (embedded PNGs) draw exactly the same plots.
``figure_png`` turns a figure into PNG bytes and ``png_data_uri`` into an ``<img src>`` value.

Example:
    >>> fig = accuracy_vs_eps({"baseline": {"fgsm": [(2, 0.5), (8, 0.1)]}}, {"baseline": 0.9})
    >>> figure_png(fig)[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

# Points: (x, y) pairs; series map a legend label to points.
Points = Sequence[tuple[float, float]]


def eps_label(eps: float) -> str:
    """ε in pixel levels as the papers write it: 8 -> "8/255", 0.5 -> "0.5/255"."""
    return f"{eps:g}/255"


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (Agg); every text as written (no ``$...$`` math)."""
    for text in fig.findobj(Text):
        text.set_parse_math(False)  # a run named "a$b" is a name, not a formula to typeset
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI, for images embedded in a self-contained HTML file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _grid(n: int, max_cols: int = 3, size: tuple[float, float] = (4.2, 3.3)) -> tuple[Figure, list]:
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(n, 1))]
    return fig, axes


def _percent_axis(ax, label: str = "accuracy (%)") -> None:
    ax.set_ylim(-2, 102)
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)


def accuracy_vs_eps(
    series: Mapping[str, Mapping[str, Points]],
    clean: Mapping[str, float] | None = None,
    title: str = "Accuracy against ε",
) -> Figure:
    """One panel per attack, one line per model: accuracy (%) against ε (pixel levels).

    Args:
        series: ``{model: {attack: [(eps_levels, accuracy_0_1), ...]}}``.
        clean: ``{model: clean_accuracy}``; drawn as the point at ε = 0 of every line.
    """
    clean = clean or {}
    attacks = sorted({a for per_model in series.values() for a in per_model})
    fig, axes = _grid(len(attacks))
    for ax, attack in zip(axes, attacks, strict=False):
        xs_all: set[float] = set()
        for model, per_model in series.items():
            pts = sorted(per_model.get(attack, []))
            if not pts:
                continue
            if model in clean and all(e != 0 for e, _ in pts):
                pts = [(0.0, clean[model]), *pts]
            xs, ys = zip(*pts, strict=True)
            xs_all.update(xs)
            ax.plot(xs, [100 * y for y in ys], marker="o", label=model)
        ticks = sorted(xs_all)
        ax.set_xticks(ticks, ["clean" if t == 0 else eps_label(t) for t in ticks], rotation=30)
        ax.set_xlabel("ε")
        ax.set_title(attack)
        _percent_axis(ax)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def training_curves(
    metrics: Mapping[str, Points],
    events: Sequence[tuple[float, str]] = (),
    title: str = "Training",
) -> Figure:
    """Loss-like metrics on the left, accuracy-like metrics (%) on the right, against epoch.

    Args:
        metrics: ``{name: [(epoch, value), ...]}``; names containing "loss" go left, the
            rest (accuracies in [0, 1]) right.
        events: ``(epoch, label)`` pairs drawn as red dashed lines, e.g. catastrophic
            overfitting detected at that epoch.
    """
    losses = {k: v for k, v in metrics.items() if "loss" in k}
    accs = {k: v for k, v in metrics.items() if "loss" not in k}
    panels = [p for p in (("loss", losses), ("accuracy (%)", accs)) if p[1]]
    fig, axes = _grid(len(panels), max_cols=2, size=(5.0, 3.4))
    for ax, (ylabel, group) in zip(axes, panels, strict=False):
        for name, pts in group.items():
            pts = sorted(pts)
            xs, ys = zip(*pts, strict=True)
            scale = 1 if ylabel == "loss" else 100
            ax.plot(xs, [scale * y for y in ys], marker=".", label=name)
        if ylabel == "loss":
            ax.set_ylabel("loss")
            ax.grid(True, alpha=0.3)
        else:
            _percent_axis(ax)
        for epoch, label in events:
            ax.axvline(epoch, color="crimson", linestyle="--", linewidth=1.2)
            ax.annotate(
                label,
                (epoch, 0.97),
                xycoords=("data", "axes fraction"),
                color="crimson",
                fontsize="small",
                ha="right",
                va="top",
                rotation=90,
            )
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def heatmap(
    values: Sequence[Sequence[float | None]],
    rows: Sequence[str],
    cols: Sequence[str],
    title: str,
    row_label: str = "source",
    col_label: str = "target",
) -> Figure:
    """A matrix of rates in [0, 1] shown as percentages; ``None`` cells are left blank."""
    import numpy as np

    data = np.array(
        [[np.nan if v is None else 100 * v for v in row] for row in values], dtype=float
    )
    fig = Figure(figsize=(1.1 * len(cols) + 2.6, 0.8 * len(rows) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(data, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not np.isnan(data[i, j]):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.0f}",
                    ha="center",
                    va="center",
                    color="white" if data[i, j] < 60 else "black",
                    fontsize="small",
                )
    fig.colorbar(im, ax=ax, label="%")
    ax.set_title(title)
    return fig


def capacity_plot(
    series: Mapping[str, Mapping[str, Points]],
    field: str = "width",
    title: str = "Robustness against model capacity",
) -> Figure:
    """Paper A, Fig. 1: ratio adversarial/clean accuracy against a capacity multiplier.

    Args:
        series: ``{panel (attack): {line (variant, ε): [(value, ratio), ...]}}``.
        field: the swept config field, for the x-axis label.
    """
    # Lines named "variant, detail": one colour per variant, one line style per detail (ε).
    names = [n for lines in series.values() for n in lines]
    variants = list(dict.fromkeys(n.split(", ", 1)[0] for n in names))
    details = list(dict.fromkeys(n.split(", ", 1)[1] if ", " in n else "" for n in names))
    colors, styles = matplotlib.colormaps["tab10"], ["-", "--", ":", "-."]
    fig, axes = _grid(len(series))
    for ax, (panel, lines) in zip(axes, series.items(), strict=False):
        for name, pts in lines.items():
            pts = sorted(pts)
            if not pts:
                continue
            variant, _, detail = name.partition(", ")
            xs, ys = zip(*pts, strict=True)
            ax.plot(
                xs,
                ys,
                marker="o",
                label=name,
                color=colors(variants.index(variant) % 10),
                linestyle=styles[details.index(detail) % len(styles)],
            )
        ax.set_title(panel)
        ax.set_xlabel(field)
        ax.set_ylabel("adversarial / clean accuracy")
        ax.set_ylim(-0.02, max(1.05, ax.get_ylim()[1]))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def cost_robustness_scatter(
    points: Sequence[Mapping[str, object]],
    robust_key: str,
    title: str = "Robustness against training cost",
) -> Figure:
    """Training seconds (x, log scale) against robust accuracy (y, %): one marker per method,
    one colour per mode, a black edge where catastrophic overfitting was seen (``co_events``).

    Args:
        points: dicts with ``method``, ``mode``, ``eps``, ``seconds`` and ``robust_key``.
        robust_key: the accuracy field to plot, e.g. "pgd_accuracy".
    """
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    methods = sorted({str(p.get("method", "?")) for p in points})
    modes = sorted({str(p.get("mode", "")) for p in points})
    colors = matplotlib.colormaps["tab10"]
    for p in points:
        method, mode = str(p.get("method", "?")), str(p.get("mode", ""))
        x, y = float(p["seconds"]), 100 * float(p[robust_key])
        ax.scatter(
            x,
            y,
            marker=markers[methods.index(method) % len(markers)],
            color=colors(modes.index(mode) % 10),
            s=50,
            edgecolors="black" if p.get("co_events") else "none",
        )
        if p.get("eps") is not None:
            ax.annotate(
                f"ε={eps_label(float(p['eps']))}",
                (x, y),
                fontsize="x-small",
                xytext=(4, 3),
                textcoords="offset points",
            )
    # Legend entries: markers for methods (grey), colours for modes.
    for i, m in enumerate(methods):
        ax.scatter([], [], marker=markers[i % len(markers)], color="grey", label=m)
    for i, m in enumerate(modes):
        if m:
            ax.scatter([], [], marker="o", color=colors(i % 10), label=m)
    if points and min(float(p["seconds"]) for p in points) > 0:
        # Times of fast and multi-step methods differ by factors: their ratio is what matters.
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training time (s, log scale)")
    else:
        ax.set_xlabel("training time (s)")
    ax.set_ylabel(f"{robust_key.replace('_', ' ')} (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title, fontsize="medium")
    return fig
