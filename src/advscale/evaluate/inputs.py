"""What evaluation takes in, checked once at the door.

Everything that evaluates a model (``evaluate``, ``transfer_matrix``, ``label_leak``, sweeps,
the end of a training run) and every config that names an evaluation reads its inputs here:

- ε in pixel levels of the [0, 1] input (8 means 8/255): :func:`check_pixel_eps`, and the
  pydantic field types :data:`PixelEps` and :data:`PixelEpsList` built on it;
- attack names (:func:`check_attacks`) and their arguments (:func:`merge_attack_kwargs`);
- the seed of each attack run (:func:`attack_seed`);
- the data as an ``(images, labels)`` pair of tensors (:func:`as_tensors`);
- the clean pass, top-1/top-5 verdicts per example (:func:`classify`).

Example:
    >>> check_pixel_eps([2, 4, 8])
    [2.0, 4.0, 8.0]
    >>> check_pixel_eps([0.031], "recipe.eps")
    Traceback (most recent call last):
    ...
    advscale.errors.UserError: recipe.eps: eps [0.031] look like [0, 1] units; ε is in pixel levels of the 0-255 scale (pass 8 for 8/255)
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, BeforeValidator
from torch import Tensor, nn

from advscale.attacks import ATTACKS, build_attack, model_mode
from advscale.attacks.registry import canonical_kwargs, canonical_name
from advscale.data import ImageDataset, to_float
from advscale.errors import UserError
from advscale.models.fuse import fuse_for_eval

EpsUnit = Literal["1/255", "1"]
APGD_NAMES = ("apgd", "apgd_ce", "apgd_dlr", "apgd_t")

# Settings used unless ``attack_kwargs`` says otherwise. The one-step and iterative attacks of
# paper A keep their own defaults (α = 1/255, min(ε+4, 1.25ε) iterations); PGD is the usual
# 10 steps of 2.5ε/steps with one random start; APGD runs AutoAttack's 100 iterations.
DEFAULT_ATTACK_KWARGS: dict[str, dict[str, Any]] = {
    "pgd": {"steps": 10, "restarts": 1},
    "pgd_l2": {"steps": 10, "restarts": 1},
    **{name: {"steps": 100} for name in APGD_NAMES},
}

#: Images a batch-norm-folded copy is checked on before it is attacked.
FUSE_EXAMPLES = 64

Data = ImageDataset | tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]]


# -- ε -----------------------------------------------------------------------------------------
def check_pixel_eps(
    values: float | Sequence[float],
    source: str | None = "eps",
    *,
    unit: EpsUnit = "1/255",
    positive: bool = False,
) -> list[float]:
    """ε budgets as pixel levels of the 0-255 scale, checked; repeats dropped, order kept.

    Args:
        values: one budget or several.
        source: the argument or config key the values came from, named in the error.
        unit: ``"1/255"`` (pixel levels, 8 means 8/255) or ``"1"`` ([0, 1] fractions, which
            are converted: 0.5 -> 127.5). With pixel levels, values that are all below one
            level (e.g. 0.031) are refused as fractions passed by mistake.
        positive: refuse 0 (a budget that must attack).

    Raises:
        UserError: no value, a value outside the range (or not finite), fractions as levels.
    """
    given = eps_floats(values, source)
    if unit not in ("1/255", "1"):
        raise UserError(where_prefix(source) + f"unknown eps unit {unit!r}; allowed: 1/255, 1")
    top = 255.0 if unit == "1/255" else 1.0
    unit_text = "pixel levels in [0, 255] (8 means 8/255)" if unit == "1/255" else "in [0, 1]"
    if not given:
        raise UserError(where_prefix(source) + "no eps given (pixel levels, e.g. 2,4,8,16)")
    bad = [e for e in given if not ((e > 0 if positive else e >= 0) and e <= top)]
    if bad:
        if positive:
            unit_text = unit_text.replace("[0", "(0")
        raise UserError(where_prefix(source) + f"eps must be {unit_text}, got {show_values(bad)}")
    if unit == "1":
        return list(dict.fromkeys(e * 255 for e in given))
    # A budget below one level cannot be stored in an 8-bit image; all of them below one level
    # almost surely means [0, 1] fractions were passed where pixel levels are expected.
    nonzero = [e for e in given if e > 0]
    if nonzero and max(nonzero) < 1:
        raise UserError(
            where_prefix(source)
            + f"eps {show_values(given)} look like [0, 1] units; ε is in pixel levels "
            "of the 0-255 scale (pass 8 for 8/255)"
        )
    return list(dict.fromkeys(given))


def eps_floats(values: float | Sequence[float], source: str | None) -> list[float]:
    """``values`` (one number or several) as floats; a UserError naming ``source`` otherwise."""
    if isinstance(values, (int, float)):
        values = [values]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise UserError(where_prefix(source) + f"eps must be numbers, got {values!r}") from None


def where_prefix(source: str | None) -> str:
    """``"source: "`` to start an error message with what the user must fix ("" without one)."""
    return f"{source}: " if source else ""


def show_values(values: list[float]) -> str:
    """ε values as an error message shows them: ``[2, 4, 8]``."""
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _one_eps(value: float) -> float:
    return check_pixel_eps([value], None)[0]


def _eps_list(values: list[float]) -> list[float]:
    return check_pixel_eps(values, None)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value


#: A config field holding one ε in pixel levels (checked by :func:`check_pixel_eps`).
PixelEps = Annotated[float, AfterValidator(_one_eps)]
#: A config field holding ε budgets in pixel levels; one number is read as a list of one.
PixelEpsList = Annotated[list[float], BeforeValidator(_listed), AfterValidator(_eps_list)]


# -- attacks -----------------------------------------------------------------------------------
def check_attacks(attacks: str | Sequence[str], source: str | None = "attacks") -> list[str]:
    """Attack names as a list of registered names (``advscale.attacks.ATTACKS``), each listed
    once; other libraries' spellings ("BIM", "APGDT") read as advscale's."""
    given = [attacks] if isinstance(attacks, str) else list(attacks)
    names = [canonical_name(a) if isinstance(a, str) else a for a in given]
    allowed = ", ".join(sorted(ATTACKS))
    if not names:
        raise UserError(where_prefix(source) + f"no attacks given; allowed: {allowed}")
    unknown = [g for g, a in zip(given, names, strict=True) if a not in ATTACKS]
    if unknown:
        raise UserError(
            where_prefix(source)
            + f"unknown attack(s) {', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise UserError(where_prefix(source) + f"attack(s) listed twice: {', '.join(dup)}")
    return names


def merge_attack_kwargs(
    attacks: Sequence[str],
    overrides: Mapping[str, Mapping[str, Any]] | None,
    *,
    reserved: Sequence[str] = ("eps", "seed"),
    source: str | None = "attack_kwargs",
) -> dict[str, dict[str, Any]]:
    """Each attack's arguments: :data:`DEFAULT_ATTACK_KWARGS` under the per-attack ``overrides``.

    Every override is checked now, before any model runs: the attack must be registered (it
    may be one not in ``attacks``: its arguments are checked and not used), the arguments must
    be a mapping without the ``reserved`` keys the caller sets itself, and the attack must
    accept them (names and values, e.g. ``steps >= 1``).

    Raises:
        UserError: naming ``source[attack]`` and what is wrong.
    """
    overrides = canonical_attack_kwargs(overrides or {}, source)
    unknown = [k for k in overrides if k not in ATTACKS]
    if unknown:
        raise UserError(
            f"{source or 'attack arguments'} for unknown attack(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(ATTACKS))}"
        )
    for name, kw in overrides.items():
        where = f"{source}[{name!r}]" if source else repr(name)
        if not isinstance(kw, Mapping):
            raise UserError(f"{where} must be a mapping of arguments, got {type(kw).__name__}")
        taken = [k for k in reserved if k in kw]
        if taken:
            raise UserError(
                f"{where}: {', '.join(taken)} cannot be set here; the evaluation sets "
                "them (pass eps and seed to it)"
            )
        try:
            # A placeholder model: building an attack only checks its arguments.
            build_attack(
                name, nn.Identity(), 8 / 255, **{**DEFAULT_ATTACK_KWARGS.get(name, {}), **kw}
            )
        except Exception as e:  # noqa: BLE001 - whatever the constructor objects to is the user's to fix
            detail = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            raise UserError(f"{where}: {detail}") from None
    return {a: {**DEFAULT_ATTACK_KWARGS.get(a, {}), **overrides.get(a, {})} for a in attacks}


def canonical_attack_kwargs(
    overrides: Mapping[str, Any], source: str | None
) -> dict[str, Mapping[str, Any] | Any]:
    """Overrides keyed by registered attack names, with advscale's argument names (an alias
    and its attack's own name given both merge)."""
    out: dict[str, Any] = {}
    for given, kw in overrides.items():
        name = canonical_name(given) if isinstance(given, str) else given
        if not isinstance(kw, Mapping) or not isinstance(out.get(name, {}), Mapping):
            out[name] = kw  # refused below, naming it
            continue
        where = f"{source}[{given!r}]: " if source else f"{given!r}: "
        out[name] = canonical_kwargs({**out.get(name, {}), **kw}, where)
    return out


def _attack_names(names: list[str]) -> list[str]:
    return check_attacks(names, None)


def _usable_kwargs(kwargs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merge_attack_kwargs([], kwargs, source=None)
    return canonical_attack_kwargs(kwargs, None)


#: A config field holding attack names (checked by :func:`check_attacks`).
AttackNames = Annotated[list[str], AfterValidator(_attack_names)]
#: A config field holding per-attack arguments (checked by :func:`merge_attack_kwargs`).
AttackKwargs = Annotated[dict[str, dict[str, Any]], AfterValidator(_usable_kwargs)]


def attack_seed(seed: int, attack: str, eps_level: float, scope: str | None = None) -> int:
    """A distinct, stable seed per (``scope``, attack, ε): random starts of different attacks
    (and, with ``scope`` naming the source model, of different models) differ."""
    key = f"{attack}@{eps_level:g}" if scope is None else f"{scope}/{attack}@{eps_level:g}"
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31


# -- data --------------------------------------------------------------------------------------
def as_tensors(data: Data, n: int | None = None) -> tuple[Tensor, Tensor]:
    """``data`` as images ``(N, C, H, W)`` (float in [0, 1], or uint8) and int64 labels ``(N,)``.

    Args:
        data: an ImageDataset (a class-stratified subset of ``n`` is taken, always the same
            one), an ``(images, labels)`` pair of tensors, or any iterable of such batches
            (a DataLoader); of the latter two the first ``n`` examples are taken.
        n: how many examples; None takes all.

    Raises:
        UserError: an unknown form, bad shapes, float pixels outside [0, 1] or NaN, labels
            that are not integers or negative, no examples.
    """
    if n is not None and n <= 0:
        raise UserError(f"n must be a positive number of examples, got {n}")
    if isinstance(data, ImageDataset):
        # A fixed subset seed: the same examples whatever the attack seed, so runs compare.
        data = data.take(n, seed=0)
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        images, labels = _pair(data, "data")
        if n is not None:
            images, labels = images[:n], labels[:n]
    elif isinstance(data, Iterable) and not isinstance(data, (Tensor, str, bytes, Mapping)):
        images, labels = _from_batches(data, n)
    else:
        raise UserError(
            "data must be an ImageDataset, an (images, labels) pair of tensors or an iterable of "
            f"such batches (a DataLoader), got {type(data).__name__}"
        )
    if len(labels) == 0:
        raise UserError(f"no examples to evaluate: the data is empty or n={n!r} selects none")
    _check_values(images, labels)
    return images, labels.long()  # int32 labels index like int64 ones


def _pair(batch: Any, what: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise UserError(f"{what} must be an (images, labels) pair, got {type(batch).__name__}")
    images, labels = batch
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise UserError(
            f"{what} must be an (images, labels) pair of tensors, got "
            f"({type(images).__name__}, {type(labels).__name__})"
        )
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(
            f"{what} must be images (N, C, H, W) and labels (N,), got {tuple(images.shape)} "
            f"and {tuple(labels.shape)}"
        )
    return images, labels


def _from_batches(batches: Iterable[Any], n: int | None) -> tuple[Tensor, Tensor]:
    xs, ys, have = [], [], 0
    for i, batch in enumerate(batches):
        x, y = _pair(batch, f"data batch {i}")
        if xs and (x.shape[1:] != xs[0].shape[1:] or x.dtype != xs[0].dtype):
            raise UserError(
                f"data batch {i} holds {x.dtype} images of shape {tuple(x.shape[1:])}, batch 0 "
                f"{xs[0].dtype} of shape {tuple(xs[0].shape[1:])}; every batch must match"
            )
        xs.append(x.detach().cpu())
        ys.append(y.detach().cpu())
        have += len(y)
        if n is not None and have >= n:
            break
    if not xs:
        raise UserError("no examples to evaluate: the data yields no batches")
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def _check_values(images: Tensor, labels: Tensor) -> None:
    """One reduction each: pixel range (NaN included) and label sign and type."""
    if images.is_floating_point():
        lo, hi = torch.aminmax(images)
        if bool(torch.isnan(lo) | torch.isnan(hi)):
            bad = int(torch.isnan(images).flatten(1).any(1).sum())
            raise UserError(f"data: {bad} image(s) hold NaN pixels; images must be in [0, 1]")
        if float(lo) < 0 or float(hi) > 1:
            raise UserError(
                f"data: float images must be in [0, 1], got range [{float(lo):.3g}, {float(hi):.3g}]"
            )
    elif images.dtype != torch.uint8:
        raise UserError(f"data: images must be float in [0, 1] or uint8, got {images.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise UserError(f"data: labels must be integer class indices, got {labels.dtype}")
    if int(labels.min()) < 0:
        raise UserError(f"data: label {int(labels.min())} is negative; labels are class indices")


# -- the clean pass ----------------------------------------------------------------------------
@dataclass
class Classified:
    """Per-example verdicts of a model, on CPU."""

    correct: Tensor  # (N,) bool: top-1 prediction is the label
    top5: Tensor | None  # (N,) bool: label among the top 5 (None with 5 classes or fewer)
    num_classes: int


def classify(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    device: torch.device,
    *,
    what: str = "clean",
) -> Classified:
    """The model's verdicts on ``images`` in eval mode, batch by batch (the clean pass).

    Raises:
        UserError: the model cannot take the images, returns no (N, classes) scores or
            non-finite ones, or a label is not one of its classes.
    """
    correct, top5 = [], []
    k = 0
    with torch.no_grad(), model_mode(model, "eval"):
        for idx in index_batches(torch.arange(len(labels)), batch_size):
            x, y = to_device(images[idx.to(images.device)], labels[idx.to(labels.device)], device)
            logits = logits_of(model, x)
            k = logits.shape[1]
            if not bool(torch.isfinite(logits).all()):
                raise UserError(
                    f"the model returns non-finite logits (NaN or inf) on {what} examples "
                    f"{int(idx[0])}-{int(idx[-1])}: no accuracy can be measured; check its "
                    "weights (a diverged training run?) and its input scaling"
                )
            if int(y.max()) >= k:
                raise UserError(
                    f"data: label {int(y.max())} is outside [0, {k}): the model outputs {k} classes"
                )
            correct.append((logits.argmax(1) == y).cpu())
            if k > 5:
                top5.append((logits.topk(5, dim=1).indices == y[:, None]).any(1).cpu())
    return Classified(torch.cat(correct), torch.cat(top5) if top5 else None, k)


def logits_of(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)``, with a clear error when the model cannot take the images or returns no scores."""
    try:
        logits = model(x)
    except RuntimeError as e:
        raise UserError(
            f"the model cannot take the data's images of shape {tuple(x.shape[1:])}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    if logits.ndim != 2:
        raise UserError(
            f"the model must return (N, classes) scores, got shape {tuple(logits.shape)}"
        )
    return logits


def to_device(images: Tensor, labels: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """A batch on ``device``, images as float in [0, 1]."""
    return to_float(images.to(device)), labels.to(device)


def index_batches(idx: Tensor, size: int) -> Iterator[Tensor]:
    """``idx`` in consecutive slices of ``size``."""
    for i in range(0, len(idx), size):
        yield idx[i : i + size]


def models_to_attack(
    models: Sequence[nn.Module],
    images: Tensor,
    kwargs_for: dict[str, dict[str, Any]],
    dev: torch.device,
    *,
    fuse: bool,
) -> list[nn.Module]:
    """What to attack for each model: its :func:`~advscale.models.fuse_for_eval` copy, checked
    on the first :data:`FUSE_EXAMPLES` images, or the model itself.

    Copies are made only with ``fuse`` and when every attack runs the model in eval mode (a
    folded copy is eval-only: ``"mode": "keep"`` gets the model itself); ``fuse_for_eval`` may
    still return a model unchanged, so ``used is not model`` says whether a copy is used.
    """
    if not (fuse and all(kw.get("mode", "eval") == "eval" for kw in kwargs_for.values())):
        return list(models)
    example = to_float(images[:FUSE_EXAMPLES].to(dev))
    used = []
    for m in models:
        with torch.no_grad(), model_mode(m, "eval"):
            logits_of(m, example)  # a clear error first if the model cannot take the images
        used.append(fuse_for_eval(m, example=example))
    return used


__all__ = [
    "APGD_NAMES",
    "AttackKwargs",
    "AttackNames",
    "DEFAULT_ATTACK_KWARGS",
    "FUSE_EXAMPLES",
    "Classified",
    "PixelEps",
    "PixelEpsList",
    "as_tensors",
    "attack_seed",
    "canonical_attack_kwargs",
    "check_attacks",
    "check_pixel_eps",
    "classify",
    "index_batches",
    "logits_of",
    "merge_attack_kwargs",
    "models_to_attack",
    "to_device",
]
