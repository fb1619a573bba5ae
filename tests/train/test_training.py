"""Real short training runs: accuracy improves, PGD training buys robustness, guards fire."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advscale.models import Classifier, load_model
from advscale.results import load_results
from advscale.train import (
    CatastrophicOverfitGuard,
    GuardConfig,
    NonFiniteLossError,
    load_config,
    train,
)
from advscale.train.checkpoint import find_checkpoint, load_checkpoint


def test_short_run_improves_accuracy_and_writes_the_run_directory(
    fmnist_dir, tmp_path, tiny_settings
):
    out = tmp_path / "run"
    cfg = load_config(
        None, tiny_settings(**{"data.n_train": 1024, "tensorboard": "true", "log_every": 4})
    )
    summary = train(cfg, out)
    # An untrained 10-class model is at ~10%; 32 steps of Adam get well past that.
    assert summary["clean_accuracy"] > 0.5
    for key in ("fgsm_accuracy", "pgd_accuracy", "time_per_epoch_s", "images_per_s"):
        assert summary[key] is not None, key
    assert (
        summary["pgd_accuracy"]
        <= summary["fgsm_accuracy"] + 0.05
        <= summary["clean_accuracy"] + 0.05
    )
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["type"] == "step"] == [1, *range(4, 33, 4)]
    assert [r["type"] for r in lines].count("epoch") == 1
    res = load_results(out)
    assert res.kind == "train" and res.complete and res.summary["steps"] == 32
    evals = res.select(type="eval", attack="pgd")
    assert evals and evals[0]["eps"] == 8 and evals[0]["eps_unit"] == "1/255"
    model = load_model(out / "model")
    x, y = cfg_val(fmnist_dir)
    acc = float((model(x).argmax(1) == y).float().mean())
    assert acc > 0.5
    assert any((out / "tb").iterdir())


def cfg_val(fmnist_dir):
    from advscale.data import load_fashion_mnist

    return load_fashion_mnist("test", fmnist_dir).take(300, seed=9).tensors()


def test_pgd_training_is_more_robust_than_clean_training(fmnist_dir, tmp_path, tiny_settings):
    common = {"data.n_train": 1024, "recipe.eps": 25, "eval.eps": "[25]", "recipe.steps": 3}
    clean = train(load_config(None, tiny_settings(**common)), tmp_path / "clean")
    pgd = train(
        load_config(
            None, tiny_settings(**common, **{"recipe.name": "pgd", "eval.label_leak": "true"})
        ),
        tmp_path / "pgd",
    )
    assert clean["pgd_accuracy"] < 0.2
    assert pgd["pgd_accuracy"] > clean["pgd_accuracy"] + 0.15
    # Label leaking is measured after adversarial training: FGSM vs FGSM-pred per ε.
    assert [r["eps"] for r in pgd["label_leak"]] == [25] and "leak" in pgd["label_leak"][0]
    assert clean["label_leak"] is None


def _no_bn_model() -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 13 * 13, 10)
    )
    return Classifier(net, (0.286,), (0.353,))


def test_gradient_accumulation_matches_one_big_batch(fmnist_dir, tmp_path, tiny_settings):
    settings = tiny_settings(
        **{"recipe.name": "fgsm", "max_steps": 4, "optimizer.name": "sgd", "eval.n": 50}
    )
    train(load_config(None, settings), tmp_path / "one", model=_no_bn_model())
    train(load_config(None, [*settings, "grad_accum=4"]), tmp_path / "acc", model=_no_bn_model())
    from safetensors.torch import load_file

    a, b = (
        load_file(tmp_path / "one/model.safetensors"),
        load_file(tmp_path / "acc/model.safetensors"),
    )
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a)


def test_bf16_autocast_and_channels_last_train(fmnist_dir, tmp_path, tiny_settings):
    cfg = load_config(
        None,
        tiny_settings(
            **{"amp": "bf16", "channels_last": "true", "recipe.name": "rs_fgsm", "eval.n": 100}
        ),
    )
    summary = train(cfg, tmp_path / "run")
    assert summary["clean_accuracy"] > 0.25 and summary["pgd_accuracy"] is not None  # chance: 0.1


def test_guard_flags_collapse_by_pgd_drop_and_by_fgsm_pgd_gap():
    x, y = torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    g = CatastrophicOverfitGuard(GuardConfig(threshold=0.2, fgsm_margin=0.4), 8 / 255, x, y)
    assert g.collapsed({"clean_acc": 0.8, "fgsm_acc": 0.5, "pgd_acc": 0.4}) is None
    g.update_best({"clean_acc": 0.8, "fgsm_acc": 0.5, "pgd_acc": 0.4}, 10, {"w": torch.ones(1)})
    assert g.collapsed({"clean_acc": 0.8, "fgsm_acc": 0.5, "pgd_acc": 0.3}) is None
    assert "fell more than 0.2" in g.collapsed({"clean_acc": 0.8, "fgsm_acc": 0.3, "pgd_acc": 0.1})
    assert "exceeds PGD accuracy" in g.collapsed(
        {"clean_acc": 0.9, "fgsm_acc": 0.9, "pgd_acc": 0.35}
    )


def test_guard_catches_a_constructed_collapse_and_restores_the_best_weights(
    fmnist_dir, tmp_path, tiny_settings
):
    """After epoch 1 the weights are wrecked (as catastrophic overfitting would); the guard's next
    check sees PGD accuracy collapse, restores the best weights and stops."""
    cfg = load_config(
        None,
        tiny_settings(
            **{
                "recipe.name": "fgsm",
                "recipe.eps": 4,
                "epochs": 3,
                "data.n_train": 512,
                "guard.enabled": "true",
                "guard.n": 128,
                "guard.pgd_steps": 3,
                "guard.threshold": 0.1,
                "guard.action": "stop",
                # No learning after epoch 1, so the wreck is what the guard sees.
                "schedule.name": "step",
                "schedule.milestones": "[1]",
                "schedule.gamma": 1e-12,
            }
        ),
    )

    def wreck(record):
        if record["epoch"] == 0:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "head" in name and p.ndim == 2:
                        p.normal_(0, 10.0)

    from advscale.models import build_classifier

    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.25}, (0.286,), (0.353,)
    )
    summary = train(cfg, tmp_path / "run", model=model, on_epoch=wreck)
    events = [e for e in summary["events"] if e["event"] == "catastrophic_overfit"]
    assert len(events) == 1 and events[0]["step"] == 32 and events[0]["restored_step"] == 16
    assert summary["stopped_early"] and summary["stop_reason"] == "catastrophic_overfit"
    assert summary["steps"] == 32
    # The final model is the best one: its PGD accuracy is the best the guard saw, not the wreck's.
    assert summary["clean_accuracy"] > 0.3
    assert [h["collapsed"] for h in summary["guard"]] == [False, True]
    from safetensors.torch import load_file

    final, best = (
        load_file(tmp_path / "run/model.safetensors"),
        load_file(tmp_path / "run/checkpoints/best.safetensors"),
    )
    assert all(torch.equal(final[k], best[k]) for k in best)


class NaNAfter(nn.Module):
    """A real tiny net whose logits turn NaN from its ``after``-th training forward on."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        self.after, self.calls = after, 0

    def forward(self, x):
        out = self.net(x)
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_step_and_batch_and_keeps_the_checkpoint(
    fmnist_dir, tmp_path, tiny_settings
):
    cfg = load_config(None, tiny_settings(**{"checkpoint_every": 2, "data.n_train": 512}))
    model = Classifier(NaNAfter(after=5), (0.286,), (0.353,))
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite loss \(nan\) at step 5 \(epoch 0, batch 5 of the epoch\)",
    ):
        train(cfg, tmp_path / "run", model=model)
    lines = [json.loads(s) for s in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["event"] == "nonfinite_loss" and lines[-1]["step"] == 5
    last = find_checkpoint(tmp_path / "run/checkpoints", "last")
    assert last is not None
    state = load_checkpoint(last, Classifier(NaNAfter(after=5), (0.286,), (0.353,)))
    assert state["step"] == 4
    assert not (tmp_path / "run/summary.json").exists()


def test_a_finished_run_frees_its_trainer_without_the_garbage_collector(
    fmnist_dir, tmp_path, tiny_settings
):
    """No reference cycle outlives run(): under torchrun, a trainer kept alive until interpreter
    exit holds DDP's process group, and gloo's threads then abort the process."""
    import gc
    import weakref

    # torch.fx.wrap, run when torch._dynamo is first imported (by the first optimizer), keeps the
    # importer's frames alive for good; import it here so the test sees advscale's own references.
    import torch._dynamo  # noqa: F401

    from advscale.train.loop import Trainer

    cfg = load_config(
        None,
        tiny_settings(
            **{"data.n_train": 64, "data.n_val": 32, "eval.n": 32, "recipe.name": "fgsm"}
        ),
    )
    gc.disable()
    try:
        trainer = Trainer(cfg, tmp_path / "run")
        trainer.run()
        ref = weakref.ref(trainer)
        del trainer
        assert ref() is None
    finally:
        gc.enable()
