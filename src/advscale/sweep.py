"""Sweeps: train and evaluate over the values of one config field, for several variants.

The first use is paper A's capacity study (Fig. 1): the width multiplier ρ of a small CNN from
0.5 to 2, trained clean and with Kurakin adversarial training, then attacked with one-step and
iterative attacks; the ratio adversarial/clean accuracy is plotted against ρ.

A sweep file::

    base: configs/kurakin.yaml        # a training config file, or an inline mapping
    field: model.kwargs.width         # the config field to vary
    values: [0.5, 1.0, 1.5, 2.0]
    variants:                         # config overrides per variant (dotted keys)
      baseline: {recipe.name: clean}
      kurakin: {recipe.name: kurakin, recipe.method: step_ll}
    set: {epochs: 2}                  # overrides shared by every point (optional)
    eval: {attacks: [step_ll, iter_ll], eps: [8, 16], n: 500}   # how every point is attacked
    out: runs/sweep_width

Each point is an ordinary training run in ``out/<variant>/<field>_<value>/``, then evaluated
with ``advscale.evaluate.evaluate`` on ``n`` examples of the run's validation set, built as
training builds it (``advscale.data.build_val``; ``sweep_eval.json`` beside it). ``eval:``
is checked when the file is loaded (:class:`SweepEval`), before any point trains. Points run
one after another. On a rerun a finished training run is reused, an
interrupted one resumes, and a finished evaluation is reused when ``eval:`` is unchanged (a
changed ``eval:`` re-evaluates without retraining). A failed point is recorded (``status:
failed`` with the error) without stopping the others. ``out/results.json`` (kind "sweep")
holds one record per point, attack and ε.

Across machines, ``shard=(I, N)`` (``advscale sweep --shard I/N``, or ``--shard slurm`` in a
SLURM array job) runs the points whose position in the plan is I − 1 modulo N, into
``out/shard-I-of-N/`` (the same layout, its own ``results.json``); ``advscale report
out/shard-*`` puts the shares back together as one sweep.

Example:
    >>> results = run_sweep(load_sweep("configs/sweep_width.yaml"))  # doctest: +SKIP
    >>> results = run_sweep(load_sweep("configs/sweep_width.yaml"), shard=(2, 4))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from advscale.errors import UserError
from advscale.evaluate.inputs import AttackKwargs, AttackNames, PixelEpsList
from advscale.results import EPS_UNIT, Results, ResultsError, load_results
from advscale.train.grid import (
    GridPoint,
    PointOutcome,
    PointStart,
    parse_shard,
    run_grid,
    shard_dir,
)
from advscale.train.rundir import RunDir
from advscale.utils import read_structured, resolve_device


class SweepEval(BaseModel):
    """``eval:`` of a sweep: how every point's trained model is attacked.

    Checked when the sweep file is loaded, with the checks ``evaluate`` itself makes, so a bad
    value is refused before any point trains. ``eps`` in pixel levels; None: each point's
    evaluation budgets (its ``eval.eps``, else the recipe's ε).
    """

    model_config = ConfigDict(extra="forbid")

    attacks: AttackNames = Field(default_factory=lambda: ["step_ll", "iter_ll"])
    eps: PixelEpsList | None = None
    n: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    attack_kwargs: AttackKwargs = Field(default_factory=dict)
    seed: int = 0


class SweepConfig(BaseModel):
    """A sweep file, validated; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    base: str | dict[str, Any] = Field(
        default_factory=dict, description="training config path or mapping"
    )
    field: str
    values: list[Any] = Field(min_length=1)
    variants: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"run": {}})
    set: dict[str, Any] = Field(default_factory=dict)
    eval: SweepEval = Field(default_factory=SweepEval)
    out: str | None = None
    name: str | None = None
    source: str | None = Field(
        default=None, description="where the sweep file was read from (set on load)"
    )


def load_sweep(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> SweepConfig:
    """Read and validate a sweep YAML file; ``out`` replaces its ``out:``, ``overrides``
    (``--set KEY=VALUE``) its values (:func:`apply_sweep_overrides`).

    Raises:
        UserError: missing file, bad YAML, unknown key, bad values (naming the key).
    """
    p = Path(path)
    raw = read_structured(p, "sweep file", fmt="yaml")
    if not isinstance(raw, dict):
        raise UserError(
            f"{p}: a sweep file is a mapping with base, field, values, variants, eval, out"
        )
    apply_sweep_overrides(raw, overrides)
    try:
        cfg = SweepConfig.model_validate({**raw, "source": str(p)})
    except ValidationError as e:
        problems = "; ".join(_problem(err) for err in e.errors())
        raise UserError(f"{p}: invalid sweep file: {problems}") from None
    if out is not None:
        cfg.out = str(out)
    return cfg


def apply_sweep_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` on a raw sweep file (in place): a key of the sweep file itself
    (``eval.n``, ``values``, ``out``, ...) is replaced there; any other key is a training-config
    override every point gets, added to ``set:`` (``epochs=1``, ``optimizer.lr=0.05``).
    Values are read as ``train --set`` reads them.

    Raises:
        UserError: an item without ``=``, a value of the wrong type for its field.
    """
    from advscale.train import TrainConfig
    from advscale.train.config import apply_overrides

    own = [k for k in SweepConfig.model_fields if k != "source"]
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.split(".")[0] in own:
            apply_overrides(raw, [item], SweepConfig)
            continue
        parsed = apply_overrides({}, [item], TrainConfig)  # checked as train --set checks it
        for part in key.split("."):
            parsed = parsed[part]
        shared = raw.setdefault("set", {})
        if not isinstance(shared, dict):
            raise UserError(f"--set {item!r}: the sweep file's set: is not a mapping")
        shared[key] = parsed
    return raw


def _problem(err: Any) -> str:
    """One validation error as ``key: what is wrong``, listing the allowed keys for an unknown one."""
    loc = ".".join(map(str, err["loc"])) or "file"
    if err["type"] == "extra_forbidden":
        section = SweepEval if err["loc"][:1] == ("eval",) else SweepConfig
        return f"{loc}: unknown key; allowed: {', '.join(_allowed(section))}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg} (got {err.get('input')!r})"


def _allowed(section: type[BaseModel]) -> list[str]:
    return [k for k in section.model_fields if k != "source"]


def _base_raw(cfg: SweepConfig) -> dict[str, Any]:
    """The base training config as a raw mapping; a relative path may be relative to the sweep file."""
    if isinstance(cfg.base, dict):
        return json.loads(json.dumps(cfg.base))
    candidates = [Path(cfg.base)]
    if cfg.source and not Path(cfg.base).is_absolute():
        candidates.append(Path(cfg.source).parent / cfg.base)
    for p in candidates:
        if p.is_file():
            raw = read_structured(p, "training config", fmt="yaml") or {}
            if not isinstance(raw, dict):
                raise UserError(f"{p}: a training config is a mapping of sections")
            return raw
    raise UserError(f"sweep base {cfg.base!r}: no such training config file")


def _overrides(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"recipe.name": "clean"}`` as ``["recipe.name=\"clean\""]`` (JSON values parse back as YAML)."""
    return [f"{prefix}{k}={json.dumps(v)}" for k, v in mapping.items()]


def check_field(field: str, base_raw: dict[str, Any] | None = None) -> None:
    """Raise UserError unless ``field`` names a training config field (or a model argument).

    ``model.kwargs.<name>`` must be an argument of the configured architecture.
    """
    from advscale.train import TrainConfig

    parts = field.split(".")
    cls: Any = TrainConfig
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the top level"
        fields = getattr(cls, "model_fields", None)
        if fields is None:
            raise UserError(f"sweep field {field!r}: {where} is a value, not a section")
        if part not in fields:
            raise UserError(
                f"sweep field {field!r}: no key {part!r} in {where}; allowed: {', '.join(sorted(fields))}"
            )
        ann = fields[part].annotation
        if parts[: i + 1] == ["model", "kwargs"]:
            if i + 1 != len(parts) - 1:
                raise UserError(
                    f"sweep field {field!r}: expected model.kwargs.<argument>, e.g. model.kwargs.width"
                )
            _check_model_argument(field, parts[-1], base_raw or {})
            return
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if cls is None and i + 1 < len(parts):
            raise UserError(
                f"sweep field {field!r}: {'.'.join(parts[: i + 1])} is a value, not a section"
            )


def _check_model_argument(field: str, name: str, base_raw: dict[str, Any]) -> None:
    import inspect

    from advscale.models import registry

    arch = (base_raw.get("model") or {}).get("arch", "small_cnn")
    factory = registry._MODELS.get(arch)
    if factory is None:
        return  # an unknown architecture is reported when its config is validated
    params = inspect.signature(factory).parameters
    if name not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [p for p in params if p not in ("num_classes", "in_channels")]
        raise UserError(
            f"sweep field {field!r}: model {arch!r} has no argument {name!r}; allowed: {', '.join(allowed)}"
        )


def _point_dir(out: Path, variant: str, field: str, value: Any) -> Path:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return out / variant / f"{field.split('.')[-1]}_{shown}"


def _attack_type(attack: str) -> str:
    from advscale.attacks import ONE_STEP

    return "one-step" if attack in ONE_STEP else "iterative"


def plan(cfg: SweepConfig) -> list[tuple[str, Any, Any, Path]]:
    """Every point as ``(variant, value, TrainConfig, run_dir)``, all validated before any runs.

    Raises:
        UserError: no ``out``, an unknown field, a variant or value the config rejects.
    """
    from advscale.train.config import ConfigError, apply_overrides, validate_config

    if not cfg.out:
        raise UserError(
            f"{cfg.source or 'sweep'}: no output directory (set out: in the file or pass --out)"
        )
    base = _base_raw(cfg)
    check_field(cfg.field, base)
    out = Path(cfg.out)
    points = []
    for variant, changes in cfg.variants.items():
        for value in cfg.values:
            raw = json.loads(json.dumps(base))
            sets = _overrides(cfg.set) + _overrides(changes)
            sets.append(f"{cfg.field}={json.dumps(value)}")
            try:
                apply_overrides(raw, sets)
                train_cfg = validate_config(
                    raw, source=f"sweep variant {variant!r}, {cfg.field}={value!r}"
                )
            except ConfigError as e:
                raise UserError(str(e)) from None
            points.append((variant, value, train_cfg, _point_dir(out, variant, cfg.field, value)))
    return points


def _records_of(
    ev: Results, variant: str, field: str, value: Any, run_dir: Path
) -> list[dict[str, Any]]:
    out = []
    for r in ev.records:
        clean, acc = r.get("clean_accuracy"), r.get("accuracy")
        out.append(
            {
                "variant": variant,
                "field": field,
                "value": value,
                "attack": r["attack"],
                "attack_type": _attack_type(r["attack"]),
                "eps": r["eps"],
                "eps_unit": EPS_UNIT,
                "clean_accuracy": clean,
                "accuracy": acc,
                "ratio": r.get("ratio", acc / clean if clean else None),
                "status": "done",
                "run_dir": str(run_dir),
            }
        )
    return out


# The ``data:`` keys that decide a run's validation set (``advscale.data.build_val``).
VAL_KEYS = (
    "name",
    "data_dir",
    "val_dir",
    "val_split",
    "classes",
    "image_size",
    "eval_resize",
    "channels",
    "num_classes",
    "mean",
    "std",
)


def _eval_settings(cfg: SweepConfig, train_cfg: Any) -> dict[str, Any]:
    """The evaluation of one point, defaults filled in (what a rerun compares).

    ``data`` describes the run's whole validation split (``evaluate`` then draws ``n``
    class-stratified examples with ``seed``, the same images for every point); webdataset
    validation shards are read only as far as the first ``n`` examples.
    """
    settings = cfg.eval.model_dump(mode="json")
    settings["eps"] = [float(e) for e in (cfg.eval.eps or train_cfg.eval_eps())]
    data = train_cfg.data.model_dump(mode="json", include=set(VAL_KEYS))
    n_val = cfg.eval.n if data["name"] == "webdataset" else None
    settings["data"] = {**data, "n_val": n_val}
    return settings


def _evaluate_point(run_dir: Path, settings: dict[str, Any], device: str) -> Results:
    """Attack the point's trained model as ``settings`` say; reuse ``sweep_eval.json`` when it matches."""
    from advscale.data import build_val
    from advscale.evaluate import evaluate
    from advscale.models import load_model
    from advscale.train.config import DataConfig

    path = run_dir / "sweep_eval.json"
    if path.exists():
        try:
            done = load_results(path)
        except ResultsError:
            done = None
        if done is not None and done.complete and done.config.get("sweep_eval") == settings:
            return done
    data = build_val(DataConfig.model_validate(settings["data"]))
    model = load_model(run_dir / "model", device=resolve_device(device))
    report = evaluate(
        model,
        data,
        attacks=settings["attacks"],
        eps=settings["eps"],
        n=settings["n"],
        batch_size=settings["batch_size"],
        attack_kwargs=settings["attack_kwargs"],
        seed=settings["seed"],
        progress=False,
    )
    ev = report.to_results({"model": str(run_dir / "model"), "sweep_eval": settings})
    ev.save(path)
    return ev


def run_sweep(
    cfg: SweepConfig, *, log: Any = None, shard: tuple[int, int] | None = None
) -> Results:
    """Run every point not finished yet; return (and save to ``out/results.json``) the sweep results.

    ``complete`` is False when a point failed; its record says why and the others are kept.
    ``shard=(I, N)`` runs only the I-th of N shares of the points (see the module docstring),
    into ``out/shard-I-of-N/``.

    Raises:
        RunLockedError: another live process runs a sweep into ``out``.
    """
    from advscale.train import train
    from advscale.train.config import config_to_dict

    points = plan(cfg)
    out = Path(cfg.out)  # type: ignore[arg-type]
    config = {
        **cfg.model_dump(exclude={"source"}),
        "sweep_file": cfg.source,
        "name": cfg.name or out.name,
    }
    total = len(points)
    if shard is not None:
        index, count = shard
        points = [
            (variant, value, train_cfg, shard_dir(out, shard) / run_dir.relative_to(out))
            for j, (variant, value, train_cfg, run_dir) in enumerate(points)
            if j % count == index - 1
        ]
        out = shard_dir(out, shard)
        config["shard"] = {"index": index, "count": count, "points": total}

    def point(variant: str, value: Any, train_cfg: Any, run_dir: Path) -> GridPoint:
        def run(start: PointStart) -> Results:
            if not start.reuse:
                train(train_cfg, run_dir, resume=start.resume)
            return _evaluate_point(run_dir, _eval_settings(cfg, train_cfg), train_cfg.device)

        name = f"{variant}, {cfg.field}={value}"
        return GridPoint(name, run_dir, config_to_dict(train_cfg), run)

    keys = {}  # point name -> (variant, value)
    grid = []
    for variant, value, train_cfg, run_dir in points:
        g = point(variant, value, train_cfg, run_dir)
        keys[g.name] = (variant, value)
        grid.append(g)

    saved: list[Results] = []

    def save(outcomes: list[PointOutcome], final: bool) -> None:
        res = Results("sweep", config=config, complete=False)
        warnings: list[dict[str, Any]] = []
        for o in outcomes:
            variant, value = keys[o.point.name]
            where = dict(variant=variant, field=cfg.field, value=value)
            if o.status == "done":
                res.records += _records_of(o.value, variant, cfg.field, value, o.point.run_dir)
                warnings += [
                    {"check": w.get("check"), "message": f"{o.point.name}: {w.get('message')}"}
                    for w in o.value.summary.get("warnings") or []
                ]
            elif o.status == "failed":
                assert o.exception is not None
                tb = "".join(traceback.format_exception(o.exception, limit=5))
                res.add(
                    **where,
                    status="failed",
                    error=o.error,
                    traceback=tb,
                    run_dir=str(o.point.run_dir),
                )
            else:
                res.add(**where, status="interrupted", run_dir=str(o.point.run_dir))
        res.complete = final and all(o.status == "done" for o in outcomes)
        res.summary = _summary(res, len(points), warnings)
        if shard is not None:
            res.summary["shard"] = f"{shard[0]}/{shard[1]}"
        res.save(out / "results.json")
        saved.append(res)

    with RunDir(out).locked():
        run_grid(grid, save=save, on_changed="refuse", log=log)
    return saved[-1]


def _summary(res: Results, total: int, warnings: list[dict[str, Any]]) -> dict[str, Any]:
    done = {(r["variant"], repr(r["value"])) for r in res.records if r.get("status") == "done"}
    failed = [r for r in res.records if r.get("status") == "failed"]
    return {
        "points": total,
        "done": len(done),
        "failed": len(failed),
        "errors": [f"{r['variant']}, {r['field']}={r['value']}: {r['error']}" for r in failed],
        "warnings": list(warnings),
    }


__all__ = [
    "SweepConfig",
    "SweepEval",
    "check_field",
    "load_sweep",
    "parse_shard",
    "plan",
    "run_sweep",
]
