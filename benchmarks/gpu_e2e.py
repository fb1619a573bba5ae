"""The whole ``advscale train`` run on a GPU, end to end: RS-FGSM, PreAct ResNet-18, 15 epochs.

The stand-in data is Fashion-MNIST padded to 32x32 and repeated to 3 channels, written in
CIFAR-10's binary layout (``cifar-10-batches-bin``: 50k training and 10k test records of one
label byte and 3072 pixel bytes), so the run reads it exactly as it would read CIFAR-10. The run
is the training loop ``advscale train`` runs (``advscale.train.Trainer``) with RS-FGSM at
ε = 8/255, batch 512, bf16 + channels_last (``--compile`` adds torch.compile), the
catastrophic-overfitting guard every epoch and the final evaluation (FGSM and PGD-20 on 1000
test images). It is timed in phases:

* set-up: reading the data, building and placing the model, optimizer and guard;
* epochs: the training steps alone, and each epoch's images/s;
* guard checks, checkpoints, per-epoch validation and bookkeeping (the rest of each epoch);
* final evaluation (with writing the model);

and set against the single-step figure: ``Trainer.train_step`` timed alone on one batch
already on the device, after the run (the figure train_overhead.py reports). GPU utilisation is
sampled by ``nvidia-smi`` while the epochs run. The model's clean and PGD-20 accuracy show that
the run learned.

Targets on one H100/H200: 15 epochs end to end ≤ 60 s, epoch throughput ≥ 90% of the single-step
figure.

Usage:
    python benchmarks/gpu_e2e.py                                  # cuda, full size
    python benchmarks/gpu_e2e.py --tiny --device cpu --out /tmp/e2e   # 1 epoch, 512 images
Writes benchmarks/results/gpu_e2e.{json,md} (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from _common import fashion_mnist, save_results, sync

from advscale.errors import UserError
from advscale.train import Trainer, load_config
from advscale.utils import environment_info, resolve_device

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0
TARGET_STEP_FRACTION = 0.9


def write_cifar_layout(root: Path, n_train: int, n_test: int) -> Path:
    """Fashion-MNIST as 3x32x32 in CIFAR-10's binary layout under ``root``; returns the
    ``cifar-10-batches-bin`` directory (five training files, one test file, class names)."""
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True, exist_ok=True)
    names = None
    for split, stems, n in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)], n_train),
        ("test", ["test_batch"], n_test),
    ):
        data = fashion_mnist(split, n, 0, cifar_shaped=True)
        names = data.classes
        images = data.images.reshape(len(data.images), -1).numpy()  # R, G, B planes, row-major
        records = np.concatenate([data.labels.numpy().astype(np.uint8)[:, None], images], 1)
        for stem, part in zip(stems, np.array_split(records, len(stems)), strict=True):
            (d / f"{stem}.bin").write_bytes(part.tobytes())
    (d / "batches.meta.txt").write_text("\n".join(names or []) + "\n")
    return d


class GpuSampler:
    """``nvidia-smi`` utilisation samples (percent) every ``period_ms`` while active; none
    where nvidia-smi is missing."""

    def __init__(self, period_ms: int = 200) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"-lms={period_ms}",
                    "-i=0",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):  # a header or a "[N/A]"
                self.samples.append((time.perf_counter(), float(line.strip())))

    def mean(self, start: float, end: float) -> float | None:
        vals = [u for t, u in self.samples if start <= t <= end]
        return sum(vals) / len(vals) if vals else None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class TimedTrainer(Trainer):
    """The training loop as ``advscale train`` runs it, with a clock around each phase."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phases: dict[str, float] = dict.fromkeys(
            ("setup", "epochs_total", "epoch_rest", "guard", "checkpoints", "final_evaluation"),
            0.0,
        )
        self.epoch_windows: list[tuple[float, float]] = []

    def _timed(self, phase: str, fn, *args: Any) -> Any:
        dev = torch.device(self.cfg.device)  # resolved by main(): "cuda" or "cpu"
        sync(dev)
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            sync(dev)
            self.phases[phase] += time.perf_counter() - t0

    def setup(self) -> None:
        self._timed("setup", super().setup)

    def save(self, tag: str = "last") -> None:
        self._timed("checkpoints", super().save, tag)

    def guard_check(self) -> None:
        self._timed("guard", super().guard_check)

    def run_epoch(self) -> None:
        before, n = dict(self.phases), len(self.records)
        t0 = time.perf_counter()
        self._timed("epochs_total", super().run_epoch)
        self.epoch_windows.append((t0, time.perf_counter()))
        steps = sum(r["time_s"] for r in self.records[n:])
        inside = sum(self.phases[k] - before[k] for k in ("guard", "checkpoints"))
        self.phases["epoch_rest"] += self.phases["epochs_total"] - before["epochs_total"]
        self.phases["epoch_rest"] -= steps + inside

    def finish(self) -> dict[str, Any]:
        return self._timed("final_evaluation", super().finish)


def single_step_rate(trainer: Trainer, steps: int) -> float:
    """Images/s of ``train_step`` alone on one batch already on the device (after warm-up)."""
    x, y = next(iter(trainer.loader))
    dev = trainer.dist.device
    x, y = x.to(dev), y.to(dev)
    for _ in range(3):
        trainer.train_step([(x, y)])
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step([(x, y)])
    sync(dev)
    return steps * len(x) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--width", type=float, default=1.0, help="PreAct ResNet-18 width multiplier")
    p.add_argument("--amp", default="bf16", choices=("none", "bf16", "fp16"))
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--eval-n", type=int, default=1000, help="final evaluation images")
    p.add_argument("--tiny", action="store_true", help="512 images, 1 epoch, width 1/8 (CPU)")
    p.add_argument("--work", type=Path, help="where data and the run go (default: a temp dir)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_e2e")
    args = p.parse_args(argv)
    if args.tiny:
        args.epochs, args.n_train, args.n_test, args.width = 1, 512, 256, 0.125
        args.batch_size, args.eval_n = min(args.batch_size, 128), 64
    try:
        device = resolve_device(args.device)
    except UserError as e:
        p.error(f"{e} (--device cpu runs it here, at --tiny size)")

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        data_dir = write_cifar_layout(work / "data", args.n_train, args.n_test)
        write_s = time.perf_counter() - t0
        settings = {
            "model": {"arch": "preact_resnet18", "kwargs": {"width": args.width}},
            "data": {
                "name": "cifar10",
                "data_dir": str(data_dir),
                "n_train": args.n_train,
                "n_val": min(1000, args.n_test),
            },
            "recipe": {"name": "rs_fgsm", "eps": 8, "alpha_scale": 1.25},
            "optimizer": {"name": "sgd", "lr": 0.2, "momentum": 0.9, "weight_decay": 5e-4},
            "schedule": {"name": "cyclic", "peak": 0.4},
            "guard": {"action": "stop", "threshold": 0.2},
            "eval": {
                "attacks": ["fgsm", "pgd"],
                "eps": [8],
                "n": args.eval_n,
                "attack_kwargs": {"pgd": {"steps": 20, "restarts": 1}},
                "label_leak": False,
            },
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "device": str(device),
            "amp": args.amp,
            "channels_last": not args.no_channels_last,
            "compile": args.compile,
            "progress": False,
            "tensorboard": False,
        }
        cfg_path = work / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(settings))
        config = load_config(cfg_path)
        sampler = GpuSampler() if device.type == "cuda" else None
        trainer = TimedTrainer(config, work / "run")
        t0 = time.perf_counter()
        summary = trainer.run()
        total = time.perf_counter() - t0
        if sampler is not None:
            sampler.close()
        step_rate = single_step_rate(trainer, 5 if args.tiny else 30)

    epochs = [r for r in trainer.records if r.get("type") == "epoch"]
    steps_s = sum(r["time_s"] for r in epochs)
    ph = trainer.phases
    epoch_rates = [r.get("images_per_s") for r in epochs]
    steady = [v for v in epoch_rates[1:] if v] or [v for v in epoch_rates if v]
    util = [sampler.mean(a, b) for a, b in trainer.epoch_windows] if sampler is not None else None
    result = {
        "benchmark": "gpu_e2e",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment_info(device),
        "driver": _driver(),
        "config": {k: v for k, v in settings.items() if k != "data"}
        | {"data": f"Fashion-MNIST as 3x32x32 in CIFAR-10 binary layout, {args.n_train} train"},
        "phases_s": {
            "write stand-in data (not part of a user's run)": write_s,
            "set-up (data, model, optimizer, guard)": ph["setup"],
            "training steps": steps_s,
            "guard checks": ph["guard"],
            "checkpoints": ph["checkpoints"],
            "validation, logging, results.json": ph["epoch_rest"],
            "final evaluation and model": ph["final_evaluation"],
            "end to end": total,
        },
        "epoch_images_per_s": epoch_rates,
        "single_step_images_per_s": step_rate,
        "steady_epoch_fraction_of_single_step": (
            (sorted(steady)[len(steady) // 2] / step_rate) if steady else None
        ),
        "gpu_utilisation_per_epoch": util,
        "clean_accuracy": summary.get("clean_accuracy"),
        "pgd20_accuracy": summary.get("pgd_accuracy"),
        "fgsm_accuracy": summary.get("fgsm_accuracy"),
        "events": summary.get("events", []),
        "targets": {"end_to_end_s": TARGET_SECONDS, "epoch_fraction": TARGET_STEP_FRACTION},
    }
    frac = result["steady_epoch_fraction_of_single_step"]
    result["met"] = bool(
        device.type == "cuda" and total <= TARGET_SECONDS and frac and frac >= TARGET_STEP_FRACTION
    )
    save_results(args.out, result, markdown)
    return 0


def _driver() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


def markdown(r: dict[str, Any]) -> str:
    env, cfg = r["environment"], r["config"]
    where = env.get("gpu") or f"{env['cpu']} ({env['cpu_count']} cores)"
    lines = [
        "# `advscale train` end to end: RS-FGSM, PreAct ResNet-18",
        "",
        f"{r['date']} · {where} · driver {r['driver'] or '-'} · torch {env['torch']}",
        "",
        f"{cfg['data']}; {cfg['epochs']} epochs, batch {cfg['batch_size']}, amp {cfg['amp']}, "
        f"channels_last {cfg['channels_last']}, compile {cfg['compile']}; guard every epoch, "
        "final evaluation FGSM + PGD-20 at 8/255.",
        "",
        "| phase | seconds |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in r["phases_s"].items()]
    rates = ", ".join(f"{v:,.0f}" for v in r["epoch_images_per_s"] if v)
    util = r["gpu_utilisation_per_epoch"]
    frac = r["steady_epoch_fraction_of_single_step"]
    lines += [
        "",
        f"Images/s per epoch: {rates}; single step alone: {r['single_step_images_per_s']:,.0f} "
        f"(steady epochs at {frac:.0%} of it)."
        if frac
        else "",
        "GPU utilisation per epoch (%): "
        + (", ".join("-" if u is None else f"{u:.0f}" for u in util) if util else "not sampled"),
        "",
        f"Model: clean {r['clean_accuracy']:.1%}, PGD-20 {r['pgd20_accuracy']:.1%}, "
        f"FGSM {r['fgsm_accuracy']:.1%} at ε = 8/255. Events: {len(r['events'])}.",
        "",
        f"Targets: end to end ≤ {r['targets']['end_to_end_s']:.0f} s and epochs ≥ "
        f"{r['targets']['epoch_fraction']:.0%} of the single-step figure, on one H100/H200: "
        f"**{'met' if r['met'] else 'not met' if env.get('gpu') else 'not measured (no GPU)'}**.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
