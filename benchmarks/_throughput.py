"""Loader throughput for ``data_scale.py``: advscale's streamed loader against ``DataLoader`` +
PIL, 1 against 2 workers, what the machine allows, the two JPEG decoders, and in-memory training
with on-device augmentation against none; each measured in interleaved rounds (loaders kept up,
ratios taken within a round, medians reported)."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import torch


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
