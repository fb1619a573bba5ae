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
