"""Models: registry, normalization inside the model, checkpoints that never unpickle."""

import json

import pytest
import torch

from advscale.errors import UserError
from advscale.models import (
    CheckpointError,
    Classifier,
    build_classifier,
    create_model,
    list_models,
    load_model,
    save_model,
)


@pytest.mark.parametrize(
    ("arch", "kwargs", "shape"),
    [
        ("small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5}, (2, 1, 28, 28)),
        ("small_cnn", {"num_classes": 7, "in_channels": 3, "width": 2.0}, (2, 3, 32, 32)),
        ("preact_resnet18", {"num_classes": 10, "in_channels": 3, "width": 0.25}, (2, 3, 32, 32)),
        (
            "wide_resnet",
            {"num_classes": 10, "in_channels": 3, "depth": 10, "widen": 1},
            (2, 3, 32, 32),
        ),
    ],
)
def test_registry_builds_models_that_return_logits(arch, kwargs, shape):
    model = build_classifier(arch, kwargs, mean=(0.5,) * shape[1], std=(0.25,) * shape[1]).eval()
    out = model(torch.rand(shape))
    assert out.shape == (shape[0], kwargs["num_classes"])
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_width_multiplier_scales_capacity():
    n = [
        sum(p.numel() for p in create_model("small_cnn", width=w).parameters())
        for w in (0.5, 1.0, 2.0)
    ]
    assert n[0] < n[1] < n[2]


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="small_cnn"):
        create_model("smal_cnn")
    assert "preact_resnet18" in list_models()


def test_wide_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n\\+4"):
        create_model("wide_resnet", depth=12)


def test_normalization_lives_in_the_model():
    net = torch.nn.Flatten()
    model = Classifier(net, mean=(0.5,), std=(0.25,))
    x = torch.full((1, 1, 2, 2), 0.75)
    assert torch.allclose(model(x), torch.ones(1, 4))


def test_checkpoint_round_trip_is_exact_and_eval_mode(tmp_path):
    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5}, (0.3,), (0.35,)
    )
    model.train()
    model(torch.rand(8, 1, 28, 28))  # move batch-norm statistics away from their init
    save_model(model, tmp_path / "m", dataset="fashion-mnist", classes=[str(i) for i in range(10)])
    assert (tmp_path / "m.safetensors").exists() and (tmp_path / "m.json").exists()
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["arch"] == "small_cnn" and meta["dataset"] == "fashion-mnist"
    for path in (tmp_path / "m", tmp_path / "m.safetensors", tmp_path / "m.json"):
        loaded = load_model(path)
        assert not loaded.training
        x = torch.rand(4, 1, 28, 28)
        assert torch.equal(loaded(x), model.eval()(x))
        assert loaded.mean == pytest.approx([0.3]) and loaded.std == pytest.approx([0.35])


def test_mismatched_checkpoint_lists_the_keys(tmp_path):
    model = build_classifier("small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5})
    save_model(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["arch_kwargs"]["num_classes"] = 5
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"mismatched keys \(2\).*net\.head\.3\.weight"):
        load_model(tmp_path / "m")


def test_missing_sidecar_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.json"):
        load_model(tmp_path / "nothere")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model = build_classifier("small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5})
    save_model(model, tmp_path / "m")
    before = (tmp_path / "m.safetensors").read_bytes()

    import advscale.models.checkpoint as ckpt

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken)
    # One line naming the file (no traceback), and the old weights kept.
    with pytest.raises(UserError, match=r"m\.safetensors: could not be written \(disk full\)"):
        save_model(model, tmp_path / "m")
    assert (tmp_path / "m.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
