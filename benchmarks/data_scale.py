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
import torch
from _common import save_results

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


# -- throughput -------------------------------------------------------------------------------
class PilBaseline(torch.utils.data.Dataset):
    """The usual way: a Dataset opening each file with PIL, crop with padding + flip drawn
    from NumPy's global generator, to a uint8 tensor; batched by DataLoader."""

    def __init__(self, files: list[str], labels: list[int], padding: int = 4) -> None:
        self.files, self.labels, self.padding = files, labels, padding

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, ImageOps

        with Image.open(self.files[i]) as im:
            im = im.convert("RGB")
        p = self.padding
        dy, dx = np.random.randint(0, 2 * p + 1, 2)
        im = ImageOps.expand(im, p).crop((dx, dy, dx + im.size[0], dy + im.size[1]))
        if np.random.rand() < 0.5:
            im = im.transpose(0)  # FLIP_LEFT_RIGHT
        return torch.from_numpy(np.asarray(im).transpose(2, 0, 1).copy()), self.labels[i]


class Endless:
    """A loader read across epochs without end (its persistent workers stay up), each batch
    as a model takes it: float in [0, 1] (advscale's loader converts; the baseline's uint8
    batch is converted as a user would, with ``to_float``)."""

    def __init__(self, loader: Any, ready: int) -> None:
        self.loader, self.ready, self.epoch = loader, ready, 0
        self.it = self._start()

    def _start(self) -> Any:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.epoch)
        return iter(self.loader)

    def next(self) -> Any:
        try:
            return next(self.it)
        except StopIteration:
            self.epoch += 1
            self.it = self._start()
            return next(self.it)

    def take(self, n: int) -> None:
        from advscale.data import to_float

        for _ in range(n):
            to_float(self.next()[0])

    def rate(self, n_batches: int, batch_size: int) -> float:
        """Images per second over ``n_batches``, after the batches its workers made while the
        other loaders were measured (``ready``: prefetch x workers, and one)."""
        self.take(self.ready)
        t0 = time.perf_counter()
        self.take(n_batches)
        return n_batches * batch_size / (time.perf_counter() - t0)


def interleaved(loaders: dict[str, Endless], rounds: int, n_batches: int,
                batch_size: int) -> dict[str, list[float]]:  # fmt: skip
    """Each loader's images/s in each of ``rounds`` rounds, the loaders one after the other
    within a round: a change in the machine's speed (this is a shared virtual machine; one
    round can run 30% slower than the next) falls on a round's measurements alike, so ratios
    are taken within a round and their median reported."""
    rates: dict[str, list[float]] = {k: [] for k in loaders}
    for _ in range(rounds):
        for name, loader in loaders.items():
            rates[name].append(loader.rate(n_batches, batch_size))
    return rates


def _decode_share(args: tuple[str, int, int]) -> float:
    """Images/s of one process decoding, augmenting and stacking ``n`` images, nothing sent."""
    from advscale.data import Transform, load_dataset

    torch.set_num_threads(1)
    folder, start, n = args
    ds = load_dataset("imagefolder", "train", folder).with_transform(
        Transform(augment="crop_flip", padding=4, seed=0)
    )
    t0 = time.perf_counter()
    for b in range(start, start + n, 64):
        np.stack([ds[(0, i % len(ds))][0] for i in range(b, min(b + 64, start + n))])
    return n / (time.perf_counter() - t0)


def machine_scaling(folder: Path, n: int, rounds: int) -> dict[str, Any]:
    """What the machine allows: images/s of 2 processes doing a worker's work at once against
    1 alone, without a loader (no batches sent anywhere); the median of ``rounds``."""
    ratios = []
    with Pool(2) as pool:
        for r in range(rounds):
            one = pool.map(_decode_share, [(str(folder), 2 * r * n, n)], chunksize=1)[0]
            two = sum(pool.map(_decode_share, [(str(folder), (2 * r + k) * n, n) for k in (0, 1)],
                               chunksize=1))  # fmt: skip
            ratios.append(two / one)
    return {"two_vs_one_process": round(float(np.median(ratios)), 3),
            "rounds": [round(x, 3) for x in ratios], "images_per_process": n}  # fmt: skip


def decoders(folder: Path, work: Path, n: int = 300) -> dict[str, Any]:
    """Microseconds to decode a JPEG with Pillow and with simplejpeg (when installed; the
    default then), on ``n`` of the folder's 96x96 images and on ``n`` generated 500x375 ones
    (ImageNet's typical size), and whether they gave the same pixels."""
    from PIL import Image

    from advscale.data import decode

    big = work / "decoders"
    big.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = np.full((375, 500, 3), rng.uniform(60, 200, 3)) + rng.normal(0, 40, (375, 500, 3))
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(big / f"{i}.jpg", quality=90)
    out: dict[str, Any] = {"simplejpeg": getattr(decode.simplejpeg, "__version__", None)}
    small = sorted((folder / "train" / "c00").iterdir())[:n]
    for name, files in (("96x96", small), ("500x375", sorted(big.iterdir()))):
        times, pixels = {}, {}
        for how, choice in (("pillow", "pillow"), ("default", "auto")):
            os.environ["ADVSCALE_JPEG"] = choice
            decode.open_image(files[0], 3)
            t0 = time.perf_counter()
            pixels[how] = [decode.to_chw(decode.open_image(f, 3)) for f in files]
            times[how] = (time.perf_counter() - t0) / len(files) * 1e6
        os.environ.pop("ADVSCALE_JPEG")
        same = all(np.array_equal(x, y) for x, y in zip(*pixels.values(), strict=True))
        out[name] = {"pillow_us": round(times["pillow"], 1), "default_us": round(times["default"], 1),
                     "same_pixels": same}  # fmt: skip
    shutil.rmtree(big)
    return out


def loader_throughput(folder: Path, a: argparse.Namespace) -> dict[str, Any]:
    from advscale.data import Transform, load_dataset
    from advscale.data.stream import IndexPlan, StreamLoader

    ds = load_dataset("imagefolder", "train", folder)
    prefetch = 2

    def ours(workers: int) -> Endless:
        src = ds.with_transform(Transform(augment="crop_flip", padding=4, seed=0))
        plan = IndexPlan(len(ds), a.batch_size, seed=0, rank=0, world_size=1)
        loader = StreamLoader(src, plan, workers=workers, prefetch=prefetch,
                              example_shape=(src.channels, *src.image_size))  # fmt: skip
        return Endless(loader, workers * prefetch + 1)

    files = [str(ds.path(i)) for i in range(len(ds))]

    def baseline(workers: int) -> Endless:
        loader = torch.utils.data.DataLoader(
            PilBaseline(files, ds.labels.tolist()), batch_size=a.batch_size, shuffle=True,
            drop_last=True, num_workers=workers, persistent_workers=workers > 0,
            prefetch_factor=prefetch if workers else None,
        )  # fmt: skip
        return Endless(loader, workers * prefetch + 1)

    counts = sorted({1, 2, a.workers})
    loaders = {f"advscale_{w}": ours(w) for w in counts}
    loaders.update({f"dataloader_pil_{w}": baseline(w) for w in counts})
    rates = interleaved(loaders, a.rounds, a.throughput_batches, a.batch_size)

    def ratio(num: str, den: str) -> dict[str, Any]:
        per_round = [x / y for x, y in zip(rates[num], rates[den], strict=True)]
        return {"median": round(float(np.median(per_round)), 3),
                "rounds": [round(x, 3) for x in per_round]}  # fmt: skip

    median = {k: round(float(np.median(v)), 1) for k, v in rates.items()}
    w = a.workers
    return {
        "images_per_s": median,
        "vs_dataloader_pil": ratio(f"advscale_{w}", f"dataloader_pil_{w}"),
        "two_vs_one_worker": ratio("advscale_2", "advscale_1"),
        # The same ratio for the baseline.
        "two_vs_one_worker_dataloader_pil": ratio("dataloader_pil_2", "dataloader_pil_1"),
        "machine": machine_scaling(folder, a.throughput_batches * a.batch_size // 2, a.rounds),
        "batches_per_round": a.throughput_batches,
        "rounds": a.rounds,
        "workers": w,
    }


def on_device_augmentation(a: argparse.Namespace) -> dict[str, Any]:
    """Training images/s on an in-memory 3x32x32 set, crop_flip on the device against none."""
    from advscale.data import BatchLoader, ImageDataset, Transform
    from advscale.models import build_classifier

    device = torch.device(
        "cuda" if a.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    )
    g = torch.Generator().manual_seed(0)
    n = a.batch_size * (a.aug_steps + 2)  # an epoch and more: each round starts anywhere in it
    data = ImageDataset(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                        torch.randint(0, 10, (n,), generator=g), [str(i) for i in range(10)])  # fmt: skip

    def trainer(augment: str) -> Any:
        """A function running ``k`` more training steps and returning their seconds."""
        torch.manual_seed(0)
        model = build_classifier(
            "small_cnn", {"num_classes": 10, "in_channels": 3}, (0.5,) * 3, (0.25,) * 3
        ).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        loader = BatchLoader(data, a.batch_size, drop_last=True, device=device,
                             transform=Transform(augment=augment, seed=0))  # fmt: skip
        batches = Endless(loader, 0)

        def steps(k: int) -> float:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(k):
                x, y = batches.next()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return time.perf_counter() - t0

        steps(1)  # warm-up
        return steps

    runs = {"none": trainer("none"), "crop_flip": trainer("crop_flip")}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(a.rounds):
        for name, steps in runs.items():
            rates[name].append(a.aug_steps * a.batch_size / steps(a.aug_steps))
    per_round = [c / n for c, n in zip(rates["crop_flip"], rates["none"], strict=True)]
    none, crop = (float(np.median(rates[k])) for k in ("none", "crop_flip"))
    return {"device": str(device), "images_per_s": {"none": round(none, 1), "crop_flip": round(crop, 1)},
            "ratio": round(float(np.median(per_round)), 3),
            "rounds": [round(x, 3) for x in per_round], "steps": a.aug_steps}  # fmt: skip


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
