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

from advscale.report.labels import attack_label, column_label  # noqa: E402

# Points: (x, y) pairs; series map a legend label to points.
Points = Sequence[tuple[float, float]]


def eps_label(eps: float, norm: str | None = None) -> str:
    """ε as the papers write it: L∞ in pixel levels, 8 -> "8/255"; an L2 or L1 radius on [0, 1]
    images (records with ``norm`` "l2"/"l1") as it is, 0.5 -> "0.5 (L2)"."""
    if norm in ("l2", "l1"):
        return f"{eps:g} ({norm.upper()})"
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
        ax.set_title(attack_label(attack))
        _percent_axis(ax)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def training_curves(
    metrics: Mapping[str, Points],
    events: Sequence[tuple[float, str]] = (),
    title: str = "Training",
    xlabel: str = "epoch",
) -> Figure:
    """Loss-like metrics on the left, accuracy-like metrics (%, 0-100) on the right.

    Args:
        metrics: ``{name: [(x, value), ...]}``; names containing "loss" go left, the rest
            (accuracies in [0, 1]) right. Names starting with "guard" (the
            catastrophic-overfitting guard's checks) are drawn as markers only.
        events: ``(x, label)`` pairs drawn as red dashed lines, e.g. catastrophic
            overfitting detected there.
        xlabel: what x is ("epoch", "optimizer step").
    """
    losses = {k: v for k, v in metrics.items() if "loss" in k}
    accs = {k: v for k, v in metrics.items() if "loss" not in k}
    panels = [p for p in (("loss", losses), ("accuracy (%)", accs)) if p[1]]
    fig, axes = _grid(len(panels), max_cols=2, size=(5.4, 3.6))
    xs_all = sorted({x for pts in metrics.values() for x, _ in pts} | {e for e, _ in events})
    for ax, (ylabel, group) in zip(axes, panels, strict=False):
        for name, pts in group.items():
            xs, ys = zip(*sorted(pts), strict=True)
            scale = 1 if ylabel == "loss" else 100
            style = {"marker": "D", "linestyle": "none"} if name.startswith("guard") else {}
            marker = "o" if len(xs) == 1 else "."
            ax.plot(xs, [scale * y for y in ys], **{"marker": marker, **style}, label=name)
        if ylabel == "loss":
            ax.set_ylabel("loss")
            top = max((y for pts in group.values() for _, y in pts), default=1.0)
            ax.set_ylim(0, 1.1 * top if math.isfinite(top) and top > 0 else 1.0)
            ax.grid(True, alpha=0.3)
        else:
            _percent_axis(ax)
        for x, label in events:
            ax.axvline(x, color="crimson", linestyle="--", linewidth=1.2)
            ax.annotate(
                label,
                (x, 0.97),
                xycoords=("data", "axes fraction"),
                color="crimson",
                fontsize="small",
                ha="right",
                va="top",
                rotation=90,
            )
        if xs_all and xs_all[0] == xs_all[-1]:
            # A single point (a one-epoch run): a range around it, not matplotlib's ±0.04.
            ax.set_xlim(xs_all[0] - 1, xs_all[0] + 1)
        elif xs_all:
            ax.set_xlim(min(0.0, xs_all[0]), xs_all[-1] * 1.02 + 0.5)
        ax.set_xlabel(xlabel)
        # Below the panel: curves reach every corner of it.
        ax.legend(
            fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False
        )
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


def _label_points(ax, points: Sequence[tuple[str, float, float]]) -> None:
    """Name each point beside it; of two close points (similar cost and robustness) the left
    one is named on its left and the lower one below, so that the names do not overlap."""
    x0, x1 = ax.get_xlim()
    log = ax.get_xscale() == "log"

    def where(x: float, y: float) -> tuple[float, float]:
        fx = (math.log(x / x0) / math.log(x1 / x0)) if log else (x - x0) / (x1 - x0)
        return fx, y / 100

    spots = [where(x, y) for _, x, y in points]
    for i, (name, x, y) in enumerate(points):
        fx, fy = spots[i]
        near = [
            (px, py)
            for j, (px, py) in enumerate(spots)
            if j != i and abs(fx - px) < 0.15 and abs(fy - py) < 0.08
        ]
        left = any(px > fx for px, _ in near) and not any(px < fx for px, _ in near)
        below = any(py > fy for _, py in near)
        ax.annotate(
            name,
            (x, y),
            fontsize="small",
            xytext=(-5 if left else 5, -11 if below else 4),
            textcoords="offset points",
            ha="right" if left else "left",
        )


def _log_seconds_axis(ax) -> None:
    """Training time on a log scale with plain-number ticks (1, 2, 5, 10, 20 ...)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training time (s, log scale)")


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
        _log_seconds_axis(ax)
    else:
        ax.set_xlabel("training time (s)")
    _percent_axis(ax, column_label(robust_key))
    ax.legend(fontsize="small")
    ax.set_title(title, fontsize="medium")
    return fig


def frontier_plot(
    points: Sequence[tuple[str, float, float, bool, bool]],
    eps: float,
    title: str = "Robustness against training cost",
) -> Figure:
    """Worst-case robust accuracy (%, 0-100) against training time, one point per model or
    recipe; Pareto points filled and joined, the rest hollow, one-step-only figures crossed.

    Args:
        points: ``(name, seconds, robust accuracy in [0, 1], on the front, multi-step)``.
        eps: the ε (pixel levels) the accuracies are measured at, for the axis label.
    """
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    front = sorted((s, 100 * r) for _, s, r, on, multi in points if on and multi)
    if len(front) > 1:
        xs, ys = zip(*front, strict=True)
        ax.plot(xs, ys, color="tab:blue", linewidth=1.2, zorder=1, label="Pareto front")
    for _, s, r, on, multi in points:
        y = 100 * r
        if not multi:
            ax.scatter(s, y, marker="x", color="grey", s=45, zorder=2)
        else:
            ax.scatter(
                s, y, s=60, zorder=3, color="tab:blue" if on else "white",
                edgecolors="tab:blue",
            )  # fmt: skip
    ax.scatter([], [], s=60, color="tab:blue", label="on the front")
    ax.scatter([], [], s=60, color="white", edgecolors="tab:blue", label="dominated")
    if any(not p[4] for p in points):
        ax.scatter([], [], marker="x", color="grey", label="one-step attacks only (upper bound)")
    secs = [p[1] for p in points]
    if secs and min(secs) > 0 and max(secs) / min(secs) > 5:
        _log_seconds_axis(ax)
        ax.set_xlim(min(secs) / 1.6, max(secs) * 2.5)
    else:
        ax.set_xlabel("training time (s)")
        if secs:
            lo, hi = min(secs), max(secs)
            pad = (hi - lo) * 0.15 if hi > lo else max(hi * 0.5, 1.0)
            ax.set_xlim(max(0.0, lo - pad), hi + 2 * pad)
    _percent_axis(ax, f"worst-case robust accuracy at ε={eps_label(eps)} (%)")
    _label_points(ax, [(p[0], p[1], 100 * p[2]) for p in points])
    ax.legend(fontsize="small", loc="best")
    ax.set_title(title, fontsize="medium")
    return fig
