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
