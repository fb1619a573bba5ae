"""Fine-tuning modes freeze what they say, and the input gradient still flows through everything."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advscale.models import build_classifier, save_model
from advscale.transfer import (
    BackboneConfig,
    FinetuneModeConfig,
    ModeError,
    apply_mode,
    backbone_blocks,
    build_backbone,
)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5}, (0.3,), (0.35,)
    )
    # Non-trivial running statistics, as a pretrained network has.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 28, 28))
    return save_model(model, tmp_path_factory.mktemp("backbone") / "pre")


def _build(path, mode, **kw):
    bb = build_backbone(BackboneConfig(kind="own", path=str(path)), num_classes=5, in_channels=1)
    report = apply_mode(bb.model, FinetuneModeConfig(mode=mode, **kw))
    return bb.model, report


def _step(model):
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 5, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_counts_match_what_trains(pretrained):
    totals = set()
    for mode in ("full", "linear", "partial", "lora", "bias"):
        model, report = _build(pretrained, mode)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert report["trainable_params"] == trainable > 0
        assert report["total_params"] == sum(p.numel() for p in model.parameters())
        if mode != "lora":
            totals.add(report["total_params"])
    assert len(totals) == 1
    full, _ = _build(pretrained, "full")
    assert all(p.requires_grad for p in full.parameters())


def test_linear_trains_only_the_head_and_keeps_bn_statistics(pretrained):
    model, report = _build(pretrained, "linear")
    head = model.head
    assert report["trainable_params"] == head.weight.numel() + head.bias.numel()
    assert report["frozen_norms"] == sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    )
    changed = _step(model)
    # Only the head moves; running_mean/var and num_batches_tracked of every BN stay put.
    assert changed == {f"net.{model.head_name}.weight", f"net.{model.head_name}.bias"}
    assert model.training and all(
        not m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )


def test_full_mode_updates_bn_statistics(pretrained):
    model, report = _build(pretrained, "full")
    assert report["frozen_norms"] == 0
    changed = _step(model)
    assert any(k.endswith("running_mean") for k in changed)
    assert any(k.endswith("features.0.weight") for k in changed)


def test_partial_trains_last_blocks_and_head(pretrained):
    model, report = _build(pretrained, "partial", blocks=2)
    blocks = backbone_blocks(model.net, model.head_name)
    assert report["blocks_total"] == len(blocks) == 5
    trained = {n for n, p in model.net.named_parameters() if p.requires_grad}
    expected = {
        n
        for n, _ in model.net.named_parameters()
        if any(n.startswith(m + ".") for b in blocks[-2:] for m in b)
        or n.startswith(model.head_name + ".")
    }
    assert trained == expected
    changed = _step(model)
    assert not any(
        k.startswith("net.features.0.") or k.startswith("net.features.1.") for k in changed
    )
    assert (
        "net.head.1.running_mean" in changed
    )  # BN of a trained block keeps learning its statistics
    with pytest.raises(ModeError, match="finetune.blocks=9 but the backbone has 5 blocks"):
        _build(pretrained, "partial", blocks=9)


def test_bias_mode_trains_biases_and_head(pretrained):
    model, _ = _build(pretrained, "bias")
    for n, p in model.net.named_parameters():
        assert p.requires_grad == (n.endswith("bias") or n.startswith(model.head_name + "."))


def test_lora_mode_trains_adapters_and_head_only(pretrained):
    model, report = _build(pretrained, "lora", lora={"rank": 2, "targets": ["features.*"]})
    assert report["lora_layers"] == 4  # the four convolutions
    for n, p in model.net.named_parameters():
        assert p.requires_grad == (
            n.endswith(("lora_A", "lora_B")) or n.startswith(model.head_name + ".")
        )


@pytest.mark.parametrize("mode", ["linear", "lora", "bias"])
def test_attacks_still_get_input_gradients(pretrained, mode):
    model, _ = _build(pretrained, mode)
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_partial_on_resnet_uses_residual_blocks(tmp_path):
    net = build_classifier(
        "preact_resnet18",
        {"num_classes": 10, "in_channels": 3, "width": 0.125},
        (0.5,) * 3,
        (0.25,) * 3,
    )
    save_model(net, tmp_path / "r")
    model, report = _build(tmp_path / "r", "partial", blocks=1)
    assert report["blocks_total"] == 8
    trained = {
        n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("layers") else "")
        for n, p in model.net.named_parameters()
        if p.requires_grad
    }
    assert trained == {"layers.7", "bn", "fc"}
