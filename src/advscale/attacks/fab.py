"""FAB-T, the targeted fast adaptive boundary attack (Croce & Hein 2020), bounded by ε.

FAB walks to the decision boundary rather than up a loss: at each iterate it linearises the
logit difference ``f = z_t - z_y`` and steps to the nearest point of that hyperplane inside the
[0, 1] box, from the iterate and from the clean image, biased towards the clean image so the
points it finds stay small. Where a loss-based attack stalls on a flat or badly scaled loss (as
L∞-trained models often show under L2 attacks), the boundary is still found.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advscale.attacks.apgd import ranked_wrong_classes
from advscale.attacks.base import Attack, AttackResult, check_positive
from advscale.attacks.norms import Norm, lp_norm, random_start
from advscale.errors import UserError


def hyperplane_projection(p: Tensor, w: Tensor, b: Tensor, norm: Norm) -> Tensor:
    """Per example, the smallest ``delta`` (in ``norm``) with ``<w, delta> = b`` and
    ``p + delta`` in [0, 1]; where the box cannot reach the hyperplane, the box point that gets
    nearest to it.

    Exact: ``delta(λ) = clip(λ·d, -p, 1 - p)`` with ``d = sign(b)·w`` (L2) or ``sign(b)·sign(w)``
    (L∞), and ``<w, delta(λ)>`` is piecewise linear and non-decreasing in λ; its breakpoints
    (where a pixel reaches the box) are sorted and the segment holding ``b`` is solved.

    Args:
        p: points (N, C, H, W) in [0, 1].
        w: hyperplane normals, same shape.
        b: offsets (N,).
        norm: "l2" or "linf".
    """
    n = len(p)
    pw, lo, hi = w.flatten(1), -p.flatten(1), 1 - p.flatten(1)
    s = torch.sign(b)[:, None]
    d = s * (pw if norm == "l2" else pw.sign())
    c = s * pw * d  # each pixel's slope of <w, delta> in λ (>= 0)
    safe = torch.where(d == 0, torch.ones_like(d), d)
    r = torch.where(d > 0, hi / safe, torch.where(d < 0, lo / safe, torch.zeros_like(d)))
    r = r.clamp_min(0)  # λ at which each pixel reaches the box
    rs, order = r.sort(1)
    cs = c.gather(1, order)
    after = cs.flip(1).cumsum(1).flip(1)  # slope of the pixels not yet at the box
    before = (cs * rs).cumsum(1) - cs * rs  # what the pixels at the box contribute
    at_break = before + rs * after  # <w, delta> at each breakpoint: non-decreasing
    need = b.abs()[:, None]
    j = (at_break < need).sum(1, keepdim=True)
    reachable = j < r.shape[1]
    jj = j.clamp(max=r.shape[1] - 1)
    lam = (need - before.gather(1, jj)) / after.gather(1, jj).clamp_min(1e-30)
    lam = torch.where(reachable, lam, rs[:, -1:])
    delta = torch.clamp(lam * d, lo, hi)
    delta = torch.where((b == 0)[:, None], torch.zeros_like(delta), delta)
    return delta.view(n, *p.shape[1:])


class FABT(Attack):
    """FAB-T: FAB aimed at each of the ``n_targets`` highest-scoring wrong classes in turn, on
    the points still robust; a point counts as broken when an iterate within ε of it is
    misclassified (or, with ``target``, classified as the target).

    Args:
        n_targets: target classes, the highest-scoring wrong ones on the clean image.
        steps: iterations per target class and restart (one forward and backward each).
        restarts: runs per target; the first starts at the clean image, later ones at a random
            point at distance ε/2.
        alpha_max: largest weight of the step from the clean image (keeps points small).
        eta: overshoot of each step past the linearised boundary.
        beta: after a misclassified iterate farther than ε, the next iterate lies this fraction
            of the way from the clean image to it.
        norm: "linf" or "l2".
    """

    name = "fab_t"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        n_targets: int = 9,
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        **kwargs,
    ) -> None:
        super().__init__(model, eps, **kwargs)
        for key, v in (("n_targets", n_targets), ("steps", steps), ("restarts", restarts)):
            check_positive(key, v, integer=True)
        if not (0 <= alpha_max <= 1 and eta >= 1 and 0 < beta <= 1):
            raise UserError(
                f"FAB-T needs 0 <= alpha_max <= 1, eta >= 1 and 0 < beta <= 1, got "
                f"alpha_max={alpha_max}, eta={eta}, beta={beta}"
            )
        self.n_targets, self.steps, self.restarts = n_targets, steps, restarts
        self.alpha_max, self.eta, self.beta = alpha_max, eta, beta

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
        if target is not None:
            aims = [target]
        else:
            with torch.no_grad():
                logits = self.model(x)
            counts[0] += len(x)
            k = logits.shape[1]
            order = ranked_wrong_classes(logits, y)
            aims = [order[:, j] for j in range(min(self.n_targets, k - 1))]
        for aim in aims:
            for r in range(self.restarts):
                idx = (~fooled).nonzero().squeeze(1)
                if len(idx) == 0:
                    break
                self._single(x, y, eps, aim, target, idx, x_out, fooled, counts, r > 0)
        return AttackResult(x_out.detach(), fooled, counts[0], counts[1])

    def _single(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        aim: Tensor,
        goal: Tensor | None,
        idx: Tensor,
        x_out: Tensor,
        fooled: Tensor,
        counts: list[int],
        random: bool,
    ) -> None:
        """One FAB run towards class ``aim`` on examples ``idx``; a point is done (and written
        to ``x_out``/``fooled``) at its first successful iterate within ε."""
        norm = self.norm
        x0, y0, e0, t0 = x[idx], y[idx], eps[idx], aim[idx]
        g0 = None if goal is None else goal[idx]
        xk = x0.clone()
        if random:
            xk = x0 + random_start(x0, e0 / 2, norm, self.generator(x.device), sphere=True)
        st = {"idx": idx, "x0": x0, "y": y0, "eps": e0, "t": t0, "xk": xk}
        if g0 is not None:
            st["goal"] = g0

        def finish(xs: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
            """Write the points whose ``xs`` is misclassified within ε and drop them from the
            run; returns which points were kept and which of those are misclassified."""
            adv = self.success(logits, st["y"], st.get("goal"))
            done = adv & (lp_norm(xs - st["x0"], norm).flatten() <= st["eps"].flatten())
            if bool(done.any()):
                fooled[st["idx"][done]] = True
                x_out[st["idx"][done]] = xs[done]
                for k in list(st):
                    st[k] = st[k][~done]
            return ~done, adv[~done]

        for _ in range(self.steps):
            if len(st["idx"]) == 0:
                return
            xk = st["xk"].detach().requires_grad_(True)
            logits = self.model(xk)
            rows = torch.arange(len(xk), device=x.device)
            f = logits[rows, st["t"]] - logits[rows, st["y"]]
            (w,) = torch.autograd.grad(f.sum(), xk)
            counts[0] += len(rows)
            counts[1] += len(rows)
            with torch.no_grad():
                xk, x0 = xk.detach(), st["x0"]
                # Step to the linearised boundary f + <w, q - xk> = 0, from xk and from x0,
                # weighted towards x0 so the point found stays small.
                f = f.detach()
                dk = hyperplane_projection(xk, w, -f, norm)
                d0 = hyperplane_projection(x0, w, -(f + (w * (x0 - xk)).flatten(1).sum(1)), norm)
                a0, a1 = lp_norm(dk, norm), lp_norm(d0, norm)
                alpha = (a0 / (a0 + a1).clamp_min(1e-12)).clamp(0, self.alpha_max)
                step = (1 - alpha) * (xk + self.eta * dk) + alpha * (x0 + self.eta * d0)
                step = step.clamp(0, 1)
                logits = self.model(step)
                counts[0] += len(step)
                kept, adv = finish(step, logits)
                # A misclassified step farther than ε: the next gradient is taken at a point
                # nearer the clean image, to find a closer boundary point from there.
                step = step[kept]
                back = (1 - self.beta) * st["x0"] + self.beta * step
                st["xk"] = torch.where(adv.view(-1, *([1] * (x.ndim - 1))), back, step)

    def __repr__(self) -> str:
        return (
            f"FABT(eps={self.eps!r}, norm={self.norm}, n_targets={self.n_targets}, "
            f"steps={self.steps}, restarts={self.restarts})"
        )


class FABTL2(FABT):
    """FAB-T in the L2 ball (ε an L2 radius in [0, 1] units)."""

    name = "fab_t_l2"
    norm: Norm = "l2"


__all__ = ["FABT", "FABTL2", "hyperplane_projection"]
