"""``advscale compare``: FGSM vs PGD fine-tuning over modes and ε, robustness against cost.

Every point (method, mode, ε) is one fine-tuning run of :mod:`advscale.transfer.finetune` from the
same config, seed, data and budget, evaluated afterwards on the same held-out examples under PGD
and APGD. The output directory holds::

    points/<method>-<mode>-eps<ε>/   the run directory of each point (resumable) + point.json
    results.json                     kind "compare": one record per (method, mode, ε)
    compare.md                       the table, and FGSM-vs-PGD gaps and time ratios
    compare.png                      robust accuracy against training time

A rerun skips the points already finished with the same settings, continues an interrupted one
from its checkpoint and retries failed ones; a point that fails is recorded with its error and
the others still run. ``mode: scratch`` is the control: full training of the same architecture
from random initialization.

Example:
    >>> cfg = load_compare_config("configs/compare_fmnist_digits.yaml")  # doctest: +SKIP
    >>> results = compare(cfg, "runs/compare")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from advscale.evaluate.inputs import check_pixel_eps
from advscale.results import EPS_UNIT, Results
from advscale.train import config_to_dict, load_config, validate_config
from advscale.train.grid import GridPoint, PointFailed, PointOutcome, PointStart, run_grid
from advscale.train.rundir import SUMMARY, RunDir
from advscale.transfer.finetune import FinetuneConfig, finetune
from advscale.transfer.modes import FinetuneModeConfig
from advscale.utils import atomic_write_json, atomic_write_text, environment_info, resolve_device

COMPARE_MODES = ("full", "linear", "partial", "lora", "bias", "scratch")
# The one-step recipes whose stability is in question (paper B), and their multi-step reference.
FAST_METHODS = ("fgsm", "rs_fgsm", "n_fgsm", "kurakin")
POINT_FILE = "point.json"


class CompareSection(BaseModel):
    """``compare:`` the grid and how each point is evaluated.

    Every method runs in every mode at every ε (``clean`` once per mode, evaluated at every ε).
    ``pgd_steps`` sets the PGD-k of PGD fine-tuning. Evaluation: ``attacks`` at the point's ε on
    ``n_eval`` held-out examples (the same for every point), with ``attack_kwargs``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    methods: list[Literal["clean", "fgsm", "rs_fgsm", "n_fgsm", "pgd", "kurakin"]] = Field(
        default_factory=lambda: ["fgsm", "pgd"]
    )
    modes: list[Literal["full", "linear", "partial", "lora", "bias", "scratch"]] = Field(
        default_factory=lambda: ["full", "linear"]
    )
    eps: list[float] = Field(default_factory=lambda: [4.0, 8.0])
    pgd_steps: int = Field(default=7, ge=1)
    attacks: list[str] = Field(default_factory=lambda: ["pgd", "apgd"])
    attack_kwargs: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"pgd": {"steps": 20, "restarts": 1}, "apgd": {"steps": 100}}
    )
    n_eval: int = Field(default=1000, ge=1)
    plot: bool = True

    @model_validator(mode="after")
    def _check(self) -> CompareSection:
        for name, values in (("methods", self.methods), ("modes", self.modes), ("eps", self.eps)):
            if not values:
                raise ValueError(f"compare.{name} is empty")
            if len(set(values)) != len(values):
                raise ValueError(f"compare.{name} has repeated values: {values}")
        check_pixel_eps(self.eps, "compare.eps", positive=True)
        return self


class CompareConfig(FinetuneConfig):
    """A fine-tuning config (the settings every point shares) plus ``compare:`` (the grid)."""

    compare: CompareSection = Field(default_factory=CompareSection)


def load_compare_config(
    path: str | Path | None, overrides: list[str] | None = None, trust: bool = False
) -> CompareConfig:
    """Read a compare YAML config with ``--set`` overrides (``trust`` sets ``backbone.trust``)."""
    call_site = {"backbone.trust": True} if trust else None
    return load_config(path, overrides, CompareConfig, call_site=call_site)


# -- the grid ----------------------------------------------------------------------------------
def point_name(method: str, mode: str, eps: float | None) -> str:
    """Directory name of a point, e.g. ``fgsm-linear-eps8``; ``clean-full`` for clean training."""
    return f"{method}-{mode}" if eps is None else f"{method}-{mode}-eps{eps:g}"


def grid(cfg: CompareConfig) -> list[tuple[str, str, float | None]]:
    """``(method, mode, ε or None)`` of every run, in the order they run.

    The methods compared at one (mode, ε) run back to back, so that a change in machine load
    during a long comparison affects their time ratio as little as possible.
    """
    c = cfg.compare
    runs: list[tuple[str, str, float | None]] = []
    for mode in c.modes:
        if "clean" in c.methods:
            runs.append(("clean", mode, None))
        for e in c.eps:
            runs.extend((method, mode, float(e)) for method in c.methods if method != "clean")
    return runs


def point_config(cfg: CompareConfig, method: str, mode: str, eps: float | None) -> FinetuneConfig:
    """The fine-tuning config of one point: the shared settings with method, mode and ε set."""
    c = cfg.compare
    raw = config_to_dict(cfg)
    raw.pop("compare")
    raw["recipe"]["name"] = method
    if eps is not None:
        raw["recipe"]["eps"] = eps
    if method == "pgd":
        raw["recipe"]["steps"] = c.pgd_steps
    raw["finetune"]["mode"] = "full" if mode == "scratch" else mode
    # Settings of other modes do not change this point: reset them, so that editing them does
    # not make a finished point look stale.
    defaults = FinetuneModeConfig().model_dump(mode="json")
    if mode != "lora":
        raw["finetune"]["lora"] = defaults["lora"]
    if mode != "partial":
        raw["finetune"]["blocks"] = defaults["blocks"]
    raw["finetune"]["init"] = "random" if mode == "scratch" else "pretrained"
    raw["eval"].update(
        attacks=list(c.attacks),
        eps=[float(e) for e in c.eps] if eps is None else [eps],
        n=c.n_eval,
        attack_kwargs={k: dict(v) for k, v in c.attack_kwargs.items()},
    )
    # The model section is derived, never set, in a fine-tuning config.
    raw.pop("model", None)
    return validate_config(
        raw, FinetuneConfig, source=f"compare point {point_name(method, mode, eps)}"
    )


# -- records -----------------------------------------------------------------------------------
def _records_from_summary(
    summary: dict[str, Any], method: str, mode: str, eps_list: list[float], run_dir: Path
) -> list[dict[str, Any]]:
    robust = summary.get("robust_accuracy") or {}
    events = [e for e in summary.get("events", []) if e.get("event") == "catastrophic_overfit"]
    records = []
    for eps in eps_list:
        key = f"{eps:g}"
        rec: dict[str, Any] = {
            "method": method,
            "mode": mode,
            "init": summary.get("init"),
            "eps": float(eps),
            "eps_unit": EPS_UNIT,
            "status": "done",
            "clean_accuracy": summary.get("clean_accuracy"),
        }
        for attack, by_eps in robust.items():
            if key in by_eps:
                rec[f"{attack}_accuracy"] = by_eps[key]
        rec["robust_accuracy"] = robust.get("worst_case", {}).get(key)
        if rec["robust_accuracy"] is None:  # a single attack: the worst case is that attack
            vals = [v[key] for a, v in robust.items() if key in v]
            rec["robust_accuracy"] = min(vals) if vals else None
        rec.update(
            wall_time_s=summary.get("train_time_s"),
            time_per_epoch_s=summary.get("time_per_epoch_s"),
            epochs=summary.get("epochs"),
            steps=summary.get("steps"),
            co_events=len(events),
            co_epochs=[e.get("epoch") for e in events],
            stopped_early=bool(summary.get("stopped_early")),
            stop_reason=summary.get("stop_reason"),
            trainable_params=summary.get("trainable_params"),
            total_params=summary.get("total_params"),
            run_dir=str(run_dir),
        )
        records.append(rec)
    return records


def _failed_records(
    method: str, mode: str, eps_list: list[float], run_dir: Path, error: str
) -> list[dict[str, Any]]:
    return [
        {
            "method": method,
            "mode": mode,
            "eps": float(e),
            "eps_unit": EPS_UNIT,
            "status": "failed",
            "error": error,
            "run_dir": str(run_dir),
        }
        for e in eps_list
    ]


def add_time_ratios(records: list[dict[str, Any]]) -> None:
    """``time_ratio``: wall time over the cheapest finished run of the same mode and ε."""
    done = [r for r in records if r.get("status") == "done" and r.get("wall_time_s")]
    for r in done:
        peers = [p["wall_time_s"] for p in done if p["mode"] == r["mode"] and p["eps"] == r["eps"]]
        r["time_ratio"] = r["wall_time_s"] / min(peers)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Fast-vs-PGD pairs (robust gap in points, time ratio) and the largest ε free of collapse."""
    done = [r for r in records if r.get("status") == "done"]
    by_key = {(r["method"], r["mode"], r["eps"]): r for r in done}
    pairs = []
    for (method, mode, eps), fast in sorted(
        by_key.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])
    ):
        slow = by_key.get(("pgd", mode, eps))
        if method not in FAST_METHODS or slow is None:
            continue
        pair: dict[str, Any] = {"fast": method, "slow": "pgd", "mode": mode, "eps": eps}
        for key in ("robust_accuracy", "pgd_accuracy", "apgd_accuracy", "clean_accuracy"):
            if fast.get(key) is not None and slow.get(key) is not None:
                pair[f"{key}_gap_points"] = 100 * (slow[key] - fast[key])
        if fast.get("wall_time_s") and slow.get("wall_time_s"):
            pair["time_ratio"] = slow["wall_time_s"] / fast["wall_time_s"]
        pair["fast_co_events"] = fast.get("co_events", 0)
        pairs.append(pair)
    stable: dict[str, Any] = {}
    for method, mode in sorted({(r["method"], r["mode"]) for r in done}):
        runs = sorted(
            (r for r in done if r["method"] == method and r["mode"] == mode), key=lambda r: r["eps"]
        )
        ok = None
        for r in runs:
            if r.get("co_events"):
                break
            ok = r["eps"]
        stable[f"{method}/{mode}"] = {
            "max_eps_without_co": ok,
            "co_at_eps": [r["eps"] for r in runs if r.get("co_events")],
        }
    return {
        "points": len(records),
        "done": len(done),
        "failed": sum(r.get("status") == "failed" for r in records),
        "pairs": pairs,
        "stability": stable,
    }


# -- the command -------------------------------------------------------------------------------
def _write(out: Path, cfg: CompareConfig, records: list[dict[str, Any]], complete: bool) -> Results:
    recs = [dict(r) for r in records]
    add_time_ratios(recs)
    summary = summarize(recs)
    results = Results(
        kind="compare",
        records=recs,
        config=config_to_dict(cfg),
        summary=summary,
        environment=environment_info(resolve_device(cfg.device)),
        complete=complete,
    )
    results.save(out / "results.json")
    return results


def compare(
    cfg: CompareConfig,
    out_dir: str | Path,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Results:
    """Run every point of ``cfg.compare`` into ``out_dir``; returns the ``compare`` results.

    Finished points with unchanged settings are reused; ``force`` deletes ``out_dir`` first.

    Raises:
        RunLockedError: another live process runs a comparison into ``out_dir``.
    """
    out = Path(out_dir)
    points = []
    for method, mode, eps in grid(cfg):
        name = point_name(method, mode, eps)
        eps_list = [float(e) for e in cfg.compare.eps] if eps is None else [eps]
        pcfg = point_config(cfg, method, mode, eps)
        run_dir = out / "points" / name
        run = functools.partial(_run_point, pcfg, method, mode, eps_list, run_dir)
        points.append(GridPoint(name, run_dir, config_to_dict(pcfg), run))
    saved: list[Results] = []

    def save(outcomes: list[PointOutcome], final: bool) -> None:
        records: list[dict[str, Any]] = []
        for o in outcomes:
            records += o.value or []  # a failed point's records say why
        saved.append(_write(out, cfg, records, complete=final))

    with RunDir(out).locked() as rd:
        if force:
            rd.clear()
        run_grid(points, save=save, on_changed="overwrite", log=log)
    return saved[-1]


def _run_point(
    pcfg: FinetuneConfig,
    method: str,
    mode: str,
    eps_list: list[float],
    run_dir: Path,
    start: PointStart,
) -> list[dict[str, Any]]:
    """Fine-tune (or reuse) one point; returns its records, also written to ``point.json``.

    A failure writes ``error.txt`` and a failed ``point.json``, then raises with the failed
    records."""
    point_file = run_dir / POINT_FILE
    wanted = config_to_dict(pcfg)
    try:
        if start.reuse:
            summary = json.loads((run_dir / SUMMARY).read_text())
        else:
            summary = finetune(pcfg, run_dir, resume=start.resume, force=start.force)
        recs = _records_from_summary(summary, method, mode, eps_list, run_dir)
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        recs = _failed_records(method, mode, eps_list, run_dir, error)
        atomic_write_json(point_file, {"status": "failed", "config": wanted, "records": recs})
        raise PointFailed(error, recs) from e
    atomic_write_json(point_file, {"status": "done", "config": wanted, "records": recs})
    return recs
