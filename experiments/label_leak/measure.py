"""Label-leak test with controls on trained runs: one results file and a Markdown table.

Usage:
    python experiments/label_leak/measure.py runs/label_leak/kurakin_fgsm_w1 \
        --out experiments/label_leak/results/kurakin_fgsm_w1.json [--n 2000] [--eps 2,4,8,16,32,64]

Each run directory is an ``advscale train`` output (``model`` checkpoint, ``summary.json``).
Every model is tested on the same class-stratified Fashion-MNIST test images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from advscale import load_model
from advscale.data import load_dataset
from advscale.evaluate.label_leak import LEAK_CONTROLS, label_leak, label_leak_summary
from advscale.results import EPS_UNIT, Results

COLUMNS = ["clean", "fgsm", *LEAK_CONTROLS]


def measure(runs: list[Path], n: int, eps: list[float], data_dir: str | None) -> Results:
    """label_leak at every ε on the first ``n`` stratified test images, for each run's model."""
    test = load_dataset("fashion-mnist", "test", data_dir).take(n, seed=1)
    results = Results(
        kind="eval",
        config={
            "command": "experiments/label_leak/measure.py",
            "runs": [str(r) for r in runs],
            "data": "fashion-mnist",
            "split": "test",
            "n": len(test),
            "eps": eps,
            "eps_unit": EPS_UNIT,
            "controls": list(LEAK_CONTROLS),
        },
    )
    for run in runs:
        started = time.perf_counter()
        model = load_model(run / "model", device="cpu")
        rows = label_leak(model, test, eps, seed=0)
        train = json.loads((run / "summary.json").read_text())
        results.records.extend({"check": "label_leak", "model": run.name, **r} for r in rows)
        results.summary[run.name] = {
            **label_leak_summary(rows),
            "config": json.loads((run / "config.json").read_text()),
            "train_steps": train.get("steps"),
            "train_time_s": train.get("train_time_s"),
            "stopped_early": train.get("stopped_early"),
            "robust_accuracy_val": train.get("robust_accuracy"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{run.name}: {results.summary[run.name]['seconds']} s", flush=True)
    return results


def table(results: Results) -> str:
    """Markdown: accuracies (%), FGSM minus the most accurate control, with its interval, both flags."""
    head = (
        "| model | ε | "
        + " | ".join(COLUMNS)
        + " | FGSM − most accurate control (95% CI) | p (leak) "
        "| leak | prefers_perturbed |"
    )
    lines = [head, "|" + "---|" * (len(COLUMNS) + 6)]
    for r in results.records:
        worst = min(r["leak_tests"].values(), key=lambda t: t["diff"])
        accs = [
            r["clean_accuracy"],
            r["fgsm_accuracy"],
            *(r[f"{c}_accuracy"] for c in LEAK_CONTROLS),
        ]
        lines.append(
            f"| {r['model']} | {r['eps']:g} | "
            + " | ".join(f"{100 * a:.1f}" for a in accs)
            + f" | {100 * worst['diff']:+.1f} ({100 * worst['ci_low']:+.1f}, "
            f"{100 * worst['ci_high']:+.1f}) | {r['leak_p_value']:.2g} | "
            f"{'yes' if r['leak'] else 'no'} | {'yes' if r['prefers_perturbed'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="advscale train output directories")
    p.add_argument("--out", type=Path, required=True, help="results JSON to write")
    p.add_argument("--n", type=int, default=2000, help="test images (stratified)")
    p.add_argument("--eps", default="2,4,8,16,32,64", help="budgets in pixel levels (8 = 8/255)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = measure(args.runs, args.n, [float(e) for e in args.eps.split(",")], args.data_dir)
    path = results.save(args.out)
    print(table(results))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
