"""Robust accuracy of a model over attacks × ε, honest by construction.

- Examples the model gets wrong when clean are not attacked: they count as wrong.
- An example counts as broken when any iterate or restart of an attack fooled it, or when the
  adversarial example the attack returns is misclassified (a second forward pass checks it).
- The worst case over attacks is reported per example, as an extra record ``"worst_case"``.
- With ``cascade=True`` each attack runs only on the points still robust after the earlier ones
  (AutoAttack style): the same worst case for fewer passes.
- Gradient-masking checks (:mod:`advscale.evaluate.masking`) come back as warnings.

Example:
    >>> report = evaluate(model, test.take(1000), attacks=["fgsm", "pgd"], eps=[2, 4, 8])  # doctest: +SKIP
    >>> print(advscale.report.text.format_table(report.records))  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from advscale.attacks import ATTACKS, ONE_STEP, canonical_norm
from advscale.errors import UserError
from advscale.evaluate import masking, model_checks
from advscale.evaluate.distributed import Shard
from advscale.evaluate.examples import AdversarialExamples, broken_examples
from advscale.evaluate.inputs import (  # noqa: F401 - APGD_NAMES, DEFAULT_ATTACK_KWARGS: public here too
    APGD_NAMES,
    DEFAULT_ATTACK_KWARGS,
    Data,
    EpsUnit,
    as_tensors,
    attack_seed,
    check_attacks,
    classify,
    index_batches,
    merge_attack_kwargs,
    models_to_attack,
    to_device,
)
from advscale.evaluate.norms import EPS_UNITS, Norm, attack_eps, check_eps, eps_label, with_norm
from advscale.evaluate.runner import build, run_attack
from advscale.results import Results
from advscale.utils import environment_info, resolve_device

WORST_CASE = "worst_case"

# strong: AutoAttack's standard set as one cascade over the points still robust: APGD-CE,
# APGD-T (targeted DLR, from APGD-CE's best point), FAB-T in L2 only, then the score-based
# Square attack. autoattack: the reference implementation's standard version itself
# (pyautoattack, the ``autoattack`` extra), the number papers and RobustBench quote. An attack
# not registered in this installation is left out with a warning.
PRESETS: dict[str, tuple[str, ...]] = {
    # One attack (attacks.cascade.StrongCascade): as strong as the separate cascade at a quarter
    # of its passes on the step l.l. model (benchmarks/autoattack_compare.py measures it).
    "strong": ("strong",),
    "autoattack": ("autoattack",),
}


def preset_attacks(name: str) -> tuple[list[str], list[str]]:
    """Attacks of preset ``name`` available in this installation, and those missing.

    Example:
        >>> preset_attacks("strong")  # one attack: the whole cascade
        (['strong'], [])
    """
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    wanted = PRESETS[name]
    if not any(a in ATTACKS for a in wanted):
        raise UserError(
            f"preset {name!r} needs attack(s) {', '.join(wanted)}, not in this installation"
        )
    return [a for a in wanted if a in ATTACKS], [a for a in wanted if a not in ATTACKS]


@dataclass
class EvalReport:
    """What :func:`evaluate` measured.

    Attributes:
        records: one flat dict per (attack, ε) plus one ``"worst_case"`` record per ε, in the
            results schema (``norm``; ε in pixel levels for L∞, an L2 radius for L2;
            accuracies in [0, 1]).
        warnings: ``{"check", "message", ...}`` for every gradient-masking check that failed.
        clean_accuracy: top-1 accuracy on the clean examples.
        clean_top5: top-5 accuracy on the clean examples (None with 5 classes or fewer).
        clean_mask: (N,) bool, examples classified correctly when clean.
        robust_mask: (attack, ε as in the records) -> (N,) bool, examples still classified
            correctly; with a cascade, robust to this attack and all earlier ones.
        final_mask: for one-step attacks, (attack, ε) -> (N,) bool, examples whose returned
            adversarial example is classified correctly (every example is attacked).
        checks: names of the gradient-masking checks that ran.
        config: the settings the numbers came from.
        device: where it ran.
    """

    records: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    clean_accuracy: float
    clean_top5: float | None
    clean_mask: Tensor
    robust_mask: dict[tuple[str, float], Tensor]
    final_mask: dict[tuple[str, float], Tensor] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    examples: AdversarialExamples | None = None

    @property
    def n(self) -> int:
        return int(self.clean_mask.numel())

    def record(self, attack: str, eps: float) -> dict[str, Any]:
        """The record of ``attack`` at ``eps`` (as in the records)."""
        for r in self.records:
            if r["attack"] == attack and r["eps"] == float(eps):
                return r
        raise KeyError(f"no record for attack {attack!r} at eps {eps:g} ({self.norm})")

    @property
    def norm(self) -> str:
        """The norm ε is measured in: "linf" or "l2" (one per evaluation)."""
        return str(self.config.get("norm", "linf"))

    def worst_case(self) -> dict[float, float]:
        """Worst-case accuracy over the attacks, per ε (as in the records, in :attr:`norm`)."""
        return {r["eps"]: r["accuracy"] for r in self.records if r["attack"] == WORST_CASE}

    def to_results(self, config: dict[str, Any] | None = None) -> Results:
        """The report as a ``Results(kind="eval")``; ``config`` is merged over ``self.config``."""
        summary = {
            "n": self.n,
            "norm": self.norm,
            "clean_accuracy": self.clean_accuracy,
            "clean_top5": self.clean_top5,
            "worst_case": {f"{e:g}": a for e, a in self.worst_case().items()},
            "checks": list(self.checks),
            "warnings": list(self.warnings),
        }
        return Results(
            kind="eval",
            records=[dict(r) for r in self.records],
            config={**self.config, **(config or {})},
            summary=summary,
            environment=environment_info(self.device),
        )


def evaluate(
    model: nn.Module,
    data: Data,
    *,
    attacks: Sequence[str],
    eps: float | Sequence[float],
    batch_size: int = 500,
    cascade: bool = False,
    attack_kwargs: dict[str, dict[str, Any]] | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    n: int | None = None,
    checks: bool = True,
    check_unbounded: bool = False,
    fuse: bool = True,
    eps_unit: EpsUnit | None = None,
    keep_examples: int = 0,
    norm: Norm = "linf",
    shard: Shard | None = None,
    eot: int = 1,
) -> EvalReport:
    """Clean and robust accuracy of ``model`` under each attack at each ε, and the worst case.

    Args:
        model: classifier taking [0, 1] images (N, C, H, W) and returning logits.
        data: an ImageDataset, an ``(x, y)`` pair (x float in [0, 1] or uint8, NCHW; y integer
            class indices) or an iterable of such batches, e.g. a DataLoader
            (:func:`advscale.evaluate.inputs.as_tensors`).
        attacks: attack names from ``advscale.attacks.ATTACKS``, run in this order (other
            libraries' spellings, such as "BIM" or "APGDT", are read as advscale's).
        eps: L∞ budgets in pixel levels on the 0-255 scale (8 means 8/255); values all below
            one level (0.031) are refused as [0, 1] fractions unless ``eps_unit="1"`` says so.
            With ``norm="l2"``: L2 radii in [0, 1] units of the image (0.5, never /255).
        batch_size: examples per attack call.
        cascade: run each attack only on the points still robust after the earlier ones at the
            same ε; records then give the accuracy after the attacks so far.
        attack_kwargs: per-attack overrides, e.g. ``{"apgd": {"steps": 20}}``.
        device: where to run; None uses the device of the model's parameters.
        seed: seeds every attack's random generator, batch by batch: the same numbers for a
            fixed batch size, however many processes share the work.
        progress: show a tqdm progress bar on stderr (Square's queries move it too).
        n: evaluate a class-stratified subset of this size (ImageDataset) or the first n.
        checks: run the gradient-masking checks (:mod:`advscale.evaluate.masking`).
        check_unbounded: also run PGD at ε = 255/255 on a small batch (should reach ~0%).
        fuse: attack a frozen copy of the model with batch norm folded into the layer before
            it (:func:`advscale.models.fuse_for_eval`): the same function up to float
            rounding, checked on the data before use, and faster to attack. Off when an
            attack is asked to keep the model's mode (``"mode": "keep"``). The config's
            ``fused`` says whether a copy was used (a TorchScript model, or one with nothing
            to fold, is attacked as it is) and ``folded_batchnorm`` how many layers it folded.
        eps_unit: L∞ only: ``"1/255"`` (pixel levels, the default) or ``"1"`` (``eps`` are
            [0, 1] fractions); records always hold pixel levels.
        keep_examples: keep up to this many broken examples per attack × ε in the report's
            ``examples`` (:func:`advscale.evaluate.examples.broken_examples`); under a
            ``shard``, rank 0 alone keeps them.
        norm: ``"linf"`` or ``"l2"`` (or ``"Linf"``, ``"inf"``, ``2``...): the norm every
            attack measures ε in. Attacks registered
            for L∞ that have an L2 form (PGD, APGD-CE/T, Square, ...) run in L2.
        shard: this process's share of a data-parallel evaluation
            (:class:`advscale.evaluate.distributed.Shard`); every process gets the same report.
        eot: attack the mean of this many forward passes of the model (Expectation over
            Transformation, for a model that is not deterministic); passes count ``eot`` times.

    The model is probed first (:mod:`advscale.evaluate.model_checks`): probabilities or another
    saturating head are attacked through the margin and DLR losses, which do not saturate
    (warning ``probabilities``), and a model whose two forward passes differ is named (warning
    ``nondeterministic``; records hold ``deterministic`` and ``eot``). An example at which the
    model's outputs are NaN or inf counts as broken (records' ``nonfinite``).

    Returns:
        An :class:`EvalReport`. Records hold ``attack``, ``norm``, ``eps``, ``eps_unit``,
        ``accuracy``, ``clean_accuracy``, ``clean_top5``, ``ratio`` (adversarial / clean),
        ``seconds`` (attack time), ``forward``/``backward`` (images passed through the model by
        the attack), ``n``, ``attacked``, ``nonfinite``, ``deterministic``, ``eot``, ``target``
        for a targeted attack and, for one-step attacks, ``accuracy_final``: plain accuracy on
        the returned adversarial examples of all examples, clean-misclassified ones included,
        which exceeds ``clean_accuracy`` when the attack leaks the label. One-step attacks are cheap and run on every example for that
        reason, cascade or not. No attack aims at top-5, so records carry no attacked top-5.

    Raises:
        UserError: unknown attack, bad ε or attack arguments, empty data, NaN pixels, labels
            the model cannot output, non-finite logits on the clean data.
    """
    attacks = check_attacks(attacks)
    norm = canonical_norm(norm)
    eps_values = check_eps(eps, "eps", norm=norm, unit=eps_unit)
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise UserError(f"eot must be a whole number of samples >= 1, got {eot!r}")
    # Broken when any iterate fooled it: the attacks record that only with early stopping.
    reserved = ("eps", "seed", "early_stop")
    kwargs_for = with_norm(merge_attack_kwargs(attacks, attack_kwargs, reserved=reserved), norm)
    for name in attacks:  # every attack builds before any runs: a missing extra is said first
        build(name, nn.Identity(), attack_eps(max(eps_values), norm), kwargs_for[name])
    shard = shard or Shard()
    images, labels = as_tensors(data, n)
    dev = _pick_device(model, device)
    model.to(dev)

    xb, yb = to_device(images[:256], labels[:256], dev)
    probe = model_checks.probe_model(model, xb, seed=seed)  # every process: it picks the losses
    kwargs_for = model_checks.saturation_free_kwargs(kwargs_for, probe.head)
    # A random model cannot pass the check that a fused copy computes the same function.
    (used,) = models_to_attack([model], images, kwargs_for, dev, fuse=fuse and probe.deterministic)
    fused = used is not model  # fuse_for_eval returns TorchScript models, say, unchanged
    model = used
    clean = classify(model, images, labels, batch_size, dev)
    clean_correct, num_classes = clean.correct, clean.num_classes
    n_total = len(labels)
    clean_acc = _mean(clean_correct)
    clean_t5 = _mean(clean.top5) if clean.top5 is not None else None

    warnings = model_checks.probe_warnings(probe, eot)
    ran: list[str] = ["probabilities", "nondeterministic"]
    if checks:
        ran += ["zero_gradients"] + (["unbounded"] if check_unbounded else [])
        if shard.is_main:  # cheap: one process runs them for all
            warnings += masking.check_outputs(model, xb, yb, head=probe.head)
            if check_unbounded:
                keep = clean_correct.nonzero().squeeze(1)[:100]
                xk, yk = to_device(images[keep], labels[keep], dev)
                warnings += masking.check_unbounded(model, xk, yk, seed=seed, head=probe.head)

    records: list[dict[str, Any]] = []
    robust_mask: dict[tuple[str, float], Tensor] = {}
    final_mask: dict[tuple[str, float], Tensor] = {}
    base = {
        "norm": norm,
        "eps_unit": EPS_UNITS[norm],
        "clean_accuracy": clean_acc,
        "clean_top5": clean_t5,
        "n": n_total,
        "deterministic": probe.deterministic,
        "eot": eot,
    }
    bar = tqdm(
        total=len(eps_values) * len(attacks) * n_total,
        unit="img",
        file=sys.stderr,
        disable=not (progress and shard.is_main),
        dynamic_ncols=True,
    )
    try:
        for e in eps_values:
            still = clean_correct.clone()  # robust to every attack so far at this ε
            totals = [0.0, 0, 0, 0]
            for name in attacks:
                bar.set_description(f"{name} ε={eps_label(e, norm)}")
                one_step = name in ONE_STEP
                active = still.clone() if cascade else clean_correct.clone()
                run = run_attack(
                    model,
                    name,
                    attack_eps(e, norm),
                    eps_label(e, norm),
                    kwargs_for[name],
                    images,
                    labels,
                    # One-step attacks run on every example: accuracy_final needs them all.
                    torch.ones_like(active) if one_step else active,
                    batch_size,
                    dev,
                    attack_seed(seed, name, e),
                    bar,
                    shard,
                    head=probe.head,
                    eot=eot,
                )
                robust = active & run.correct
                still &= robust
                rec: dict[str, Any] = {"attack": name, "eps": e, **base, "accuracy": _mean(robust)}
                rec["ratio"] = _ratio(rec["accuracy"], clean_acc)
                rec.update(
                    seconds=run.seconds,
                    forward=run.forward,
                    backward=run.backward,
                    attacked=int(run.attacked.sum()),
                    nonfinite=run.nonfinite,
                    cascade=cascade,
                )
                if kwargs_for[name].get("target") is not None:
                    rec["target"] = kwargs_for[name]["target"]
                if one_step:
                    rec["accuracy_final"] = _mean(run.correct)
                    final_mask[(name, e)] = run.correct
                records.append(rec)
                robust_mask[(name, e)] = still.clone() if cascade else robust
                totals[0] += run.seconds
                totals[1] += run.forward
                totals[2] += run.backward
                totals[3] += run.nonfinite
            wc = {"attack": WORST_CASE, "eps": e, **base, "accuracy": _mean(still)}
            wc.update(
                ratio=_ratio(wc["accuracy"], clean_acc),
                seconds=totals[0],
                forward=totals[1],
                backward=totals[2],
                nonfinite=totals[3],
                attacks="+".join(attacks),
                cascade=cascade,
            )
            records.append(wc)
            robust_mask[(WORST_CASE, e)] = still
    except BaseException:
        bar.leave = False  # cleared: the error, not a half-filled bar, is what the screen shows
        raise
    finally:
        bar.close()

    if checks:
        warnings += masking.check_records(
            records, robust_mask, clean_correct, attacks=attacks, cascade=cascade
        )
        ran += masking.applicable_record_checks(attacks, cascade)
    warnings += masking.check_nonfinite(records)

    config = {
        "attacks": list(attacks),
        "norm": norm,
        "eps": eps_values,
        "eps_unit": EPS_UNITS[norm],
        "n": n_total,
        "num_classes": num_classes,
        "batch_size": batch_size,
        "cascade": cascade,
        "seed": seed,
        "processes": shard.world_size,
        "fused": fused,
        "folded_batchnorm": int(getattr(model, "folded", 0)) if fused else 0,
        "attack_kwargs": {a: dict(kwargs_for[a]) for a in attacks},
        "output_head": probe.head,
        "deterministic": probe.deterministic,
        "eot": eot,
    }
    examples = None
    if keep_examples > 0 and shard.is_main:
        examples = broken_examples(
            model, images, labels, clean_correct, robust_mask, kwargs_for, keep_examples,
            cascade=cascade, device=dev, seed=seed, norm=norm, head=probe.head,
        )  # fmt: skip
    return EvalReport(
        records=records,
        warnings=warnings,
        clean_accuracy=clean_acc,
        clean_top5=clean_t5,
        clean_mask=clean_correct,
        robust_mask=robust_mask,
        final_mask=final_mask,
        checks=ran,
        config=config,
        device=str(dev),
        examples=examples,
    )


# -- input handling ----------------------------------------------------------------------------
def _pick_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return resolve_device(device)
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _mean(mask: Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else 0.0


def _ratio(adv: float, clean: float) -> float | None:
    return adv / clean if clean > 0 else None
