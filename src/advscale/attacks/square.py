"""Square attack (Andriushchenko et al. 2020): a score-based L∞ attack that needs no gradients.

It only queries the model's logits, so gradient masking cannot hide a model's weakness from it;
that is why it closes the AutoAttack cascade. Each iteration changes one random square of the
current image to a corner of the ε-box and keeps the change if the margin loss went down.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advscale.attacks.base import Attack, AttackResult, ce_loss, project

# Iterations (out of 10,000 queries) after which the square's area fraction p is halved;
# for another query budget the schedule is stretched in proportion.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(i: int, n_queries: int, p_init: float = 0.8) -> float:
    """Fraction p of the image a square covers at iteration ``i`` of ``n_queries``."""
    it = int(i / n_queries * 10000)
    return p_init / 2 ** sum(it > b for b in P_HALVINGS)


def square_side(p: float, height: int, width: int) -> int:
    """Side of the square covering a fraction ``p`` of the image, at least 1, less than the image."""
    side = int(round(math.sqrt(p * height * width)))
    return max(1, min(side, min(height, width) - 1))


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """z_y − max_{k≠y} z_k per example: negative exactly when the example is misclassified."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    return z_y - logits.scatter(1, y[:, None], float("-inf")).amax(1)


class Square(Attack):
    """Square attack, L∞ (Andriushchenko et al. 2020), forward passes only.

    Starts from vertical stripes of ±ε (one random sign per column and channel), then for
    ``n_queries - 1`` iterations proposes, per example, a random square whose pixels move by
    ±2ε (one sign per channel) from the current image, projected back onto the ε-ball and
    [0, 1] (so the square lands on a corner of the ε-box), and accepts it if the loss drops.
    The loss is the margin z_y − max_{k≠y} z_k (untargeted) or the cross-entropy of the target
    (targeted). Only examples not yet fooled are queried when ``early_stop`` is on.

    Args:
        n_queries: model queries per example and restart, the initial one included (5000 in
            AutoAttack).
        p_init: initial fraction of the image a square covers (0.8 for L∞).
        restarts: independent runs; later runs attack only the examples still robust.
    """

    name = "square"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        n_queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        **kwargs,
    ) -> None:
        if kwargs.get("norm", "linf") != "linf":
            raise ValueError(
                f"the square attack is implemented for norm 'linf' only, got {kwargs['norm']!r}"
            )
        super().__init__(model, eps, **kwargs)
        if n_queries < 1 or restarts < 1:
            raise ValueError(f"n_queries and restarts must be >= 1, got {n_queries}, {restarts}")
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.n_queries, self.p_init, self.restarts = n_queries, p_init, restarts

    def _loss(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return margin_loss(logits, y) if target is None else ce_loss(logits, target)

    def _signs(self, shape: tuple[int, ...], like: Tensor, gen: torch.Generator | None) -> Tensor:
        return torch.randint(0, 2, shape, device=like.device, generator=gen).to(like.dtype) * 2 - 1

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
        with torch.no_grad():
            return self._search(x, y, eps, target, early_stop)

    def _search(
        self, x: Tensor, y: Tensor, eps: Tensor, target: Tensor | None, early_stop: bool
    ) -> AttackResult:
        n, c, h, w = x.shape
        gen = self.generator(x.device)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        x_out = x.clone()
        forward = 0
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        for r in range(self.restarts):
            idx = torch.arange(n, device=x.device) if r == 0 else (~fooled).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            x0, y0, e0 = x[idx], y[idx], eps[idx]
            t0 = None if target is None else target[idx]
            # The search runs on perturbations so that rounding never drifts out of the ball.
            stripes = e0 * self._signs((len(idx), c, 1, w), x0, gen)
            d_best = project(stripes.expand_as(x0), x0, e0, "linf")
            logits = self.model(x0 + d_best)
            forward += len(idx)
            loss = self._loss(logits, y0, t0)
            hit = self.success(logits, y0, t0)
            fooled[idx[hit]] = True
            x_out[idx[hit]] = (x0 + d_best)[hit]
            active = ~hit if early_stop else torch.ones_like(hit)

            for i in range(1, self.n_queries):
                act = active.nonzero().squeeze(1)
                m = len(act)
                if m == 0:
                    break
                side = square_side(square_fraction(i, self.n_queries, self.p_init), h, w)
                top = torch.randint(0, h - side + 1, (m, 1, 1, 1), device=x.device, generator=gen)
                left = torch.randint(0, w - side + 1, (m, 1, 1, 1), device=x.device, generator=gen)
                window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
                xa = x0[act]
                d_cand = self._propose(xa, d_best[act], e0[act], window, gen)
                cand = xa + d_cand
                logits = self.model(cand)
                forward += m
                new_loss = self._loss(logits, y0[act], None if t0 is None else t0[act])
                better = new_loss < loss[act]
                d_best[act[better]] = d_cand[better]
                loss[act[better]] = new_loss[better]
                hit = self.success(logits, y0[act], None if t0 is None else t0[act])
                fooled[idx[act[hit]]] = True
                x_out[idx[act[hit]]] = cand[hit]
                if early_stop:
                    active[act[hit]] = False
            survivors = ~fooled[idx]
            x_out[idx[survivors]] = (x0 + d_best)[survivors]
        return AttackResult(x_out, fooled, forward, 0)

    def _propose(
        self, x0: Tensor, delta: Tensor, eps: Tensor, window: Tensor, gen: torch.Generator | None
    ) -> Tensor:
        """Move ``delta`` by ±2ε (a sign per channel) inside ``window``, project to the ε-ball ∩ [0, 1].

        A sign vector that leaves the window as it is would waste a query, so it is redrawn
        (a few times; with ε = 0 nothing can change).
        """
        m, c = delta.shape[:2]
        signs = self._signs((m, c, 1, 1), delta, gen)
        movable = eps.flatten() > 0
        for _ in range(8):
            cand = project(torch.where(window, delta + 2 * eps * signs, delta), x0, eps, "linf")
            same = ((cand - delta).abs().flatten(1).amax(1) == 0) & movable
            if not bool(same.any()):
                break
            redraw = self._signs((m, c, 1, 1), delta, gen)
            signs = torch.where(same.view(m, 1, 1, 1), redraw, signs)
        return cand
