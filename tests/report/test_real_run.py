"""A report on a real training run and ``advscale eval --save-adv`` of its model: the saved
adversarial examples, their gallery, step-resolution curves and the summary's cost."""

from __future__ import annotations

import json

import numpy as np

from advscale.cli import main
from advscale.report import read_examples
from advscale.results import load_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_save_adv_keeps_examples_that_really_fool_the_model(real_runs):
    from advscale.models import load_model

    ev = load_results(real_runs["eval"])
    saved = real_runs["eval"] / "adv" / "examples.safetensors"
    assert ev.config["adversarial_examples"] == str(saved.resolve())
    assert (saved.with_suffix(".png")).read_bytes().startswith(PNG_MAGIC)
    ex = read_examples(saved)
    assert len(ex.y) > 0 and ex.model == "kurakin"
    assert ex.classes[:2] == ["T-shirt/top", "Trouser"]
    assert set(ex.attacks) == {"fgsm", "pgd"}
    # Within the ε-ball and [0, 1], at most 8 per attack × ε, and misclassified by the model.
    linf = np.abs(ex.x_adv - ex.x).reshape(len(ex.y), -1).max(1)
    assert (linf <= ex.eps / 255 + 1e-6).all()
    assert ex.x_adv.min() >= 0 and ex.x_adv.max() <= 1
    for _, _, rows in ex.groups():
        assert 1 <= len(rows) <= 8
    assert (ex.pred != ex.y).all()
    import torch

    model = load_model(real_runs["train"] / "model")
    with torch.no_grad():
        pred = model(torch.from_numpy(ex.x_adv)).argmax(1).numpy()
    assert (pred == ex.pred).all()
    # No more broken examples than the evaluation counted as broken.
    for attack, eps, rows in ex.groups():
        (rec,) = ev.select(attack=attack, eps=eps)
        assert len(rows) <= round((rec["clean_accuracy"] - rec["accuracy"]) * rec["n"])


def test_report_on_real_runs_has_summary_gallery_and_step_curves(real_runs, tmp_path):
    out = tmp_path / "report.md"
    assert main(["report", str(real_runs["train"]), str(real_runs["eval"]), "--out", str(out)]) == 0
    md = out.read_text()
    summary = md.split("## Summary")[1].split("\n## ")[0]
    # The evaluation's worst case over both attacks at the largest ε, with its training cost.
    ev = load_results(real_runs["eval"])
    (worst,) = ev.select(attack="worst_case", eps=8.0)
    trained = json.loads((real_runs["train"] / "summary.json").read_text())
    row = next(line for line in summary.splitlines() if line.startswith("| kurakin |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == f"{100 * worst['accuracy']:.1f}" and cells[3] == "FGSM, PGD"
    assert cells[4] == f"{trained['train_time_s']:.1f}"
    # 512 images, one epoch: the training step (one forward and backward each) and step l.l.
    # on half of every batch (one forward and backward each): 3 passes per image.
    assert cells[5] == f"{3 * 512:,}"
    assert "ε = 8/255 (the ε the runs' own summaries use)" in summary
    assert "robustness_vs_cost.png" in summary
    assert "## Adversarial examples: kurakin" in md
    gallery = md.split("## Adversarial examples: kurakin")[1].split("\n## ")[0]
    assert "Attacks that broke kurakin at ε = 8/255: FGSM, PGD." in gallery
    assert "All ε with examples: 4/255, 8/255 (in " in gallery
    assert "(report_gallery_kurakin.png)" in md
    training = md.split("## Training: ")[1].split("\n## ")[0]
    assert "per optimizer step; diamonds: the catastrophic-overfitting" in training
    # Every figure the Markdown links is a PNG beside it.
    for name in [p.split("](")[1].rstrip(")") for p in md.splitlines() if p.startswith("![")]:
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)


def test_report_eps_choice_and_csv_of_every_record(real_runs, tmp_path):
    out = tmp_path / "r.md"
    runs = [str(real_runs["train"]), str(real_runs["eval"])]
    assert main(["report", *runs, "--out", str(out), "--eps", "4"]) == 0
    summary = out.read_text().split("## Summary")[1].split("\n## ")[0]
    assert "at ε=4/255" in summary and "ε = 4/255 (chosen)" in summary
    assert "Adversarial examples of kurakin at ε=4/255" in out.read_text()

    table = tmp_path / "table.csv"
    assert main(["report", *runs, "--out", str(table)]) == 0
    import csv

    rows = list(csv.DictReader(table.open()))
    n_records = sum(len(load_results(p).records) for p in real_runs.values())
    assert len(rows) == n_records
    assert {r["run"] for r in rows} == {"kurakin", "kurakin (training)"}
    (pgd8,) = [
        r for r in rows if r["attack"] == "pgd" and r["eps"] == "8.0" and r["kind"] == "eval"
    ]
    assert (
        float(pgd8["accuracy"])
        == load_results(real_runs["eval"]).select(attack="pgd", eps=8.0)[0]["accuracy"]
    )
