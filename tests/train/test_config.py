"""Configs and bad input: every mistake is refused with the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from advscale.cli import main
from advscale.errors import UserError
from advscale.train import ConfigError, TrainConfig, load_config, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_overrides_are_parsed_as_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe:\n  name: kurakin\n  eps: 8\nepochs: 3\n")
    cfg = load_config(
        path, ["recipe.eps=4", "epochs=2", "data.classes=[0, 1, 2]", "recipe.sigma=null"]
    )
    assert cfg.recipe.name == "kurakin" and cfg.recipe.eps == 4 and cfg.epochs == 2
    assert cfg.data.classes == [0, 1, 2] and cfg.recipe.sigma is None


def test_unknown_key_names_it_and_lists_the_allowed_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe:\n  name: pgd\n  epss: 8\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, [])
    msg = str(e.value)
    assert "recipe.epss" in msg and str(path) in msg
    assert "alpha, alpha_scale, bn_mode" in msg  # the allowed keys of recipe:
    with pytest.raises(ConfigError, match="unknown key 'optimiser'"):
        load_config(None, ["optimiser.lr=0.1"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            "recipe.name=madry",
            "recipe.name: got 'madry'; allowed: clean, kurakin, pgd, fgsm, rs_fgsm, n_fgsm",
        ),
        ("recipe.eps=300", r"recipe.eps: eps must be pixel levels in \[0, 255\].*got \[300\]"),
        ("recipe.eps=-1", r"recipe.eps: eps must be pixel levels in \[0, 255\].*got \[-1\]"),
        ("recipe.eps=0.031", r"recipe.eps: eps \[0.031\] look like \[0, 1\].*pass 8 for 8/255"),
        ("eval.eps=[0.016, 0.031]", r"eval.eps: eps \[0.016, 0.031\] look like \[0, 1\]"),
        ("eval.eps=[4, 300]", r"eval.eps: eps must be pixel levels in \[0, 255\].*got \[300\]"),
        ("eval.attacks=[fgsm, pgdd]", r"eval.attacks: unknown attack\(s\) 'pgdd'; allowed: apgd"),
        ("eval.attack_kwargs={pgd: {stepz: 5}}", r"eval.attack_kwargs: 'pgd'.*'stepz'"),
        (
            "eval.attack_kwargs={pgd: {restarts: 0}}",
            r"eval.attack_kwargs: 'pgd': restarts must be an integer >= 1",
        ),
        ("eval.attack_kwargs={pgd: {eps: 0.1}}", r"eval.attack_kwargs: 'pgd': eps cannot be set"),
        (
            "eval.attack_kwargs={pgdd: {steps: 5}}",
            r"eval.attack_kwargs: .*unknown attack\(s\) 'pgdd'",
        ),
        ("recipe.lam=-0.5", "recipe.lam: .*greater than or equal to 0"),
        (
            "optimizer.name=lamb",
            "optimizer.name: got 'lamb'; allowed: sgd, adamw, rmsprop, rmsprop_tf",
        ),
        ("amp=fp8", "amp: got 'fp8'; allowed: none, bf16, fp16"),
    ],
)
def test_bad_values_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_eval_section_is_checked_at_load_time_from_a_file(tmp_path):
    # A typo in the evaluation must not wait for the end of training to be found.
    path = tmp_path / "c.yaml"
    path.write_text("recipe:\n  name: fgsm\neval:\n  attacks: [fgsm, pgd]\n  eps: 0.031\n")
    with pytest.raises(ConfigError, match=rf"{path}: invalid training config: eval.eps: "):
        load_config(path)
    path.write_text("eval:\n  attacks: [fgsm, pgd]\n  eps: 4\n")
    assert load_config(path).eval_eps() == [4.0]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("batch_size=true", r"--set 'batch_size=true': batch_size takes an integer, got True"),
        ("epochs=2.5", r"epochs takes an integer, got 2.5"),
        ("recipe.eps=true", r"recipe.eps takes a number, got True"),
        ("recipe.eps=eight", r"recipe.eps takes a number, got 'eight' \(str\)"),
        ("deterministic=1", r"deterministic takes true or false, got 1"),
        ("guard.enabled=yes_please", r"guard.enabled takes true or false or null"),
    ],
)
def test_set_values_are_checked_strictly(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_set_accepts_an_integer_for_a_float_and_null_for_an_optional():
    cfg = load_config(None, ["recipe.eps=8", "label_smoothing=0", "max_steps=null"])
    assert cfg.recipe.eps == 8.0 and isinstance(cfg.recipe.eps, float) and cfg.max_steps is None
    # YAML 1.1 reads 1e-4 as text; a number it is, and "8" written as text is a number too.
    cfg = load_config(None, ["optimizer.lr=1e-4", "schedule.gamma=2E-1", "recipe.eps='8'"])
    assert cfg.optimizer.lr == 1e-4 and cfg.schedule.gamma == 0.2 and cfg.recipe.eps == 8.0


def test_k_larger_than_m_is_refused():
    with pytest.raises(ConfigError, match="recipe.k=9 is larger than recipe.m=8"):
        load_config(None, ["recipe.name=kurakin", "recipe.k=9", "recipe.m=8"])


def test_set_needs_key_equals_value():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["epochs"])


def test_every_shipped_config_loads():
    for name in ("clean", "kurakin_step_ll", "fgsm", "rs_fgsm", "n_fgsm", "pgd"):
        cfg = load_config(CONFIGS / f"{name}.yaml", [])
        assert isinstance(cfg, TrainConfig) and cfg.recipe.name == name.split("_step")[0]


def test_config_is_subclassable_with_new_sections():
    from advscale.train import Section

    class Backbone(Section):
        source: str = "own"

    class FinetuneConfig(TrainConfig):
        backbone: Backbone = Backbone()

    cfg = load_config(None, ["backbone.source=timm"], cls=FinetuneConfig)
    assert cfg.backbone.source == "timm"
    with pytest.raises(ConfigError, match="unknown key 'backbone.sorce'.*allowed: source"):
        load_config(None, ["backbone.sorce=timm"], cls=FinetuneConfig)


def test_batch_larger_than_the_dataset_is_refused(fmnist_dir, tmp_path, tiny_settings):
    cfg = load_config(None, tiny_settings(**{"data.n_train": 50, "batch_size": 64}))
    with pytest.raises(UserError, match="batch_size=64 is larger than the 50 training examples"):
        train(cfg, tmp_path / "run")


def test_only_one_step_attacks_in_eval_is_refused(tmp_path, tiny_settings):
    cfg = load_config(None, tiny_settings(**{"eval.attacks": "[fgsm, step_ll]"}))
    with pytest.raises(UserError, match="only one-step attacks"):
        train(cfg, tmp_path / "run")


def test_existing_run_needs_force_and_resume_needs_the_same_config(
    fmnist_dir, tmp_path, tiny_settings
):
    out = tmp_path / "run"
    settings = tiny_settings(
        **{"data.n_train": 128, "eval.n": 50, "eval.attack_kwargs": "{pgd: {steps: 1}}"}
    )
    train(load_config(None, settings), out)
    with pytest.raises(UserError, match="already holds a run.*--resume.*--force"):
        train(load_config(None, settings), out)
    with pytest.raises(
        UserError, match=r"different config \(recipe.eps: 8.0 in the run, 4.0 now\)"
    ):
        train(load_config(None, [*settings, "recipe.eps=4"]), out, resume=True)
    # Resuming a finished run returns its summary without training again.
    before = (out / "summary.json").read_text()
    summary = train(load_config(None, settings), out, resume=True)
    assert (out / "summary.json").read_text() == before and summary["steps"] == 4
    train(load_config(None, settings), out, force=True)


def test_cli_reports_user_errors_without_traceback(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("recipe:\n  name: kurakin\n  k: 5\n  m: 4\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "advscale train: error:" in err and "recipe.k=5" in err and "Traceback" not in err


def test_backbone_trust_comes_only_from_the_call_site(tmp_path, capsys):
    from advscale.transfer import load_finetune_config

    path = tmp_path / "ft.yaml"
    section = "backbone:\n  kind: own\n  path: runs/base/model\n"
    # In a file, even "false": a shared config must never be what turns on unpickling.
    for value in ("true", "false"):
        path.write_text(f"{section}  trust: {value}\n")
        with pytest.raises(ConfigError, match=rf"{path}: backbone.trust cannot be set in a config"):
            load_finetune_config(path)
    path.write_text(section)
    with pytest.raises(
        ConfigError, match="backbone.trust cannot be set with --set.*--trust-checkpoint"
    ):
        load_finetune_config(path, ["backbone.trust=true"])
    assert load_finetune_config(path).backbone.trust is False
    assert load_finetune_config(path, ["epochs=1"], trust=True).backbone.trust is True
    args = ["finetune", "--config", str(path), "--out", str(tmp_path / "o")]
    assert main([*args, "--set", "backbone.trust=true"]) == 2
    assert "backbone.trust cannot be set with --set" in capsys.readouterr().err
