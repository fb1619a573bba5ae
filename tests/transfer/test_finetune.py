"""advscale finetune and advscale compare end to end on real Fashion-MNIST subsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advscale.cli import main
from advscale.models import load_model
from advscale.results import load_results

QUIET = ["progress=false", "tensorboard=false", "eval.label_leak=false"]
TINY = [
    "data.name=fashion-mnist",
    "data.classes=[5, 6, 7, 8, 9]",
    "data.n_train=128",
    "data.n_val=48",
    "epochs=1",
    "batch_size=32",
    "optimizer.name=adamw",
    "optimizer.lr=0.01",
    "optimizer.weight_decay=0",
    "guard.n=32",
    "guard.pgd_steps=2",
    "eval.n=32",
    "eval.attacks=[pgd]",
    "eval.attack_kwargs={pgd: {steps: 2}}",
    *QUIET,
]


def _sets(items: list[str]) -> list[str]:
    return sum((["--set", s] for s in items), [])


def _config(tmp_path: Path, backbone: Path, text: str = "") -> Path:
    path = tmp_path / "ft.yaml"
    path.write_text(f"backbone: {{kind: own, path: {backbone}}}\n{text}")
    return path


def test_linear_fgsm_finetune_trains_the_head_only(fmnist_backbone, tmp_path, capsys):
    cfg = _config(
        tmp_path, fmnist_backbone, "finetune: {mode: linear}\nrecipe: {name: fgsm, eps: 8}\n"
    )
    out = tmp_path / "run"
    assert main(["finetune", "--config", str(cfg), "--out", str(out), *_sets(TINY)]) == 0
    results = load_results(out)
    assert results.kind == "finetune" and results.complete
    s = results.summary
    assert s["mode"] == "linear" and s["recipe"] == "fgsm" and s["eps"] == 8
    assert s["trainable_params"] == 32 * 5 + 5 < s["total_params"]  # hidden 32 -> 5 classes
    assert s["backbone"]["source"] == str(fmnist_backbone)
    assert "pgd_accuracy" in s and 0 <= s["clean_accuracy"] <= 1
    pre, ft = load_model(fmnist_backbone).state_dict(), load_model(out / "model").state_dict()
    # The frozen backbone, batch-norm running statistics included, is exactly the pretrained one.
    for k, v in pre.items():
        if not k.startswith("net.head.3."):
            assert torch.equal(ft[k], v), k
    assert ft["net.head.3.weight"].shape == (5, 32)
    assert '"trainable_params": 165' in capsys.readouterr().out


def test_lora_finetune_exports_a_plain_model_and_adapters(fmnist_backbone, tmp_path):
    cfg = _config(
        tmp_path,
        fmnist_backbone,
        "finetune: {mode: lora, lora: {rank: 2, targets: ['features.*']}}\n",
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                "--config",
                str(cfg),
                "--out",
                str(out),
                "--set",
                "recipe.name=clean",
                *_sets(TINY),
            ]
        )
        == 0
    )
    assert (out / "adapters.safetensors").exists()
    model = load_model(out / "model")  # merged: an ordinary small_cnn checkpoint
    assert model.arch == "small_cnn" and model.arch_kwargs["num_classes"] == 5
    assert not any("lora" in k for k in model.state_dict())
    s = load_results(out).summary
    assert s["finetune"]["lora_layers"] == 4 and s["adapters"].endswith("adapters.safetensors")


def test_finetune_errors_name_what_to_fix(fmnist_backbone, tmp_path, capsys):
    cfg = _config(tmp_path, fmnist_backbone, "finetune: {mode: lora, lora: {targets: [convv]}}\n")
    assert main(["finetune", "--config", str(cfg), "--out", str(tmp_path / "a"), *_sets(TINY)]) == 2
    assert (
        "finetune.lora.targets: 'convv' matches no Linear or Conv2d layer"
        in capsys.readouterr().err
    )
    cfg = _config(tmp_path, fmnist_backbone, "model: {arch: small_cnn}\n")
    assert main(["finetune", "--config", str(cfg), "--out", str(tmp_path / "b")]) == 2
    assert "the model: section is not used by fine-tuning" in capsys.readouterr().err
    bad = tmp_path / "w.pt"
    torch.save({"state_dict": {}, "note": Path("x")}, bad)
    cfg = tmp_path / "tv.yaml"
    cfg.write_text(f"backbone: {{kind: own, path: {tmp_path / 'missing'}}}\n")
    assert main(["finetune", "--config", str(cfg), "--out", str(tmp_path / "c"), *_sets(TINY)]) == 2
    assert "missing.json: checkpoint sidecar not found" in capsys.readouterr().err


def test_compare_records_every_point_keeps_failures_and_skips_finished(
    fmnist_backbone, tmp_path, capsys
):
    cfg = _config(
        tmp_path,
        fmnist_backbone,
        "finetune: {lora: {targets: [no_such_layer]}}\n"
        "compare:\n  methods: [fgsm, pgd]\n  modes: [linear, lora]\n  eps: [8]\n  pgd_steps: 2\n"
        "  n_eval: 32\n  attack_kwargs: {pgd: {steps: 2}, apgd: {steps: 2}}\n",
    )
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(cfg), "--out", str(out), *_sets(TINY)]
    assert main(argv) == 1  # the LoRA points fail: the run says so, and keeps the others
    results = load_results(out)
    assert results.kind == "compare" and results.complete
    by = {(r["method"], r["mode"]): r for r in results.records}
    assert set(by) == {("fgsm", "linear"), ("pgd", "linear"), ("fgsm", "lora"), ("pgd", "lora")}
    for method in ("fgsm", "pgd"):
        r = by[(method, "linear")]
        assert r["status"] == "done" and r["eps"] == 8.0 and r["trainable_params"] == 165
        for key in (
            "clean_accuracy",
            "pgd_accuracy",
            "apgd_accuracy",
            "robust_accuracy",
            "wall_time_s",
        ):
            assert r[key] is not None, key
        assert r["robust_accuracy"] == min(r["pgd_accuracy"], r["apgd_accuracy"])
        assert by[(method, "lora")]["status"] == "failed"
        assert "no_such_layer" in by[(method, "lora")]["error"]
    assert min(by[(m, "linear")]["time_ratio"] for m in ("fgsm", "pgd")) == 1.0
    pair = results.summary["pairs"][0]
    assert pair["fast"] == "fgsm" and pair["mode"] == "linear" and "time_ratio" in pair
    md = (out / "compare.md").read_text()
    assert (
        "| pgd | linear | 8 |" in md
        and "| fgsm | lora | 8 | - |" in md
        and "failed: LoRAError" in md
    )
    assert (out / "compare.png").stat().st_size > 0
    capsys.readouterr()

    # A rerun reuses the finished points and retries only the failed ones.
    done_file = out / "points" / "fgsm-linear-eps8" / "point.json"
    before = json.loads(done_file.read_text())
    assert main([*argv, "--set", "finetune.lora.targets=['features.*']"]) == 0
    log = capsys.readouterr().out
    assert "fgsm-linear-eps8: finished earlier, reused" in log and "fgsm-lora-eps8: training" in log
    assert json.loads(done_file.read_text()) == before
    assert all(r["status"] == "done" for r in load_results(out).records)


def test_interrupted_lora_finetune_resumes_exactly(fmnist_backbone, tmp_path):
    from advscale.transfer import finetune, load_finetune_config

    cfg = load_finetune_config(
        _config(tmp_path, fmnist_backbone, "finetune: {mode: lora, lora: {rank: 2}}\n"),
        [*TINY, "epochs=2", "recipe.name=fgsm", "guard.enabled=false"],
    )
    whole = finetune(cfg, tmp_path / "whole")

    def interrupt(record):
        raise KeyboardInterrupt  # killed at the end of the first epoch, after its checkpoint

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg.model_copy(update={"checkpoint_every": 1}), cut, on_epoch=interrupt)
    assert not (cut / "summary.json").exists()
    resumed = finetune(cfg.model_copy(update={"checkpoint_every": 1}), cut, resume=True)
    assert resumed["steps"] == whole["steps"]
    a, b = load_model(tmp_path / "whole" / "model"), load_model(cut / "model")
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_lora_finetune_with_a_moving_average_exports_the_averaged_weights(
    fmnist_backbone, tmp_path
):
    cfg = _config(tmp_path, fmnist_backbone, "finetune: {mode: lora, lora: {rank: 2}}\n")
    out = tmp_path / "run"
    sets = _sets([*TINY, "recipe.name=clean", "ema.decay=0.5", "ema.warmup=false"])
    assert main(["finetune", "--config", str(cfg), "--out", str(out), *sets]) == 0
    s = load_results(out).summary
    assert s["model_weights"]["weights"] == "ema"
    # The merged model scores what the run reported for the model it evaluated (the average),
    # on the run's own evaluation images; the raw weights would score otherwise.
    from advscale.train.config import DataConfig
    from advscale.train.data import build_data

    run = json.loads((out / "config.json").read_text())
    val = build_data(DataConfig(**run["data"]), run["seed"]).val
    x, y = val.take(run["eval"]["n"], seed=run["seed"] + 4).tensors()
    with torch.no_grad():
        acc = (load_model(out / "model").eval()(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(s["clean_accuracy"])
