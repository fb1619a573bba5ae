"""Fixtures for the transfer tests: a small backbone pretrained on real Fashion-MNIST classes 0-4."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advscale.cli import main

_QUIET = ["progress=false", "tensorboard=false", "eval.label_leak=false"]


@pytest.fixture(scope="session")
def fmnist_backbone(fmnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An advscale checkpoint: small_cnn (width 0.25) trained a few steps on classes 0-4."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pretrain") / "run"
    config = out.parent / "pretrain.yaml"
    config.write_text(
        "model: {arch: small_cnn, kwargs: {width: 0.25}}\n"
        "data: {name: fashion-mnist, classes: [0, 1, 2, 3, 4], n_train: 256, n_val: 64}\n"
        "recipe: {name: clean}\n"
        "optimizer: {name: adamw, lr: 0.01, weight_decay: 0}\n"
        "epochs: 1\nbatch_size: 64\n"
        "eval: {n: 32, attacks: [pgd], attack_kwargs: {pgd: {steps: 2}}}\n"
    )
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--out",
                str(out),
                *sum((["--set", s] for s in _QUIET), []),
            ]
        )
        == 0
    )
    return out / "model"
