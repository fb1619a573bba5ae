"""RMSProp as paper A ran it, the weights' moving average, and the best checkpoint as the model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from advscale.train import load_config, train
from advscale.train.ema import ModelEMA
from advscale.train.optim import build_optimizer


def _optimizer(name: str, p: nn.Parameter, **extra: object) -> torch.optim.Optimizer:
    sets = [f"optimizer.name={name}", "optimizer.lr=0.1", "optimizer.weight_decay=0"]
    sets += [f"optimizer.{k}={v}" for k, v in extra.items()]
    return build_optimizer(load_config(None, sets), [p])


def test_rmsprop_tf_takes_tensorflows_steps_by_hand():
    # TensorFlow: ms starts at 1; mom = momentum·mom + lr·g/sqrt(ms + eps); p -= mom.
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = _optimizer("rmsprop_tf", p, momentum=0.5)  # decay 0.9, eps 1.0: paper A's
    ms, mom, w = [1.0, 1.0], [0.0, 0.0], [1.0, -2.0]
    for grads in ([0.5, -3.0], [2.0, 1.0], [-1.0, 0.25]):
        p.grad = torch.tensor(grads, dtype=torch.float64)
        opt.step()
        for i, g in enumerate(grads):
            ms[i] = 0.9 * ms[i] + 0.1 * g * g
            mom[i] = 0.5 * mom[i] + 0.1 * g / math.sqrt(ms[i] + 1.0)
            w[i] -= mom[i]
        assert p.detach().tolist() == pytest.approx(w, rel=1e-12)


def test_rmsprop_is_pytorchs_with_the_papers_decay_and_eps():
    p = nn.Parameter(torch.zeros(2))
    opt = _optimizer("rmsprop", p, momentum=0.9)
    assert isinstance(opt, torch.optim.RMSprop)
    group = opt.param_groups[0]
    assert (group["alpha"], group["eps"], group["momentum"]) == (0.9, 1.0, 0.9)
    with pytest.raises(Exception, match="optimizer.eps=0.1 has no meaning for sgd"):
        load_config(None, ["optimizer.name=sgd", "optimizer.eps=0.1"])


def test_the_moving_average_follows_the_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    cfg = load_config(None, ["ema.decay=0.9", "ema.warmup=false"]).ema
    ema = ModelEMA(model, cfg)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 4):
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.add_(torch.randn_like(t))
        model.state_dict()["1.num_batches_tracked"].add_(1)
        ema.update(step)
        for k, v in model.state_dict().items():
            expected[k] = 0.9 * expected[k] + 0.1 * v if v.is_floating_point() else v.clone()
    for k, v in ema.average.state_dict().items():
        assert torch.allclose(v, expected[k], atol=1e-6), k
    # With warm-up the first update keeps (1 + 0) / (10 + 0) = 0.1 of the old average.
    warm = ModelEMA(model, load_config(None, ["ema.decay=0.999"]).ema)
    assert warm.decay() == pytest.approx(0.1)


def _settings(tiny_settings):
    return tiny_settings(
        **{
            "recipe.name": "fgsm",
            "optimizer.name": "rmsprop_tf",
            "optimizer.lr": 0.01,
            "ema.decay": 0.9,
            "select.metric": "val_pgd_acc",
            "select.n": 64,
            "select.pgd_steps": 2,
            "epochs": 3,
            "data.n_train": 256,
            "data.n_val": 64,
            "checkpoint_every": 3,
            "deterministic": "true",
            "eval.n": 64,
            "eval.attack_kwargs": "{pgd: {steps: 2}}",
        }
    )


class Crash(Exception):
    pass


def test_best_averaged_weights_become_the_model_and_resume_exactly(
    fmnist_dir, tmp_path, tiny_settings
):
    cfg = load_config(None, _settings(tiny_settings))
    ref = train(cfg, tmp_path / "ref")

    res = json.loads((tmp_path / "ref/results.json").read_text())
    epochs = [r for r in res["records"] if r.get("type") == "epoch"]
    values = [r["val_pgd_acc"] for r in epochs]
    best = epochs[values.index(max(values))]
    assert ref["model_weights"] == {
        "weights": "best",
        "average": True,
        "step": best["step"],
        "metric": "val_pgd_acc",
        "value": max(values),
    }
    model = (tmp_path / "ref/model.safetensors").read_bytes()
    assert model == (tmp_path / "ref/checkpoints/best.safetensors").read_bytes()
    # The last checkpoint keeps the raw weights for training and the average beside them.
    raw = load_file(tmp_path / "ref/checkpoints/last/model.safetensors")
    state = torch.load(tmp_path / "ref/checkpoints/last/state.pt", weights_only=True)
    averaged = state["ema"]["tensors"]
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)

    # Killed (an exception) at the end of the second epoch, after the checkpoint of step 15:
    # resumed, it ends where the uninterrupted run did.
    def crash(rec: dict) -> None:
        if rec["step"] == 16:
            raise Crash

    out = tmp_path / "resumed"
    with pytest.raises(Crash):
        train(cfg, out, on_epoch=crash)
    assert torch.load(out / "checkpoints/last/state.pt", weights_only=True)["step"] == 15
    resumed = train(cfg, out, resume=True)
    assert resumed["model_weights"] == ref["model_weights"]
    assert (out / "model.safetensors").read_bytes() == model
    assert resumed["pgd_accuracy"] == ref["pgd_accuracy"]
