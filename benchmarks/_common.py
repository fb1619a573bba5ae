"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, which puts
this folder on ``sys.path``: ``from _common import save_results``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from advscale.utils import atomic_write_json, atomic_write_text


def save_results(
    out: Path, result: dict[str, Any], markdown: Callable[[dict[str, Any]], str]
) -> str:
    """Write ``result`` to ``out.json`` and ``markdown(result)`` to ``out.md`` (creating the
    folder), print the markdown and return it. The JSON is written first, so a failure in the
    markdown does not lose the measurements."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), result)
    text = markdown(result)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)
    return text


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously), before a clock read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fashion_mnist(split: str, n: int | None, seed: int, cifar_shaped: bool = False):
    """``n`` Fashion-MNIST images of ``split`` (an ImageDataset); ``cifar_shaped``: zero-padded
    by 2 pixels to 32x32 and repeated to 3 channels, the stand-in for CIFAR-10 (3x32x32) where
    CIFAR-10 itself is not on the machine."""
    import dataclasses

    from torch.nn import functional as F

    from advscale.data import load_dataset

    data = load_dataset("fashion-mnist", split).take(n, seed=seed)
    if not cifar_shaped:
        return data
    data = data.to_channels(3)
    return dataclasses.replace(
        data, images=F.pad(data.images, (2, 2, 2, 2)), name=f"{data.name} as 3x32x32"
    )


def classifier_for(arch: str, data, width: float):
    """A fresh ``arch`` classifier (``width`` scales its channels) for ``data``'s images."""
    from advscale.models import build_classifier

    kwargs = {"num_classes": len(data.classes), "in_channels": data.channels, "width": width}
    return build_classifier(arch, kwargs, data.mean, data.std)


def add_model_args(p) -> None:
    """``--arch`` and ``--cifar-shaped``, for a benchmark that trains its models."""
    p.add_argument("--arch", default="small_cnn", help="small_cnn, preact_resnet18, ...")
    p.add_argument(
        "--cifar-shaped",
        action="store_true",
        help="Fashion-MNIST padded to 32x32 and repeated to 3 channels (CIFAR-10's shape)",
    )
