"""load_any_model: TorchScript files and Python factories load, evaluate, and refuse wrong classes."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from advscale.cli import main
from advscale.errors import UserError
from advscale.models import Classifier, build_classifier, load_any_model


@pytest.fixture(scope="module")
def tiny_model(fmnist, tiny_trainer) -> Classifier:
    """A tiny model trained for seconds on real Fashion-MNIST."""
    return tiny_trainer(fmnist("train", n=2000, seed=1), width=0.25, epochs=2, seed=0)


def _script(model, path, classes):
    """Save the network part (taking normalized images) as TorchScript, with a sidecar."""
    traced = torch.jit.trace(model.net.eval(), torch.rand(2, 1, 28, 28))
    traced.save(str(path))
    path.with_suffix(".json").write_text(
        json.dumps({"classes": classes, "mean": model.mean, "std": model.std})
    )


def test_torchscript_model_loads_and_evaluates_like_the_original(
    tiny_model, fmnist, fmnist_dir, tmp_path
):
    model = tiny_model
    test = fmnist("test", n=100)
    ts = tmp_path / "net.ts"
    _script(model, ts, test.classes)
    loaded = load_any_model(str(ts))
    x, y = test.tensors()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    assert loaded.classes == test.classes and loaded.meta["kind"] == "torchscript"
    with pytest.raises(UserError, match=r"outputs 10 classes but num_classes=5"):
        load_any_model(str(ts), num_classes=5)

    out = tmp_path / "eval.json"
    argv = [
        "eval",
        "--model",
        str(ts),
        "--attacks",
        "fgsm,pgd",
        "--eps",
        "8",
        "--n",
        "100",
        "--data-dir",
        str(fmnist_dir),
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert res["config"]["class_order"].startswith("class order of fashion-mnist (test) matches")
    expected = float((model(x).argmax(1) == y).float().mean())
    assert res["summary"]["clean_accuracy"] == pytest.approx(expected)
    pgd = next(r for r in res["records"] if r["attack"] == "pgd")
    assert pgd["accuracy"] < expected  # the attacks reach the scripted network through the wrapper


def test_imagefolder_with_other_classes_is_refused(tiny_model, fmnist, tmp_path, capsys):
    from PIL import Image

    ts = tmp_path / "net.ts"
    test = fmnist("test", n=20)
    _script(tiny_model, ts, test.classes)
    root = tmp_path / "folder" / "test"
    for i, (img, label) in enumerate(zip(test.images, test.labels, strict=True)):
        d = root / ("bag" if int(label) % 2 else "boot")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(d / f"{i}.png")
    argv = [
        "eval",
        "--model",
        str(ts),
        "--data",
        "imagefolder",
        "--data-dir",
        str(tmp_path / "folder"),
        "--attacks",
        "fgsm,pgd",
        "--eps",
        "8",
        "--n",
        "10",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "class names of" in err and "the model has 10 classes, the data 2" in err
    assert "only in the data: ['bag', 'boot']" in err
    assert not (tmp_path / "r.json").exists()

    # A model of those classes evaluates on the folder, whose images of mixed sizes are resized
    # to the model's input size.
    Image.fromarray(test.images[0, 0].numpy()).resize((40, 40)).save(root / "bag" / "big.png")
    two = build_classifier(
        "small_cnn", {"num_classes": 2, "in_channels": 1, "width": 0.25}, (0.3,), (0.35,)
    )
    torch.jit.trace(two.net.eval(), torch.rand(2, 1, 28, 28)).save(str(tmp_path / "two.ts"))
    (tmp_path / "two.json").write_text(
        json.dumps(
            {"classes": ["bag", "boot"], "mean": [0.3], "std": [0.35], "input_size": [28, 28]}
        )
    )
    argv[2] = str(tmp_path / "two.ts")
    assert main(argv) == 0
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["n"] == 10


def test_factory_with_weights_and_clear_errors(tiny_model, fmnist, tmp_path, monkeypatch):
    model = tiny_model
    (tmp_path / "my_nets.py").write_text(
        "from advscale.models.cnn import SmallCNN\n\n"
        "def make(num_classes=10):\n"
        "    return SmallCNN(num_classes=num_classes, in_channels=1, width=0.25)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(weights))
    loaded = load_any_model(
        f"my_nets:make@{weights}", mean=model.mean, std=model.std, num_classes=10
    )
    x, _ = fmnist("test", n=50).tensors()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    with pytest.raises(UserError, match=r"head.3.weight: checkpoint \(10, 32\) vs model \(5, 32\)"):
        load_any_model("my_nets:make", weights=weights, num_classes=5)
    with pytest.raises(UserError, match=r"missing keys"):
        (tmp_path / "other.py").write_text(
            "from torch import nn\n\ndef make():\n    return nn.Linear(3, 2)\n"
        )
        load_any_model("other:make", weights=weights)
    with pytest.raises(UserError, match=r"no such model file or checkpoint"):
        load_any_model(str(tmp_path / "nothing_here"))


def test_timm_name_with_local_weights_file_loads_and_keeps_its_normalization(tmp_path):
    timm = pytest.importorskip(
        "timm",
        reason="timm needs a torchvision that matches torch; `make test-timm` runs this test",
    )
    src = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    save_file(
        {k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "r18.safetensors")
    )
    model = load_any_model(f"timm:resnet18@{tmp_path / 'r18.safetensors'}", num_classes=10)
    assert model.meta["kind"] == "timm" and not model.training
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        # the wrapper resizes to the network's input size and applies timm's normalization
        expected = src(
            model.normalize(
                torch.nn.functional.interpolate(
                    x, size=model.input_size, mode="bilinear", align_corners=False
                )
            )
        )
        assert torch.allclose(model(x), expected, atol=1e-4)
    assert model.mean == pytest.approx(list(src.pretrained_cfg["mean"]), abs=1e-6)
    # A 10-class checkpoint for a 5-class network: the message names the file and both shapes
    # of each mismatched key (advscale.models.checkpoint.check_state_dict).
    weights = tmp_path / "r18.safetensors"
    with pytest.raises(
        UserError,
        match=re.escape(f"{weights} (for timm:resnet18) does not match the architecture:\n")
        + r"\s*mismatched keys \(2\): "
        + re.escape("fc.bias: checkpoint (10,) vs model (5,), ")
        + re.escape("fc.weight: checkpoint (10, 512) vs model (5, 512)")
        + "$",
    ):
        load_any_model(f"timm:resnet18@{weights}", num_classes=5)


class Provenance:
    """Stored beside the weights: only full unpickling can rebuild it."""

    def __init__(self, source: str) -> None:
        self.source = source


def test_trust_comes_only_from_the_call_site_never_from_a_spec_file(
    tmp_path, monkeypatch, fmnist_dir, capsys
):
    (tmp_path / "lin_nets.py").write_text(
        "from torch import nn\n\n"
        "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    pt = tmp_path / "w.pt"
    torch.save({"state_dict": net.state_dict(), "provenance": Provenance("lab")}, pt)
    spec = tmp_path / "model.yaml"
    spec.write_text("model: lin_nets:make\nweights: w.pt\ntrust: true\n")
    with pytest.raises(
        UserError, match=r"model\.yaml: key 'trust' is not allowed.*--trust-checkpoint"
    ):
        load_any_model(spec)
    spec.write_text("model: lin_nets:make\nweights: w.pt\n")
    with pytest.raises(UserError, match=r"w\.pt: refused to load.*Provenance"):
        load_any_model(spec)
    loaded = load_any_model(spec, trust=True)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))

    out = tmp_path / "r.json"
    argv = ["eval", "--model", str(spec), "--data-dir", str(fmnist_dir), "--n", "20"]
    argv += ["--attacks", "fgsm", "--eps", "8", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 2 and "refused to load" in capsys.readouterr().err
    assert main([*argv, "--trust-checkpoint"]) == 0
    note = json.loads(out.read_text())["config"]["class_order"]
    assert note.startswith("class order of fashion-mnist (test) not checked")


def test_checkpoint_loads_the_same_through_every_entry(tmp_path):
    import advscale

    model = build_classifier("small_cnn", {"num_classes": 3, "width": 0.25}, (0.3,), (0.35,))
    advscale.save_model(model, tmp_path / "m", classes=["a", "b", "c"])
    x = torch.rand(4, 1, 28, 28)
    expected = model.eval()(x)
    for spec in (tmp_path / "m", f"{tmp_path / 'm'}.safetensors", f"{tmp_path / 'm'}.json"):
        loaded = load_any_model(spec)
        assert not loaded.training and torch.equal(loaded(x), expected)
    assert torch.equal(advscale.load_model(tmp_path / "m")(x), expected)
    with pytest.raises(UserError, match="outputs 3 classes but num_classes=5"):
        load_any_model(tmp_path / "m", num_classes=5)
