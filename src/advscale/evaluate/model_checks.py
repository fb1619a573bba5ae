"""What the model under evaluation is, probed before any attack: its output head and whether
two forward passes agree.

A model can inflate its own robust accuracy without any intent:

- **Probabilities or a saturating head** (softmax, sigmoid, tanh, a clamp). Cross-entropy on
  such outputs saturates: where the head is flat the input gradient rounds to zero and the
  attack walks blind (a sigmoid-headed small_cnn scored 4-8 points more robust than the same
  network as logits). The attacks see the logits the head hides where it can be inverted
  (:class:`HeadInverse`: log for softmax, logit for sigmoid, atanh for tanh; the verdict is the
  same, each is monotone) and follow losses that do not saturate: the logit margin
  max_{j≠y} z_j − z_y for the gradient attacks (Carlini & Wagner 2017) and DLR for APGD
  (Croce & Hein 2020). A head with no inverse (a clamp) gets the margin on its outputs.
- **Randomness** (dropout left on, random input noise: a randomized defence). One draw of the
  gradient is not the gradient of the model the user deploys; the records say the model is not
  deterministic, and :class:`Expectation` attacks the mean over ``n`` draws (EOT, Athalye et
  al. 2018) when asked.
- **Non-finite outputs on perturbed inputs** are counted by the evaluation as broken examples
  (a NaN prediction is not a correct one; see ``nonfinite`` in the records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from advscale.attacks import (
    APGD,
    APGDT,
    ATTACKS,
    GradientAttack,
    StrongCascade,
    margin_loss,
    model_mode,
)
from advscale.attacks.registry import canonical_kwargs, canonical_name
from advscale.evaluate.inputs import logits_of

Head = Literal["logits", "softmax", "sigmoid", "bounded", "saturated"]
SATURATING: tuple[Head, ...] = ("softmax", "sigmoid", "bounded", "saturated")
INVERTIBLE: tuple[Head, ...] = ("softmax", "sigmoid", "bounded")
# Share of rows or outputs that must show a head's signature before it is named.
HEAD_SHARE = 0.95
SATURATED_SHARE = 0.05
# Outputs in [-1, 1] count as a tanh-like head only when they use its range (an untrained
# small_cnn's logits all lie within ±0.15; a tanh over a trained one puts 24% beyond ±0.9).
NEAR_BOUND = 0.9
# Any other head that saturates (a clamp, 10·tanh) piles its outputs up at the ends of their
# range: over 5% within 1% of the range from an end. Logits of a trained small_cnn put 0.1%
# there, an untrained one's 2% (each class's output is nearly constant), 10·tanh of the
# trained one 6-50%.
EDGE_BAND = 0.01
# Two passes of a deterministic model agree to float rounding (GPU kernels may reorder sums).
SAME_OUTPUT_ATOL = 1e-4
SAME_OUTPUT_RTOL = 1e-3
PROBE_EXAMPLES = 256
PROBE_NOISE = 8 / 255  # probes also run on perturbed copies: a head must hold off the data too

_HEAD_TEXT = {
    "softmax": "probabilities (softmax: {share:.0%} of {rows} rows are non-negative and sum to 1)",
    "sigmoid": "probabilities (every output of {rows} rows lies in [0, 1], as after a sigmoid)",
    "bounded": (
        "saturated (every output of {rows} rows lies in [-1, 1] and {share:.0%} are beyond "
        "±0.9, as after a tanh)"
    ),
    "saturated": (
        "saturated ({share:.0%} of the outputs of {rows} rows sit within 1% of the ends of their "
        "range, as after a clamp or a scaled tanh)"
    ),
}


@dataclass(frozen=True)
class ModelProbe:
    """What :func:`probe_model` saw.

    Attributes:
        head: "logits", or the saturating head the outputs show ("softmax", "sigmoid",
            "bounded" for a tanh-like head in [-1, 1], "saturated" for any other: a clamp, a
            scaled tanh).
        share: how much of the probe showed the head's signature (0 for logits).
        rows: rows probed.
        deterministic: two forward passes on the same inputs gave the same outputs.
        max_change: the largest absolute difference between those two passes.
        nonfinite: rows of the perturbed copies (uniform noise of ``PROBE_NOISE``) whose
            outputs hold NaN or inf.
    """

    head: Head
    share: float
    rows: int
    deterministic: bool
    max_change: float
    nonfinite: int = 0

    @property
    def saturating(self) -> bool:
        """Whether the attacks must use losses that do not saturate (:func:`build_attack_for`)."""
        return self.head in SATURATING


def probe_model(model: nn.Module, x: Tensor, *, seed: int = 0) -> ModelProbe:
    """Probe ``model`` (in eval mode, no gradients) on clean images ``x`` and a copy of them
    with uniform noise of ``PROBE_NOISE``: its output head, and two passes compared."""
    x = x[:PROBE_EXAMPLES]
    gen = torch.Generator(device=x.device).manual_seed(seed)
    noise = (
        torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
    ) * PROBE_NOISE
    probe = torch.cat([x, (x + noise).clamp(0, 1)])
    with torch.no_grad(), model_mode(model, "eval"):
        first = logits_of(model, probe).detach().float()  # a clear error if it cannot run
        second = model(probe).detach().float()
    both = torch.isfinite(first) & torch.isfinite(second)
    change = float((first - second).abs()[both].max()) if bool(both.any()) else 0.0
    same = bool(torch.equal(both, torch.isfinite(first))) and torch.allclose(
        first[both], second[both], rtol=SAME_OUTPUT_RTOL, atol=SAME_OUTPUT_ATOL
    )
    head, share = _head(first[torch.isfinite(first).all(1)])
    nonfinite = int((~torch.isfinite(first[len(x) :]).all(1)).sum())
    return ModelProbe(head, share, len(probe), same, change, nonfinite)


def _head(out: Tensor) -> tuple[Head, float]:
    if out.ndim != 2 or out.shape[0] == 0 or out.shape[1] < 2:
        return "logits", 0.0
    lo, hi = float(out.min()), float(out.max())
    rows = ((out >= -1e-6).all(1) & ((out.sum(1) - 1).abs() < 1e-3)).float().mean()
    if float(rows) >= HEAD_SHARE:
        return "softmax", float(rows)
    if lo >= 0 and hi <= 1:
        return "sigmoid", 1.0
    if lo >= -1 and hi <= 1:
        share = float((out.abs() > NEAR_BOUND).float().mean())
        if share >= SATURATED_SHARE:
            return "bounded", share
    if hi > lo:
        band = EDGE_BAND * (hi - lo)
        share = float(((out >= hi - band) | (out <= lo + band)).float().mean())
        if share >= SATURATED_SHARE:
            return "saturated", share
    return "logits", 0.0


def probe_warnings(probe: ModelProbe, eot: int) -> list[dict[str, Any]]:
    """Every warning the probe gives: saturating head, randomness, NaN off the data."""
    out = head_warning(probe) + nondeterministic_warning(probe, eot)
    if probe.nonfinite:
        out.append(
            {
                "check": "nonfinite_outputs",
                "count": probe.nonfinite,
                "message": (
                    f"the model returns NaN or inf for {probe.nonfinite} of {probe.rows // 2} "
                    f"images perturbed by uniform noise of {PROBE_NOISE * 255:g}/255 (finite on the "
                    "clean ones): it breaks down next to the data, which no robust accuracy can "
                    "hide; adversarial examples on which it does so count as broken"
                ),
            }
        )
    return out


def head_warning(probe: ModelProbe) -> list[dict[str, Any]]:
    """The ``probabilities`` warning for a saturating head (empty for logits)."""
    if not probe.saturating:
        return []
    what = _HEAD_TEXT[probe.head].format(share=probe.share, rows=probe.rows)
    return [
        {
            "check": "probabilities",
            "head": probe.head,
            "share": probe.share,
            "message": (
                f"the model's outputs are {what}, not logits: cross-entropy on them saturates and "
                "hides the gradient, so the attacks here "
                + (
                    "saw the logits behind the head (its inverse) and "
                    if probe.head in INVERTIBLE
                    else ""
                )
                + "followed the margin max_{j≠y} z_j − z_y (APGD the DLR loss) instead; to compare "
                "with other models exactly, evaluate the model without its final "
                f"{'softmax' if probe.head == 'softmax' else 'activation'}"
            ),
        }
    ]


def nondeterministic_warning(probe: ModelProbe, eot: int) -> list[dict[str, Any]]:
    """The ``nondeterministic`` warning when two passes differ (empty otherwise)."""
    if probe.deterministic:
        return []
    how = (
        f"every attack followed the mean of {eot} draws of the model (EOT)"
        if eot > 1
        else "each attack followed one random draw of the gradient, which a randomized model "
        "can make useless: attack the expectation with eot=N (--eot N)"
    )
    return [
        {
            "check": "nondeterministic",
            "max_change": probe.max_change,
            "eot": eot,
            "message": (
                f"the model is not deterministic: two forward passes on the same {probe.rows} "
                f"inputs differ by up to {probe.max_change:.3g} (dropout left on, random input "
                f"noise or another randomized defence); {how}. Its clean and robust accuracy "
                "vary from run to run, and an example counts as broken when the attack fooled it "
                "or one draw at the returned example misclassifies it"
            ),
        }
    ]


class Expectation(nn.Module):
    """The mean of ``samples`` forward passes of a random ``model`` (Expectation over
    Transformation, Athalye et al. 2018): its input gradient is the mean of ``samples`` drawn
    gradients of the outputs, the direction an attack on a randomized model should follow.

    Example:
        >>> eot = Expectation(nn.Dropout(0.5), samples=100).train()
        >>> eot(torch.ones(1, 4)).shape
        torch.Size([1, 4])
    """

    def __init__(self, model: nn.Module, samples: int) -> None:
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.model, self.samples = model, samples

    def forward(self, x: Tensor) -> Tensor:
        total = self.model(x)
        for _ in range(self.samples - 1):
            total = total + self.model(x)
        return total / self.samples


class HeadInverse(nn.Module):
    """The logits behind a probability or tanh ``head`` of ``model``: log p (softmax, up to a
    constant per row), log p − log(1 − p) (sigmoid), atanh (tanh, "bounded"). Outputs that
    float rounding pinned to the end of the range are clamped just inside it, so they stay
    finite (their gradient is lost, as it already was).

    Example:
        >>> z = torch.tensor([[2.0, -1.0, 0.5]])
        >>> HeadInverse(nn.Sigmoid(), "sigmoid")(z)
        tensor([[ 2.0000, -1.0000,  0.5000]])
    """

    def __init__(self, model: nn.Module, head: Head) -> None:
        super().__init__()
        if head not in INVERTIBLE:
            raise ValueError(f"no inverse for head {head!r}; invertible: {', '.join(INVERTIBLE)}")
        self.model, self.head = model, head

    def forward(self, x: Tensor) -> Tensor:
        o = self.model(x)
        fi = torch.finfo(o.dtype)
        if self.head == "softmax":
            return o.clamp_min(fi.tiny).log()
        edge = 1 - fi.eps / 2  # the largest float below 1
        if self.head == "sigmoid":
            p = o.clamp(fi.tiny, edge)
            return p.log() - (-p).log1p()
        return o.clamp(-edge, edge).atanh()


def attacked_model(model: nn.Module, head: Head = "logits", eot: int = 1) -> nn.Module:
    """What the attacks see of ``model``: the mean of ``eot`` passes (:class:`Expectation`),
    through :class:`HeadInverse` for an invertible ``head``."""
    if eot > 1:
        model = Expectation(model, eot)
    return HeadInverse(model, head) if head in INVERTIBLE else model


class _MarginLoss:
    """The step follows max_{j≠label} o_j − o_label instead of cross-entropy. Ascending it moves
    away from the true label; descending it (targeted attacks) moves towards the target."""

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return -margin_loss(logits, labels)


_MARGIN_CLASSES: dict[type, type] = {}


def _margin_class(cls: type[GradientAttack]) -> type[GradientAttack]:
    if cls not in _MARGIN_CLASSES:
        _MARGIN_CLASSES[cls] = type(cls.__name__, (_MarginLoss, cls), {"__doc__": cls.__doc__})
    return _MARGIN_CLASSES[cls]


def saturation_free_kwargs(
    kwargs_for: dict[str, dict[str, Any]], head: Head
) -> dict[str, dict[str, Any]]:
    """``kwargs_for`` with APGD on the DLR loss for a saturating ``head`` (a loss the user set
    is kept)."""
    if head not in SATURATING:
        return kwargs_for
    out = {}
    for name, kw in kwargs_for.items():
        cls = ATTACKS.get(canonical_name(name))
        untargeted_apgd = cls is not None and issubclass(cls, APGD) and not issubclass(cls, APGDT)
        if untargeted_apgd:
            out[name] = {"loss": "dlr", **kw}
        elif cls is StrongCascade:  # its first stage is APGD on cross-entropy
            out[name] = {"ce_loss": "dlr", **kw}
        else:
            out[name] = dict(kw)
    return out


def build_attack_for(
    name: str,
    model: nn.Module,
    eps: float,
    kwargs: dict[str, Any],
    *,
    head: Head = "logits",
    eot: int = 1,
):
    """``build_attack(name, attacked_model(model, head, eot), eps, **kwargs)``; for a saturating
    ``head`` the gradient attacks (FGSM, the iterative ones, PGD) follow the margin loss
    instead of cross-entropy (APGD's loss: :func:`saturation_free_kwargs`).

    Raises:
        ValueError: an unknown attack or bad arguments (as ``build_attack``).
    """
    from advscale.attacks import build_attack

    model = attacked_model(model, head, eot)
    cls = ATTACKS.get(canonical_name(name))
    if head not in SATURATING or cls is None or not issubclass(cls, GradientAttack):
        return build_attack(name, model, eps, **kwargs)
    try:
        return _margin_class(cls)(model, eps, **canonical_kwargs(kwargs))
    except TypeError as e:
        raise ValueError(f"bad arguments for attack {name!r}: {e}") from None


__all__ = [
    "Expectation",
    "HeadInverse",
    "attacked_model",
    "ModelProbe",
    "build_attack_for",
    "head_warning",
    "nondeterministic_warning",
    "probe_warnings",
    "probe_model",
    "saturation_free_kwargs",
]
