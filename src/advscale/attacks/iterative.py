"""Iterative attacks of Kurakin et al. (paper A) and PGD (Madry et al. 2018)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from advscale.attacks.base import GradientAttack, check_positive


def kurakin_steps(eps: Tensor) -> int:
    """Paper A's iteration count min(ε + 4, 1.25·ε), ε in pixel levels; the largest in the batch."""
    e = round(float(eps.max()) * 255, 4)  # 8/255 in float32 is not exactly 8 levels
    return max(1, math.ceil(min(e + 4, 1.25 * e)))


class IterBasic(GradientAttack):
    """Iter. basic (BIM): X_{n+1} = Clip_{X,ε}(X_n + α·sign(∇J(X_n, y_true))), X_0 = X.

    Defaults follow paper A: α = 1/255 and min(ε+4, 1.25ε) iterations (ε in pixel levels);
    pass ``steps``/``alpha`` to override.
    """

    name = "iter_basic"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        steps: int | None = None,
        alpha: float | None = 1 / 255,
        **kwargs,
    ) -> None:
        super().__init__(
            model,
            eps,
            steps=1 if steps is None else steps,
            alpha=alpha,
            random_start=False,
            **kwargs,
        )
        self._auto_steps = steps is None

    def steps_for(self, eps: Tensor) -> int:
        return kurakin_steps(eps) if self._auto_steps else self.steps


class IterLL(IterBasic):
    """Iter. l.l.: X_{n+1} = Clip_{X,ε}(X_n − α·sign(∇J(X_n, y_LL))), y_LL least likely on clean X."""

    name = "iter_ll"
    uses_clean_logits = True

    def attack_labels(
        self, logits: Tensor | None, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, float]:
        return (target if target is not None else logits.argmin(1)), -1.0


class PGD(GradientAttack):
    """Projected gradient descent (Madry et al. 2018): random start in the ε-ball, ``steps`` steps.

    Args:
        steps: iterations (default 10).
        alpha: step size; default ``2.5 * eps / steps`` (Madry et al.'s rule of thumb).
        restarts: random restarts; an example counts as broken if any restart fooled it
            (``n_restarts`` is accepted too).
        norm: "linf" (default) or "l2" (also spelled "Linf", "L2", float("inf"), 2).
        target: "ll", "random" or a class index for a targeted attack (see :class:`Attack`).
    """

    name = "pgd"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        steps: int = 10,
        alpha: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        **kwargs,
    ) -> None:
        check_positive("steps", steps, integer=True)
        super().__init__(
            model,
            eps,
            steps=steps,
            alpha=alpha,
            alpha_scale=2.5 / steps,
            random_start=random_start,
            restarts=restarts,
            **kwargs,
        )


class PGDL2(PGD):
    """PGD in the L2 ball (ε is an L2 radius in [0, 1] pixel units)."""

    name = "pgd_l2"
    norm = "l2"


__all__ = ["IterBasic", "IterLL", "PGD", "PGDL2", "kurakin_steps"]
