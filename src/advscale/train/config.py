"""Training configuration: typed YAML with ``--set key.sub=value`` overrides.

Every section forbids unknown keys, so a typo is an error that names the key and lists the
allowed ones. ε values are in pixel levels (8 means 8/255), as everywhere on the command line;
a value below one level (0.031) is refused as a [0, 1] fraction. The ``eval:`` section (attack
names, their arguments, ε) is checked when the config loads, before any training step.
``--set`` values are YAML scalars checked strictly: ``batch_size=true`` is refused, not read as 1.
Subclass :class:`TrainConfig` to add sections (fine-tuning adds ``backbone:`` and ``finetune:``)
and pass the subclass to :func:`load_config`.

Example:
    >>> cfg = load_config("configs/rs_fgsm.yaml", ["recipe.eps=4", "epochs=2"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from advscale.errors import UserError
from advscale.evaluate.inputs import AttackKwargs, AttackNames, PixelEps, PixelEpsList
from advscale.files import parse_yaml, read_structured
from advscale.train.sections import DistributedConfig, EmaConfig, Section, SelectConfig

RECIPES = ("clean", "kurakin", "pgd", "fgsm", "rs_fgsm", "n_fgsm")
KURAKIN_METHODS = ("step_ll", "step_rnd", "fgsm", "fgsm_pred")
# Recipes built on one gradient step: the ones prone to catastrophic overfitting.
ONE_STEP_RECIPES = ("kurakin", "fgsm", "rs_fgsm", "n_fgsm")


class ConfigError(UserError):
    """A config that cannot be used; the message names the key and the allowed values."""


class ModelConfig(Section):
    """``model:`` which architecture to build (``advscale.models`` registry)."""

    arch: str = "small_cnn"
    kwargs: dict[str, Any] = Field(default_factory=dict, description="e.g. {width: 1.0}")


class DataConfig(Section):
    """``data:`` where training and validation examples come from.

    ``name: webdataset`` streams tar shards (``data_dir``: a directory or glob of ``*.tar``;
    ``val_dir``: the validation shards, read into memory, ``n_val`` of them drawn
    class-stratified). ``imagefolder`` training images are streamed too, decoded in
    ``workers`` processes; the small sets (fashion-mnist, digits, cifar10) stay in memory and
    are augmented on the model's device. ``augment``: none, crop_flip (pad ``crop_padding``,
    random crop, flip) or rrc_flip (random-resized crop to ``image_size`` of ``rrc_scale`` /
    ``rrc_ratio``, flip). Validation and evaluation resize to ``image_size``, or with
    ``eval_resize`` resize the short side to it and centre-crop ``image_size``.
    """

    name: str = "fashion-mnist"
    data_dir: str | None = None
    val_dir: str | None = None
    train_split: str = "train"
    val_split: str = "test"
    n_train: int | None = Field(default=None, ge=1)
    n_val: int | None = Field(default=1000, ge=1)
    classes: list[int] | None = None
    image_size: int | None = Field(default=None, ge=4)
    channels: int | None = None
    num_classes: int | None = Field(default=None, ge=2, description="webdataset only")
    mean: list[float] | None = None
    std: list[float] | None = None
    shuffle_buffer: int = Field(default=1000, ge=1, description="webdataset sample shuffle buffer")
    augment: Literal["none", "crop_flip", "rrc_flip"] = Field(
        default="none", description="training augmentation, drawn from (seed, epoch, index)"
    )
    crop_padding: int = Field(default=4, ge=0, description="crop_flip: pad, then crop back")
    rrc_scale: tuple[float, float] = Field(
        default=(0.08, 1.0), description="rrc_flip: crop area as a fraction of the image"
    )
    rrc_ratio: tuple[float, float] = Field(
        default=(0.75, 1.3333), description="rrc_flip: crop aspect ratio (log-uniform)"
    )
    eval_resize: int | None = Field(
        default=None, ge=4, description="resize the short side, centre-crop image_size"
    )
    workers: int = Field(default=0, ge=0, description="decoding worker processes (streamed)")
    prefetch: int = Field(default=2, ge=1, description="batches each worker keeps ready")
    on_corrupt: Literal["error", "skip"] = Field(
        default="error", description="an unreadable image: end the run, or skip it (counted)"
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> DataConfig:
        lo, hi = self.rrc_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"data.rrc_scale {list(self.rrc_scale)}: need 0 < low <= high <= 1")
        lo, hi = self.rrc_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"data.rrc_ratio {list(self.rrc_ratio)}: need 0 < low <= high")
        small = self.eval_resize is not None and self.image_size is not None
        if small and self.eval_resize < self.image_size:
            raise ValueError(
                f"data.eval_resize {self.eval_resize} is smaller than data.image_size "
                f"{self.image_size}: the centre crop would not fit"
            )
        return self


class RecipeConfig(Section):
    """``recipe:`` how a clean batch becomes the training batch (see ``advscale.train.recipes``).

    ``eps`` is the budget (kurakin: ε_max) in pixel levels. ``alpha`` is the step in pixel
    levels, or ``alpha_scale`` times ε when not given (rs_fgsm 1.25, n_fgsm 1.0, pgd 2.5/steps).
    """

    name: Literal["clean", "kurakin", "pgd", "fgsm", "rs_fgsm", "n_fgsm"] = "clean"
    eps: PixelEps = 8.0
    # kurakin
    k: int | None = Field(
        default=None, ge=0, description="adversarial examples per group (default m/2)"
    )
    m: int | None = Field(
        default=None, ge=1, description="group size (default: the per-process batch)"
    )
    lam: float = Field(default=0.3, ge=0, description="loss weight λ of adversarial examples")
    sigma: float | None = Field(default=None, gt=0, description="ε ~ |N(0, σ)| (default eps/2)")
    method: Literal["step_ll", "step_rnd", "fgsm", "fgsm_pred"] = "step_ll"
    fixed_eps: bool = Field(
        default=False, description="kurakin: every example gets eps (no sampling)"
    )
    warmup_steps: int = Field(default=0, ge=0, description="clean steps before adversarial ones")
    # pgd / one-step
    steps: int = Field(default=7, ge=1)
    alpha: float | None = Field(default=None, gt=0, le=255)
    alpha_scale: float | None = Field(default=None, gt=0)
    noise: float = Field(default=2.0, ge=0, description="n_fgsm: noise U(-noise*ε, noise*ε)")
    bn_mode: Literal["eval", "train"] = Field(
        default="eval", description="batch norm mode while generating adversarial examples"
    )


class OptimizerConfig(Section):
    """``optimizer:`` sgd, adamw, rmsprop (PyTorch's) or rmsprop_tf.

    ``rmsprop_tf`` is RMSProp as TensorFlow computes it, which paper A's Inception v3 training
    used: the mean square starts at 1, ``eps`` is added under the square root and the learning
    rate inside the momentum, ``p -= m; m = momentum·m + lr·g / sqrt(ms + eps)``. ``decay`` is
    the mean square's decay (PyTorch's ``alpha``); ``eps`` defaults to 1.0 for both RMSProps
    (paper A) and to 1e-8 for adamw.
    """

    name: Literal["sgd", "adamw", "rmsprop", "rmsprop_tf"] = "sgd"
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    decay: float = Field(default=0.9, gt=0, lt=1, description="rmsprop: mean-square decay")
    eps: float | None = Field(default=None, gt=0, description="rmsprop/adamw denominator term")

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        if self.name == "sgd" and self.eps is not None:
            raise ValueError(f"optimizer.eps={self.eps} has no meaning for sgd; remove it")
        if self.nesterov and self.name != "sgd":
            raise ValueError(f"optimizer.nesterov applies to sgd only, not {self.name}")
        return self


class ScheduleConfig(Section):
    """``schedule:`` learning rate over training, a pure function of the step (exact on resume).

    ``warmup`` (epochs, may be fractional) ramps linearly from 0. ``cyclic`` rises linearly to
    ``lr`` at ``peak`` of training and falls to 0 at the end (Wong et al. 2020). ``step``
    multiplies by ``gamma`` at each of ``milestones`` (epochs).
    """

    name: Literal["constant", "cosine", "cyclic", "step"] = "cosine"
    warmup: float = Field(default=0.0, ge=0)
    milestones: list[float] = Field(default_factory=list)
    gamma: float = Field(default=0.1, gt=0)
    peak: float = Field(default=0.4, gt=0, lt=1)


class GuardConfig(Section):
    """``guard:`` catastrophic-overfitting check on a fixed held-out batch.

    Every ``every`` steps (0: at the end of each epoch) PGD and FGSM accuracy are measured at the
    recipe's ε. Collapse: PGD accuracy falls more than ``threshold`` below its best, or FGSM
    accuracy exceeds PGD accuracy by more than ``fgsm_margin``. Then the best weights are restored
    and ``action`` decides: stop, reduce_step (step size × ``reduce_factor``) or continue.
    ``enabled`` defaults to on for every recipe but clean.
    """

    enabled: bool | None = None
    every: int = Field(default=0, ge=0)
    n: int = Field(default=256, ge=1)
    pgd_steps: int = Field(default=10, ge=1)
    threshold: float = Field(default=0.2, gt=0, le=1)
    fgsm_margin: float = Field(default=0.4, gt=0, le=1)
    action: Literal["stop", "reduce_step", "continue"] = "stop"
    reduce_factor: float = Field(default=0.5, gt=0, lt=1)


class EvalConfig(Section):
    """``eval:`` final robust evaluation: clean accuracy plus every attack at every ε.

    One-step attacks alone overstate robustness, so ``attacks`` must include an iterative one
    (pgd, apgd, iter_basic...). ``eps`` in pixel levels (default: the recipe's ε).
    """

    attacks: AttackNames = Field(default_factory=lambda: ["fgsm", "pgd"])
    eps: PixelEpsList | None = None
    n: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    attack_kwargs: AttackKwargs = Field(
        default_factory=lambda: {"pgd": {"steps": 20, "restarts": 1}}
    )
    label_leak: bool | None = Field(default=None, description="default: on for adversarial recipes")


class TrainConfig(Section):
    """A training run. ``batch_size`` is the global batch of one optimizer step: each of
    ``world_size`` processes sees ``batch_size / (world_size * grad_accum)`` examples per forward,
    so changing processes or accumulation keeps the optimization the same.
    """

    #: Keys a config file or ``--set`` may not hold, with why; only the caller sets them
    #: (``load_config(call_site=...)``), e.g. from a command-line flag.
    CALL_SITE_ONLY: ClassVar[dict[str, str]] = {}

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    recipe: RecipeConfig = Field(default_factory=RecipeConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    ema: EmaConfig = Field(default_factory=EmaConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    epochs: int = Field(default=5, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many steps")
    batch_size: int = Field(default=128, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = Field(default=False, description="SyncBatchNorm across processes (DDP)")
    checkpoint_every: int = Field(default=0, ge=0, description="steps; 0: end of each epoch only")
    log_every: int = Field(default=10, ge=1)
    progress: bool = True
    tensorboard: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        r = self.recipe
        if r.name == "kurakin" and r.k is not None and r.m is not None and r.k > r.m:
            raise ValueError(f"recipe.k={r.k} is larger than recipe.m={r.m}; allowed: 0 <= k <= m")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size={self.batch_size} is not divisible by grad_accum={self.grad_accum}"
            )
        return self

    # -- derived values ----------------------------------------------------------------------
    def guard_enabled(self) -> bool:
        return self.recipe.name != "clean" if self.guard.enabled is None else self.guard.enabled

    def label_leak_enabled(self) -> bool:
        return self.recipe.name != "clean" if self.eval.label_leak is None else self.eval.label_leak

    def eval_eps(self) -> list[float]:
        return list(self.eval.eps) if self.eval.eps else [self.recipe.eps]


C = TypeVar("C", bound=TrainConfig)


def _format_validation_error(err: ValidationError, cls: type[BaseModel], source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(cls, list(e["loc"][:-1]))
            lines.append(f"unknown key {loc!r}; allowed: {', '.join(allowed)}")
        elif e["type"] == "literal_error":
            expected = (
                str(e.get("ctx", {}).get("expected", "")).replace(" or ", ", ").replace("'", "")
            )
            lines.append(f"{loc}: got {e.get('input')!r}; allowed: {expected}")
        else:
            where = f"{loc}: " if loc else ""
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}{msg} (got {e.get('input')!r:.200})" if loc else msg)
    return f"{source}: invalid training config: " + "; ".join(lines)


def _allowed_keys(cls: type[BaseModel], path: list[Any]) -> list[str]:
    section = _section(cls, path)
    return sorted(section.model_fields) if section is not None else []


def _section(cls: type[BaseModel], path: list[Any]) -> type[BaseModel] | None:
    """The config section at ``path`` below ``cls`` (None where the path leaves the sections)."""
    for key in path:
        field = cls.model_fields.get(str(key))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    return cls


_SCALARS = {bool: "true or false", int: "an integer", float: "a number"}


def _check_scalar(cls: type[BaseModel], parts: list[str], value: Any, item: str) -> None:
    """A ``--set`` value for a bool, int or float field must be one, strictly (pydantic strict
    mode): YAML reads ``true`` as a bool, which a lax int field would take as 1."""
    section = _section(cls, parts[:-1])
    field = section.model_fields.get(parts[-1]) if section is not None else None
    if field is None:
        return  # unknown keys and free-form mappings are reported by validation
    ann = field.annotation
    kinds = get_args(ann) if get_origin(ann) in (Union, types.UnionType) else (ann,)
    wanted = [k for k in kinds if k is not type(None)]
    if not wanted or any(k not in _SCALARS for k in wanted):
        return
    try:
        TypeAdapter(ann).validate_python(value, strict=True)
    except ValidationError:
        expected = " or ".join(_SCALARS[k] for k in wanted)
        if type(None) in kinds:
            expected += " or null"
        raise ConfigError(
            f"--set {item!r}: {'.'.join(parts)} takes {expected}, got {value!r} "
            f"({type(value).__name__})"
        ) from None


# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e-4 (no dot) as a string.
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_value(text: str) -> Any:
    """A ``--set`` value parsed as YAML, so ``4``, ``true``, ``[1, 2]``, ``null`` and ``1e-4``
    work."""
    try:
        value = parse_yaml(text, "value")  # strict: no duplicate keys, few aliases
    except UserError:
        return text
    return float(value) if isinstance(value, str) and _FLOAT.fullmatch(value) else value


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], cls: type[BaseModel] = TrainConfig
) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config dict (in place) and return it.

    Values are parsed as YAML; one for a bool, int or float field of ``cls`` must be of that
    type (an int is a float), so ``batch_size=true`` is refused naming the key.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. recipe.eps=4")
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        parsed = parse_value(value)
        _check_scalar(cls, parts, parsed, item)
        _put(raw, parts, parsed, f"--set {item!r}")
    return raw


def _put(raw: dict[str, Any], parts: list[str], value: Any, what: str) -> None:
    """``raw[parts[0]][parts[1]]... = value``, making missing sections."""
    node = raw
    for i, p in enumerate(parts[:-1]):
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def validate_config(raw: dict[str, Any], cls: type[C] = TrainConfig, source: str = "config") -> C:  # type: ignore[assignment]
    """Build ``cls`` from a raw dict, turning validation errors into a ConfigError."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, cls, source)) from None


def load_config(
    path: str | os.PathLike | None,
    overrides: list[str] | None = None,
    cls: type[C] = TrainConfig,  # type: ignore[assignment]
    *,
    call_site: Mapping[str, Any] | None = None,
) -> C:
    """Read a YAML config (or start from defaults with ``path=None``), apply ``--set``
    overrides, then ``call_site`` values (dotted keys), and validate all of it, the ``eval:``
    section included, so that nothing is found wrong after training.

    Keys in ``cls.CALL_SITE_ONLY`` (e.g. ``backbone.trust``) are refused in the file and in
    ``overrides``: only ``call_site`` may set them.

    Raises:
        ConfigError: missing file, bad YAML, unknown key (listing the allowed ones), bad value,
            a call-site-only key in the file or an override.
    """
    raw: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        loaded = read_structured(p, "config file", error=ConfigError, fmt="yaml")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{p}: the top level must be a mapping of sections, got {type(loaded).__name__}"
            )
        raw = loaded
    overrides = list(overrides or [])
    _refuse_call_site_only(raw, overrides, cls, source)
    apply_overrides(raw, overrides, cls)
    for key, value in (call_site or {}).items():
        _put(raw, key.split("."), value, f"{source}: {key}")
    return validate_config(raw, cls, source)


def _refuse_call_site_only(
    raw: dict[str, Any], overrides: list[str], cls: type[BaseModel], source: str
) -> None:
    for key, why in getattr(cls, "CALL_SITE_ONLY", {}).items():
        node: Any = raw
        for p in key.split("."):
            node = node.get(p, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            raise ConfigError(f"{source}: {key} cannot be set in a config file: {why}")
        given = [o for o in overrides if o.split("=", 1)[0].strip() == key]
        if given:
            raise ConfigError(f"--set {given[0]!r}: {key} cannot be set with --set: {why}")


_MISSING = object()


def config_to_dict(cfg: BaseModel) -> dict[str, Any]:
    """The config as plain JSON-ready data (what run directories record)."""
    return cfg.model_dump(mode="json")
