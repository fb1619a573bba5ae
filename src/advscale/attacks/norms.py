"""ε-balls: budgets checked, norms named, perturbations measured, projected and stepped.

One place for the norm-specific geometry every attack shares (L∞ and L2 on [0, 1] images).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from advscale.errors import UserError

Norm = Literal["linf", "l2"]


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    """Refuse a count below 1 (``integer``) or a size that is not a positive finite number.

    The message names the constructor argument, e.g. ``steps must be >= 1, got 0``.
    """
    if integer:
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    elif not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a positive finite number, got {value!r}")


def check_eps(lo: float, hi: float, norm: Norm, numel: int | None = None, who: str = "") -> None:
    """Refuse budgets outside what an attack can mean, given their smallest and largest value.

    L∞ ε above 1 covers the whole [0, 1] range: almost always pixel levels passed where [0, 1]
    units are expected (``eps=8`` for 8/255), which would report ~0% robust accuracy.
    An L2 ε above √(pixels) contains the whole image box likewise.
    """
    at = f" given to {who}" if who else ""
    if not (lo >= 0 and math.isfinite(hi)):  # also refuses NaN
        raise UserError(f"eps{at} must be finite and >= 0, got values in [{lo:g}, {hi:g}]")
    if norm == "linf" and hi > 1:
        raise UserError(
            f"eps={hi:g}{at} is above 1: attacks take ε in [0, 1] units of the image. "
            f"Pixel levels? pass {hi:g}/255"
        )
    if norm == "l2" and numel is not None and hi > math.sqrt(numel):
        raise UserError(
            f"L2 eps={hi:g}{at} exceeds √{numel} = {math.sqrt(numel):.4g}, the diameter of the "
            "[0, 1] image box: attacks take ε in [0, 1] units (RobustBench's CIFAR-10 L2: 0.5)"
        )


def check_step(alpha: float, norm: Norm, who: str = "") -> None:
    """Refuse a step size that is not a positive finite number, or (L∞) one above 1: a step
    past the whole [0, 1] range is pixel levels passed where [0, 1] units are expected, as
    ε above 1 is (:func:`check_eps`)."""
    check_positive("alpha", alpha)
    if norm == "linf" and alpha > 1:
        at = f" given to {who}" if who else ""
        raise UserError(
            f"alpha={alpha:g}{at} is above 1: attacks take the step in [0, 1] units of the "
            f"image. Pixel levels? pass {alpha:g}/255"
        )


def canonical_norm(norm: str | float) -> Norm:
    """advscale's name of a norm spelled as torchattacks, Foolbox or ART users spell it.

    Example:
        >>> canonical_norm("Linf"), canonical_norm(float("inf")), canonical_norm(2)
        ('linf', 'linf', 'l2')
    """
    from advscale.attacks.registry import NORM_ALIASES  # the one alias table

    key = norm.lower() if isinstance(norm, str) else norm
    if isinstance(key, str | int | float) and key in NORM_ALIASES:
        return NORM_ALIASES[key]
    raise UserError(
        f"unknown norm {norm!r}; allowed: 'linf' (also 'Linf', 'inf', float('inf')), "
        "'l2' (also 'L2', 2)"
    )


def eps_range(eps: float | Tensor) -> tuple[float, float]:
    """Smallest and largest value of a budget (a float or a tensor)."""
    if isinstance(eps, Tensor):
        if eps.numel() == 0:
            return 0.0, 0.0
        lo, hi = torch.aminmax(eps.detach().float().flatten())
        return float(lo), float(hi)
    return float(eps), float(eps)


def as_eps(eps: float | Tensor, n: int, like: Tensor, *, check: bool = True) -> Tensor:
    """ε as a (N, 1, 1, 1) tensor on ``like``'s device and dtype; accepts a float or (N,).

    ``check=False`` skips the sign check (the caller checks the values itself).
    """
    if isinstance(eps, Tensor):
        e = eps.detach().to(like.device, like.dtype).flatten()
        if e.numel() == 1:
            e = e.expand(n)
        if e.numel() != n:
            raise UserError(f"per-example eps has {e.numel()} values for a batch of {n}")
    else:
        e = torch.full((n,), float(eps), device=like.device, dtype=like.dtype)
    if check and n and not bool((e >= 0).all()):  # also rejects NaN
        raise UserError(f"eps must be >= 0, got min {float(e.min())}")
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
    raise UserError(f"unknown norm {norm!r}; allowed: linf, l2")


def random_start(
    x: Tensor,
    eps: Tensor,
    norm: Norm,
    generator: torch.Generator | None = None,
    *,
    sphere: bool = False,
) -> Tensor:
    """A uniformly random perturbation in the ε-ball (L∞: per pixel; L2: uniform in the ball,
    or with ``sphere`` a random direction of length ε, as APGD starts), clipped to [0, 1]."""
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
        delta = g * eps if sphere else g * eps * r.pow(1.0 / d)
    return project(delta, x, eps, norm)


def ascent_step(grad: Tensor, norm: Norm) -> Tensor:
    """Steepest-ascent direction of unit size: sign for L∞, normalized gradient for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / (lp_norm(grad, "l2") + 1e-12)
