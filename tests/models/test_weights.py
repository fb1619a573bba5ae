"""Weights files: one reader, one trust policy given by the caller; strict loading into a net."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from advscale.models import CheckpointError, load_state, read_weights


class Provenance:
    """A custom class inside a .pt file: only full unpickling can rebuild it."""

    def __init__(self, source: str) -> None:
        self.source = source


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "extra": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_weights(path)
    assert "this must never run" not in capsys.readouterr().out


def test_plain_state_dict_pt_loads(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(read_weights(path)["w"], torch.ones(2))


def test_weights_file_head_is_ignored_and_body_keys_are_checked(tmp_path):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    state = {k: torch.randn_like(v) for k, v in net.state_dict().items()}
    state["2.weight"] = torch.randn(1000, 8)  # the pretraining head, 1000 classes
    state["2.bias"] = torch.randn(1000)
    save_file(state, str(tmp_path / "w.safetensors"))
    info = load_state(net, read_weights(tmp_path / "w.safetensors"), "w.safetensors", skip="2")
    assert info["head_in_file"] and torch.equal(net[0].weight, state["0.weight"])
    bad = {"0.weight": torch.randn(8, 5), "extra.weight": torch.randn(2)}
    with pytest.raises(CheckpointError) as e:
        load_state(net, bad, "bad.pt", skip="2")
    msg = str(e.value)
    assert "missing keys (1): 0.bias" in msg and "unexpected keys (1): extra.weight" in msg
    assert "0.weight: checkpoint (8, 5) vs model (8, 4)" in msg


def test_pickled_checkpoint_is_refused_unless_trusted(tmp_path):
    state = {"fc.weight": torch.randn(3, 4), "fc.bias": torch.randn(3)}
    path = tmp_path / "backbone.pt"
    torch.save({"state_dict": state, "provenance": Provenance("somewhere")}, path)
    with pytest.raises(
        CheckpointError,
        match=r"(?s)refused to load.*Unsupported global.*Provenance.*--trust-checkpoint",
    ):
        read_weights(path)
    loaded = read_weights(path, trust=True)
    assert set(loaded) == set(state) and torch.equal(loaded["fc.weight"], state["fc.weight"])
    # A plain tensor file needs no trust at all.
    torch.save(state, tmp_path / "plain.pth")
    assert torch.equal(read_weights(tmp_path / "plain.pth")["fc.bias"], state["fc.bias"])
    with pytest.raises(CheckpointError, match="no such weights file"):
        read_weights(tmp_path / "missing.pt", trust=True)
