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
        ("recipe.eps=300", "recipe.eps: .*less than or equal to 255"),
        ("recipe.eps=-1", "recipe.eps: .*greater than or equal to 0"),
        ("recipe.lam=-0.5", "recipe.lam: .*greater than or equal to 0"),
        ("optimizer.name=rmsprop", "optimizer.name: got 'rmsprop'; allowed: sgd, adamw"),
        ("amp=fp8", "amp: got 'fp8'; allowed: none, bf16, fp16"),
    ],
)
def test_bad_values_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


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
        UserError, match=r"different config:\n  recipe.eps: 8.0 in the run, 4.0 now"
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
