"""Backbones: own checkpoints get a new head, weights files load safely or are refused with reasons."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from advscale.models import CheckpointError, build_classifier, load_model, save_model
from advscale.transfer import BackboneConfig, BackboneError, build_backbone


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    model = build_classifier(
        "small_cnn", {"num_classes": 10, "in_channels": 1, "width": 0.5}, (0.286,), (0.353,)
    )
    path = tmp_path_factory.mktemp("backbone") / "pre"
    save_model(model, path)
    return path, model


def test_own_checkpoint_gets_a_new_head_and_keeps_the_body(pretrained, tmp_path):
    path, original = pretrained
    bb = build_backbone(BackboneConfig(kind="own", path=str(path)), num_classes=5, in_channels=1)
    model = bb.model
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 5)
    assert bb.info["head"] == "head.3" and bb.info["num_classes"] == 5
    assert model.mean == pytest.approx([0.286]) and model.std == pytest.approx([0.353])
    for k, v in original.state_dict().items():
        if not k.startswith("net.head.3."):
            assert torch.equal(model.state_dict()[k], v), k
    # A fine-tuned model is an ordinary advscale checkpoint again.
    save_model(model, tmp_path / "ft")
    again = load_model(tmp_path / "ft")
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(again(x), model.eval()(x))


def test_grey_images_reach_a_colour_backbone_as_repeated_channels(tmp_path):
    net = build_classifier(
        "preact_resnet18",
        {"num_classes": 10, "in_channels": 3, "width": 0.125},
        (0.4, 0.5, 0.6),
        (0.2, 0.25, 0.3),
    )
    save_model(net, tmp_path / "rgb")
    bb = build_backbone(
        BackboneConfig(kind="own", path=str(tmp_path / "rgb"), input_size=32),
        num_classes=4,
        in_channels=1,
    )
    model = bb.model.eval()
    grey = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(model(grey), model(grey.expand(-1, 3, -1, -1)))
    with pytest.raises(BackboneError, match="data.channels: 1"):
        build_backbone(
            BackboneConfig(kind="own", path=str(pretrained_path_grey(tmp_path))),
            num_classes=4,
            in_channels=3,
        )


def pretrained_path_grey(tmp_path):
    save_model(build_classifier("small_cnn", {"num_classes": 3, "width": 0.25}), tmp_path / "grey")
    return tmp_path / "grey"


def test_checkpoint_that_does_not_fit_lists_the_keys(pretrained, tmp_path):
    path, _ = pretrained
    sidecar = json.loads(path.with_suffix(".json").read_text())
    sidecar["arch_kwargs"]["width"] = 1.0
    (tmp_path / "bad.json").write_text(json.dumps(sidecar))
    (tmp_path / "bad.safetensors").write_bytes(path.with_suffix(".safetensors").read_bytes())
    with pytest.raises(
        CheckpointError,
        match=r"mismatched keys \(\d+\): net.features.0.weight: checkpoint \(16, 1, 3, 3\) vs model \(32, 1, 3, 3\)",
    ):
        build_backbone(BackboneConfig(kind="own", path=str(tmp_path / "bad")), num_classes=5)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="backbone.path"):
        BackboneConfig(kind="own")
    with pytest.raises(ValueError, match="backbone.name"):
        BackboneConfig(kind="timm")
    with pytest.raises(ValueError, match="either backbone.weights"):
        BackboneConfig(kind="timm", name="resnet18", weights="w.safetensors", pretrained="hub")


def _timm():
    try:
        import timm
    except (
        Exception
    ) as e:  # timm imports torchvision at import time; a CPU torch has none that fits
        pytest.skip(
            f"timm not importable here ({type(e).__name__}: {e}); install advscale[timm] with a matching torchvision"
        )
    return timm


def test_timm_model_with_local_weights_file(tmp_path):
    timm = _timm()
    src = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    save_file(
        {k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "r18.safetensors")
    )
    spec = BackboneConfig(
        kind="timm", name="resnet18", weights=str(tmp_path / "r18.safetensors"), input_size=32
    )
    bb = build_backbone(spec, num_classes=5, in_channels=1)
    assert bb.model(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    assert bb.info["head"] == "fc" and bb.info["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert torch.equal(bb.model.net.conv1.weight, src.conv1.weight)
    with pytest.raises(BackboneError, match="did you mean.*resnet18"):
        build_backbone(BackboneConfig(kind="timm", name="resnet_18"), num_classes=5)
