"""Auto-PGD (Croce & Hein 2020): step-size-free PGD with momentum, CE and targeted DLR losses.

APGD halves its step size at checkpoints where progress stalled and restarts from the best point
found, so it needs no tuning and is the strong attack robust accuracy should be measured with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advscale.attacks.base import (
    Attack,
    AttackResult,
    Norm,
    ascent_step,
    ce_loss,
    check_positive,
    dlr_loss,
    project,
    random_start,
)
from advscale.errors import UserError


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations after which APGD checks progress, as the reference AutoAttack code counts
    them: the first after ``h = max(⌊0.22·steps⌋, 1)`` iterations, each next one
    ``h ← max(h − max(⌊0.03·steps⌋, 1), max(⌊0.06·steps⌋, 1))`` later.

    Example:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
        >>> apgd_checkpoints(20)[:6]
        [4, 7, 9, 10, 11, 12]
    """
    h = max(int(0.22 * steps), 1)
    decrease, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at = [], h
    while at <= steps:
        points.append(at)
        h = max(h - decrease, shortest)
        at += h
    return points


class APGD(Attack):
    """APGD with cross-entropy (``loss="ce"``, APGD-CE) or DLR (``loss="dlr"``) loss.

    L∞ steps along the gradient's sign, L2 (``norm="l2"``, ε an L2 radius such as 0.5) along
    the normalized gradient, and starts on the ε-sphere, as the original; both project onto
    the ε-ball ∩ [0, 1].

    Args:
        steps: iterations per restart (100 in AutoAttack).
        restarts: random restarts; only examples still robust are restarted (``n_restarts``
            is accepted too).
        loss: "ce" or "dlr".
        rho: the step size is halved at a checkpoint where at most this fraction of the steps
            since the last one raised the loss (0.75), or where the best loss did not rise
            since the last checkpoint and the step was not halved there (never at the first).
        momentum: weight of the new step against the previous one (0.75).
    """

    name = "apgd_ce"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        **kwargs,
    ) -> None:
        super().__init__(model, eps, **kwargs)
        if loss not in ("ce", "dlr"):
            raise UserError(f"APGD loss must be 'ce' or 'dlr', got {loss!r}")
        check_positive("steps", steps, integer=True)
        check_positive("restarts", restarts, integer=True)
        if not 0 < rho <= 1:
            raise UserError(f"rho must be in (0, 1], got {rho!r}")
        if not 0 < momentum <= 1:
            raise UserError(f"momentum must be in (0, 1], got {momentum!r}")
        self.steps, self.restarts, self.loss_name = steps, restarts, loss
        self.rho, self.momentum = rho, momentum
        if loss == "dlr":
            self.name = "apgd_dlr" if self.norm == "linf" else "apgd_dlr_l2"

    def _loss(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if self.loss_name == "dlr":
            return dlr_loss(logits, y, target)
        return ce_loss(logits, y) if target is None else -ce_loss(logits, target)

    def _run(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        *,
        early_stop: bool,
        final_check: bool,
    ) -> AttackResult:
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        x_out = x.clone()
        counts = [0, 0]
        everyone = torch.arange(len(x), device=x.device)
        for r in range(self.restarts):
            idx = everyone if r == 0 else (~fooled).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            self._single(x, y, eps, target, target, idx, x_out, fooled, counts, early_stop)
        return AttackResult(x_out.detach(), fooled, counts[0], counts[1])

    def _grad(self, xk: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        xk = xk.detach().requires_grad_(True)
        logits = self.model(xk)
        loss = self._loss(logits, y, target)
        (g,) = torch.autograd.grad(loss.sum(), xk)
        return loss.detach(), g.detach(), logits.detach()

    def _single(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        goal: Tensor | None,
        idx: Tensor,
        x_out: Tensor,
        fooled: Tensor,
        counts: list[int],
        early_stop: bool,
        start: Tensor | None = None,
    ) -> None:
        """One APGD run on examples ``idx``; writes fooling iterates into ``x_out``/``fooled``.

        ``target`` is the class the loss aims at; ``goal`` the one success is judged by (the
        user's target, or None: any misclassification, as APGD-T uses its targets).
        ``start`` (N, ...) holds starting images in the ε-ball (default: a random start).
        Examples never fooled get the highest-loss point found.
        """
        norm, steps = self.norm, self.steps
        gen = self.generator(x.device)
        x0, y0, e0 = x[idx], y[idx], eps[idx]
        t0 = None if target is None else target[idx]
        g0 = None if goal is None else goal[idx]
        checkpoints = set(apgd_checkpoints(steps))
        last_ckpt = 0

        if start is None:
            xk = x0 + random_start(x0, e0, norm, gen, sphere=True)
        else:
            xk = start[idx].clone()
        st = {  # per-example state, compacted together when examples are fooled
            "idx": idx,
            "x0": x0,
            "y": y0,
            "eps": e0,
            "xk": xk,
            "xprev": xk.clone(),
            "eta": 2 * e0,
            # As if halved before the start: the no-gain rule waits for a second checkpoint.
            "reduced": torch.ones(len(idx), dtype=torch.bool, device=x.device),
            "succ": torch.zeros(len(idx), device=x.device),
        }
        if t0 is not None:
            st["t"] = t0
        if g0 is not None:
            st["goal"] = g0

        def record(logits: Tensor, xk: Tensor) -> None:
            hit = self.success(logits, st["y"], st.get("goal"))
            if not bool(hit.any()):
                return
            fooled[st["idx"][hit]] = True
            x_out[st["idx"][hit]] = xk[hit].detach()
            if early_stop:
                keep = ~hit
                for k in list(st):
                    st[k] = st[k][keep]

        loss, grad, logits = self._grad(st["xk"], st["y"], st.get("t"))
        counts[0] += len(st["idx"])
        counts[1] += len(st["idx"])
        # As the reference, the first step's loss is compared with 0 (its loss history's entry
        # before the first is the unset last one): under CE the first step always counts as a
        # rise, under DLR only once the example is misclassified.
        st["grad"], st["loss"] = grad, torch.zeros_like(loss)
        st["xmax"], st["fmax"], st["gmax"] = st["xk"].clone(), loss.clone(), grad.clone()
        st["fmax_ckpt"] = loss.clone()
        record(logits, st["xk"])

        for k in range(steps):
            if len(st["idx"]) == 0:
                return
            xk, xprev, eta = st["xk"], st["xprev"], st["eta"]
            a = self.momentum if k > 0 else 1.0
            with torch.no_grad():
                z = st["x0"] + project(
                    xk + eta * ascent_step(st["grad"], norm) - st["x0"], st["x0"], st["eps"], norm
                )
                xn = xk + a * (z - xk) + (1 - a) * (xk - xprev)
                xn = st["x0"] + project(xn - st["x0"], st["x0"], st["eps"], norm)
            loss, grad, logits = self._grad(xn, st["y"], st.get("t"))
            counts[0] += len(st["idx"])
            counts[1] += len(st["idx"])
            with torch.no_grad():
                st["succ"] += (loss > st["loss"]).float()
                better = loss > st["fmax"]
                st["xmax"][better], st["fmax"][better], st["gmax"][better] = (
                    xn[better],
                    loss[better],
                    grad[better],
                )
                st["xprev"], st["xk"], st["loss"], st["grad"] = xk, xn, loss, grad
                # Record before the checkpoint: a step-size cut overwrites xk in place.
                record(logits, xn)
                if k + 1 in checkpoints and len(st["idx"]):
                    span = k + 1 - last_ckpt
                    stalled = st["succ"] <= self.rho * span
                    no_gain = (~st["reduced"]) & (st["fmax_ckpt"] >= st["fmax"])
                    cut = stalled | no_gain
                    if bool(cut.any()):
                        # Restart from the best point; as the reference, the momentum term
                        # and the next step's "did the loss rise" keep the last iterate's.
                        st["eta"][cut] /= 2
                        st["xk"][cut] = st["xmax"][cut]
                        st["grad"][cut] = st["gmax"][cut]
                    st["reduced"] = cut
                    st["succ"].zero_()
                    st["fmax_ckpt"] = st["fmax"].clone()
                if k + 1 in checkpoints:
                    last_ckpt = k + 1
        if len(st["idx"]):
            survivors = ~fooled[st["idx"]]
            x_out[st["idx"][survivors]] = st["xmax"][survivors]


def ranked_wrong_classes(logits: Tensor, y: Tensor) -> Tensor:
    """(N, K) classes by descending score with the true class last: the targets worth aiming at
    first (the targeted attacks' ranking)."""
    return logits.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)


class APGDT(APGD):
    """Targeted APGD with the DLR loss (APGD-T): one run per target class among the
    ``n_targets`` highest-scoring wrong classes of the clean image, on points still robust."""

    name = "apgd_t"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        n_targets: int = 9,
        steps: int = 100,
        restarts: int = 1,
        **kwargs,
    ) -> None:
        kwargs.pop("loss", None)
        super().__init__(model, eps, steps=steps, restarts=restarts, loss="dlr", **kwargs)
        self.name = type(self).name
        check_positive("n_targets", n_targets, integer=True)
        self.n_targets = n_targets

    def _run(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        *,
        early_stop: bool,
        final_check: bool,
    ) -> AttackResult:
        if target is not None:
            return super()._run(x, y, eps, target, early_stop=early_stop, final_check=final_check)
        return self.run_targets(x, y, eps, early_stop=early_stop)

    def run_targets(
        self, x: Tensor, y: Tensor, eps: Tensor, *, start: Tensor | None = None, early_stop: bool
    ) -> AttackResult:
        """APGD-T on a checked batch (``eps`` (N, 1, 1, 1)), gradients enabled.

        Without ``start``: random starts and targets ranked by the clean logits, as the
        original. With ``start`` (N, ...) images in the ε-ball (another attack's best points):
        every run starts there and targets are ranked by the logits at ``start``, where the
        classes nearest to winning are those worth aiming at.
        """
        with torch.no_grad():
            logits = self.model(x if start is None else start)
        k = logits.shape[1]
        if k < 4:
            raise UserError(
                f"APGD-T's targeted DLR loss needs at least 4 classes, the model has {k}"
            )
        order = ranked_wrong_classes(logits, y)
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        x_out = x.clone() if start is None else start.clone()
        counts = [len(x), 0]
        # Each target class and restart runs on the points still robust: a cascade within APGD-T.
        for j in range(min(self.n_targets, k - 1)):
            for _ in range(self.restarts):
                idx = (~fooled).nonzero().squeeze(1)
                if len(idx) == 0:
                    break
                self._single(
                    x, y, eps, order[:, j], None, idx, x_out, fooled, counts, early_stop, start
                )
        return AttackResult(x_out.detach(), fooled, counts[0], counts[1])


class APGDL2(APGD):
    """APGD in the L2 ball (ε an L2 radius in [0, 1] units, e.g. 0.5 as RobustBench)."""

    name = "apgd_l2"
    norm: Norm = "l2"


class APGDTL2(APGDT):
    """APGD-T in the L2 ball (ε an L2 radius in [0, 1] units)."""

    name = "apgd_t_l2"
    norm: Norm = "l2"
