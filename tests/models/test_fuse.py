"""fuse_for_eval: same function and input gradients as the model, model untouched, safe fallbacks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from advscale.attacks import PGD
from advscale.evaluate import evaluate
from advscale.models import build_classifier, fuse_for_eval


@pytest.fixture(scope="module")
def trained(fmnist, tiny_trainer):
    return tiny_trainer(fmnist("train", n=1500, seed=0))


@pytest.fixture(scope="module")
def batch(fmnist):
    return fmnist("test", n=128, seed=3).tensors()


def _input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), x)
    return g


def _close(a: Tensor, b: Tensor, rtol: float = 1e-4) -> bool:
    return float((a - b).abs().max()) <= rtol * (float(b.abs().max()) + 1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_copy_computes_the_same_logits_and_input_gradients(trained, batch, channels_last):
    x, y = batch
    before = copy.deepcopy(trained.state_dict())
    fused = fuse_for_eval(trained, example=x[:32], channels_last=channels_last)
    # small_cnn: four conv+BN pairs and one linear+BN pair, all folded.
    assert fused.folded == 5
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert all(not p.requires_grad for p in fused.parameters())
    with torch.no_grad():
        ref, out = trained(x), fused(x)
    assert _close(out, ref) and torch.equal(out.argmax(1), ref.argmax(1))
    assert _close(_input_grad(fused, x, y), _input_grad(trained, x, y), rtol=1e-3)
    # The model itself is untouched: weights, trainability, batch norm layers.
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in trained.parameters())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in trained.modules()) == 4


def test_pgd_on_the_fused_copy_breaks_the_same_examples(trained, batch):
    x, y = batch
    fused = fuse_for_eval(trained, example=x[:32])
    a = PGD(trained, 8 / 255, steps=10, alpha=2 / 255, random_start=True, seed=0).run(x, y)
    b = PGD(fused, 8 / 255, steps=10, alpha=2 / 255, random_start=True, seed=0).run(x, y)
    assert 0 < int(a.fooled.sum()) < len(y)
    # Rounding may flip an example whose margin is ~1e-6; nothing more.
    assert int((a.fooled != b.fooled).sum()) <= 1


def test_evaluate_reports_the_same_robustness_fused_or_not(trained, fmnist):
    test = fmnist("test", n=150, seed=1)
    kw = dict(attacks=["fgsm", "pgd"], eps=[4, 8], progress=False, seed=0, checks=False)
    # A model in train mode is evaluated (and copied) in eval mode and left in train mode.
    trained.train()
    try:
        fast, plain = evaluate(trained, test, **kw), evaluate(trained, test, fuse=False, **kw)
        assert all(m.training for m in trained.modules())
    finally:
        trained.eval()
    assert fast.config["fused"] and fast.config["folded_batchnorm"] == 5
    assert not plain.config["fused"] and plain.config["folded_batchnorm"] == 0
    for r_fast, r_plain in zip(fast.records, plain.records, strict=True):
        assert r_fast["attack"] == r_plain["attack"] and r_fast["eps"] == r_plain["eps"]
        assert abs(r_fast["accuracy"] - r_plain["accuracy"]) <= 1 / 150 + 1e-9
    assert all(p.requires_grad for p in trained.parameters())
    # An attack that keeps the model's mode gets the model itself: a folded copy is eval-only.
    keep = evaluate(
        trained,
        test,
        attacks=["pgd"],
        eps=[8],
        progress=False,
        checks=False,
        attack_kwargs={"pgd": {"mode": "keep", "steps": 2}},
    )
    assert not keep.config["fused"] and keep.config["folded_batchnorm"] == 0


class _Flip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        return -g


class FlippedGradient(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(_Flip.apply(x))


def test_custom_autograd_functions_in_the_forward_survive(trained, batch):
    # Tracing runs through an autograd Function's forward and would drop its backward; the
    # copy keeps the model's own forward, so an attack sees the gradient the model defines.
    x, y = batch
    model = FlippedGradient(trained)
    fused = fuse_for_eval(model, example=x[:32])
    assert fused.folded == 5
    g_model, g_fused = _input_grad(model, x, y), _input_grad(fused, x, y)
    assert _close(g_fused, g_model, rtol=1e-3)
    assert _close(-g_fused, _input_grad(trained, x, y), rtol=1e-3)


class ValueBranch(nn.Module):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)
        if h.mean() > 1e9:
            h = h * 2
        return self.head(h.mean((2, 3)))


class SequenceHead(nn.Module):
    """A linear layer on (N, L, F) and BatchNorm1d over dim 1 (L): folding it would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(7, 7)
        self.bn = nn.BatchNorm1d(7)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.lin(x[:, 0, :7, :7])).mean(2)


def _randomize_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -1, 1)
    return model.eval()


def test_untraceable_models_fold_plain_sequentials_and_wrong_folds_fall_back():
    x = torch.rand(16, 1, 28, 28)
    branch = _randomize_bn(ValueBranch())
    fused = fuse_for_eval(branch, example=x)
    assert fused.folded == 1
    with torch.no_grad():
        assert _close(fused(x), branch(x))

    seq = _randomize_bn(SequenceHead())
    fused = fuse_for_eval(seq, example=x)
    assert fused.folded == 0 and isinstance(fused.bn, nn.BatchNorm1d)  # the check caught it
    with torch.no_grad():
        assert torch.allclose(fused(x), seq(x))


class SharedOutput(nn.Module):
    """The conv's output feeds its batch norm and a skip connection: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        return (self.bn(h) + h).mean((2, 3))


class ConvTwice(nn.Module):
    """One conv called twice, batch norm after the second call only: folding would change the first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(self.conv(x))).mean((2, 3))


@pytest.mark.parametrize("make", [SharedOutput, ConvTwice])
def test_a_conv_whose_output_is_shared_or_that_is_called_twice_is_not_folded(make):
    model = _randomize_bn(make())
    x = torch.rand(8, 1, 28, 28)
    # No example: the folding rules alone must leave the pair, not the check that the copy
    # computes the same function. (Channels-last forces a copy to look at.)
    fused = fuse_for_eval(model, channels_last=True)
    assert fused is not model and fused.folded == 0 and isinstance(fused.bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert _close(fused(x), model(x))
    # Nothing to fold and no channels-last (as on GPU): the model itself, not a copy.
    assert fuse_for_eval(model, example=x, channels_last=False) is model


def test_a_model_with_nothing_to_do_is_returned_as_it_is():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 26 * 26, 3))
    x = torch.rand(4, 1, 28, 28)
    same = fuse_for_eval(model, example=x, channels_last=False)
    assert same is model and not hasattr(model, "folded")
    assert all(p.requires_grad for p in model.parameters())  # not frozen in place either


def test_torchscript_models_are_returned_unchanged():
    net = _randomize_bn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten()))
    scripted = torch.jit.script(net)
    x = torch.rand(4, 1, 28, 28)
    assert fuse_for_eval(scripted, example=x) is scripted
    assert not hasattr(scripted, "folded")
    # A model holding a TorchScript module too: its forward cannot be traced or copied safely.
    holder = nn.Sequential(scripted, nn.Linear(2 * 26 * 26, 3))
    assert fuse_for_eval(holder, example=x) is holder and not hasattr(holder, "folded")


def test_submodule_modes_are_restored_exactly(batch):
    # A training model with a batch norm frozen in eval mode (as in linear probing) keeps it
    # frozen through fusing and attacking; model.train(True) would have unfrozen it.
    x, y = batch
    model = build_classifier("small_cnn", {"num_classes": 10, "width": 0.25}, [0.5], [0.5])
    model.train()
    frozen_bn = model.net.features[1]
    frozen_bn.eval()
    fuse_for_eval(model, example=x[:8])
    PGD(model, 4 / 255, steps=2)(x[:8], y[:8])
    assert model.training and not frozen_bn.training
    assert model.net.features[4].training


class ViewHead(nn.Module):
    """A classic CNN that flattens its feature map with .view(), which channels-last breaks."""

    def __init__(self, bn: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()
        self.fc = nn.Linear(4 * 13 * 13, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.bn(self.conv(x)).relu()
        return self.fc(h.view(h.size(0), -1))


@pytest.mark.parametrize("bn", [True, False])
def test_a_forward_that_cannot_take_channels_last_keeps_the_standard_layout(bn):
    model = _randomize_bn(ViewHead(bn))
    x = torch.rand(8, 1, 28, 28)
    fused = fuse_for_eval(model, example=x, channels_last=True)
    assert not fused.channels_last and fused.folded == int(bn)
    with torch.no_grad():
        assert _close(fused(x), model(x))
    # A forward that takes channels-last keeps it.
    seq = _randomize_bn(ValueBranch())
    assert fuse_for_eval(seq, example=x, channels_last=True).channels_last


@pytest.mark.parametrize("track", [False, True])
def test_batch_norm_is_folded_only_with_running_statistics(track):
    """Without running statistics batch norm normalises with the batch's, even in eval mode:
    folding it would change the function."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=track), nn.Flatten()
    )
    if track:
        model.train()
        model(torch.randn(16, 1, 8, 8))  # running statistics unlike the identity
    model.eval()
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    fused = fuse_for_eval(model, channels_last=False)
    assert getattr(fused, "folded", 0) == (1 if track else 0)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)


def test_cpu_models_default_to_channels_last():
    """On CPU, convolutions run faster channels-last: the default there, kept only when the
    copy computes the same function."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten()).eval()
    fused = fuse_for_eval(model, example=torch.rand(4, 1, 8, 8))
    assert fused is not model and fused.channels_last and fused.folded == 0


def test_outputs_of_another_shape_are_not_the_same_function():
    from advscale.models.fuse import _same_function

    x = torch.rand(4, 6)
    assert _same_function(nn.Linear(6, 3), copy.deepcopy(nn.Linear(6, 3)), x) is False
    assert _same_function(nn.Linear(6, 3), nn.Linear(6, 2), x) is False
    same = nn.Linear(6, 3)
    assert _same_function(same, copy.deepcopy(same), x) is True
