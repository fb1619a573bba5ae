"""Exact resume: a run killed with SIGKILL mid-epoch and resumed ends where an uninterrupted run does."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from run_helpers import kill_at_step
from safetensors.torch import load_file

from advscale.train import load_config, train
from advscale.train.checkpoint import find_checkpoint

TIMING = {"time_s", "images_per_s"}


def _settings(tiny_settings) -> list[str]:
    # rs_fgsm draws random starts and the guard runs PGD from its own seed: both random states
    # must survive the kill. 16 steps per epoch, a checkpoint every 3 steps.
    return tiny_settings(
        **{
            "recipe.name": "rs_fgsm",
            "epochs": 2,
            "data.n_train": 512,
            "checkpoint_every": 3,
            "log_every": 1,
            "deterministic": "true",
            "guard.enabled": "true",
            "guard.n": 64,
            "guard.pgd_steps": 2,
            "guard.action": "continue",
            "eval.n": 100,
            "eval.attack_kwargs": "{pgd: {steps: 2}}",
        }
    )


def _metrics(out: Path) -> list[dict]:
    recs = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in TIMING}
        for r in recs
        if r["type"] in ("step", "epoch", "guard")
    ]


def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(
    fmnist_dir, tmp_path, tiny_settings
):
    settings = _settings(tiny_settings)
    cfg = load_config(None, settings)
    ref = train(cfg, tmp_path / "ref")

    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = tmp_path / "killed"
    kill_at_step(config_file, out, 20)
    ckpt = find_checkpoint(out / "checkpoints", "last")
    assert ckpt is not None
    saved = torch.load(ckpt / "state.pt", weights_only=True)
    assert (
        saved["step"] % 16 != 0 and saved["step"] >= 18
    )  # the kill came in the middle of the second epoch
    assert not (out / "summary.json").exists()

    # Resumed here, in this process (one thread, as in the killed one): same numbers, one import less.
    resumed = train(load_config(config_file, []), out, resume=True)
    assert resumed == json.loads((out / "summary.json").read_text())

    for key in ("clean_accuracy", "fgsm_accuracy", "pgd_accuracy", "steps", "epochs"):
        assert resumed[key] == ref[key], key
    assert resumed["guard"] == ref["guard"]
    assert _metrics(out) == _metrics(tmp_path / "ref")
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "ref/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
