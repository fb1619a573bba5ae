"""Paper A's ImageNet config with its own model: timm's Inception v3 at 299x299, images decoded
and augmented (random-resized crop + flip) by two workers, a clean warm-up step then a step l.l.
step, on a generated ImageFolder. Runs where timm is installed (``make test-timm``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from folders import image_folder

from advscale.train import load_config, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_paper_a_config_trains_timm_inception_v3_at_299(tmp_path):
    pytest.importorskip(
        "timm", reason="timm needs a torchvision that matches torch; `make test-timm` runs this"
    )
    data = image_folder(tmp_path / "imagenet", {"train": 4, "val": 2}, size=320)
    sets = {
        # Only sizes change: the model, 299x299, rrc_flip, eval_resize 342, the recipe's
        # method and ε, RMSProp and the moving average are the file's.
        "data.data_dir": str(data),
        "data.n_val": 6,
        "data.workers": 2,
        "recipe.m": 4,
        "recipe.k": 2,
        "recipe.warmup_steps": 1,
        "batch_size": 4,
        "max_steps": 2,
        "epochs": 1,
        "amp": "none",
        "channels_last": "false",
        "progress": "false",
        "tensorboard": "false",
        "log_every": 1,
        "checkpoint_every": 0,
        "select.n": 6,
        "select.pgd_steps": 1,
        "guard.n": 6,
        "eval.n": 6,
        "eval.eps": "[16]",
        "eval.attacks": "[step_ll, pgd]",
        "eval.attack_kwargs": "{pgd: {steps: 1}}",
    }
    cfg = load_config(
        CONFIGS / "kurakin_imagenet_inception_v3.yaml", [f"{k}={v}" for k, v in sets.items()]
    )
    assert (cfg.model.arch, cfg.model.kwargs["model_name"]) == ("timm", "inception_v3")
    assert (cfg.data.image_size, cfg.data.augment, cfg.data.eval_resize) == (299, "rrc_flip", 342)
    torch.manual_seed(0)
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 2 and summary["model_weights"]["average"] is True
    acc = summary["robust_accuracy"]["step_ll"]["16"]
    assert 0.0 <= acc <= 1.0 and 0.0 <= summary["clean_accuracy"] <= 1.0
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"type": "step"' in metrics
