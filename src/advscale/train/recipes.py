"""Training recipes: how a clean batch becomes the batch the optimizer step sees.

A recipe is called as ``recipe(model, x, y, step)`` and returns a :class:`RecipeBatch`
``(inputs, labels, weights)``; the loop minimizes ``Σ w_i·CE_i / Σ w_i``. Adversarial examples
are generated from the current model at every step.

=========  ==========================================================================
clean      the batch as it is
kurakin    paper A, Algorithm 1: k of every m examples replaced by one-step adversarial ones
           (step l.l. by default), ε per example from |N(0, σ)| truncated to [0, ε_max],
           loss [Σ_clean L + λ·Σ_adv L] / ((m−k) + λ·k)
fgsm       FGSM on the whole batch (Goodfellow et al. 2015)
rs_fgsm    random start in the ε-ball, one step of 1.25ε, clip to the ball (Wong et al. 2020)
n_fgsm     noise U(−2ε, 2ε), one step of ε, no clip to the ball, only to [0, 1] (de Jorge et al. 2022)
pgd        PGD-k with random start on the whole batch (Madry et al. 2018)
=========  ==========================================================================
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from advscale.attacks import (
    GradientAttack,
    ascent_step,
    build_attack,
    ce_loss,
    model_mode,
    project,
    random_start,
)
from advscale.errors import UserError
from advscale.evaluate.inputs import check_pixel_eps
from advscale.train.config import RECIPES, RecipeConfig, TrainConfig


class RecipeBatch(NamedTuple):
    """What one training step trains on: inputs in [0, 1], labels and per-example loss weights."""

    inputs: Tensor
    labels: Tensor
    weights: Tensor


class Recipe:
    """Base class: clean training. Subclasses override :meth:`make` (and ``adversarial``).

    Args:
        eps: budget in [0, 1] units (kurakin: ε_max).
        bn_mode: "eval" puts the model in eval mode while generating (batch norm uses running
            statistics); "train" leaves it in train mode.
        seed: seed of the recipe's own random generator (noise, ε sampling, random targets);
            each process of a distributed run passes a different one.
    """

    name = "clean"
    adversarial = False

    def __init__(self, eps: float = 0.0, *, bn_mode: str = "eval", seed: int = 0) -> None:
        check_pixel_eps(eps, "recipe eps", unit="1")
        if bn_mode not in ("eval", "train"):
            raise UserError(f"recipe.bn_mode must be eval or train, got {bn_mode!r}")
        self.eps = float(eps)
        self.bn_mode = bn_mode
        self.seed = seed
        self.step_scale = 1.0  # the guard's reduce_step action multiplies the step size
        self._generator: torch.Generator | None = None
        self._pending_state: Tensor | None = None
        self._attack_state: Tensor | None = None
        self._attack: GradientAttack | None = None
        self.last_eps: Tensor | None = None  # per-example ε of the last batch (0 = clean)

    # -- random state, saved with checkpoints --------------------------------------------------
    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
            if self._pending_state is not None:
                self._generator.set_state(self._pending_state)
                self._pending_state = None
        return self._generator

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step_scale": self.step_scale}
        if self._generator is not None:
            state["generator"] = self._generator.get_state()
        elif self._pending_state is not None:
            state["generator"] = self._pending_state
        if self._attack is not None and self._attack._generator is not None:
            state["attack_generator"] = self._attack._generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_scale = float(state.get("step_scale", 1.0))
        self._generator = None
        self._pending_state = state.get("generator")
        self._attack_state = state.get("attack_generator")

    def reduce_step(self, factor: float) -> None:
        """Scale the adversarial step size by ``factor`` (the overfitting guard's remedy)."""
        self.step_scale *= factor

    # -- the recipe ------------------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, step: int = 0) -> RecipeBatch:
        """Turn the clean batch ``(x, y)`` into the training batch at optimizer step ``step``."""
        return self.make(model, x, y, step)

    def make(self, model: nn.Module, x: Tensor, y: Tensor, step: int) -> RecipeBatch:
        self.last_eps = torch.zeros(len(x), device=x.device)
        return RecipeBatch(x, y, torch.ones(len(x), device=x.device))

    def _attack_for(
        self, name: str, model: nn.Module, device: torch.device, **kwargs: Any
    ) -> GradientAttack:
        """The attack object, built once (its generator state is part of the checkpoint)."""
        if self._attack is None:
            attack = build_attack(
                name, model, self.eps, mode=self._mode(), seed=self.seed + 1, **kwargs
            )
            assert isinstance(attack, GradientAttack)
            self._attack = attack
        pending = getattr(self, "_attack_state", None)
        if pending is not None:
            gen = self._attack.generator(device)
            assert gen is not None
            gen.set_state(pending)
            self._attack_state = None
        self._attack.model = model
        return self._attack

    def _mode(self) -> str:
        return "eval" if self.bn_mode == "eval" else "keep"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps * 255:g}/255)"


class Kurakin(Recipe):
    """Paper A's Algorithm 1: in every group of ``m`` examples the first ``k`` are replaced by
    one-step adversarial examples, weighted ``lam`` in the loss.

    Args:
        eps: ε_max; per-example ε ~ |N(0, sigma)| truncated to [0, ε_max] (``fixed_eps``: all ε_max).
        k, m: adversarial examples per group; m defaults to the batch, k to m // 2.
        lam: loss weight λ of adversarial examples (0.3 in the paper).
        sigma: default ε_max / 2 (paper: σ = 8, ε_max = 16).
        method: step_ll (default), step_rnd, fgsm or fgsm_pred.
        warmup_steps: optimizer steps of clean training first (paper: 10k).
    """

    name = "kurakin"
    adversarial = True

    def __init__(
        self,
        eps: float,
        *,
        k: int | None = None,
        m: int | None = None,
        lam: float = 0.3,
        sigma: float | None = None,
        method: str = "step_ll",
        fixed_eps: bool = False,
        warmup_steps: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(eps, **kwargs)
        if lam < 0:
            raise UserError(f"recipe.lam must be >= 0, got {lam}")
        if m is not None and m < 1:
            raise UserError(f"recipe.m must be >= 1, got {m}")
        if k is not None and (k < 0 or (m is not None and k > m)):
            raise UserError(f"recipe.k={k} must be in [0, m={m}]")
        if method not in ("step_ll", "step_rnd", "fgsm", "fgsm_pred"):
            raise UserError(
                f"recipe.method {method!r} unknown; allowed: step_ll, step_rnd, fgsm, fgsm_pred"
            )
        self.k, self.m, self.lam, self.method = k, m, float(lam), method
        self.sigma = self.eps / 2 if sigma is None else float(sigma)
        self.fixed_eps, self.warmup_steps = fixed_eps, warmup_steps

    def group(self, n: int) -> tuple[int, int]:
        """``(k, m)`` for a batch of ``n``; the batch must hold whole groups."""
        m = self.m or n
        k = m // 2 if self.k is None else self.k
        if k > m:
            raise UserError(f"recipe.k={k} is larger than recipe.m={m}; allowed: 0 <= k <= m")
        if n % m:
            raise UserError(
                f"recipe.m={m} does not divide the per-process batch of {n}; choose m among the "
                f"divisors of {n} (or leave it unset to use the whole batch)"
            )
        return k, m

    def sample_eps(self, n: int, device: torch.device) -> Tensor:
        """``n`` values of |N(0, σ)| truncated to [0, ε_max], by inverting the half-normal CDF."""
        if self.fixed_eps or self.eps == 0:
            return torch.full((n,), self.eps, device=device)
        gen = self.generator(device)
        top = math.erf(self.eps / (self.sigma * math.sqrt(2)))
        u = torch.rand(n, device=device, generator=gen, dtype=torch.float64) * top
        e = self.sigma * math.sqrt(2) * torch.special.erfinv(u)
        return e.clamp_(0, self.eps).float()

    def adversarial_mask(self, n: int, device: torch.device) -> Tensor:
        """(n,) bool: the first k of every group of m."""
        k, m = self.group(n)
        pos = torch.arange(n, device=device) % m
        return pos < k

    def make(self, model: nn.Module, x: Tensor, y: Tensor, step: int) -> RecipeBatch:
        n = len(x)
        mask = self.adversarial_mask(n, x.device)
        weights = torch.ones(n, device=x.device)
        eps = torch.zeros(n, device=x.device)
        if step < self.warmup_steps or not bool(mask.any()):
            self.last_eps = eps
            return RecipeBatch(x, y, weights)
        idx = mask.nonzero().squeeze(1)
        eps_adv = self.sample_eps(len(idx), x.device)
        attack = self._attack_for(self.method, model, x.device)
        attack.alpha_scale = self.step_scale
        x_adv = attack.perturb(x[idx], y[idx], eps_adv)
        inputs = x.clone()
        inputs[idx] = x_adv.to(x.dtype)
        weights[idx] = self.lam
        eps[idx] = eps_adv
        self.last_eps = eps
        return RecipeBatch(inputs, y, weights)

    def __repr__(self) -> str:
        return (
            f"Kurakin(method={self.method}, eps_max={self.eps * 255:g}/255, sigma={self.sigma * 255:g}/255, "
            f"k={self.k}, m={self.m}, lam={self.lam})"
        )


class WholeBatch(Recipe):
    """Base of recipes that replace the whole batch by adversarial examples (weights all 1)."""

    adversarial = True

    def make(self, model: nn.Module, x: Tensor, y: Tensor, step: int) -> RecipeBatch:
        self.last_eps = torch.full((len(x),), self.eps, device=x.device)
        return RecipeBatch(
            self.generate(model, x, y).to(x.dtype), y, torch.ones(len(x), device=x.device)
        )

    def generate(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError


class FGSMRecipe(WholeBatch):
    """FGSM training: x + ε·sign(∇J(x, y)) for every example."""

    name = "fgsm"

    def __init__(self, eps: float, *, alpha_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(eps, **kwargs)
        self.alpha_scale = alpha_scale

    def generate(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        attack = self._attack_for("fgsm", model, x.device)
        attack.alpha_scale = self.alpha_scale * self.step_scale
        return attack.perturb(x, y, self.eps)


def signed_gradient_step(
    model: nn.Module, x: Tensor, y: Tensor, delta: Tensor, alpha: float
) -> Tensor:
    """``delta + alpha·sign(∇_δ CE(model(x + δ), y))``: one FGSM step from ``delta`` (unprojected).

    Only the input gradient is taken, never a parameter's ``.grad``.
    """
    delta = delta.detach().requires_grad_(True)
    loss = ce_loss(model(x + delta), y).sum()
    (grad,) = torch.autograd.grad(loss, delta)
    return delta.detach() + alpha * ascent_step(grad, "linf")


class RSFGSM(WholeBatch):
    """RS-FGSM (Wong et al. 2020): δ ~ U(−ε, ε), one step of ``alpha_scale``·ε (1.25), clip to the ε-ball."""

    name = "rs_fgsm"

    def __init__(self, eps: float, *, alpha_scale: float = 1.25, **kwargs: Any) -> None:
        super().__init__(eps, **kwargs)
        self.alpha_scale = alpha_scale

    def generate(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        eps = torch.full((len(x), 1, 1, 1), self.eps, device=x.device, dtype=x.dtype)
        with model_mode(model, self._mode()), torch.enable_grad():
            delta = random_start(x, eps, "linf", self.generator(x.device))
            delta = signed_gradient_step(
                model, x, y, delta, self.alpha_scale * self.step_scale * self.eps
            )
        return (x + project(delta, x, eps, "linf")).detach()


class NFGSM(WholeBatch):
    """N-FGSM (de Jorge et al. 2022): η ~ U(−2ε, 2ε), one step of ε from x + η, and no projection
    back to the ε-ball, only to [0, 1]: the result may lie up to 3ε from x."""

    name = "n_fgsm"

    def __init__(
        self, eps: float, *, noise: float = 2.0, alpha_scale: float = 1.0, **kwargs: Any
    ) -> None:
        super().__init__(eps, **kwargs)
        self.noise, self.alpha_scale = noise, alpha_scale

    def generate(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        gen = self.generator(x.device)
        u = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=gen)
        # Keep x + η a valid image: the gradient is taken where the model will be evaluated.
        eta = (x + (2 * u - 1) * (self.noise * self.eps)).clamp(0, 1) - x
        with model_mode(model, self._mode()), torch.enable_grad():
            delta = signed_gradient_step(
                model, x, y, eta, self.alpha_scale * self.step_scale * self.eps
            )
        return (x + delta).clamp(0, 1).detach()


class PGDRecipe(WholeBatch):
    """PGD-k adversarial training (Madry et al. 2018): random start, ``steps`` steps of ``alpha``."""

    name = "pgd"

    def __init__(
        self, eps: float, *, steps: int = 7, alpha: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(eps, **kwargs)
        self.steps, self.alpha = steps, alpha

    def generate(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        attack = self._attack_for("pgd", model, x.device, steps=self.steps)
        if self.alpha is not None:
            attack.alpha = self.alpha * self.step_scale
        else:
            attack.alpha_scale = 2.5 / self.steps * self.step_scale
        return attack.perturb(x, y, self.eps)

    def __repr__(self) -> str:
        return f"PGDRecipe(eps={self.eps * 255:g}/255, steps={self.steps})"


def build_recipe(cfg: TrainConfig | RecipeConfig, *, seed: int | None = None) -> Recipe:
    """The recipe a config describes (``recipe:`` section, ε in pixel levels).

    Args:
        cfg: a whole TrainConfig or just its ``recipe`` section.
        seed: seed of the recipe's generator (default: the config's seed, or 0).

    Example:
        >>> recipe = build_recipe(RecipeConfig(name="rs_fgsm", eps=8))
        >>> recipe
        RSFGSM(eps=8/255)
    """
    r = cfg.recipe if isinstance(cfg, TrainConfig) else cfg
    if seed is None:
        seed = cfg.seed if isinstance(cfg, TrainConfig) else 0
    if r.name not in RECIPES:
        raise UserError(f"recipe.name {r.name!r} unknown; allowed: {', '.join(RECIPES)}")
    eps = r.eps / 255
    common: dict[str, Any] = {"bn_mode": r.bn_mode, "seed": seed}
    if r.name == "clean":
        return Recipe(eps, **common)
    if r.name == "kurakin":
        return Kurakin(
            eps,
            k=r.k,
            m=r.m,
            lam=r.lam,
            sigma=None if r.sigma is None else r.sigma / 255,
            method=r.method,
            fixed_eps=r.fixed_eps,
            warmup_steps=r.warmup_steps,
            **common,
        )
    if r.name == "fgsm":
        return FGSMRecipe(eps, alpha_scale=r.alpha_scale or 1.0, **common)
    if r.name == "rs_fgsm":
        return RSFGSM(eps, alpha_scale=r.alpha_scale or 1.25, **common)
    if r.name == "n_fgsm":
        return NFGSM(eps, noise=r.noise, alpha_scale=r.alpha_scale or 1.0, **common)
    return PGDRecipe(eps, steps=r.steps, alpha=None if r.alpha is None else r.alpha / 255, **common)
