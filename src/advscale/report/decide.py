"""What the runs of a report decide: each model's (or recipe's, or fine-tuning mode's) clean and
worst-case robust accuracy at the ε that matters, what it cost, the Pareto front of robustness
against cost, and the one sentence that names the best trade-off.

Candidates come from evaluations (their worst case over every attack they ran, and the training
time of the run that trained the model, when that run is in the report), from training runs no
evaluation in the report attacks again (their end-of-training check), from compare runs (one
per method, mode and ε) and from a demo's results file (one per model).

A candidate whose training the guard stopped or flagged (catastrophic overfitting) or whose
evaluation carries warnings (gradient masking, probabilities, randomness) is never named the
best choice while a candidate without them is in the report, and never without its caveats in
the same sentence. Cost is training seconds and training passes: images through the model,
forward plus backward, as recorded or counted from the recipe (:func:`training_passes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from advscale.report.facts import amount, cost_of, declared_eps_of, guard_flags, warning_flags
from advscale.report.labels import attack_list, covers_multi_step
from advscale.report.plots import eps_label
from advscale.report.runs import EVAL_KINDS, TRAIN_KINDS, Run, classify, evaluates
from advscale.report.text import DEMO_TABLE_EPS
from advscale.results import is_number

WORST_CASE = "worst_case"
CLEAN_ATTACKS = ("clean", "none")
# Accuracy differences smaller than this are never called a difference (points).
MIN_TOLERANCE = 1.0


@dataclass
class Candidate:
    """One model, recipe or fine-tuning mode as the summary compares it."""

    name: str
    run: str
    clean: float | None
    # ε (pixel levels) -> (worst-case accuracy in [0, 1], attacks it covers)
    robust: dict[float, tuple[float, list[str]]] = field(default_factory=dict)
    seconds: float | None = None
    passes: int | None = None
    n: int | None = None
    # Why its figures are not to be shipped on: guard stops, evaluation warnings.
    flags: list[str] = field(default_factory=list)
    # The ε its own run's summary headlines (a training run's ``eval_eps``), if any.
    declared_eps: float | None = None

    def at(self, eps: float) -> tuple[float, list[str]] | None:
        return self.robust.get(float(eps))


def _worst_by_eps(recs: Sequence[dict[str, Any]]) -> dict[float, tuple[float, list[str]]]:
    """Worst case per ε: the evaluation's own ``worst_case`` record (per-example minimum over
    its attacks) where there is one, else the minimum over the attacks' accuracies."""
    out: dict[float, tuple[float, list[str]]] = {}
    per: dict[float, dict[str, float]] = {}
    for r in recs:
        attack, e, a = str(r.get("attack")), r.get("eps"), r.get("accuracy")
        if r.get("norm", "linf") != "linf":  # the summary weighs L∞ robustness (pixel levels)
            continue
        if not (is_number(e) and is_number(a)) or attack in CLEAN_ATTACKS or e == 0:
            continue
        if attack == WORST_CASE:
            covered = [x for x in str(r.get("attacks") or "").split("+") if x]
            out[float(e)] = (float(a), covered)
        else:
            per.setdefault(float(e), {})[attack] = float(a)
    for e, accs in per.items():
        if e not in out or not out[e][1]:
            out[e] = (min(accs.values()), list(accs))
    return out


def _clean_of(run: Run, recs: Sequence[dict[str, Any]]) -> float | None:
    s = run.results.summary if isinstance(run.results.summary, dict) else {}
    if is_number(s.get("clean_accuracy")):
        return float(s["clean_accuracy"])
    for r in recs:
        if str(r.get("attack")) in CLEAN_ATTACKS and is_number(r.get("accuracy")):
            return float(r["accuracy"])
        if is_number(r.get("clean_accuracy")):
            return float(r["clean_accuracy"])
    return None


def _recipe_of(run: Run) -> Any:
    cfg = run.results.config if isinstance(run.results.config, dict) else {}
    return cfg.get("recipe")


def _n_of(run: Run, recs: Sequence[dict[str, Any]]) -> int | None:
    for src in (run.results.summary, run.results.config, *recs):
        if isinstance(src, dict) and is_number(src.get("n")) and src["n"] > 0:
            return int(src["n"])
    return None


def candidates(runs: Sequence[Run]) -> list[Candidate]:
    """Every model, recipe or fine-tuning mode of ``runs`` with a robustness figure."""
    out: list[Candidate] = []
    evals = [r for r in runs if r.results.kind == "eval"]
    for run in runs:
        kind = run.results.kind
        robust_recs = [r for r in run.results.records if classify(run, r) == "robust"]
        if kind == "compare":
            out += _compare_candidates(run)
        elif kind == "demo":
            out += _demo_candidates(run, robust_recs)
        elif robust_recs and (kind in EVAL_KINDS or kind in TRAIN_KINDS):
            if kind in EVAL_KINDS:
                # The cost of an evaluated model is that of the run that trained it.
                trained = [t for t in runs if t.results.kind in TRAIN_KINDS and evaluates(run, t)]
                source = trained[0] if trained else None
            elif any(evaluates(e, run) for e in evals):
                continue  # an evaluation in the report stands for its end-of-training check
            else:
                source = run
            train_summary = source.results.summary if source is not None else None
            cost = cost_of(train_summary, _recipe_of(source)) if source else (None, None)
            clean, worst = _clean_of(run, robust_recs), _worst_by_eps(robust_recs)
            n = _n_of(run, robust_recs)
            flags = guard_flags(train_summary) + warning_flags(run.results.summary)
            c = Candidate(run.shown, run.label, clean, worst, *cost, n, flags)
            c.declared_eps = declared_eps_of(train_summary)
            out.append(c)
    return [c for c in out if c.robust]


def _demo_candidates(run: Run, recs: list[dict[str, Any]]) -> list[Candidate]:
    s = run.results.summary if isinstance(run.results.summary, dict) else {}
    out = []
    for model in dict.fromkeys(str(r.get("model")) for r in recs if r.get("model")):
        mine = [r for r in recs if r.get("model") == model]
        ms = s.get(model) if isinstance(s.get(model), dict) else {}
        seconds, passes = cost_of(ms, ms.get("recipe"))
        clean = ms.get("clean_accuracy") if is_number(ms.get("clean_accuracy")) else None
        out.append(
            Candidate(
                f"{model}",
                run.label,
                clean if clean is not None else _clean_of(run, mine),
                _worst_by_eps(mine),
                seconds,
                passes,
                _n_of(run, mine),
                guard_flags(ms) + warning_flags(ms),
                DEMO_TABLE_EPS,
            )
        )
    return out


def _compare_candidates(run: Run) -> list[Candidate]:
    """One candidate per (method, mode) of a compare run, robust at each ε it trained for."""
    by: dict[str, Candidate] = {}
    for r in run.results.records:
        if r.get("status", "done") != "done" or not is_number(r.get("eps")):
            continue
        if not is_number(r.get("robust_accuracy")):
            continue
        name = f"{str(r.get('method', '?')).upper()} fine-tuning ({r.get('mode', '?')})"
        covered = [
            k[: -len("_accuracy")]
            for k, v in r.items()
            if k.endswith("_accuracy")
            and is_number(v)
            and k not in ("clean_accuracy", "robust_accuracy", "worst_case_accuracy")
        ]
        c = by.setdefault(name, Candidate(name, run.label, None))
        c.robust[float(r["eps"])] = (float(r["robust_accuracy"]), covered)
        if is_number(r.get("clean_accuracy")):
            c.clean = float(r["clean_accuracy"])
        seconds = amount(r.get("wall_time_s", r.get("seconds")))
        c.seconds = seconds if seconds is not None else c.seconds
        epochs = r.get("co_epochs") if isinstance(r.get("co_epochs"), list) else []
        if not epochs and (amount(r.get("co_events")) or 0) > 0:
            epochs = [None]
        events = [{"event": "catastrophic_overfit", "epoch": e} for e in epochs]
        for flag in guard_flags({"events": events, "stop_reason": r.get("stop_reason")}):
            if flag not in c.flags:
                c.flags.append(flag)
    return list(by.values())


def headline_eps(cands: Sequence[Candidate], eps: float | None = None) -> float | None:
    """``eps`` when given; else the ε the runs' own summaries headline (:func:`declared_eps`);
    else the largest ε every candidate was evaluated at (failing that, the ε most candidates
    share, the larger on a tie)."""
    if eps is not None:
        return float(eps)
    declared = declared_eps(cands)
    if declared is not None:
        return declared
    sets = [set(c.robust) for c in cands]
    if not sets:
        return None
    common = set.intersection(*sets)
    if common:
        return max(common)
    counts: dict[float, int] = {}
    for s in sets:
        for e in s:
            counts[e] = counts.get(e, 0) + 1
    return max(counts, key=lambda e: (counts[e], e))


def declared_eps(cands: Sequence[Candidate]) -> float | None:
    """The ε the candidates' own runs headline (a training summary's ``eval_eps``, the demo's
    table), when every candidate was evaluated at it: the most often declared, the larger on a
    tie. The report then compares where the runs' own tables do."""
    counts: dict[float, int] = {}
    for c in cands:
        if c.declared_eps is not None:
            counts[c.declared_eps] = counts.get(c.declared_eps, 0) + 1
    shared = [e for e in counts if all(c.at(e) is not None for c in cands)]
    return max(shared, key=lambda e: (counts[e], e)) if shared else None


def pareto(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, robustness) points: whether each is on the front (no other point is at
    least as robust for no more cost, and better in one of them)."""
    out = []
    for i, (c, r) in enumerate(points):
        dominated = any(
            (c2 <= c and r2 >= r) and (c2 < c or r2 > r)
            for j, (c2, r2) in enumerate(points)
            if j != i
        )
        out.append(not dominated)
    return out


def tolerance_points(p: float, n: int | None) -> float:
    """Robust-accuracy differences within this many points are not called differences: the
    95% sampling half-width of an accuracy ``p`` measured on ``n`` images (at least 1 point)."""
    if not n:
        return MIN_TOLERANCE
    return max(MIN_TOLERANCE, 100 * 1.96 * math.sqrt(max(p * (1 - p), 0.0) / n))


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def verdict(cands: Sequence[Candidate], eps: float) -> list[str]:
    """Plain sentences: the best trade-off at ``eps`` and why, and what the figures rest on."""
    at = [(c, c.at(eps)) for c in cands]
    scored = [(c, v[0], v[1]) for c, v in at if v is not None]
    if not scored:
        return [f"No run was evaluated at ε = {eps_label(eps)}."]
    strong = [t for t in scored if covers_multi_step(t[2])]
    out = []
    weak = [t for t in scored if not covers_multi_step(t[2])]
    if weak:
        out.append(
            f"{', '.join(c.name for c, _, _ in weak)}: only one-step attacks "
            f"({attack_list(weak[0][2])}) were run at ε = {eps_label(eps)}, which bounds "
            "robustness from above; these figures are not robust accuracy and are left out of "
            "the comparison below."
        )
    if not strong:
        return out or ["No run was evaluated with an iterative attack."]
    if len({tuple(sorted(t[2])) for t in strong}) > 1:
        out.append(
            "The worst cases cover different attacks (see the table): one over fewer or weaker "
            "attacks can overstate robustness; evaluate every model with the same attacks to "
            "compare them exactly."
        )
    # A model whose training collapsed or whose figures carry warnings is no choice while one
    # without them is in the report: named aside, with the reason in the same sentence.
    trusted = [t for t in strong if not t[0].flags]
    pool = trusted or strong
    top_trusted = max((t[1] for t in trusted), default=-math.inf)
    aside = [
        f"Not a choice: {c.name} scores {_pct(acc)} at ε = {eps_label(eps)}, but "
        f"{_and(c.flags)}, so that figure is not to be shipped on."
        for c, acc, _ in sorted(strong, key=lambda t: -t[1])
        if c.flags and trusted and acc > top_trusted
    ]
    chosen = _choose(pool, eps)
    return chosen[:1] + aside + chosen[1:] + out


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _caveat(c: Candidate) -> str:
    """The end of the sentence that names a flagged candidate: its flags ("" for none)."""
    return f" — but {_and(c.flags)}; do not ship it on these figures" if c.flags else ""


def _choose(strong: Sequence[tuple[Candidate, float, list[str]]], eps: float) -> list[str]:
    """The best trade-off among ``strong`` at ``eps``: the first sentence, then notes."""
    out: list[str] = []
    best, best_acc, best_att = max(strong, key=lambda t: (t[1], -(t[0].seconds or math.inf)))
    tol = tolerance_points(best_acc, best.n)
    head = (
        f"worst case over {attack_list(best_att)} at ε = {eps_label(eps)}"
        if best_att
        else f"at ε = {eps_label(eps)}"
    )
    costed = [t for t in strong if t[0].seconds is not None]
    near = [t for t in costed if 100 * (best_acc - t[1]) <= tol]
    if best.seconds is None or not near:
        out.insert(
            0,
            f"Most robust: {best.name}, {_pct(best_acc)} ({head}); no training time is recorded "
            f"for it, so no trade-off against cost can be named{_caveat(best)}.",
        )
        return out
    pick, pick_acc, _ = min(near, key=lambda t: (t[0].seconds, -t[1]))
    noise = f"{tol:.1f}-point sampling uncertainty of {best.n} test images" if best.n else ""
    cleanest = max(
        (t for t in strong if t[0].clean is not None), key=lambda t: t[0].clean, default=None
    )
    if cleanest is not None and pick.clean is not None and cleanest[0] is not pick:
        lost = 100 * (cleanest[0].clean - pick.clean)
        if lost > max(tol, 5.0):
            # Robustness bought with clean accuracy is no trade-off a user can ship blindly.
            out.insert(
                0,
                f"Caution: {pick.name}'s clean accuracy, {_pct(pick.clean)}, is {lost:.1f} "
                f"points below {cleanest[0].name}'s {_pct(cleanest[0].clean)}; weigh clean "
                "accuracy too, or compare at a smaller ε (report --eps).",
            )
    if pick is best:
        cheaper = [t for t in costed if t[0].seconds < best.seconds]
        why = (
            f"every cheaper option is more than {tol:.1f} points less robust"
            + (f" (the {noise})" if noise else "")
            if cheaper
            else "nothing in this report costs less"
        )
        out.insert(
            0,
            f"Best trade-off: {best.name} — the most robust, {_pct(best_acc)} ({head}), at "
            f"{_cost(best)} of training; {why}{_caveat(best)}.",
        )
        return out
    gap = 100 * (best_acc - pick_acc)
    ratio = best.seconds / pick.seconds if pick.seconds else math.inf
    clean = ""
    if pick.clean is not None and best.clean is not None:
        clean = f" Clean accuracy: {_pct(pick.clean)} against {_pct(best.clean)}."
    out.insert(
        0,
        f"Best trade-off: {pick.name} reaches {best.name}'s robustness within {gap:.1f} points "
        f"({_pct(pick_acc)} against {_pct(best_acc)}, {head}) at 1/{ratio:.1f} of its training "
        f"time ({_cost(pick)} against {_cost(best)})"
        + (f"; the difference is within the {noise}" if noise else "")
        + _caveat(pick)
        + "."
        + clean,
    )
    return out


def _cost(c: Candidate) -> str:
    """Training time, and passes when known: "37 s" or "37 s, 1.2 M passes"."""
    if c.passes is None:
        return _seconds(c.seconds)
    return f"{_seconds(c.seconds)}, {_passes(c.passes)} passes"


def _passes(p: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if p >= scale:
            return f"{p / scale:.1f} {unit}"
    return str(p)


def _seconds(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 600 else f"{s / 60:.1f} min"
