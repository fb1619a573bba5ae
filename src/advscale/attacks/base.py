"""The shared attack machinery: mode handling, ε handling, projection, the iterative loop.

Every attack takes images in [0, 1] of shape (N, C, H, W) and labels (N,), and returns
adversarial images in [0, 1] within the ε-ball of the input. Attacks put the model in eval mode
(or leave it as it is with ``mode="keep"``), restore its mode afterwards and never touch a
parameter's ``.grad``: gradients are taken with respect to the input only.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from advscale.utils import eval_mode

Norm = Literal["linf", "l2"]


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


def as_eps(eps: float | Tensor, n: int, like: Tensor) -> Tensor:
    """ε as a (N, 1, 1, 1) tensor on ``like``'s device and dtype; accepts a float or (N,)."""
    if isinstance(eps, Tensor):
        e = eps.detach().to(like.device, like.dtype).flatten()
        if e.numel() == 1:
            e = e.expand(n)
        if e.numel() != n:
            raise ValueError(f"per-example eps has {e.numel()} values for a batch of {n}")
    else:
        e = torch.full((n,), float(eps), device=like.device, dtype=like.dtype)
    if n and not bool((e >= 0).all()):  # also rejects NaN
        raise ValueError(f"eps must be >= 0, got min {float(e.min())}")
    return e.view(n, *([1] * (like.ndim - 1)))


def lp_norm(v: Tensor, norm: Norm) -> Tensor:
    """Per-example norm, shape (N, 1, 1, 1)."""
    flat = v.flatten(1)
    n = flat.abs().amax(1) if norm == "linf" else flat.norm(p=2, dim=1)
    return n.view(-1, *([1] * (v.ndim - 1)))


def project(delta: Tensor, x: Tensor, eps: Tensor | float, norm: Norm) -> Tensor:
    """Project a perturbation onto the ε-ball and so that ``x + delta`` stays in [0, 1].

    L∞: the ε-box and the [0, 1] box intersect in the box [max(−ε, −x), min(ε, 1 − x)], and
    clipping to it is the exact projection. Clipping ``delta`` itself (not ``x + delta``) keeps
    a perturbation already inside bit-for-bit unchanged. L2: scale into the ball, then clip to
    the [0, 1] box (which only shrinks the norm, so the result stays feasible).

    Args:
        delta: perturbation, same shape as ``x``.
        x: clean images in [0, 1].
        eps: radius, a float or a tensor broadcastable to ``x`` such as (N, 1, 1, 1).
        norm: "linf" or "l2".
    """
    if not isinstance(eps, Tensor):
        eps = torch.tensor(float(eps), device=x.device, dtype=x.dtype)
    if norm == "linf":
        return torch.clamp(delta, torch.maximum(-eps, -x), torch.minimum(eps, 1 - x))
    if norm == "l2":
        length = lp_norm(delta, "l2")
        scale = torch.where(length > eps, eps / length.clamp_min(1e-30), torch.ones_like(length))
        return torch.clamp(delta * scale, -x, 1 - x)
    raise ValueError(f"unknown norm {norm!r}; allowed: linf, l2")


def random_start(
    x: Tensor, eps: Tensor, norm: Norm, generator: torch.Generator | None = None
) -> Tensor:
    """A uniformly random perturbation in the ε-ball (L∞: per pixel; L2: uniform in the ball)."""
    if norm == "linf":
        u = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        delta = (2 * u - 1) * eps
    else:
        g = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        g = g / (lp_norm(g, "l2") + 1e-12)
        d = x[0].numel()
        r = torch.rand(
            (x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype, generator=generator
        )
        delta = g * eps * r.pow(1.0 / d)
    return project(delta, x, eps, norm)


def ascent_step(grad: Tensor, norm: Norm) -> Tensor:
    """Steepest-ascent direction of unit size: sign for L∞, normalized gradient for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / (lp_norm(grad, "l2") + 1e-12)


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
        raise ValueError(f"attack mode must be 'eval' or 'keep', got {mode!r}")
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
    """

    name = "attack"
    norm: Norm = "linf"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        norm: Norm | None = None,
        mode: str = "eval",
        early_stop: bool = True,
        seed: int | None = None,
    ) -> None:
        if mode not in ("eval", "keep"):
            raise ValueError(f"attack mode must be 'eval' or 'keep', got {mode!r}")
        self.model = model
        self.eps = eps
        if norm is not None:
            if norm not in ("linf", "l2"):
                raise ValueError(f"unknown norm {norm!r}; allowed: linf, l2")
            self.norm = norm
        self.mode = mode
        self.early_stop = early_stop
        self.seed = seed
        self._generator: torch.Generator | None = None

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
            raise ValueError(
                f"expected x (N, ...) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if target is not None and target.shape != y.shape:
            raise ValueError(f"target must have shape {tuple(y.shape)}, got {tuple(target.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"inputs must be floating point images in [0, 1], got dtype {x.dtype}")
        x = x.detach()
        if len(x) == 0:
            return AttackResult(x.clone(), torch.zeros(0, dtype=torch.bool, device=x.device))
        lo, hi = torch.aminmax(x)
        if float(lo) < 0 or float(hi) > 1:
            raise ValueError(
                f"inputs must be in [0, 1], got range [{float(lo):.3g}, {float(hi):.3g}]"
            )
        eps_t = as_eps(self.eps if eps is None else eps, len(x), x)
        y = y.to(x.device)
        target = None if target is None else target.to(x.device)
        with model_mode(self.model, self.mode), torch.enable_grad():
            return self._run(x, y, eps_t, target, early_stop=early_stop, final_check=final_check)

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
            otherwise the run with the highest final loss is kept per example.
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
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
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
