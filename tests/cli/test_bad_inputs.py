"""Every bad input ends in one line naming the file, key or value, and a non-zero exit status.

Each case runs ``advscale.cli.main`` in this process with one mistake a user makes and checks
the exit status, that stderr holds exactly one line (no usage block, no traceback) and that
the line names the culprit. Paths in the arguments are ``{name}`` placeholders filled from the
``files`` fixture.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from advscale.cli import main
from advscale.data import write_shards
from advscale.models import build_classifier, save_model
from advscale.train.rundir import RunDir

EVAL = ["eval", "--model", "{model}", "--data-dir", "{fmnist}", "--n", "20", "--attacks", "fgsm"]
EVAL_ON = ["eval", "--data-dir", "{fmnist}", "--n", "20", "--attacks", "fgsm", "--model"]
TRAIN = ["train", "--config", "{config}", "--out", "{tmp}/run"]
TINY = {
    "epochs": 1,
    "batch_size": 16,
    "progress": False,
    "tensorboard": False,
    "model": {"kwargs": {"width": 0.25}},
    "data": {"n_train": 64, "n_val": 20},
    "eval": {"n": 20, "attack_kwargs": {"pgd": {"steps": 1}}, "label_leak": False},
}


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier("small_cnn", {"width": 0.25}, (0.286,), (0.353,))


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def files(tmp_path_factory, fmnist_dir, fmnist) -> dict[str, str]:
    """The files the cases point at: good ones and each kind of broken one."""
    d = tmp_path_factory.mktemp("bad")
    model = _tiny_model()
    save_model(model, d / "model", classes=None)
    side = json.loads((d / "model.json").read_text())
    weights = (d / "model.safetensors").read_bytes()

    def checkpoint(name: str, data: bytes = weights, **fields: object) -> None:
        (d / f"{name}.safetensors").write_bytes(data)
        (d / f"{name}.json").write_text(json.dumps({**side, **fields}))

    checkpoint("garbage", b"\x00not safetensors at all" * 10)
    checkpoint("truncated", weights[: len(weights) // 2])
    checkpoint("kwargs_type", arch_kwargs="wide")
    checkpoint("mean_type", mean="grey")
    checkpoint("arch_type", arch=5)
    checkpoint("unknown_arch", arch="no_such_net")
    (d / "badjson.safetensors").write_bytes(weights)
    (d / "badjson.json").write_text("{not json")
    nan = _tiny_model()
    with torch.no_grad():
        next(nan.parameters()).fill_(float("nan"))
    save_model(nan, d / "nan_model")
    torch.save(model, d / "pickled.pt")  # a whole module: only full unpickling reads it
    script = d / "model.ts"
    torch.jit.trace(model.eval(), torch.rand(1, 1, 28, 28)).save(str(script))
    for name in ("truncated.ts", "truncated.pt"):
        (d / name).write_bytes(script.read_bytes()[: script.stat().st_size // 2])
    (d / "trust.yaml").write_text(f"model: {d / 'model.ts'}\ntrust: true\n")
    (d / "broken.yaml").write_text("model: [unclosed\n")
    (d / "a_file").write_text("")
    (d / "results.json").write_text("{truncated")

    def config(name: str, text: str) -> None:
        (d / name).write_text(text)

    config("config.yaml", yaml.safe_dump({**TINY, "data": {**TINY["data"]}}))
    config("config_bad_yaml.yaml", "epochs: 1\nrecipe: {name: pgd\n")
    config("config_unknown_key.yaml", yaml.safe_dump({**TINY, "epoch": 3}))
    config("config_list.yaml", "- 1\n- 2\n")
    config("config_trust.yaml", "backbone:\n  kind: own\n  path: x\n  trust: true\n")
    config("sweep.yaml", yaml.safe_dump({"base": TINY, "field": "seed", "values": [0, 1]}))
    config(
        "config_pgd0.yaml",
        yaml.safe_dump({**TINY, "eval": {"attack_kwargs": {"pgd": {"steps": 0}}}}),
    )

    # Image folders: 12 classes for a 10-class model; one unreadable image; too few images.
    rng = np.random.default_rng(0)
    for folder, classes, per_class in (
        ("folder12", 12, 5),
        ("folder_bad", 2, 5),
        ("folder_few", 2, 1),
    ):
        for c in range(classes):
            (d / folder / f"c{c:02d}").mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
                Image.fromarray(pixels).save(d / folder / f"c{c:02d}" / f"{i}.png")
    (d / "folder_bad" / "c00" / "0.png").write_bytes(b"\x89PNG cut short")

    # Training shards: one with a label outside the 10 classes, one with a corrupt image.
    for kind in ("label", "image"):
        root = d / f"shards_{kind}"
        write_shards(fmnist("train", n=64), root / "train", shard_size=32)
        write_shards(fmnist("test", n=20), root / "val", shard_size=20)
        bad = {"label": {"00000040.cls": b"10"}, "image": {"00000040.png": b"\x89PNG broken"}}[kind]
        members = {}
        with tarfile.open(root / "train" / "shard-000001.tar") as tar:
            for m in tar.getmembers():
                members[m.name] = tar.extractfile(m).read()
        _tar(root / "train" / "shard-000001.tar", {**members, **bad})
        data = {"name": "webdataset", "data_dir": str(root / "train"), "val_dir": str(root / "val")}
        config(
            f"config_shard_{kind}.yaml",
            yaml.safe_dump({**TINY, "data": {**data, "num_classes": 10}}),
        )
    # Results files a report must refuse: accuracies that are no shares, records that are no
    # objects, nesting that would exhaust the parser's stack.
    head = {"schema": "advscale.results", "version": 1, "kind": "eval"}
    for name, records in (
        ("results_nan", [{"attack": "pgd", "eps": 8, "accuracy": float("nan")}]),
        ("results_57", [{"attack": "pgd", "eps": 8, "accuracy": 0.5, "clean_accuracy": 57}]),
        ("results_notobj", [["attack", "pgd"]]),
        ("results_eps_inf", [{"attack": "pgd", "eps": float("inf"), "accuracy": 0.5}]),
    ):
        (d / f"{name}.json").write_text(json.dumps({**head, "records": records}))
    (d / "results_created.json").write_text(json.dumps({**head, "records": [], "created": 5}))
    deep = "[" * 100000 + "]" * 100000
    (d / "results_deep.json").write_text(json.dumps({**head, "records": []})[:-2] + deep + "]}")
    _hostile_files(d)
    return {k: str(v) for k, v in {"dir": d, "fmnist": fmnist_dir}.items()}


# (id, argv, exit status, what the one line must name)
CASES = [
    # ε: pixel levels in [0, 255]
    ("eps-fraction", [*EVAL, "--eps", "0.03"], 2, ["--eps", "0.03"]),
    ("eps-too-big", [*EVAL, "--eps", "300"], 2, ["--eps", "300"]),
    ("eps-negative", [*EVAL, "--eps", "-4"], 2, ["--eps", "-4"]),
    ("eps-text", [*EVAL, "--eps", "eight"], 2, ["--eps", "eight"]),
    ("eps-nan", [*EVAL, "--eps", "nan"], 2, ["--eps", "nan"]),
    ("eps-unit", [*EVAL, "--eps", "8/255"], 2, ["--eps", "8/255"]),
    ("train-eps-fraction", [*TRAIN, "--set", "recipe.eps=0.03"], 2, ["recipe.eps", "0.03"]),
    ("train-eps-too-big", [*TRAIN, "--set", "recipe.eps=400"], 2, ["recipe.eps", "400"]),
    ("train-eval-eps", [*TRAIN, "--set", "eval.eps=[0.5]"], 2, ["eval.eps", "0.5"]),
    # names
    ("unknown-attack", [*EVAL, "--attacks", "fgsm,cw_l2"], 2, ["cw_l2"]),
    ("unknown-preset", [*EVAL, "--preset", "autoatack"], 2, ["--preset", "autoatack"]),
    ("unknown-dataset", [*EVAL, "--data", "mnist-fancy"], 2, ["mnist-fancy"]),
    ("unknown-split", [*EVAL, "--split", "dev"], 2, ["dev"]),
    ("unknown-arch", [*TRAIN, "--set", "model.arch=resnet9000"], 2, ["resnet9000"]),
    ("unknown-recipe", [*TRAIN, "--set", "recipe.name=trades"], 2, ["recipe.name", "trades"]),
    ("unknown-command", ["evaluate"], 2, ["evaluate"]),
    ("unknown-flag", [*EVAL, "--epsilon", "8"], 2, ["--epsilon"]),
    ("data-info-unknown", ["data", "info", "imagenet-42"], 2, ["imagenet-42"]),
    # numbers
    ("n-zero", [*EVAL, "--n", "0"], 2, ["--n", "0"]),
    ("batch-size-zero", [*EVAL, "--batch-size", "0"], 2, ["--batch-size", "0"]),
    ("apgd-steps-zero", [*EVAL, "--apgd-steps", "0"], 2, ["--apgd-steps", "0"]),
    ("n-text", [*EVAL, "--n", "many"], 2, ["--n", "many"]),
    # a target class the model does not have: named with ε as the user gave it
    (
        "target-autoattack",
        [*EVAL, "--preset", "autoattack", "--target", "ll"],
        2,
        ["--target", "untargeted"],
    ),
    ("target-class", [*EVAL, "--target", "12", "--eps", "2"], 2, ["12", "ε=2/255", "[0, 10)"]),
    ("pgd-steps-zero", [*TRAIN, "--set", "eval.attack_kwargs={{pgd: {{steps: 0}}}}"], 2, ["steps"]),
    (
        "pgd-steps-zero-file",
        ["train", "--config", "{dir}/config_pgd0.yaml", "--out", "{tmp}/r"],
        2,
        ["steps"],
    ),
    # --set
    (
        "set-unknown-key",
        [*TRAIN, "--set", "optimizer.learning_rate=0.1"],
        2,
        ["optimizer.learning_rate"],
    ),
    ("set-wrong-type", [*TRAIN, "--set", "epochs=three"], 2, ["epochs", "three"]),
    ("set-no-equals", [*TRAIN, "--set", "epochs"], 2, ["epochs"]),
    ("set-negative-lr", [*TRAIN, "--set", "optimizer.lr=-1"], 2, ["optimizer.lr"]),
    (
        "set-trust",
        [
            "finetune",
            "--config",
            "{dir}/config.yaml",
            "--out",
            "{tmp}/f",
            "--set",
            "backbone.trust=true",
        ],
        2,
        ["backbone.trust", "--trust-checkpoint"],
    ),
    # config files
    (
        "config-missing",
        ["train", "--config", "{dir}/nope.yaml", "--out", "{tmp}/r"],
        2,
        ["nope.yaml"],
    ),
    (
        "config-bad-yaml",
        ["train", "--config", "{dir}/config_bad_yaml.yaml", "--out", "{tmp}/r"],
        2,
        ["config_bad_yaml.yaml"],
    ),
    (
        "config-unknown-key",
        ["train", "--config", "{dir}/config_unknown_key.yaml", "--out", "{tmp}/r"],
        2,
        ["epoch"],
    ),
    (
        "config-not-mapping",
        ["train", "--config", "{dir}/config_list.yaml", "--out", "{tmp}/r"],
        2,
        ["config_list.yaml"],
    ),
    (
        "config-trust-key",
        ["finetune", "--config", "{dir}/config_trust.yaml", "--out", "{tmp}/r"],
        2,
        ["config_trust.yaml", "backbone.trust"],
    ),
    ("sweep-missing", ["sweep", "--config", "{dir}/nope_sweep.yaml"], 2, ["nope_sweep.yaml"]),
    # model files
    ("model-missing", [*EVAL_ON, "{dir}/no_model"], 2, ["no_model"]),
    ("model-garbage", [*EVAL_ON, "{dir}/garbage"], 2, ["garbage.safetensors"]),
    ("model-truncated", [*EVAL_ON, "{dir}/truncated"], 2, ["truncated.safetensors"]),
    ("sidecar-bad-json", [*EVAL_ON, "{dir}/badjson"], 2, ["badjson.json"]),
    (
        "sidecar-kwargs-type",
        [*EVAL_ON, "{dir}/kwargs_type"],
        2,
        ["kwargs_type.json", "arch_kwargs"],
    ),
    ("sidecar-mean-type", [*EVAL_ON, "{dir}/mean_type"], 2, ["mean_type.json", "mean"]),
    ("sidecar-arch-type", [*EVAL_ON, "{dir}/arch_type"], 2, ["arch_type.json", "arch"]),
    (
        "sidecar-unknown-arch",
        [*EVAL_ON, "{dir}/unknown_arch"],
        2,
        ["unknown_arch.json", "no_such_net"],
    ),
    (
        "pickle-without-trust",
        [*EVAL_ON, "advscale.models.cnn:small_cnn@{dir}/pickled.pt"],
        2,
        ["pickled.pt", "--trust-checkpoint"],
    ),
    ("plain-torch-save", [*EVAL_ON, "{dir}/pickled.pt"], 2, ["pickled.pt", "plain torch.save"]),
    (
        "torchscript-truncated",
        [*EVAL_ON, "{dir}/truncated.ts"],
        2,
        ["truncated.ts", "truncated or"],
    ),
    (
        "torchscript-truncated-pt",
        [*EVAL_ON, "{dir}/truncated.pt"],
        2,
        ["truncated.pt", "truncated or"],
    ),
    ("spec-trust-key", [*EVAL_ON, "{dir}/trust.yaml"], 2, ["trust.yaml", "trust"]),
    ("spec-bad-yaml", [*EVAL_ON, "{dir}/broken.yaml"], 2, ["broken.yaml"]),
    ("model-nan-weights", [*EVAL_ON, "{dir}/nan_model"], 2, ["non-finite"]),
    ("factory-missing-module", [*EVAL_ON, "no_such_pkg.nets:resnet"], 2, ["no_such_pkg"]),
    # data
    ("data-dir-missing", [*EVAL[:3], "--data-dir", "{dir}/no_data", "--n", "20"], 2, ["no_data"]),
    (
        "shard-label-out-of-range",
        ["train", "--config", "{dir}/config_shard_label.yaml", "--out", "{tmp}/r"],
        2,
        ["shard-000001.tar", "00000040", "label 10"],
    ),
    (
        "shard-corrupt-image",
        ["train", "--config", "{dir}/config_shard_image.yaml", "--out", "{tmp}/r"],
        2,
        ["shard-000001.tar", "00000040"],
    ),
    (
        "folder-labels-out-of-range",
        [*EVAL_ON, "{model}", "--data", "imagefolder", "--data-dir", "{dir}/folder12"],
        2,
        ["label 11", "10 classes"],
    ),
    (
        "folder-corrupt-image",
        [
            *EVAL_ON,
            "{model}",
            "--data",
            "imagefolder",
            "--data-dir",
            "{dir}/folder_bad",
            "--split",
            "train",
        ],
        2,
        ["folder_bad/c00/0.png"],
    ),
    (
        "folder-too-few-images",
        [*EVAL_ON, "{model}", "--data", "imagefolder", "--data-dir", "{dir}/folder_few"],
        2,
        ["folder_few", "'test' split"],
    ),
    ("model-a-directory", [*EVAL_ON, "."], 2, [".: a directory"]),
    ("device-unknown", [*EVAL, "--device", "tpu"], 2, ["tpu"]),
    ("device-missing-gpu", [*EVAL, "--device", "cuda:99"], 2, ["cuda:99"]),
    # outputs
    (
        "eval-out-under-a-file",
        [*EVAL, "--out", "{dir}/a_file/results.json"],
        2,
        ["a_file", "--out"],
    ),
    ("eval-out-a-directory", [*EVAL, "--out", "{dir}"], 2, ["--out", "is a directory"]),
    (
        "eval-out-proc",
        [*EVAL, "--out", "/proc/advscale/results.json"],
        2,
        ["/proc/advscale/results.json"],
    ),
    (
        "train-out-under-a-file",
        ["train", "--config", "{dir}/config.yaml", "--out", "{dir}/a_file/run"],
        2,
        ["a_file"],
    ),
    (
        "report-out-under-a-file",
        ["report", "{dir}/no_run", "--out", "{dir}/a_file/r.html"],
        2,
        ["a_file"],
    ),
    (
        "transfer-out-under-a-file",
        ["transfer-matrix", "--models", "{dir}/model,{dir}/model", "--out", "{dir}/a_file/tm"],
        2,
        ["a_file"],
    ),
    (
        "sweep-out-under-a-file",
        ["sweep", "--config", "{dir}/sweep.yaml", "--out", "{dir}/a_file/s"],
        2,
        ["a_file"],
    ),
    (
        "compare-resume-and-force",
        ["compare", "--config", "{dir}/config.yaml", "--out", "{tmp}/c", "--resume", "--force"],
        2,
        ["--resume", "--force"],
    ),
    # results and run directories
    ("report-missing-run", ["report", "{dir}/no_run", "--out", "{tmp}/r.html"], 2, ["no_run"]),
    (
        "report-corrupt-results",
        ["report", "{dir}/results.json", "--out", "{tmp}/r.html"],
        2,
        ["results.json"],
    ),
    (
        "transfer-one-model",
        ["transfer-matrix", "--models", "{dir}/model", "--out", "{tmp}/tm"],
        2,
        ["--models"],
    ),
    ("resume-no-run", [*TRAIN, "--resume"], 2, ["--resume", "run"]),
    ("run-locked", [*TRAIN, "--force"], 2, ["is being written by process", "run.lock"]),
    ("eval-eot-zero", [*EVAL, "--eot", "0"], 2, ["--eot", "0"]),
    *(
        (f"report-{case}", ["report", f"{{dir}}/{name}.json", "--out", "{tmp}/r.html"], 2, names)
        for case, name, names in (
            ("nan-accuracy", "results_nan", ["results_nan.json", "record 0", "accuracy is nan"]),
            ("accuracy-57", "results_57", ["results_57.json", "clean_accuracy is 57"]),
            ("record-not-object", "results_notobj", ["results_notobj.json", "record 0"]),
            ("nested-deep", "results_deep", ["results_deep.json", "nested deeper"]),
            ("eps-inf", "results_eps_inf", ["results_eps_inf.json", "record 0", "eps is inf"]),
            ("created-not-text", "results_created", ["results_created.json", "'created'"]),
        )
    ),
    # hostile files: configs that would grow, lie or not decode
    (
        "config-duplicate-key",
        ["train", "--config", "{dir}/config_dup.yaml", "--out", "{tmp}/r"],
        2,
        ["config_dup.yaml", "duplicate key 'epochs'"],
    ),
    (
        "config-billion-laughs",
        ["train", "--config", "{dir}/config_lol.yaml", "--out", "{tmp}/r"],
        2,
        ["config_lol.yaml", "aliases"],
    ),
    (
        "config-dev-zero",
        ["train", "--config", "/dev/zero", "--out", "{tmp}/r"],
        2,
        ["/dev/zero", "larger than"],
    ),
    (
        "config-latin1",
        ["train", "--config", "{dir}/config_latin1.yaml", "--out", "{tmp}/r"],
        2,
        ["config_latin1.yaml", "not UTF-8", "0xe9"],
    ),
    (
        "train-alpha-pixel-levels",
        [*TRAIN, "--set", "eval.attack_kwargs={{pgd: {{alpha: 2}}}}"],
        2,
        ["alpha=2", "2/255"],
    ),
    (
        "eval-alpha-pixel-levels",
        [*EVAL, "--out", "{tmp}/r.json", "--attack-kwargs", "pgd.alpha=2"],
        2,
        ["alpha=2", "2/255"],
    ),
    (
        "results-nested-deep",
        ["report", "{dir}/deep.json", "--out", "{tmp}/r.html"],
        2,
        ["deep.json"],
    ),
    # outputs that are links, pipes, too long, or hold earlier work
    (
        "eval-out-symlink",
        [*EVAL, "--out", "{dir}/link.json", "--force"],
        2,
        ["link.json", "symbolic link"],
    ),
    ("eval-out-fifo", [*EVAL, "--out", "{dir}/fifo", "--force"], 2, ["fifo", "not a regular file"]),
    ("eval-out-name-too-long", [*EVAL, "--out", "{tmp}/" + "r" * 300], 2, ["--out", "255"]),
    (
        "report-out-exists",
        ["report", "{dir}/no_run", "--out", "{dir}/existing.html"],
        2,
        ["existing.html", "--force"],
    ),
    (
        "report-out-symlink",
        ["report", "{dir}/no_run", "--out", "{dir}/link.json", "--force"],
        2,
        ["link.json", "symbolic link"],
    ),
    (
        "save-adv-a-file",
        [*EVAL, "--out", "{tmp}/r.json", "--save-adv", "{dir}/a_file"],
        2,
        ["--save-adv", "a_file", "is a file"],
    ),
    (
        "save-adv-holds-examples",
        [*EVAL, "--out", "{tmp}/r.json", "--save-adv", "{dir}/adv_dir"],
        2,
        ["adv_dir", "examples.safetensors", "--force"],
    ),
    (
        "fetch-to-a-file",
        ["data", "fetch", "fashion-mnist", "--to", "{dir}/a_file"],
        2,
        ["a_file", "is a file"],
    ),
    (
        "export-to-symlink",
        ["export", "{dir}/model", "--to", "{dir}/link.ts", "--input-shape", "1,28,28"],
        2,
        ["link.ts", "symbolic link"],
    ),
    (
        "demo-keeps-earlier-run",
        ["demo", "--out", "{dir}/demo_done"],
        2,
        ["demo_done", "--resume", "--force"],
    ),
    ("demo-resume-and-force", ["demo", "--out", "{tmp}/d", "--resume", "--force"], 2, ["--force"]),
    # model specs and models
    (
        "spec-names-itself",
        [*EVAL_ON, "{dir}/self_spec.yaml"],
        2,
        ["self_spec.yaml", "another spec file"],
    ),
    (
        "spec-field-type",
        [*EVAL_ON, "{dir}/spec_types.yaml"],
        2,
        ["spec_types.yaml", "num_classes", "'ten'"],
    ),
    (
        "export-torchscript-to-pt2",
        ["export", "{dir}/model.ts", "--to", "{tmp}/m.pt2", "--input-shape", "1,28,28"],
        2,
        ["m.pt2", "TorchScript"],
    ),
    (
        "train-batch-one-batch-norm",
        [*TRAIN, "--set", "batch_size=1"],
        2,
        ["batch_size", "batch norm"],
    ),
    (
        "save-adv-link-with-force",
        [*EVAL, "--out", "{tmp}/r.json", "--save-adv", "{dir}/adv_link", "--force"],
        2,
        ["adv_link/examples.safetensors", "symbolic link"],
    ),
    (
        "save-adv-unwritable",
        [*EVAL, "--out", "{tmp}/r.json", "--save-adv", "/proc/advscale/adv"],
        2,
        ["--save-adv", "/proc/advscale/adv", "not writable"],
    ),
]


@pytest.mark.parametrize("case_id,argv,status,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_line_naming_the_culprit(
    case_id, argv, status, names, files, tmp_path, capsys
):
    paths = {**files, "tmp": str(tmp_path), "model": f"{files['dir']}/model"}
    paths["config"] = f"{files['dir']}/config.yaml"
    args = [a.format(**paths) for a in argv]
    lock = None
    if case_id == "run-locked":
        lock = RunDir(tmp_path / "run")
        lock.lock()  # another writer holds the directory
    try:
        try:
            code = main(args)
        except SystemExit as e:  # argparse
            code = e.code
    finally:
        if lock is not None:
            lock.unlock()
    out = capsys.readouterr()
    # What a terminal shows: a progress bar redraws its line after each "\r".
    lines = [ln.split("\r")[-1] for ln in out.err.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    assert code == status, out.err
    assert "Traceback" not in out.err
    assert len(lines) == 1, out.err
    for name in names:
        assert name.format(**paths) in lines[0], lines[0]


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_corrupt_results_in_a_run_directory_are_named(files, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(Path(files["dir"]) / "results.json", run / "results.json")
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    assert str(run / "results.json") in capsys.readouterr().err


def test_names_with_dollar_signs_and_html_are_reported_literally(files, tmp_path, capsys):
    # "$\nosuch$" is a mathtext error if matplotlib typesets it; "<b>" is markup in report.md.
    run = tmp_path / "run$\\nosuch$<b>"
    config = str(Path(files["dir"]) / "config.yaml")
    assert main(["train", "--config", config, "--out", str(run)]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "run$\\nosuch$&lt;b&gt;" in md and "<b>" not in md
    assert list(tmp_path.glob("r_*.png"))  # the plots were drawn, names and all


def _hostile_files(d: Path) -> None:
    """Files a careless or hostile user hands over: configs that grow, repeat or do not
    decode, outputs that are links or pipes or hold earlier work, specs that loop."""
    tiny = yaml.safe_dump(TINY)
    (d / "config_dup.yaml").write_text(tiny + "epochs: 3\n")
    laughs = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    (d / "config_lol.yaml").write_text("\n".join(laughs) + "\n")
    (d / "config_latin1.yaml").write_bytes(tiny.encode() + "# café\n".encode("latin-1"))
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "victim.json").write_text("not advscale's")
    for name in ("link.json", "link.ts"):
        (d / name).symlink_to(d / "victim.json")
    os.mkfifo(d / "fifo")
    (d / "existing.html").write_text("an earlier report")
    (d / "adv_dir").mkdir()
    (d / "adv_dir" / "examples.safetensors").write_bytes(b"another evaluation's examples")
    (d / "adv_link").mkdir()
    (d / "adv_link" / "examples.safetensors").symlink_to(d / "victim.json")
    (d / "demo_done").mkdir()
    (d / "demo_done" / "results.json").write_text("{}")
    (d / "self_spec.yaml").write_text("model: self_spec.yaml\n")
    (d / "spec_types.yaml").write_text(f"model: {d / 'model.ts'}\nnum_classes: ten\n")


def test_hostile_outputs_are_left_as_they_were(files, tmp_path):
    """The refusals above changed nothing: links still point where they did, the file behind
    them is intact, the pipe is a pipe and earlier work is kept."""
    d = Path(files["dir"])
    assert (
        main(
            [
                *[a.format(**files, model=f"{d}/model") for a in EVAL],
                "--out",
                f"{d}/link.json",
                "--force",
            ]
        )
        == 2
    )
    assert (d / "link.json").is_symlink() and (d / "victim.json").read_text() == "not advscale's"
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
    assert (d / "existing.html").read_text() == "an earlier report"
    assert (d / "adv_dir" / "examples.safetensors").read_bytes() == b"another evaluation's examples"
    assert sorted(p.name for p in (d / "demo_done").iterdir()) == ["results.json"]


def test_a_245_character_out_is_written(files, tmp_path, capsys):
    out = tmp_path / ("r" * 240 + ".json")
    args = [a.format(**files, model=f"{files['dir']}/model") for a in EVAL]
    assert main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["schema"] == "advscale.results"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
