"""Models that would inflate their own robust accuracy: saturating heads, NaN off the data,
randomness. Each is named, and none scores higher than the same network as plain logits."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import Headed, NanOffGrid, NoisyInput, Softmaxed
from torch import nn

from advscale.errors import UserError
from advscale.evaluate import evaluate
from advscale.evaluate.model_checks import Expectation, probe_model

N = 100


def _eval(model, test_set, attacks=("fgsm", "pgd"), **kw):
    return evaluate(model, test_set, attacks=list(attacks), eps=[8], n=N, progress=False, **kw)


def _checks(report) -> set[str]:
    return {w["check"] for w in report.warnings}


@pytest.mark.parametrize(
    ("wrap", "head"),
    [
        (lambda m: m, "logits"),
        (Softmaxed, "softmax"),
        (lambda m: Headed(m, "sigmoid"), "sigmoid"),
        (lambda m: Headed(m, "tanh"), "bounded"),
        (lambda m: _Clamped(m), "saturated"),
        (lambda m: _Scaled(Headed(_Scaled(m, 3.0), "tanh"), 10.0), "saturated"),
    ],
)
def test_the_output_head_is_named(tiny_model, test_set, wrap, head):
    x, _ = test_set.tensors()
    probe = probe_model(wrap(tiny_model), x[:64])
    assert probe.head == head and probe.deterministic


class _Scaled(nn.Module):
    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.scale * self.model(x)


class _Clamped(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).clamp(-2.0, 2.0)


def test_an_untrained_model_is_not_taken_for_probabilities(test_set):
    from advscale.models import build_classifier

    torch.manual_seed(0)
    raw = build_classifier("small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5})
    x, _ = test_set.tensors()
    assert probe_model(raw.eval(), x[:64]).head == "logits"


@pytest.mark.parametrize("head", ["sigmoid", "tanh"])
def test_a_saturating_head_scores_no_higher_than_its_logits(tiny_model, test_set, head):
    logits = _eval(tiny_model, test_set)
    headed = _eval(Headed(tiny_model, head), test_set)
    # Cross-entropy on the saturated outputs left 5-12 more points robust on this model; the
    # margin and DLR losses see the network as its logits do (two examples of slack).
    for attack in ("pgd", "worst_case"):
        assert headed.record(attack, 8)["accuracy"] <= logits.record(attack, 8)["accuracy"] + 2 / N
    assert headed.clean_accuracy == logits.clean_accuracy
    (w,) = [w for w in headed.warnings if w["check"] == "probabilities"]
    assert "margin" in w["message"] and headed.config["output_head"] in ("sigmoid", "bounded")
    assert not any(w["check"] == "probabilities" for w in logits.warnings)


def test_apgd_on_probabilities_follows_dlr_unless_told_otherwise(tiny_model, test_set):
    kw = {"apgd": {"steps": 5}, "apgd_l2": {"steps": 5, "loss": "ce"}}
    r = evaluate(
        Softmaxed(tiny_model), test_set, attacks=["apgd", "apgd_t"], eps=[8], n=20,
        progress=False, attack_kwargs={"apgd": kw["apgd"], "apgd_t": {"steps": 5, "n_targets": 2}},
    )  # fmt: skip
    assert r.config["attack_kwargs"]["apgd"]["loss"] == "dlr"
    assert "loss" not in r.config["attack_kwargs"]["apgd_t"]  # targeted DLR already
    kept = evaluate(
        Softmaxed(tiny_model), test_set, attacks=["apgd"], eps=[8], n=20, progress=False,
        attack_kwargs={"apgd": {"steps": 5, "loss": "ce"}},
    )  # fmt: skip
    assert kept.config["attack_kwargs"]["apgd"]["loss"] == "ce"


def test_nan_outputs_off_the_data_count_as_broken(tiny_model, test_set):
    r = _eval(NanOffGrid(tiny_model), test_set)
    pgd = r.record("pgd", 8)
    # PGD starts at random points off the pixel grid: every attacked example is a NaN there.
    assert pgd["nonfinite"] == pgd["attacked"] > 0 and pgd["accuracy"] == 0.0
    assert r.record("worst_case", 8)["accuracy"] == 0.0
    found = [w for w in r.warnings if w["check"] == "nonfinite_outputs"]
    # Once from the probe (noisy copies of the data), once from the attack that met it.
    assert [w.get("attack") for w in found] == [None, "pgd"]
    assert found[0]["count"] == N  # every noisy copy is off the pixel grid
    assert found[1]["count"] == pgd["nonfinite"]
    plain = _eval(tiny_model, test_set)
    assert all(rec["nonfinite"] == 0 for rec in plain.records)
    assert "nonfinite_outputs" not in _checks(plain)


def test_a_random_model_is_named_and_its_records_say_so(tiny_model, test_set):
    r = _eval(NoisyInput(tiny_model), test_set, attacks=["fgsm"])
    assert "nondeterministic" in _checks(r)
    assert r.config["deterministic"] is False
    assert all(rec["deterministic"] is False and rec["eot"] == 1 for rec in r.records)
    msg = next(w["message"] for w in r.warnings if w["check"] == "nondeterministic")
    assert "--eot" in msg
    plain = _eval(tiny_model, test_set, attacks=["fgsm"])
    assert "nondeterministic" not in _checks(plain) and plain.config["deterministic"] is True


def test_dropout_left_on_is_named(tiny_model, test_set):
    class DropoutOn(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return nn.functional.dropout(self.model(x), 0.3, training=True)

    x, _ = test_set.tensors()
    probe = probe_model(DropoutOn(tiny_model), x[:32])
    assert not probe.deterministic and probe.max_change > 0.1


def test_eot_counts_its_passes_and_keeps_a_deterministic_model_s_numbers(tiny_model, test_set):
    one = _eval(tiny_model, test_set, attacks=["fgsm", "pgd"])
    four = _eval(tiny_model, test_set, attacks=["fgsm", "pgd"], eot=4)
    for attack in ("fgsm", "pgd"):
        a, b = one.record(attack, 8), four.record(attack, 8)
        assert abs(a["accuracy"] - b["accuracy"]) <= 1 / N
        assert b["eot"] == 4 and four.config["eot"] == 4
        # The mean of four identical passes: the same attack, each pass counted four times.
        assert (b["forward"], b["backward"]) == (4 * a["forward"], 4 * a["backward"])
    with pytest.raises(UserError, match="eot"):
        _eval(tiny_model, test_set, eot=0)


def test_expectation_gradient_is_the_mean_of_the_drawn_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.5), nn.Linear(3, 4)).train()
    x = torch.rand(2, 6)
    torch.manual_seed(1)
    xg = x.clone().requires_grad_(True)
    (g_eot,) = torch.autograd.grad(Expectation(model, 5)(xg)[:, 1].sum(), xg)
    torch.manual_seed(1)  # the same five dropout masks, one pass each
    grads = []
    for _ in range(5):
        xi = x.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(model(xi)[:, 1].sum(), xi)[0])
    torch.testing.assert_close(g_eot, torch.stack(grads).mean(0))


def test_eval_command_on_a_sigmoid_head_prints_no_pass_and_no_inflated_number(
    tiny_model, fmnist_dir, tmp_path, capsys
):
    from advscale.cli import main
    from advscale.models import save_model
    from advscale.results import load_results

    save_model(tiny_model, tmp_path / "logits", dataset="fashion-mnist")
    sigmoid = tmp_path / "sigmoid.ts"
    torch.jit.trace(Headed(tiny_model, "sigmoid").eval(), torch.rand(1, 1, 28, 28)).save(
        str(sigmoid)
    )
    common = ["eval", "--data-dir", str(fmnist_dir), "--n", "60", "--attacks", "fgsm,pgd"]
    common += ["--eps", "8", "--device", "cpu", "--no-unbounded-check"]
    out = {}
    for name, model, extra in (
        ("logits", tmp_path / "logits", ["--eot", "2"]),
        ("sigmoid", sigmoid, []),
    ):
        out[name] = tmp_path / "out" / f"{name}.json"
        assert main([*common, "--model", str(model), "--out", str(out[name]), *extra]) == 0
        printed = capsys.readouterr().out
        if name == "sigmoid":
            assert "checks passed" not in printed and "probabilities" in printed
        else:
            assert "checks passed" in printed
    logits, sig = load_results(out["logits"]), load_results(out["sigmoid"])
    assert logits.config["eot"] == 2 and sig.config["output_head"] == "sigmoid"
    (a,) = logits.select(attack="worst_case", eps=8.0)
    (b,) = sig.select(attack="worst_case", eps=8.0)
    assert b["accuracy"] <= a["accuracy"] + 2 / 60


@pytest.mark.parametrize("head", ["softmax", "sigmoid", "tanh"])
def test_the_head_inverse_recovers_the_logits(tiny_model, test_set, head):
    from advscale.evaluate.model_checks import HeadInverse

    x, _ = test_set.tensors()
    with torch.no_grad():
        z = tiny_model(x[:32])
        model = Softmaxed(tiny_model) if head == "softmax" else Headed(tiny_model, head)
        back = HeadInverse(model, "bounded" if head == "tanh" else head)(x[:32])
    if head == "softmax":  # log-probabilities: the logits less their row's log-sum-exp
        back = back + torch.logsumexp(z, 1, keepdim=True)
    torch.testing.assert_close(back, z, atol=2e-3, rtol=1e-3)
    assert torch.equal(back.argmax(1), z.argmax(1))


def test_the_strong_cascade_on_probabilities_starts_with_dlr(tiny_model, test_set):
    kw = {"ce_steps": 3, "t_steps": 3, "n_targets": 1, "square_queries": 5}
    r = evaluate(
        Softmaxed(tiny_model), test_set, attacks=["strong"], eps=[8], n=10, progress=False,
        attack_kwargs={"strong": kw},
    )  # fmt: skip
    assert r.config["attack_kwargs"]["strong"]["ce_loss"] == "dlr"
    # The cascade built from what the run recorded runs its first APGD stage on DLR.
    from advscale.attacks import StrongCascade

    cascade = StrongCascade(Softmaxed(tiny_model), 8 / 255, **r.config["attack_kwargs"]["strong"])
    assert cascade.apgd_ce.loss_name == "dlr"
    plain = evaluate(
        tiny_model, test_set, attacks=["strong"], eps=[8], n=10, progress=False,
        attack_kwargs={"strong": kw},
    )  # fmt: skip
    assert "ce_loss" not in plain.config["attack_kwargs"]["strong"]
