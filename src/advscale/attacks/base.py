"""The shared attack machinery: input checks, mode handling, targets, the iterative loop.

Every attack takes images in [0, 1] of shape (N, C, H, W) and labels (N,), and returns
adversarial images in [0, 1] within the ε-ball of the input. Attacks put the model in eval mode
(or leave it as it is with ``mode="keep"``), restore its mode afterwards and never touch a
parameter's ``.grad``: gradients are taken with respect to the input only.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from advscale.attacks.arguments import renaming_init, unknown_arguments
from advscale.attacks.norms import (
    Norm,
    as_eps,
    ascent_step,
    canonical_norm,
    check_eps,
    check_positive,
    check_step,
    eps_range,
    lp_norm,
    project,
    random_start,
)
from advscale.errors import UserError
from advscale.utils import eval_mode

__all__ = [  # the geometry lives in norms.py; these names stay importable from here
    "Attack",
    "AttackResult",
    "GradientAttack",
    "Norm",
    "as_eps",
    "ascent_step",
    "canonical_norm",
    "ce_loss",
    "check_eps",
    "check_positive",
    "dlr_loss",
    "lp_norm",
    "model_mode",
    "project",
    "random_start",
]

TargetChoice = Literal["ll", "random"] | int


def _is_class_index(t: object) -> bool:
    return isinstance(t, int) and not isinstance(t, bool) and t >= 0


@dataclass
class AttackResult:
    """What an attack found for a batch.

    Attributes:
        x_adv: adversarial images (N, C, H, W) in [0, 1], within the ε-ball of the input.
            With early stopping an example that was fooled holds the first iterate that fooled
            it, otherwise the attack's final (or best) iterate.
        fooled: (N,) bool. With early stopping: True where some iterate (or restart) fooled the
            model. Without: True where ``x_adv`` fools it. "Fooled" means misclassified (the
            prediction differs from the true label), or, for a targeted attack, classified as
            the target. Iterate 0 of an attack without random start is the clean image and
            does not count, so robust accuracy is ``clean correct & ~fooled``.
        forward: images passed forward through the model (sum over passes).
        backward: images passed backward (input gradients).
    """

    x_adv: Tensor
    fooled: Tensor
    forward: int = 0
    backward: int = 0


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference-of-logits-ratio loss (Croce & Hein 2020), per example; larger = more adversarial.

    Untargeted: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3). Targeted: -(z_y - z_t) /
    (z_pi1 - (z_pi3 + z_pi4) / 2). Needs at least 3 (untargeted) or 4 (targeted) classes.
    """
    z_sorted, _ = logits.sort(dim=1, descending=True)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = logits.clone()
        other.scatter_(1, y[:, None], float("-inf"))
        return -(z_y - other.amax(1)) / (z_sorted[:, 0] - z_sorted[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, 0] - 0.5 * (z_sorted[:, 2] + z_sorted[:, 3]) + 1e-12)


def ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per-example cross-entropy."""
    return F.cross_entropy(logits, y, reduction="none")


@contextmanager
def model_mode(model: nn.Module, mode: str):
    """Put ``model`` in eval mode (``mode="eval"``) or leave it (``"keep"``); restore afterwards."""
    if mode not in ("eval", "keep"):
        raise UserError(f"attack mode must be 'eval' or 'keep', got {mode!r}")
    if mode == "keep":
        yield
        return
    with eval_mode(model):
        yield


class Attack:
    """Base class: input checks, ε handling and model-mode bookkeeping around ``_run``.

    Subclasses implement ``_run(x, y, eps, target, early_stop=..., final_check=...)``; calling
    the attack returns the adversarial images, ``run`` the full :class:`AttackResult`, and
    ``perturb`` only the final iterates (what adversarial training needs).

    Args:
        model: any classifier returning logits on [0, 1] inputs.
        eps: perturbation budget in [0, 1] units (8/255 for ε = 8), float or per-example (N,).
        norm: "linf" or "l2".
        mode: "eval" (default) puts the model in eval mode during the attack; "keep" leaves it
            as it is (batch norm in train mode during generation, for instance).
        early_stop: stop attacking an example once an iterate fools it and return that iterate;
            right for evaluation, off for adversarial training and transfer studies.
        seed: seed of the attack's own random generator (random starts, random targets).
        target: make the attack targeted by default: "ll" (the least-likely class of the clean
            image, one extra forward pass), "random" (a uniformly random class other than the
            true one) or a class index; a ``target`` tensor passed to a call wins.
    """

    name = "attack"
    norm: Norm = "linf"

    def __init_subclass__(cls) -> None:  # other libraries' argument names are accepted too
        if (init := cls.__dict__.get("__init__")) is not None:
            cls.__init__ = renaming_init(init, cls.__name__)  # type: ignore[method-assign]

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        norm: Norm | None = None,
        mode: str = "eval",
        early_stop: bool = True,
        seed: int | None = None,
        target: TargetChoice | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise unknown_arguments(type(self).__name__, unknown)
        if mode not in ("eval", "keep"):
            raise UserError(f"attack mode must be 'eval' or 'keep', got {mode!r}")
        self.model = model
        if norm is not None:
            self.norm = canonical_norm(norm)
        check_eps(*eps_range(eps), self.norm, who=type(self).__name__)
        self.eps = eps
        self.mode = mode
        self.early_stop = early_stop
        self.seed = seed
        if not (target is None or target in ("ll", "random") or _is_class_index(target)):
            raise UserError(f"target must be 'll', 'random' or a class index, got {target!r}")
        self.target = target
        self._generator: torch.Generator | None = None
        self._classes_of: tuple[nn.Module, int] | None = None

    def num_classes(self, x: Tensor) -> int:
        """Number of logits of the model, from one image's forward pass (once per model)."""
        if self._classes_of is not None and self._classes_of[0] is not self.model:
            self._classes_of = None
        if self._classes_of is None:
            # Eval mode: a one-image batch in train mode would break (and update) batch norm.
            with torch.no_grad(), eval_mode(self.model):
                k = self.model(x[:1]).shape[-1]
            self._classes_of = (self.model, int(k))
        return self._classes_of[1]

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The attack's own random generator on ``device`` (None without a seed: global RNG)."""
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def __call__(
        self, x: Tensor, y: Tensor, eps: float | Tensor | None = None, target: Tensor | None = None
    ) -> Tensor:
        return self.run(x, y, eps, target).x_adv

    def run(
        self, x: Tensor, y: Tensor, eps: float | Tensor | None = None, target: Tensor | None = None
    ) -> AttackResult:
        """Attack the batch ``(x, y)``; ``target`` (N,) makes the attack targeted at those classes.

        Args:
            x: images (N, C, H, W) in [0, 1].
            y: true labels (N,).
            eps: overrides the attack's ε for this call (float or per-example (N,)).
            target: target classes (N,); the attack then succeeds when it reaches the target.
        """
        return self._call(x, y, eps, target, early_stop=self.early_stop, final_check=True)

    def perturb(
        self, x: Tensor, y: Tensor, eps: float | Tensor | None = None, target: Tensor | None = None
    ) -> Tensor:
        """Adversarial images for every example without early stopping or success bookkeeping.

        Every example gets the attack's final iterate (the best restart with several), and no
        forward pass is spent on checking success: what adversarial training uses.
        """
        return self._call(x, y, eps, target, early_stop=False, final_check=False).x_adv

    def _call(
        self,
        x: Tensor,
        y: Tensor,
        eps: float | Tensor | None,
        target: Tensor | None,
        *,
        early_stop: bool,
        final_check: bool,
    ) -> AttackResult:
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise UserError(
                f"expected x (N, ...) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if target is not None and target.shape != y.shape:
            raise UserError(f"target must have shape {tuple(y.shape)}, got {tuple(target.shape)}")
        if not x.is_floating_point():
            raise UserError(
                f"inputs x must be floating point images in [0, 1], got dtype {x.dtype}"
            )
        if y.is_floating_point() or (target is not None and target.is_floating_point()):
            raise UserError("labels y (and target) must be integer class indices")
        x = x.detach()
        if len(x) == 0:
            return AttackResult(x.clone(), torch.zeros(0, dtype=torch.bool, device=x.device))
        eps_t = as_eps(self.eps if eps is None else eps, len(x), x, check=False)
        y = y.to(x.device, torch.long)  # int32 labels are class indices too
        target = None if target is None else target.to(x.device, torch.long)
        extra = 0
        if target is None and self.target is not None:
            target, extra = self._choose_targets(x, y), len(x) if self.target == "ll" else 0
        self._check_batch(x, y, eps_t, target, probe=final_check)
        with model_mode(self.model, self.mode), torch.enable_grad():
            r = self._run(x, y, eps_t, target, early_stop=early_stop, final_check=final_check)
        r.forward += extra
        return r

    def _choose_targets(self, x: Tensor, y: Tensor) -> Tensor:
        """Target classes from the ``target`` constructor argument (validated by the caller)."""
        if self.target == "ll":
            with torch.no_grad(), model_mode(self.model, self.mode):
                return self.model(x).argmin(1)
        if self.target == "random":
            k = self.num_classes(x)
            if k < 2:
                raise UserError(f"target='random' needs at least 2 classes, the model has {k}")
            offset = torch.randint(
                1, k, y.shape, device=y.device, generator=self.generator(y.device)
            )
            return (y + offset) % k
        return torch.full_like(y, int(self.target))  # type: ignore[arg-type]

    def _check_batch(
        self, x: Tensor, y: Tensor, eps: Tensor, target: Tensor | None, *, probe: bool = True
    ) -> None:
        """Refuse non-finite or out-of-range pixels, budgets and labels: one host sync per batch.

        ``probe=False`` (``perturb``: adversarial training, exactly one forward per step)
        checks labels against the number of logits only when it is already known.
        """
        parts = [torch.stack(torch.aminmax(x)), torch.stack(torch.aminmax(eps))]
        labels = y if target is None else torch.cat([y, target])
        parts.append(torch.stack(torch.aminmax(labels)).to(x.dtype))
        x_lo, x_hi, e_lo, e_hi, l_lo, l_hi = torch.cat(parts).tolist()
        if not (x_lo >= 0 and x_hi <= 1):  # NaN fails both comparisons
            raise UserError(
                f"inputs x must be finite and in [0, 1], got range [{x_lo:.3g}, {x_hi:.3g}]"
                " (normalization belongs inside the model)"
            )
        check_eps(e_lo, e_hi, self.norm, x[0].numel(), type(self).__name__)
        # The one-image probe for the number of classes runs in eval mode; a model attacked in
        # its training mode (mode="keep", adversarial training) is not probed: labels there
        # come from the training data, and the probe would be a forward pass in another mode.
        known = self._classes_of is not None and self._classes_of[0] is self.model
        probe = known or (probe and (self.mode == "eval" or not self.model.training))
        k = self.num_classes(x) if l_lo >= 0 and probe else (0 if l_lo < 0 else math.inf)
        if not (l_lo >= 0 and l_hi < k):
            what = "labels y" if target is None else "labels y and target"
            raise UserError(
                f"{what} must be class indices in [0, {k or 'number of logits'}), "
                f"got values in [{l_lo:g}, {l_hi:g}]"
            )

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
        """Attack a non-empty batch; ``eps`` is (N, 1, 1, 1). Runs with gradients enabled.

        ``final_check=False`` allows skipping the forward pass that only fills ``fooled``
        (the result's ``fooled`` is then unspecified).
        """
        raise NotImplementedError

    @staticmethod
    def success(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """(N,) bool: misclassified, or for a targeted attack, classified as the target."""
        pred = logits.argmax(1)
        return pred != y if target is None else pred == target

    def __repr__(self) -> str:
        e = self.eps if isinstance(self.eps, Tensor) else f"{float(self.eps) * 255:g}/255"
        return f"{type(self).__name__}(eps={e}, norm={self.norm})"


class GradientAttack(Attack):
    """The iterative gradient loop shared by one-step, iterative and PGD attacks.

    Each step: forward, record which examples are fooled (with early stopping), input gradient
    of the loss, ``delta += direction * alpha * ascent_step(grad)``, project onto the ε-ball
    and [0, 1]. Subclasses choose the labels the loss uses and the sign (``attack_labels``).

    Args:
        steps: gradient steps (1 for one-step attacks).
        alpha: step size in [0, 1] units, or None for ``alpha_scale * eps`` per example.
        alpha_scale: step as a multiple of ε when ``alpha`` is None.
        random_start: start uniformly in the ε-ball instead of at the clean image.
        restarts: independent runs; with early stopping only still-robust examples restart,
            otherwise the run with the highest final loss is kept per example
            (``n_restarts``, torchattacks' name, is accepted too).
    """

    #: Whether ``attack_labels`` needs the logits of the clean images (predicted or
    #: least-likely class, number of classes); without it, no clean forward pass is spent.
    uses_clean_logits = False

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        steps: int = 10,
        alpha: float | None = None,
        alpha_scale: float = 0.25,
        random_start: bool = False,
        restarts: int = 1,
        **kwargs,
    ) -> None:
        super().__init__(model, eps, **kwargs)
        check_positive("steps", steps, integer=True)
        check_positive("restarts", restarts, integer=True)
        if alpha is not None:
            check_step(alpha, self.norm, type(self).__name__)
        check_positive("alpha_scale", alpha_scale)
        self.steps, self.alpha, self.alpha_scale = steps, alpha, alpha_scale
        self.random_start, self.restarts = random_start, restarts

    # -- hooks ---------------------------------------------------------------------------
    def attack_labels(
        self, logits: Tensor | None, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, float]:
        """Labels for the loss and the direction: +1 ascends the loss (untargeted), -1 descends.

        ``logits`` are the clean images' logits, or None when ``uses_clean_logits`` is False.
        """
        if target is not None:
            return target, -1.0
        return y, 1.0

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-example loss the step ascends (``direction`` +1) or descends (-1)."""
        return ce_loss(logits, labels)

    def steps_for(self, eps: Tensor) -> int:
        """Number of steps for a batch with budgets ``eps`` (N, 1, 1, 1)."""
        return self.steps

    # -- the loop ------------------------------------------------------------------------
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
        model, norm, n = self.model, self.norm, len(x)
        gen = self.generator(x.device)
        steps = self.steps_for(eps)
        alpha = eps * self.alpha_scale if self.alpha is None else torch.full_like(eps, self.alpha)
        forward = backward = 0

        labels: Tensor | None = None
        direction = 1.0
        if not self.uses_clean_logits:
            labels, direction = self.attack_labels(None, y, target)
        elif self.random_start or self.restarts > 1:
            with torch.no_grad():
                labels, direction = self.attack_labels(model(x), y, target)
            forward += n
        # else: iterate 0 is the clean image, whose logits the first step computes anyway.

        x_out = x.clone()
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_loss = torch.full((n,), -math.inf, device=x.device)
        everyone = torch.arange(n, device=x.device)
        for _ in range(self.restarts):
            idx = (~fooled).nonzero().squeeze(1) if early_stop else everyone
            if len(idx) == 0:
                break
            xa, ya, ea, al = x[idx], y[idx], eps[idx], alpha[idx]
            la = None if labels is None else labels[idx]
            ta = None if target is None else target[idx]
            delta = random_start(xa, ea, norm, gen) if self.random_start else torch.zeros_like(xa)
            # With early stopping, one more forward after the last step checks the final iterate.
            for t in range(steps + 1 if early_stop else steps):
                if t < steps:
                    delta.requires_grad_(True)
                    logits = model(xa + delta)
                else:  # the final iterate is only checked: no graph needed
                    with torch.no_grad():
                        logits = model(xa + delta)
                forward += len(idx)
                if la is None:  # no random start: iterate 0 is the clean image, reuse its logits
                    la, direction = self.attack_labels(logits.detach(), ya, ta)
                    labels = la
                keep = None
                if early_stop and (t > 0 or self.random_start):
                    hit = self.success(logits.detach(), ya, ta)
                    n_hit = int(hit.sum())  # the one host sync per step: it sizes the compaction
                    if n_hit:
                        fooled[idx[hit]] = True
                        x_out[idx[hit]] = xa[hit] + delta.detach()[hit]
                        if n_hit == len(idx):
                            idx = idx[:0]
                            break
                        keep = ~hit
                if t == steps:
                    break
                loss = self.loss(logits, la) if keep is None else self.loss(logits[keep], la[keep])
                (grad,) = torch.autograd.grad(loss.sum(), delta)
                backward += len(idx)
                with torch.no_grad():
                    delta = delta.detach()
                    if keep is not None:
                        idx, xa, ya, ea, al, la = (
                            idx[keep],
                            xa[keep],
                            ya[keep],
                            ea[keep],
                            al[keep],
                            la[keep],
                        )
                        ta = None if ta is None else ta[keep]
                        delta, grad = delta[keep], grad[keep]
                    delta = project(delta + direction * al * ascent_step(grad, norm), xa, ea, norm)
            delta = delta.detach()
            if len(idx) == 0:
                continue
            if early_stop:
                survivors = ~fooled[idx]
                x_out[idx[survivors]] = (xa + delta)[survivors]
            elif self.restarts == 1:
                x_out = xa + delta
                if final_check:
                    with torch.no_grad():
                        fooled = self.success(model(x_out), y, target)
                    forward += n
            else:
                # Keep the restart with the highest final loss; its forward also says if it fools.
                with torch.no_grad():
                    logits = model(xa + delta)
                    final_loss = direction * self.loss(logits, la).float()
                forward += n
                better = final_loss > best_loss
                x_out[better] = (xa + delta)[better]
                fooled[better] = self.success(logits, y, target)[better]
                best_loss = torch.maximum(best_loss, final_loss)
        return AttackResult(x_out.detach(), fooled, forward, backward)
