"""The reference AutoAttack (Croce & Hein 2020, package ``pyautoattack``) as an advscale attack.

``AutoAttack(model, eps=8/255).run(x, y)`` runs the original "standard" evaluation (APGD-CE,
APGD-T, FAB-T, Square 5000 queries) and returns an :class:`AttackResult` like every other
attack, with the images passed forward and backward counted through :class:`PassCounter`.
It needs the optional extra: ``pip install advscale[autoattack]``.

The reference takes its gradients with ``loss.backward()``, which would accumulate into every
parameter's ``.grad``; like every advscale attack, the wrapper leaves parameters and their
gradients as it found them (:func:`parameters_untouched`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from advscale.attacks.base import Attack, AttackResult
from advscale.errors import UserError

#: pyautoattack's spelling of advscale's norms.
_AA_NORM = {"linf": "Linf", "l2": "L2"}


class _Counts:
    """Images passed forward and backward; shared by every copy of the counter."""

    def __init__(self) -> None:
        self.forward = self.backward = 0

    def __deepcopy__(self, memo: dict) -> _Counts:
        return self  # evaluate() may deep-copy the model: the copies keep counting here


class _CountBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, counts: _Counts) -> Tensor:
        ctx.counts = counts
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        ctx.counts.backward += len(grad)
        return grad, None


class PassCounter(nn.Module):
    """``model`` counting the images passed forward and backward (input gradients) through it.

    Example:
        >>> import torch
        >>> counted = PassCounter(torch.nn.Flatten())
        >>> x = torch.rand(8, 1, 28, 28, requires_grad=True)
        >>> counted(x).sum().backward()
        >>> counted.forward_count, counted.backward_count
        (8, 8)
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.counts = _Counts()

    @property
    def forward_count(self) -> int:
        return self.counts.forward

    @property
    def backward_count(self) -> int:
        return self.counts.backward

    def forward(self, x: Tensor) -> Tensor:
        self.counts.forward += len(x)
        if torch.is_grad_enabled() and x.requires_grad:
            x = _CountBackward.apply(x, self.counts)
        return self.model(x)

    def reset(self) -> None:
        self.counts.forward = self.counts.backward = 0


@contextmanager
def parameters_untouched(model: nn.Module) -> Iterator[None]:
    """Run code that calls ``backward()`` through ``model`` without changing any parameter's
    ``.grad`` or ``requires_grad``: parameters are frozen for the duration (no weight gradient
    is computed at all) and their gradients are put back afterwards, even on an error.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> with parameters_untouched(net):
        ...     net(torch.ones(1, 2, requires_grad=True)).sum().backward()
        >>> net.weight.grad is None
        True
    """
    params = list(model.parameters())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, wanted, grad in saved:
            p.requires_grad_(wanted)
            p.grad = grad


def _import_autoattack():
    try:
        from pyautoattack import AutoAttack as Reference
    except ImportError:
        raise UserError(
            "the attack 'autoattack' needs the reference implementation: "
            "pip install advscale[autoattack]  (package pyautoattack==0.2.0)"
        ) from None
    return Reference


class AutoAttack(Attack):
    """The reference AutoAttack, "standard" version (or ``version="plus"``), untargeted.

    ε is one value for the batch ([0, 1] units; L2 as RobustBench, e.g. 0.5). Points the model
    misclassifies clean are returned unchanged and count as fooled, as in the reference.

    Args:
        version: pyautoattack's version, "standard" (APGD-CE, APGD-T, FAB-T, Square) or "plus".
        batch_size: images per batch inside the reference's cascade.
        seed: the reference's seed (0 unless given); the global random state is restored after.
    """

    name = "autoattack"

    def __init__(
        self,
        model: nn.Module,
        eps: float | Tensor = 8 / 255,
        *,
        version: str = "standard",
        batch_size: int = 500,
        **kwargs,
    ) -> None:
        super().__init__(model, eps, **kwargs)
        if version not in ("standard", "plus"):
            raise UserError(f"AutoAttack version must be 'standard' or 'plus', got {version!r}")
        if batch_size < 1:
            raise UserError(f"AutoAttack batch_size must be >= 1, got {batch_size}")
        self.version, self.batch_size = version, batch_size
        _import_autoattack()  # fail at construction, with the install line, not mid-evaluation

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
            raise UserError("the reference AutoAttack is untargeted: call it without target")
        e = eps.flatten()
        if bool((e != e[0]).any()):
            raise UserError("the reference AutoAttack takes one eps for the batch, not per example")
        counted = PassCounter(self.model)
        aa = _import_autoattack()(
            counted,
            norm=_AA_NORM[self.norm],
            eps=float(e[0]),
            version=self.version,
            seed=0 if self.seed is None else self.seed,
            device=x.device,
        )
        aa.logger.setLevel(logging.WARNING)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), parameters_untouched(self.model):
            x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=self.batch_size)
        fooled = y_adv.to(y.device) != y
        return AttackResult(x_adv.detach(), fooled, counted.forward_count, counted.backward_count)
