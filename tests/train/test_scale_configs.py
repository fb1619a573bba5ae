"""The papers' recipes at scale (configs/) run end to end at tiny size on generated files.

Each keeps its recipe, optimizer, moving average and best-checkpoint selection, and swaps only
what makes it big: the architecture (paper A's Inception v3 needs timm and 299x299 inputs), image
size, dataset size, step counts and evaluation sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from folders import image_folder

from advscale.data.cifar import CLASSES
from advscale.models import build_classifier, save_model
from advscale.train import load_config, train
from advscale.train.optim import RMSpropTF
from advscale.transfer.finetune import finetune, load_finetune_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = {
    "epochs": 1,
    "progress": "false",
    "tensorboard": "false",
    "amp": "none",
    "channels_last": "false",
    "log_every": 1,
    "checkpoint_every": 0,
    "data.workers": 0,
    "data.eval_resize": "null",
    "eval.n": 24,
    "eval.eps": "[8]",
    "eval.batch_size": 24,
    "eval.attack_kwargs": "{pgd: {steps: 2}, apgd: {steps: 2}}",
    "select.n": 24,
    "select.pgd_steps": 1,
    "guard.n": 24,
    "guard.pgd_steps": 1,
}


def _sets(**extra: object) -> list[str]:
    return [f"{k}={v}" for k, v in {**SMALL, **extra}.items()]


def _cifar_binary(root: Path, per_file: int = 40) -> Path:
    """The CIFAR-10 binary layout (label byte + 3072 pixel bytes per record), random content."""
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        labels = (np.arange(per_file) % 10).astype(np.uint8)
        pixels = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        (d / f"{stem}.bin").write_bytes(np.concatenate([labels[:, None], pixels], 1).tobytes())
    (d / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n\n")
    return root


def test_paper_a_imagenet_recipe_at_tiny_size(tmp_path):
    data = image_folder(tmp_path / "imagenet", {"train": 40, "val": 8})
    cfg = load_config(
        CONFIGS / "kurakin_imagenet_inception_v3.yaml",
        _sets(
            **{
                "model.arch": "small_cnn",  # inception_v3 needs timm and 299x299
                "model.kwargs": "{width: 0.25}",
                "data.data_dir": str(data),
                "data.image_size": 32,
                "data.n_val": 24,
                "recipe.warmup_steps": 2,
                "max_steps": 3,
                "guard.every": 2,
                "batch_size": 32,
            }
        ),
    )
    # What makes it paper A: kept from the file.
    r = cfg.recipe
    assert (r.name, r.method, r.eps, r.m, r.k, r.lam) == ("kurakin", "step_ll", 16, 32, 16, 0.3)
    o = cfg.optimizer
    assert (o.name, o.lr, o.decay, o.eps) == ("rmsprop_tf", 0.045, 0.9, 1.0)
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 3 and summary["model_weights"]["weights"] == "best"
    assert summary["model_weights"]["average"] is True
    assert {"step_ll", "iter_ll", "pgd"} <= set(summary["robust_accuracy"])


def test_wong_cifar10_rs_fgsm_recipe_at_tiny_size(tmp_path):
    data = _cifar_binary(tmp_path / "cifar")
    cfg = load_config(
        CONFIGS / "rs_fgsm_cifar10_wong.yaml",
        _sets(
            **{
                "model.kwargs": "{width: 0.125}",
                "data.data_dir": str(data),
                "data.n_val": 24,
                "batch_size": 16,
                "max_steps": 3,
            }
        ),
    )
    assert cfg.model.arch == "preact_resnet18" and cfg.data.augment == "crop_flip"
    assert (cfg.recipe.name, cfg.recipe.eps, cfg.recipe.alpha_scale * cfg.recipe.eps) == (
        "rs_fgsm",
        8,
        10,
    )
    assert (cfg.schedule.name, cfg.optimizer.lr, cfg.epochs) == ("cyclic", 0.2, 1)
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 3 and summary["model_weights"]["metric"] == "val_pgd_acc"


def test_paper_b_finetuning_at_224_recipe_at_tiny_size(tmp_path):
    data = image_folder(tmp_path / "flowers", {"train": 16, "val": 8})
    net = build_classifier(
        "small_cnn", {"num_classes": 5, "in_channels": 3, "width": 0.25}, (0.5,) * 3, (0.25,) * 3
    )
    save_model(net, tmp_path / "backbone/model")
    cfg = load_finetune_config(
        CONFIGS / "finetune_robust_224.yaml",
        _sets(
            **{
                "backbone.kind": "own",  # the file names a timm ResNet-50 in a local file
                "backbone.name": "null",
                "backbone.weights": "null",
                "backbone.path": str(tmp_path / "backbone/model"),
                "data.data_dir": str(data),
                "data.image_size": 32,
                "data.n_val": 24,
                "batch_size": 16,
                "max_steps": 2,
            }
        ),
    )
    assert cfg.data.augment == "rrc_flip" and cfg.recipe.name == "fgsm"
    summary = finetune(cfg, tmp_path / "run")
    assert summary["steps"] == 2 and summary["model_weights"]["weights"] == "best"


def test_rmsprop_tf_is_what_paper_a_config_builds():
    from advscale.train.optim import build_optimizer

    cfg = load_config(CONFIGS / "kurakin_imagenet_inception_v3.yaml", ["model.arch=small_cnn"])
    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, RMSpropTF) and opt.param_groups[0]["weight_decay"] == 4e-5
