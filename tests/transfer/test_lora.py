"""LoRA adapters: zero change at start, changes only through A/B, exact merge, strict targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advscale.transfer import (
    LoRAError,
    LoRALayer,
    add_lora,
    load_lora,
    merge_lora,
    save_lora,
    strip_lora,
    unmerge_lora,
)


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 6),
        nn.ReLU(),
        nn.Linear(6, 4),
    ).eval()


def _perturb_adapters(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, LoRALayer):
                m.lora_B.normal_(0, 0.5)


def test_adapted_net_starts_identical_and_changes_only_through_adapters():
    net, x = _net(), torch.rand(5, 3, 8, 8)
    reference = net(x)
    base = {k: v.clone() for k, v in net.state_dict().items()}
    names = add_lora(net, None, rank=2, alpha=4, exclude=["8"])
    assert names == [
        "0",
        "3",
        "6",
    ]  # both convolutions (one grouped) and the hidden Linear; not the head
    torch.testing.assert_close(net(x), reference, rtol=0, atol=0)

    _perturb_adapters(net)
    out = net(x)
    assert not torch.allclose(out, reference)
    # Code that reads a layer's attributes directly sees the adapted layer consistently.
    lin = net[6]
    assert lin.in_features == 8 and lin.out_features == 6 and net[3].groups == 2
    torch.testing.assert_close(
        nn.functional.linear(torch.ones(1, 8), lin.weight, lin.bias), lin(torch.ones(1, 8))
    )
    out.sum().backward()
    for n, p in net.named_parameters():
        is_adapter = n.endswith(("lora_A", "lora_B"))
        assert p.requires_grad == (is_adapter or n.startswith(("1.", "8.")))
    # The frozen base weights are the pretrained ones, untouched.
    for k, v in net.state_dict().items():
        plain = k.replace(".base.", ".")
        if plain in base and "lora" not in k:
            assert torch.equal(v, base[plain]), k


def test_merge_unmerge_and_strip_are_exact():
    net, x = _net(), torch.rand(5, 3, 8, 8)
    original = {k: v.clone() for k, v in net.state_dict().items()}
    add_lora(net, ["0", "3", "6"], rank=3, alpha=6)
    _perturb_adapters(net)
    adapted = net(x)
    assert merge_lora(net) == 3
    torch.testing.assert_close(net(x), adapted, rtol=1e-5, atol=1e-5)
    assert unmerge_lora(net) == 3
    torch.testing.assert_close(net[0].base.weight, original["0.weight"], rtol=1e-6, atol=1e-6)
    plain = strip_lora(net)
    assert set(plain.state_dict()) == set(original)
    torch.testing.assert_close(plain(x), adapted, rtol=1e-5, atol=1e-5)


def test_adapters_save_and_load(tmp_path):
    net, x = _net(), torch.rand(2, 3, 8, 8)
    add_lora(net, ["0", "6"], rank=2, alpha=2)
    _perturb_adapters(net)
    expected = net(x)
    path = save_lora(net, tmp_path / "adapters.safetensors")
    other = _net()
    other.load_state_dict(
        {k.replace(".base.", "."): v for k, v in net.state_dict().items() if "lora" not in k}
    )
    add_lora(other, ["0", "6"], rank=2, alpha=2)
    load_lora(other, path)
    torch.testing.assert_close(other(x), expected)
    wrong = _net()
    add_lora(wrong, ["0"], rank=2, alpha=2)
    with pytest.raises(LoRAError, match="do not match"):
        load_lora(wrong, path)


def test_unmatched_target_is_an_error_with_close_names():
    net = nn.Sequential()
    net.add_module("encoder", nn.Sequential())
    net.encoder.add_module("query", nn.Linear(4, 4))
    net.encoder.add_module("value", nn.Linear(4, 4))
    with pytest.raises(
        LoRAError, match=r"'qeury' matches no Linear or Conv2d layer.*encoder.query"
    ):
        add_lora(net, ["qeury"])
    with pytest.raises(LoRAError, match="matches only BatchNorm2d"):
        add_lora(_net(), ["1"])
    # A good pattern next to a bad one still fails: nothing is adapted silently.
    with pytest.raises(LoRAError):
        add_lora(net, ["query", "nothing_like_this"])
    assert not any(isinstance(m, LoRALayer) for m in net.modules())
