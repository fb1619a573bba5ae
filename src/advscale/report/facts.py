"""What a run's summary says about the model it made: training cost in seconds and passes,
whether the training guard stopped it, how many warnings its evaluation carries, and the ε its
own tables headline. The report's summary (:mod:`advscale.report.decide`) weighs these."""

from __future__ import annotations

import math
from typing import Any

from advscale.results import is_number


def cost_of(summary: Any, recipe: Any = None) -> tuple[float | None, int | None]:
    """Training seconds and forward+backward passes a training summary records (the passes
    counted from ``recipe`` and the images seen when it records none)."""
    s = summary if isinstance(summary, dict) else {}
    seconds = next(
        (
            float(s[k])
            for k in ("train_time_s", "train_seconds", "wall_time_s")
            if is_number(s.get(k))
        ),
        None,
    )
    fwd, bwd = (
        s.get("forward_passes", s.get("forward")),
        s.get("backward_passes", s.get("backward")),
    )
    passes = int(fwd + bwd) if is_number(fwd) and is_number(bwd) else None
    if passes is None and seconds is not None and is_number(s.get("images_per_s")):
        passes = training_passes(recipe, round(float(s["images_per_s"]) * seconds))
    return seconds, passes


def training_passes(recipe: Any, images: int) -> int | None:
    """Images passed through the model (forward plus backward) to train on ``images`` examples
    with ``recipe`` (a training config's ``recipe`` mapping), or None for an unknown recipe.

    A training step is one forward and one backward pass per image; a one-step attack adds one
    of each per adversarial image (its first forward is also the clean one), PGD-k adds k of
    each; Kurakin's recipe attacks k of every m images (m/2 by default).

    Example:
        >>> training_passes({"name": "pgd", "steps": 7}, 1000), training_passes({"name": "clean"}, 1000)
        (16000, 2000)
    """
    r = recipe if isinstance(recipe, dict) else {}
    name = r.get("name", "clean")
    if name == "clean":
        per = 2.0
    elif name in ("fgsm", "rs_fgsm", "n_fgsm"):
        per = 4.0
    elif name == "pgd":
        steps = r.get("steps", 7)
        per = 2.0 + 2.0 * steps if is_number(steps) and steps >= 1 else math.nan
    elif name == "kurakin":
        k, m = r.get("k"), r.get("m")
        share = k / m if is_number(k) and is_number(m) and m > 0 else 0.5
        per = 2.0 + 2.0 * min(max(share, 0.0), 1.0)
    else:
        return None
    return None if math.isnan(per) or images < 0 else int(round(per * images))


def guard_flags(summary: Any) -> list[str]:
    """ "the training guard stopped its training ..." when a training summary says so."""
    s = summary if isinstance(summary, dict) else {}
    events = s.get("events") if isinstance(s.get("events"), list) else []
    co = [e for e in events if isinstance(e, dict) and e.get("event") == "catastrophic_overfit"]
    stopped = s.get("stop_reason") == "catastrophic_overfit" or any(
        e.get("action") == "stop" for e in co
    )
    if not (co or stopped):
        return []
    epoch = co[0].get("epoch") if co else None
    where = f" at epoch {epoch}" if is_number(epoch) else ""
    verb = "stopped its training" if stopped else "flagged its training"
    return [f"the training guard {verb} for catastrophic overfitting{where}"]


def warning_flags(summary: Any) -> list[str]:
    """ "its figures carry N gradient-masking warnings" when an evaluation summary holds any."""
    s = summary if isinstance(summary, dict) else {}
    ws = s.get("warnings")
    k = len(ws) if isinstance(ws, list) else 0
    if not k:
        return []
    return [f"its figures carry {k} gradient-masking warning{'s' if k > 1 else ''}"]


def declared_eps_of(summary: Any) -> float | None:
    s = summary if isinstance(summary, dict) else {}
    return float(s["eval_eps"]) if is_number(s.get("eval_eps")) and s["eval_eps"] > 0 else None


__all__ = ["cost_of", "declared_eps_of", "guard_flags", "training_passes", "warning_flags"]
