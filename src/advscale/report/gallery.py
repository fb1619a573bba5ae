"""Adversarial examples to look at: the safetensors file an evaluation saves
(:mod:`advscale.evaluate.examples`) read with numpy, drawn as a grid of clean image,
adversarial image and the perturbation amplified, with true and predicted labels.

Example:
    >>> write_gallery_png("adv/examples.safetensors", "adv/examples.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from advscale.report.labels import attack_label
from advscale.report.plots import eps_label, figure_png
from advscale.results import ResultsError
from advscale.utils import atomic_write_bytes

FIELDS = ("x", "x_adv", "y", "pred", "attack", "eps")


@dataclass
class Examples:
    """Row i: image ``x[i]`` (C, H, W in [0, 1]) of label ``y[i]``, turned by attack
    ``attacks[attack[i]]`` at ``eps[i]`` (pixel levels) into ``x_adv[i]``, predicted ``pred[i]``."""

    x: np.ndarray
    x_adv: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    attack: np.ndarray
    eps: np.ndarray
    attacks: list[str]
    classes: list[str] | None
    model: str | None

    def class_name(self, label: int) -> str:
        if self.classes and 0 <= label < len(self.classes):
            return str(self.classes[label])
        return f"class {label}"

    def groups(self, eps: float | None = None) -> list[tuple[str, float, np.ndarray]]:
        """``(attack, ε, row indices)`` per attack × ε present, in saved order; only ``eps``
        when given."""
        seen: dict[tuple[int, float], list[int]] = {}
        for i, (a, e) in enumerate(zip(self.attack.tolist(), self.eps.tolist(), strict=True)):
            if eps is None or abs(e - eps) < 1e-6:
                seen.setdefault((int(a), float(e)), []).append(i)
        return [(self.attacks[a], e, np.array(rows)) for (a, e), rows in seen.items()]


def read_examples(path: str | os.PathLike) -> Examples:
    """Read an examples file; raises ResultsError naming the file when it is not one."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as e:
        raise ResultsError(f"{path}: cannot read adversarial examples ({e})") from None
    missing = [k for k in FIELDS if k not in tensors]
    if missing:
        raise ResultsError(f"{path}: not an adversarial-examples file (no {', '.join(missing)})")
    try:
        attacks = list(json.loads(meta.get("attacks", "[]")))
        classes = json.loads(meta.get("classes", "null"))
        model = json.loads(meta.get("model", "null"))
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: bad metadata ({e})") from None
    return Examples(*(tensors[k] for k in FIELDS), attacks=attacks, classes=classes, model=model)


def _image(ax, img: np.ndarray) -> None:
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(np.transpose(img[:3], (1, 2, 0)), 0, 1))


def _delta_caption(ex: Examples, eps: float) -> str:
    if ex.x.shape[1] == 1:
        return f"red +, blue − (±{eps_label(eps)})"
    return f"×{255 / (2 * max(eps, 1e-12)):.0f} around grey"


def _perturbation(ax, delta: np.ndarray, eps: float) -> None:
    # Amplified so that ±ε spans the whole colour range: at 8/255 the raw difference is
    # invisible.
    bound = max(eps / 255, 1e-12)
    if delta.shape[0] == 1:
        ax.imshow(delta[0], cmap="RdBu_r", vmin=-bound, vmax=bound)
    else:
        ax.imshow(np.clip(0.5 + np.transpose(delta[:3], (1, 2, 0)) / (2 * bound), 0, 1))


def gallery_figure(
    ex: Examples, eps: float | None = None, per_group: int = 4, title: str = ""
) -> Figure | None:
    """One row per attack × ε (only ``eps`` when given), up to ``per_group`` examples each as
    a triplet: clean (true label), adversarial (predicted label), perturbation scaled to ±ε.
    None when there is nothing to show."""
    groups = [g for g in ex.groups(eps) if len(g[2])]
    if not groups:
        return None
    cols = min(per_group, max(len(g[2]) for g in groups))
    size, height = 1.25, (1.25 + 0.6) * len(groups) + 0.6
    fig = Figure(figsize=(size * 3 * cols + 1.3, height))
    top, bottom = 1 - 0.55 / height, 0.35 / height
    grid = fig.add_gridspec(
        len(groups), 3 * cols, wspace=0.08, hspace=0.6, left=1.2 / (size * 3 * cols + 1.3),
        right=0.99, top=top, bottom=bottom,
    )  # fmt: skip
    for row, (attack, e, idx) in enumerate(groups):
        for j, i in enumerate(idx[:cols]):
            y, p = int(ex.y[i]), int(ex.pred[i])
            panes = (
                ("clean", f"true: {ex.class_name(y)}", lambda ax, i=i: _image(ax, ex.x[i])),
                ("adversarial", f"pred: {ex.class_name(p)}", lambda ax, i=i: _image(ax, ex.x_adv[i])),
                ("perturbation", _delta_caption(ex, e),
                 lambda ax, i=i, e=e: _perturbation(ax, ex.x_adv[i] - ex.x[i], e)),
            )  # fmt: skip
            for k, (what, caption, draw) in enumerate(panes):
                ax = fig.add_subplot(grid[row, 3 * j + k])
                draw(ax)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(what, fontsize=7, pad=2)
                ax.set_xlabel(
                    caption, fontsize=7, labelpad=2, color="crimson" if k == 1 else "black"
                )
        fig.text(
            0.01,
            bottom + (top - bottom) * (1 - (row + 0.5) / len(groups)),
            f"{attack_label(attack)}\nε={eps_label(e)}",
            fontsize=9,
            fontweight="bold",
            va="center",
        )
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.1 / height, va="top")
    return fig


def write_gallery_png(
    examples: str | os.PathLike, out: str | os.PathLike, per_group: int = 4
) -> Path | None:
    """The grid of every attack × ε of the examples file ``examples`` as PNG ``out`` (atomic);
    None (nothing written) when the file holds no example."""
    ex = read_examples(examples)
    what = f"{ex.model}: " if ex.model else ""
    fig = gallery_figure(
        ex, per_group=per_group, title=f"{what}adversarial examples that fool the model"
    )
    if fig is None:
        return None
    return atomic_write_bytes(out, figure_png(fig, dpi=90))
