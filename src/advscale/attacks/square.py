"""Square attack (Andriushchenko et al. 2020): a score-based L∞/L2 attack that needs no gradients.

It only queries the model's logits, so gradient masking cannot hide a model's weakness from it;
that is why it closes the AutoAttack cascade. Each iteration changes one random square of the
current image (L∞: to a corner of the ε-box; L2: a new bump of mass moved into the window) and
keeps the change if the margin loss went down.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor, nn

from advscale.attacks.base import (
    Attack,
    AttackResult,
    Norm,
    ce_loss,
    check_positive,
    lp_norm,
    project,
)
from advscale.errors import UserError

#: ``progress(queries_done, n_queries, still_attacked)``, called once per block of queries.
SquareProgress = Callable[[int, int, int], None]
PROGRESS_BLOCK = 100

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


@lru_cache(maxsize=64)
def _l2_bump(s: int) -> Tensor:
    """The original L2 square: two opposite-signed halves of nested squares weighted 1/k²,
    unit L2 norm (Andriushchenko et al. 2020, Fig. 2)."""

    def rectangles(a: int, b: int) -> Tensor:
        d = torch.zeros(a, b)
        ca, cb = a // 2, b // 2  # centre, the original's x_c - 1
        for k in range(max(a // 2 + 1, b // 2 + 1)):
            d[max(ca - k, 0) : min(ca - k + 2 * k + 1, a), max(cb - k, 0) : min(cb + k + 1, b)] += (
                1.0 / (k + 1) ** 2
            )
        return d / d.norm()

    d = (
        torch.cat([rectangles(s // 2, s), -rectangles(s - s // 2, s)])
        if s > 1
        else torch.ones(1, 1)
    )
    return d / d.norm()


class Square(Attack):
    """Square attack (Andriushchenko et al. 2020), forward passes only; L∞ or L2.

    L∞: starts from vertical stripes of ±ε (one random sign per column and channel), then for
    ``n_queries - 1`` iterations proposes, per example, a random square whose pixels move by
    ±2ε (one sign per channel) from the current image, projected back onto the ε-ball and
    [0, 1] (so the square lands on a corner of the ε-box). L2: starts from a grid of the
    paper's L2 bumps with random signs, and each iteration moves the perturbation's mass from
    a second random window into a new bump in the first, as the original (one window position
    per iteration for the batch); every iterate has L2 norm ε before clipping to [0, 1].
    A proposal is accepted if the loss drops: the margin z_y − max_{k≠y} z_k (untargeted) or
    the cross-entropy of the target (targeted). Only examples not yet fooled are queried when
    ``early_stop`` is on.

    Args:
        n_queries: model queries per example and restart, the initial one included (5000 in
            AutoAttack).
        p_init: initial fraction of the image a square covers (0.8 in AutoAttack).
        restarts: independent runs; later runs attack only the examples still robust
            (``n_restarts`` is accepted too).
        progress: True for a tqdm bar, or ``progress(queries_done, n_queries, attacked)``
            called every 100 queries; None for silence.
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
        progress: bool | SquareProgress | None = None,
        **kwargs,
    ) -> None:
        super().__init__(model, eps, **kwargs)
        check_positive("n_queries", n_queries, integer=True)
        check_positive("restarts", restarts, integer=True)
        if not (isinstance(p_init, int | float) and 0 < p_init <= 1):
            raise UserError(f"p_init must be in (0, 1], got {p_init!r}")
        self.n_queries, self.p_init, self.restarts = n_queries, p_init, restarts
        self.progress = progress

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
        report = self._reporter(len(x))
        try:
            with torch.no_grad():
                return self._search(x, y, eps, target, early_stop, report)
        finally:
            report(-1, 0)

    def _reporter(self, n: int) -> Callable[[int, int], None]:
        """``report(iteration, attacked)`` per query block; ``report(-1, 0)`` closes a bar."""
        if not self.progress:
            return lambda i, m: None
        if callable(self.progress):
            cb = self.progress
            return lambda i, m: None if i < 0 else cb(i, self.n_queries, m)
        from tqdm.auto import tqdm

        bar = tqdm(total=self.n_queries, desc=f"square {self.norm}", unit="query", leave=False)

        def report(i: int, m: int) -> None:
            if i < 0:
                bar.close()
                return
            bar.update(i - bar.n)
            bar.set_postfix(attacked=m, refresh=False)

        return report

    def _search(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        early_stop: bool,
        report: Callable[[int, int], None],
    ) -> AttackResult:
        n = len(x)
        gen = self.generator(x.device)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        x_out = x.clone()
        forward = 0
        for r in range(self.restarts):
            idx = torch.arange(n, device=x.device) if r == 0 else (~fooled).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            x0, y0, e0 = x[idx], y[idx], eps[idx]
            t0 = None if target is None else target[idx]
            # The search runs on perturbations so that rounding never drifts out of the ball.
            d_best = self._start(x0, e0, gen)
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
                if i % PROGRESS_BLOCK == 0:
                    report(i, m)
                if m == 0:
                    break
                p = square_fraction(i, self.n_queries, self.p_init)
                xa = x0[act]
                d_cand = self._propose(xa, d_best[act], e0[act], p, gen)
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
            report(self.n_queries, int(active.sum()))
            survivors = ~fooled[idx]
            x_out[idx[survivors]] = (x0 + d_best)[survivors]
        return AttackResult(x_out, fooled, forward, 0)

    # -- norm-specific hooks ---------------------------------------------------------------
    def _start(self, x0: Tensor, eps: Tensor, gen: torch.Generator | None) -> Tensor:
        """The initial perturbation (L∞: vertical stripes; L2: a grid of signed bumps)."""
        m, c, h, w = x0.shape
        if self.norm == "linf":
            stripes = eps * self._signs((m, c, 1, w), x0, gen)
            return project(stripes.expand_as(x0), x0, eps, "linf")
        s = max(h // 5, 1)
        bump = _l2_bump(s).to(x0.device, x0.dtype)
        d = torch.zeros_like(x0)
        top, left = max((h - s * 5) // 2, 0), max((w - s * 5) // 2, 0)
        for vh in range(top, h - s + 1, s):
            for vw in range(left, w - s + 1, s):
                d[:, :, vh : vh + s, vw : vw + s] += bump * self._signs((m, c, 1, 1), x0, gen)
        return _on_sphere(d, x0, eps)

    def _propose(
        self, x0: Tensor, delta: Tensor, eps: Tensor, p: float, gen: torch.Generator | None
    ) -> Tensor:
        if self.norm == "linf":
            return self._propose_linf(x0, delta, eps, p, gen)
        return self._propose_l2(x0, delta, eps, p, gen)

    def _propose_linf(
        self, x0: Tensor, delta: Tensor, eps: Tensor, p: float, gen: torch.Generator | None
    ) -> Tensor:
        """Move ``delta`` by ±2ε (a sign per channel) in a random square per example, projected
        onto the ε-ball ∩ [0, 1].

        A sign vector that leaves the window as it is would waste a query, so it is redrawn
        (a few times; with ε = 0 nothing can change).
        """
        m, c, h, w = delta.shape
        side = square_side(p, h, w)
        rows = torch.arange(h, device=x0.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x0.device).view(1, 1, 1, w)
        top = torch.randint(0, h - side + 1, (m, 1, 1, 1), device=x0.device, generator=gen)
        left = torch.randint(0, w - side + 1, (m, 1, 1, 1), device=x0.device, generator=gen)
        window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
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

    def _propose_l2(
        self, x0: Tensor, delta: Tensor, eps: Tensor, p: float, gen: torch.Generator | None
    ) -> Tensor:
        """The original L2 update: a new signed bump plus the old window's direction in window
        1, rescaled to the window's mass plus the budget not yet used; window 2 emptied."""
        m, c, h, w = delta.shape
        s = max(int(round(math.sqrt(p * h * w))), 3)
        s = min(s + 1 - s % 2, h, w)  # odd, as the original, and inside the image
        dev = x0.device
        vh, vh2 = torch.randint(0, max(h - s, 1), (2,), device=dev, generator=gen).tolist()
        vw, vw2 = torch.randint(0, max(w - s, 1), (2,), device=dev, generator=gen).tolist()
        w1 = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        w2 = (slice(None), slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
        both = torch.zeros(1, 1, h, w, device=dev, dtype=delta.dtype)
        both[w1], both[w2] = 1, 1
        chan = lambda t: t.pow(2).sum((-2, -1), keepdim=True).sqrt()  # noqa: E731
        bump = _l2_bump(s).to(dev, delta.dtype)
        if bool(torch.rand((), device=dev, generator=gen) > 0.5):
            bump = bump.T
        old = delta[w1]
        new = bump * self._signs((m, c, 1, 1), delta, gen) + old / (chan(old) + 1e-12)
        room = (eps.pow(2) - lp_norm(delta, "l2").pow(2)).clamp_min(0) / c + chan(delta * both) ** 2
        new = new / (chan(new) + 1e-12) * room.sqrt()
        d = delta.clone()
        d[w2] = 0
        d[w1] = new
        return _on_sphere(d, x0, eps)


def _on_sphere(d: Tensor, x0: Tensor, eps: Tensor) -> Tensor:
    """``d`` scaled to L2 norm ε, then clipped so that ``x0 + d`` stays in [0, 1]."""
    return torch.clamp(d * (eps / (lp_norm(d, "l2") + 1e-12)), -x0, 1 - x0)


class SquareL2(Square):
    """The Square attack in the L2 ball (ε an L2 radius in [0, 1] units, e.g. 0.5)."""

    name = "square_l2"
    norm: Norm = "l2"
