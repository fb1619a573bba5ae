"""Training on an image folder streamed through worker processes: the same weights with 0 or 2
workers, and after a SIGKILL mid-epoch and --resume; the data keys checked when loaded."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from run_helpers import kill_at_step
from safetensors.torch import load_file

from advscale.train import load_config, train
from advscale.train.checkpoint import find_checkpoint
from advscale.train.config import ConfigError
from advscale.train.rundir import RunLockedError

COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("streamed")
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("val", 6)):
        for c, colour in enumerate(COLOURS):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                noise = rng.normal(0, 40, (12, 12, 3))
                arr = (np.array(colour) * rng.uniform(0.5, 1) + noise).clip(0, 255)
                Image.fromarray(arr.astype(np.uint8)).save(root / split / f"c{c}" / f"{i}.png")
    return root


def _settings(folder: Path, **extra: object) -> list[str]:
    base = {
        "data.name": "imagefolder",
        "data.data_dir": str(folder),
        "data.n_val": 18,
        "data.augment": "crop_flip",
        "data.crop_padding": 2,
        "model.kwargs": "{width: 0.25}",
        "epochs": 2,
        "batch_size": 12,
        "optimizer.name": "adamw",
        "optimizer.lr": 0.005,
        "optimizer.weight_decay": 0,
        "schedule.name": "constant",
        "progress": "false",
        "tensorboard": "false",
        "log_every": 1,
        "deterministic": "true",
        "eval.n": 18,
        "eval.attack_kwargs": "{pgd: {steps: 2}}",
        "eval.label_leak": "false",
        "guard.enabled": "false",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _weights(out: Path) -> dict:
    return load_file(out / "model.safetensors")


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def test_the_same_weights_with_0_or_2_workers(folder, tmp_path):
    zero = train(load_config(None, _settings(folder)), tmp_path / "w0")
    two = train(load_config(None, _settings(folder, **{"data.workers": 2})), tmp_path / "w2")
    assert _same_weights(tmp_path / "w0", tmp_path / "w2")
    assert zero["clean_accuracy"] == two["clean_accuracy"] and zero["steps"] == 16
    plain = train(load_config(None, _settings(folder, **{"data.augment": "none"})), tmp_path / "n")
    assert plain["steps"] == 16 and not _same_weights(tmp_path / "w0", tmp_path / "n")


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_with_workers_matches(folder, tmp_path):
    settings = _settings(folder, **{"data.workers": 2, "checkpoint_every": 3, "epochs": 3})
    cfg = load_config(None, settings)
    train(cfg, tmp_path / "ref")
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = tmp_path / "killed"
    # 8 steps per epoch: killed in the second, after the checkpoint of step 12.
    kill_at_step(config_file, out, 13)
    saved = torch.load(find_checkpoint(out / "checkpoints", "last") / "state.pt", weights_only=True)
    assert saved["step"] % 8 != 0  # the checkpoint is in the middle of an epoch
    # The decoding workers die with the run (a signal from the kernel) a moment after it.
    deadline = time.monotonic() + 10
    while True:
        try:
            resumed = train(load_config(config_file, []), out, resume=True)
            break
        except RunLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert resumed["steps"] == 24 and _same_weights(out, tmp_path / "ref")


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ("data.augment=flip", "data.augment: got 'flip'; allowed: none, crop_flip, rrc_flip"),
        ("data.rrc_scale=[0.5, 0.1]", r"rrc_scale \[0.5, 0.1\]: need 0 < low <= high <= 1"),
        ("data.eval_resize=200", "data.eval_resize 200 is smaller than data.image_size 224"),
        ("data.on_corrupt=ignore", "data.on_corrupt: got 'ignore'; allowed: error, skip"),
        ("data.workers=-1", "data.workers"),
    ],
)
def test_data_keys_are_checked_when_the_config_loads(item, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, ["data.image_size=224", item])
