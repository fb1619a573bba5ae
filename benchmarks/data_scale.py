"""Data at scale: memory and start-up time as an image folder grows, and loader throughput.

On generated ImageFolders of N 96x96 JPEGs (10 classes; N in ``--sizes``, default 10k, 40k,
160k training images plus N/4 validation images) it measures, each in a fresh process:

- peak memory of ``advscale eval --n 1000`` (FGSM at 8/255; the data path dominates) and of
  a 50-step ``advscale train`` with ``--workers`` decoding workers: the largest process (from
  ``wait4``: the figure the targets use), and the whole process tree sampled from /proc every
  0.05 s (an overcount: pages a forked worker shares with its parent count in both);
- the time from launching ``advscale train`` to its first step, with the folder's index
  already built, and the one-time index build (``advscale data info`` on a fresh folder);
- decode + augment (crop_flip) throughput of advscale's loader against a plain
  ``torch.utils.data.DataLoader`` + PIL dataset doing the same work with the same workers,
  and each with 1 against 2 workers: every loader kept up (persistent workers) and measured
  in turn within each of ``--rounds`` rounds, ratios taken within a round, medians reported;
  beside them, what the machine allows: 2 processes doing a worker's work at once against 1;
- JPEG decoding with Pillow and with simplejpeg (the default when installed), 96x96 and
  500x375, and whether they give the same pixels;
- training throughput of a small CNN on an in-memory CIFAR-shaped set with on-device
  crop_flip against none, measured in turn within each round in the same way.

Targets: memory flat within 15% and time to first step within 2x from the smallest to the
largest folder; throughput at least 1.0x the DataLoader + PIL baseline; 2 workers at least
1.7x one; on-device augmentation at least 95% of the throughput without.

The throughput measurements live in ``_throughput.py``; this file makes the folders, measures
memory and start-up, and writes the report.

Run: ``python benchmarks/data_scale.py`` (writes benchmarks/results/data_scale.{json,md});
``--tiny`` runs it in seconds at toy sizes to check that it works (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from _common import save_results
from _throughput import decoders, loader_throughput, on_device_augmentation

from advscale.utils import environment_info

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CLASSES = 10
SIDE = 96


# -- generated data ---------------------------------------------------------------------------
def _write_class(args: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    d, c, n, seed = args
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed * 1000 + c)
    colour = np.array([(c * 37) % 256, (c * 91) % 256, (c * 53) % 256], dtype=np.float64)
    for i in range(n):
        arr = colour * rng.uniform(0.6, 1.0) + rng.normal(0, 40, (SIDE, SIDE, 3))
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(d / f"{i:06d}.jpg", quality=90)


def make_folder(root: Path, n_train: int, workers: int) -> Path:
    """ROOT/train/cCC/*.jpg (n_train images) and ROOT/val/cCC/*.jpg (n_train / 4)."""
    jobs = [
        (root / split / f"c{c:02d}", c, max(1, n // CLASSES), seed)
        for seed, (split, n) in enumerate((("train", n_train), ("val", max(CLASSES, n_train // 4))))
        for c in range(CLASSES)
    ]
    with Pool(max(1, workers)) as pool:
        pool.map(_write_class, jobs)
    os.sync()  # measured as data at rest: no write-back of the new files running beside
    return root


# -- measuring a command ----------------------------------------------------------------------
def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def run_measured(cmd: list[str], first_step: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; its peak memory, seconds, and (given a metrics file) seconds to step 1."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # stderr to a file, not a pipe: a chatty child cannot fill it and stall.
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        peak_tree, t_first = 0, None
        while True:
            # Reaped here, not by Popen: wait4 gives this child's own peak (its largest process).
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_tree = max(peak_tree, _tree_rss(proc.pid))
            if first_step is not None and t_first is None and _has_step(first_step):
                t_first = time.perf_counter() - t0
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed: {err.read().decode()[-2000:]}")
    if first_step is not None and t_first is None and _has_step(first_step):
        t_first = seconds
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "peak_tree_rss_mb": round(peak_tree / 2**20, 1),
        "first_step_s": None if t_first is None else round(t_first, 2),
    }


def _has_step(metrics: Path) -> bool:
    try:
        return any('"type": "step"' in line for line in metrics.read_text().splitlines())
    except OSError:
        return False


def advscale(*args: str) -> list[str]:
    return [sys.executable, "-m", "advscale", *args]


def measure_size(folder: Path, work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Index build, 50 training steps, then eval of that model, on one folder."""
    out: dict[str, Any] = {}
    out["index_build"] = run_measured(
        advscale("data", "info", "imagefolder", "--data-dir", str(folder))
    )
    cfg = work / f"{folder.name}.yaml"
    cfg.write_text(json.dumps({
        "data": {"name": "imagefolder", "data_dir": str(folder), "n_val": a.n_val,
                 "workers": a.workers, "augment": "crop_flip", "image_size": SIDE},
        "model": {"arch": "small_cnn", "kwargs": {"width": 0.25}},
        "epochs": 1000, "max_steps": a.steps, "batch_size": a.batch_size, "log_every": 1,
        "progress": False, "tensorboard": False, "device": a.device,
        "eval": {"n": a.n_val, "attacks": ["fgsm", "pgd"], "attack_kwargs": {"pgd": {"steps": 1}},
                 "label_leak": False},
    }))  # fmt: skip
    run = work / f"run-{folder.name}"
    out["train"] = run_measured(
        advscale("train", "--config", str(cfg), "--out", str(run), "--force"),
        first_step=run / "metrics.jsonl",
    )
    res = work / f"eval-{folder.name}.json"
    out["eval"] = run_measured(advscale(
        "eval", "--model", str(run / "model"), "--data", "imagefolder", "--data-dir", str(folder),
        "--n", str(a.n_eval), "--attacks", "fgsm", "--eps", "8", "--no-unbounded-check",
        "--device", a.device, "--out", str(res), "--force",
    ))  # fmt: skip
    return out


# -- the report -------------------------------------------------------------------------------
def verdicts(r: dict[str, Any]) -> dict[str, Any]:
    sizes = sorted(r["sizes"], key=int)
    small, large = r["sizes"][sizes[0]], r["sizes"][sizes[-1]]
    out = {
        "eval_memory_ratio": round(large["eval"]["peak_rss_mb"] / small["eval"]["peak_rss_mb"], 3),
        "train_memory_ratio": round(
            large["train"]["peak_rss_mb"] / small["train"]["peak_rss_mb"], 3
        ),
        "first_step_ratio": None,
    }
    if small["train"]["first_step_s"] and large["train"]["first_step_s"]:
        out["first_step_ratio"] = round(
            large["train"]["first_step_s"] / small["train"]["first_step_s"], 3
        )
    out["met"] = {
        "memory_flat_15pct": max(out["eval_memory_ratio"], out["train_memory_ratio"]) <= 1.15,
        "first_step_within_2x": out["first_step_ratio"] is not None
        and out["first_step_ratio"] <= 2,
        "throughput_vs_dataloader_pil": r["throughput"]["vs_dataloader_pil"]["median"] >= 1.0,
        "two_workers_1_7x": r["throughput"]["two_vs_one_worker"]["median"] >= 1.7,
        "on_device_augmentation_95pct": r["on_device"]["ratio"] >= 0.95,
    }
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Data at scale" + (" (tiny run: the numbers mean nothing)" if r["tiny"] else ""),
        "",
        f"{r['env']['cpu']} ({r['env']['cpu_count']} cores), torch {r['env']['torch']}, "
        f"Pillow {r['pillow']}, advscale {r['env']['advscale']}; {r['args']['workers']} workers, "
        f"batch {r['args']['batch_size']}, {SIDE}x{SIDE} JPEGs, {CLASSES} classes.",
        "",
        "| training images | index build s | train peak MB (tree) | time to first step s "
        f"| eval --n {r['args']['n_eval']} peak MB (tree) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, s in sorted(r["sizes"].items(), key=lambda kv: int(kv[0])):
        t, e = s["train"], s["eval"]
        lines.append(
            f"| {int(n):,} | {s['index_build']['seconds']} | {t['peak_rss_mb']} "
            f"({t['peak_tree_rss_mb']}) | {t['first_step_s']} | {e['peak_rss_mb']} "
            f"({e['peak_tree_rss_mb']}) |"
        )
    tp, od, v = r["throughput"], r["on_device"], r["verdicts"]
    ips = tp["images_per_s"]  # advscale_W, dataloader_pil_W
    dec = r["decoders"]
    lines += [
        "",
        f"Largest against smallest folder: eval memory x{v['eval_memory_ratio']}, training "
        f"memory x{v['train_memory_ratio']}, time to first step x{v['first_step_ratio']}.",
        "",
        f"Decode + crop_flip, batch {r['args']['batch_size']}, median images/s of "
        f"{tp['rounds']} interleaved rounds of {tp['batches_per_round']} batches (ratios taken "
        "within a round):",
        "",
        "| workers | advscale | DataLoader + PIL | advscale / baseline |",
        "|---:|---:|---:|---:|",
        *[
            f"| {w} | {ips[f'advscale_{w}']} | {ips[f'dataloader_pil_{w}']} | "
            f"x{ips[f'advscale_{w}'] / ips[f'dataloader_pil_{w}']:.3f} |"
            for w in sorted({int(k.rsplit("_", 1)[1]) for k in ips})
        ],
        "",
        f"2 workers against 1: advscale x{tp['two_vs_one_worker']['median']} (rounds "
        f"{tp['two_vs_one_worker']['rounds']}), DataLoader + PIL "
        f"x{tp['two_vs_one_worker_dataloader_pil']['median']}. What the machine allows: 2 "
        f"processes doing a worker's work with nothing sent anywhere, x"
        f"{tp['machine']['two_vs_one_process']} one alone (rounds {tp['machine']['rounds']}).",
        "",
        "JPEG decoding, µs an image ("
        + (
            f"simplejpeg {dec['simplejpeg']}, advscale's default"
            if dec["simplejpeg"]
            else "simplejpeg not installed: both columns are Pillow"
        )
        + "): "
        + "; ".join(
            f"{k}: Pillow {dec[k]['pillow_us']}, default {dec[k]['default_us']} "
            f"(same pixels: {'yes' if dec[k]['same_pixels'] else 'NO'})"
            for k in ("96x96", "500x375")
        )
        + ".",
        "",
        f"In memory on {od['device']}: training {od['images_per_s']['none']} images/s without "
        f"augmentation, {od['images_per_s']['crop_flip']} with on-device crop_flip "
        f"(median of the rounds' ratios {100 * od['ratio']:.1f}%; rounds {od['rounds']}).",
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if ok else 'no'} |" for k, ok in v["met"].items()],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,40000,160000", help="training images per folder")
    p.add_argument("--tiny", action="store_true", help="toy sizes, seconds: checks the script")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--throughput-batches", type=int, default=100, help="batches a round")
    p.add_argument("--rounds", type=int, default=9, help="rounds of the loader throughput")
    p.add_argument("--aug-steps", type=int, default=50)
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, default=None, help="where to generate the folders")
    p.add_argument("--out", type=Path, default=HERE / "results" / "data_scale")
    a = p.parse_args(argv)
    if a.tiny:
        a.sizes = "40,80" if a.sizes == p.get_default("sizes") else a.sizes
        a.batch_size, a.steps, a.n_eval, a.n_val = 8, 3, 10, 10
        a.throughput_batches, a.aug_steps, a.rounds = 3, 3, 1
    sizes = [int(s) for s in a.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="data_scale-", dir=a.work))
    try:
        results: dict[str, Any] = {"sizes": {}}
        for n in sizes:
            folder = make_folder(work / f"folder{n}", n, a.workers)
            results["sizes"][str(n)] = measure_size(folder, work, a)
            print(f"{n} images: {json.dumps(results['sizes'][str(n)])}", flush=True)
        results["decoders"] = decoders(work / f"folder{sizes[-1]}", work, 5 if a.tiny else 300)
        results["throughput"] = loader_throughput(work / f"folder{sizes[-1]}", a)
        results["on_device"] = on_device_augmentation(a)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import PIL

    results.update(tiny=a.tiny, args={k: str(v) for k, v in vars(a).items()}, pillow=PIL.__version__,
                   env=environment_info(a.device))  # fmt: skip
    results["verdicts"] = verdicts(results)
    save_results(a.out, results, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
