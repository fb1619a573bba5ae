"""Results files of every kind a report reads, written the way the commands write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from advscale.results import Results


def _eval(model: str, robust: float, warnings: list[str]) -> Results:
    res = Results(
        "eval",
        config={"model": f"runs/demo/models/{model}", "name": model, "n": 200},
        summary={"warnings": warnings},
    )
    res.add(attack="clean", eps=0, accuracy=0.9)
    for attack in ("fgsm", "pgd"):
        for eps in (2, 4, 8):
            res.add(attack=attack, eps=eps, accuracy=robust * 2 / eps, eps_unit="1/255")
    # Label-leak rows as advscale.evaluate.label_leak returns them.
    leak = model == "hardened"
    res.add(
        check="label_leak",
        model=model,
        eps=8.0,
        clean_accuracy=0.9,
        fgsm_accuracy=0.95 if leak else 0.1,
        fgsm_pred_accuracy=0.2,
        leaked=0.3 if leak else 0.0,
        leak=leak,
    )
    res.summary["label_leak"] = leak
    return res


def write_runs(root: Path) -> dict[str, Path]:
    """Run directories below ``root``: two evals, a train run cut short by catastrophic
    overfitting, a compare, a transfer matrix and a sweep with one failed point."""
    runs = {
        "baseline": _eval("baseline", 0.2, []),
        "hardened": _eval("hardened", 0.6, ["one-step attack stronger than iterative at ε=8/255"]),
    }
    train = Results(
        "train",
        config={"name": "fgsm-run", "recipe": {"name": "fgsm", "eps": 8}},
        complete=False,
        summary={
            "events": [
                {
                    "epoch": 3,
                    "event": "catastrophic_overfit",
                    "message": "PGD accuracy fell from 30.0% to 2.0%",
                }
            ]
        },
    )
    for epoch in range(1, 6):
        train.add(
            epoch=epoch,
            loss=1.0 / epoch,
            train_accuracy=0.5 + 0.05 * epoch,
            test_accuracy=0.6 + 0.03 * epoch,
            robust_accuracy=0.3 if epoch < 3 else 0.02,
            seconds=2.0,
        )
    runs["train"] = train
    from advscale.transfer.compare import add_time_ratios, summarize

    points = []
    for method, seconds, robust in (("fgsm", 10.0, 0.33), ("pgd", 40.0, 0.35)):
        for mode in ("full", "linear"):
            points.append(
                {
                    "method": method,
                    "mode": mode,
                    "eps": 8.0,
                    "status": "done",
                    "clean_accuracy": 0.8,
                    "pgd_accuracy": robust + 0.02,
                    "apgd_accuracy": robust,
                    "robust_accuracy": robust,
                    "wall_time_s": seconds,
                    "co_events": 0,
                }
            )
    points.append(
        {
            "method": "fgsm",
            "mode": "lora",
            "eps": 8.0,
            "status": "failed",
            "error": "BackboneError: no LoRA target",
        }
    )
    add_time_ratios(points)
    compare = Results(
        "compare", records=points, config={"name": "fgsm-vs-pgd"}, summary=summarize(points)
    )
    runs["compare"] = compare
    matrix = Results("transfer_matrix")
    for s in ("a", "b"):
        for t in ("a", "b"):
            matrix.add(
                source=s,
                target=t,
                attack="fgsm",
                eps=8,
                transfer_rate=1.0 if s == t else 0.5,
                error_rate=0.45,
                candidates=40,
            )
    runs["transfer"] = matrix
    sweep = Results("sweep", config={"field": "model.kwargs.width"})
    for variant in ("baseline", "kurakin"):
        for width in (0.5, 1.0):
            sweep.add(
                variant=variant,
                field="model.kwargs.width",
                value=width,
                attack="step_ll",
                attack_type="one-step",
                eps=8,
                clean_accuracy=0.9,
                accuracy=0.45,
                ratio=0.5,
            )
    sweep.add(
        variant="kurakin",
        field="model.kwargs.width",
        value=2.0,
        status="failed",
        error="RuntimeError: boom",
    )
    runs["sweep"] = sweep
    out = {}
    for name, res in runs.items():
        out[name] = root / "runs" / name
        res.save(out[name] / "results.json")
    return out


@pytest.fixture
def run_dirs(tmp_path: Path) -> dict[str, Path]:
    """Fresh run directories of every kind (see :func:`write_runs`), free to modify."""
    return write_runs(tmp_path)


@pytest.fixture(scope="session")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``advscale report RUNS_PARENT --out .../report.html`` on runs of every kind, written once."""
    from advscale.cli import main

    root = tmp_path_factory.mktemp("full_report")
    dirs = write_runs(root)
    out = root / "rep" / "report.html"
    assert main(["report", str(next(iter(dirs.values())).parent), "--out", str(out)]) == 0
    return out


def write_real_runs(root: Path, data_dir: Path) -> dict[str, Path]:
    """A real training run (Kurakin step l.l.) on 512 Fashion-MNIST images (steps logged every 2,
    the guard checking every 3 steps) and ``advscale eval --save-adv`` of its model: what a user has
    after one small experiment."""
    from advscale.cli import main
    from advscale.train import TrainConfig, train, validate_config

    cfg = validate_config(
        {
            "model": {"arch": "small_cnn", "kwargs": {"width": 0.25}},
            "data": {
                "name": "fashion-mnist",
                "data_dir": str(data_dir),
                "n_train": 512,
                "n_val": 60,
            },
            "recipe": {"name": "kurakin", "method": "step_ll", "eps": 8.0},
            "optimizer": {"name": "adamw", "lr": 0.01},
            "guard": {"every": 3, "n": 40, "pgd_steps": 3, "action": "continue"},
            "eval": {
                "attacks": ["fgsm", "pgd"],
                "n": 40,
                "attack_kwargs": {"pgd": {"steps": 3}},
                "label_leak": False,
            },
            "epochs": 1,
            "batch_size": 32,
            "log_every": 2,
            "device": "cpu",
            "tensorboard": False,
            "progress": False,
        },
        TrainConfig,
        source="test",
    )
    run = root / "runs" / "kurakin"
    train(cfg, run, force=True)
    ev = root / "runs" / "kurakin_eval"
    args = ["eval", "--model", str(run / "model"), "--data-dir", str(data_dir), "--n", "60"]
    args += ["--attacks", "fgsm,pgd", "--eps", "4,8", "--device", "cpu", "--no-unbounded-check"]
    assert main([*args, "--out", str(ev / "results.json"), "--save-adv", str(ev / "adv")]) == 0
    return {"train": run, "eval": ev}


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> dict[str, Path]:
    """:func:`write_real_runs`, once per session (do not modify)."""
    return write_real_runs(tmp_path_factory.mktemp("real_runs"), fmnist_dir)
