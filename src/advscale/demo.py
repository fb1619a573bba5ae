"""The main job (``advscale demo`` / ``make demo``): paper A's story on real Fashion-MNIST.

Three models are trained with the one training loop on the same data and budget:

- ``baseline``: clean training;
- ``kurakin_step_ll``: paper A's recipe — half of every batch replaced by step l.l. examples
  with per-example ε ~ |N(0, 8)| truncated to [0, 16], adversarial loss weight λ = 0.3;
- ``fgsm``: true-label FGSM training on whole batches at a large ε (64/255). It becomes more
  accurate on FGSM examples than on clean images at ε ≥ 32, but more accurate still on every
  label-free perturbation of the same size: it prefers perturbed inputs (``prefers_perturbed``),
  and the label-leak test with controls finds no leak (experiments/label_leak). The
  catastrophic-overfitting guard stops this run once FGSM accuracy far exceeds PGD accuracy.

Each is attacked with every attack of paper A plus PGD and APGD over ε ∈ {2, 4, 8, 16}/255,
checked for label leaking and gradient masking, and the results go to ``results.json``,
``report.md`` and ``report.html``. Expected, as in paper A: the hardened models resist one-step
attacks much better than the baseline, iterative attacks still break them, and the FGSM-trained
model is more accurate on any large perturbation than on clean images (prefers_perturbed), which
is not label leaking.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from advscale.data import load_dataset
from advscale.errors import RunInterrupted, UserError
from advscale.evaluate import evaluate
from advscale.evaluate.examples import save_examples
from advscale.evaluate.label_leak import label_leak, label_leak_summary
from advscale.models import load_model, save_model
from advscale.report import write_gallery_png, write_html_report
from advscale.report.text import format_demo_summary
from advscale.results import EPS_UNIT, Results
from advscale.train import TrainConfig, train, validate_config
from advscale.utils import resolve_device

EPS = [2.0, 4.0, 8.0, 16.0]
LEAK_EPS = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
ATTACKS = ["fgsm", "fgsm_pred", "step_ll", "step_rnd", "iter_basic", "iter_ll", "pgd", "apgd"]

# Why these numbers: a 12k-image subset and 4 epochs bring the width-0.5 CNN to ~87% clean
# accuracy in well under a minute per model on 2 CPU cores; 1000 test images give accuracies to
# about ±1.5 points; APGD with 25 steps keeps the whole evaluation within the time budget.
FULL = {
    "n_train": 12000,
    "epochs": 4,
    "n_test": 1000,
    "apgd_steps": 25,
    "batch_size": 128,
    "width": 0.5,
}
QUICK = {
    "n_train": 1500,
    "epochs": 1,
    "n_test": 200,
    "apgd_steps": 5,
    "batch_size": 100,
    "width": 0.5,
}

# Each training run's own end-of-training check (FGSM and PGD at 8/255): the report hides it
# behind the demo's full evaluation of the same model, so it is kept small.
END_CHECK_N = 100
END_CHECK_PGD_STEPS = 5

MODELS: dict[str, dict[str, Any]] = {
    "baseline": {"name": "clean"},
    "kurakin_step_ll": {"name": "kurakin", "method": "step_ll", "eps": 16.0, "lam": 0.3},
    "fgsm": {"name": "fgsm", "eps": 64.0},
}


def demo_config(
    recipe: dict[str, Any], size: dict[str, Any], data_dir: str | None, device: str
) -> TrainConfig:
    """The training config of one demo model."""
    return validate_config(
        {
            "model": {"arch": "small_cnn", "kwargs": {"width": size["width"]}},
            "data": {
                "name": "fashion-mnist",
                "data_dir": data_dir,
                "n_train": size["n_train"],
                "n_val": min(size["n_test"], 500),
            },
            "recipe": recipe,
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "cosine"},
            "epochs": size["epochs"],
            "batch_size": size["batch_size"],
            "device": device,
            "seed": 0,
            # The demo evaluates every model itself below, with every attack, and its report shows
            # that evaluation in place of this end-of-training check: a small one suffices.
            "eval": {
                "attacks": ["fgsm", "pgd"],
                "eps": [8.0],
                "n": min(size["n_test"], END_CHECK_N),
                "attack_kwargs": {"pgd": {"steps": END_CHECK_PGD_STEPS, "restarts": 1}},
                "label_leak": False,
            },
            "tensorboard": False,
        },
        TrainConfig,
        source="demo",
    )


def run_demo(
    out: str | Path = "runs/demo",
    data_dir: str | Path | None = None,
    quick: bool = False,
    device: str = "auto",
    progress: bool = True,
    size: dict[str, Any] | None = None,
    *,
    force: bool = False,
    resume: bool = False,
) -> Results:
    """Train, attack and report as the module docstring says; returns the demo's results.

    ``size`` overrides entries of the run's size (``FULL``, or ``QUICK`` with ``quick``). An
    earlier demo in ``out`` is kept unless ``force`` (start anew) or ``resume`` (models whose
    training finished are not trained again; an interrupted one continues from its last
    checkpoint; every model is evaluated again, as the evaluation is deterministic).

    Raises:
        UserError: ``out`` holds a demo and neither ``force`` nor ``resume`` is given, or both are.
        RunInterrupted: a signal stopped a training run; the message says how to resume.
    """
    out = Path(out)
    _check_out(out, force, resume)
    size = {**(QUICK if quick else FULL), **(size or {})}
    dev = resolve_device(device)
    started = time.perf_counter()
    test = load_dataset("fashion-mnist", "test", data_dir).take(size["n_test"], seed=1)
    results = Results(
        kind="demo",
        config={
            "models": MODELS,
            "attacks": ATTACKS,
            "eps": EPS,
            "label_leak_eps": LEAK_EPS,
            "eps_unit": EPS_UNIT,
            **size,
            "dataset": "fashion-mnist",
            "device": str(dev),
        },
        complete=False,
    )
    for name, recipe in MODELS.items():
        _say(
            f"[demo] training {name} ({recipe['name']}"
            + (f", {recipe['method']}" if "method" in recipe else "")
            + ")",
            progress,
        )
        cfg = demo_config(recipe, size, None if data_dir is None else str(data_dir), str(dev))
        run_dir = out / "train" / name
        summary = _train(
            cfg,
            run_dir,
            resume,
            resume_hint=f"advscale demo --out {out}" + (" --quick" if quick else "") + " --resume",
        )
        model = load_model(run_dir / "model", device=dev)
        save_model(
            model,
            out / "models" / name,
            dataset="fashion-mnist",
            classes=test.classes,
            training={"recipe": recipe, "summary_file": str(run_dir / "summary.json")},
        )

        _say(
            f"[demo] attacking {name}: {', '.join(ATTACKS)} at eps {', '.join(f'{e:g}' for e in EPS)}/255",
            progress,
        )
        report = evaluate(
            model,
            test,
            attacks=ATTACKS,
            eps=EPS,
            batch_size=500,
            device=dev,
            seed=0,
            attack_kwargs={"apgd": {"steps": size["apgd_steps"]}},
            progress=progress,
            keep_examples=8,
        )
        examples = out / "eval" / f"{name}.examples.safetensors"
        save_examples(report.examples, examples, classes=test.classes, model=name)
        write_gallery_png(examples, examples.with_suffix(".png"))
        leaks = label_leak(model, test, LEAK_EPS, device=dev, seed=0)
        ev = report.to_results(
            {
                "model": name,
                "checkpoint": str(out / "models" / name),
                # The training run of this model: the report shows this evaluation in place of
                # that run's end-of-training check.
                "train_run": str(run_dir),
                "adversarial_examples": examples.name,  # beside this results file
                "dataset": "fashion-mnist",
                "n": len(test),
            }
        )
        ev.records.extend({"check": "label_leak", "model": name, **row} for row in leaks)
        ev.summary.update(label_leak_summary(leaks))
        ev.save(out / "eval" / f"{name}.json")

        results.records.extend({"model": name, **r} for r in ev.records)
        results.summary[name] = {
            "recipe": recipe,
            "clean_accuracy": report.clean_accuracy,
            "worst_case": {f"{e:g}": acc for e, acc in report.worst_case().items()},
            "label_leak": ev.summary["label_leak"],
            "prefers_perturbed": ev.summary["prefers_perturbed"],
            "warnings": report.warnings,
            "train_seconds": summary.get("train_time_s"),
            "images_per_s": summary.get("images_per_s"),
        }
        results.save(out / "results.json")

    results.complete = True
    results.summary["seconds"] = round(time.perf_counter() - started, 1)
    results.save(out / "results.json")
    # The same report as `advscale report OUT`: the demo's results stand for its evaluations
    # and training runs.
    html = write_html_report([out], out / "report.html", title="advscale demo: Fashion-MNIST")
    _say(
        format_demo_summary(results)
        + f"\n[demo] wrote {out / 'results.json'}, {out / 'report.md'}, {html}",
        progress,
    )
    return results


#: What a demo writes in its directory (an earlier demo is kept unless asked otherwise).
DEMO_FILES = ("train", "models", "eval", "results.json", "report.md", "report.html")


def _check_out(out: Path, force: bool, resume: bool) -> None:
    if force and resume:
        raise UserError("--resume and --force exclude each other: continue the demo or start anew")
    held = [n for n in DEMO_FILES if os.path.lexists(out / n)]
    if held and not (force or resume):
        raise UserError(
            f"{out} already holds a demo ({', '.join(held)}); use --resume to continue it or "
            "--force to start it anew"
        )
    if force:  # none of the earlier demo's files may stand for this one's
        for name in held:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, resume_hint: str) -> dict[str, Any]:
    """Train one demo model: anew, or on ``resume`` from what its run directory holds."""
    started = resume and (run_dir / "config.json").exists()
    try:
        return train(cfg, run_dir, resume=started, force=not started)
    except RunInterrupted as e:
        # The training run's own hint names `advscale train`'s flag: name the demo's command.
        stopped = str(e).split("; continue with")[0]
        raise RunInterrupted(f"{stopped}; continue with: {resume_hint}", e.signum) from None


def _say(text: str, progress: bool) -> None:
    if progress:
        print(text, flush=True)
