"""What a run's summary says about the model it made: training cost in seconds and passes,
whether the training guard stopped it, how many warnings its evaluation carries, and the ε its
own tables headline. The report's summary (:mod:`advscale.report.decide`) weighs these."""

from __future__ import annotations

import math
from typing import Any

from advscale.results import is_number


def amount(v: Any) -> float | None:
    """``v`` as a finite non-negative float (a time, a count), else None: a file's NaN, inf or
    negative cost is no cost to compare."""
    if not is_number(v):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) and f >= 0 else None


def cost_of(summary: Any, recipe: Any = None) -> tuple[float | None, int | None]:
    """Training seconds and forward+backward passes a training summary records (the passes
    counted from ``recipe`` and the images seen when it records none)."""
    s = summary if isinstance(summary, dict) else {}
    seconds = next(
        (
            amount(s[k])
            for k in ("train_time_s", "train_seconds", "wall_time_s")
            if amount(s.get(k)) is not None
        ),
        None,
    )
    fwd = amount(s.get("forward_passes", s.get("forward")))
    bwd = amount(s.get("backward_passes", s.get("backward")))
    passes = int(fwd + bwd) if fwd is not None and bwd is not None else None
    rate = amount(s.get("images_per_s"))
    if passes is None and seconds is not None and rate is not None:
        images = amount(rate * seconds)
        steps = amount(s.get("steps"))
        passes = None if images is None else training_passes(recipe, round(images), steps)
    return seconds, passes


def training_passes(recipe: Any, images: int, steps: float | None = None) -> int | None:
    """Images passed through the model (forward plus backward) to train on ``images`` examples
    in ``steps`` optimizer steps with ``recipe`` (a training config's ``recipe`` mapping), or
    None for an unknown recipe.

    A training step is one forward and one backward pass per image; a one-step attack adds one
    of each per adversarial image (its first forward is also the clean one), PGD-k adds k of
    each; Kurakin's recipe attacks k of every m images (m/2 by default), after
    ``warmup_steps`` clean steps (counted as clean when ``steps`` is known: the batches are of
    one size, so the warm-up's share of the images is its share of the steps).

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
        steps = amount(r.get("steps", 7))
        per = 2.0 + 2.0 * steps if steps is not None and steps >= 1 else math.nan
    elif name == "kurakin":
        k, m = amount(r.get("k")), amount(r.get("m"))
        share = k / m if k is not None and m else 0.5
        warm = amount(r.get("warmup_steps", 0)) or 0.0
        adversarial = 1.0 - min(warm, steps) / steps if steps and steps > 0 else 1.0
        per = 2.0 + 2.0 * min(share, 1.0) * adversarial
    else:
        return None
    n = amount(images)
    total = None if n is None or math.isnan(per) else amount(per * n)
    return None if total is None else int(round(total))


def guard_flags(summary: Any) -> list[str]:
    """The caveat (the training guard stopped its training ...) a training summary calls for."""
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
    """The caveat (its figures carry N gradient-masking warnings) an evaluation summary calls for."""
    s = summary if isinstance(summary, dict) else {}
    ws = s.get("warnings")
    k = len(ws) if isinstance(ws, list) else 0
    if not k:
        return []
    return [f"its figures carry {k} gradient-masking warning{'s' if k > 1 else ''}"]


def declared_eps_of(summary: Any) -> float | None:
    s = summary if isinstance(summary, dict) else {}
    e = amount(s.get("eval_eps"))
    return e if e else None


__all__ = [
    "amount",
    "cost_of",
    "declared_eps_of",
    "guard_flags",
    "training_passes",
    "warning_flags",
]
