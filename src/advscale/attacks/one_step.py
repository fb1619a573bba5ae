"""One-step attacks of Kurakin et al. (paper A): FGSM, FGSM-pred, step l.l., step rnd, fast gradient L2."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advscale.attacks.base import Attack, AttackResult, GradientAttack, project


class OneStepAttack(GradientAttack):
    """One gradient step of size ε from the clean image (no random start)."""

    def __init__(self, model: nn.Module, eps: float | Tensor = 8 / 255, **kwargs) -> None:
        kwargs.setdefault("steps", 1)
        kwargs.setdefault("alpha_scale", 1.0)
        super().__init__(model, eps, **kwargs)


class FGSM(OneStepAttack):
    """X' = X + ε·sign(∇_X J(X, y_true)) (Goodfellow et al. 2015). Uses the true label, so it
    can leak it (paper A, label leaking)."""

    name = "fgsm"


class FGSMPred(OneStepAttack):
    """FGSM with the model's predicted label instead of the true one: no label to leak."""

    name = "fgsm_pred"
    uses_clean_logits = True

    def attack_labels(
        self, logits: Tensor | None, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, float]:
        if target is not None:
            return target, -1.0
        return logits.argmax(1), 1.0


class StepLL(OneStepAttack):
    """Step l.l.: X' = X − ε·sign(∇_X J(X, y_LL)), y_LL the least-likely class of the clean image."""

    name = "step_ll"
    uses_clean_logits = True

    def attack_labels(
        self, logits: Tensor | None, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, float]:
        return (target if target is not None else logits.argmin(1)), -1.0


class StepRnd(OneStepAttack):
    """Step rnd: as step l.l. with a uniformly random target class other than the true one."""

    name = "step_rnd"
    uses_clean_logits = True  # for the number of classes

    def attack_labels(
        self, logits: Tensor | None, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, float]:
        if target is not None:
            return target, -1.0
        k = logits.shape[1]
        offset = torch.randint(1, k, y.shape, device=y.device, generator=self.generator(y.device))
        return (y + offset) % k, -1.0


class FastGradientL2(OneStepAttack):
    """Fast gradient L2: X' = X + ε·∇J / ‖∇J‖₂ (ε is an L2 radius)."""

    name = "fgm_l2"
    norm = "l2"


class RandomSign(Attack):
    """Sign of Gaussian noise, X' = X + ε·sign(N(0, 1)): the baseline that is not an attack.

    Useful to tell adversarial fragility from plain noise sensitivity.
    """

    name = "random_sign"

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
        noise = torch.randn(
            x.shape, device=x.device, dtype=x.dtype, generator=self.generator(x.device)
        )
        x_adv = x + project(eps * noise.sign(), x, eps, self.norm)
        if not final_check:
            return AttackResult(x_adv, torch.zeros(len(x), dtype=torch.bool, device=x.device), 0, 0)
        with torch.no_grad():
            fooled = self.success(self.model(x_adv), y, target)
        return AttackResult(x_adv, fooled, len(x), 0)
