"""The summary recommends only what a user can ship on: a collapsed or warned-about model is
never the choice without its caveat in the same sentence, the ε is the one the runs' own
tables use, cost is stated in passes as well as seconds."""

from __future__ import annotations

from pathlib import Path

from advscale.report import decide, write_markdown_report
from advscale.report.blocks import fmt
from advscale.report.facts import training_passes
from advscale.results import Results

CO_EVENT = {"event": "catastrophic_overfit", "epoch": 3, "action": "stop"}
MASKING = [
    {"check": "accuracy_falls_with_eps", "message": "m1"},
    {"check": "unbounded", "message": "m2"},
]


def _demo_like(root: Path, models: dict[str, dict]) -> list[Path]:
    """One evaluation and one training run per model, as the demo writes them: ``models`` maps
    a name to (clean, {ε: worst case}, training summary extras, evaluation warnings, recipe)."""
    paths = []
    for name, m in models.items():
        train_dir = root / "train" / name
        tr = Results(
            "train",
            config={"name": name, "recipe": m["recipe"]},
            summary={
                "train_time_s": m["seconds"],
                "images_per_s": 1000.0,
                "eval_eps": 8.0,
                **m.get("train", {}),
            },
        )
        tr.add(type="epoch", epoch=0, train_loss=1.0, val_acc=m["clean"])
        tr.save(train_dir / "results.json")
        ev = Results(
            "eval",
            config={"name": name, "train_run": str(train_dir), "n": 1000},
            summary={"clean_accuracy": m["clean"], "warnings": m.get("warnings", [])},
        )
        for e, acc in m["worst"].items():
            for attack in ("fgsm", "pgd"):
                ev.add(attack=attack, eps=e, accuracy=acc + 0.01, clean_accuracy=m["clean"], n=1000)
            ev.add(attack="worst_case", eps=e, accuracy=acc, attacks="fgsm+pgd", n=1000)
        ev.save(root / "eval" / f"{name}.json")
        paths += [train_dir, root / "eval" / f"{name}.json"]
    return paths


def _first_sentences(md: str) -> list[str]:
    summary = md.split("## Summary")[1].split("\n## ")[0]
    return [
        ln.strip("*> ")
        for ln in summary.strip().splitlines()
        if ln and not ln.startswith(("|", "!", "*ε"))
    ]


MODELS = {
    # The demo's case: the collapsed FGSM(ε=64) model looks most robust at 16/255 only.
    "fgsm64": {
        "clean": 0.489, "worst": {8.0: 0.30, 16.0: 0.45}, "seconds": 30.0,
        "recipe": {"name": "fgsm", "eps": 64.0}, "train": {"events": [CO_EVENT],
        "stop_reason": "catastrophic_overfit"}, "warnings": MASKING,
    },
    "kurakin": {
        "clean": 0.89, "worst": {8.0: 0.40, 16.0: 0.20}, "seconds": 60.0,
        "recipe": {"name": "kurakin", "eps": 16.0},
    },
    "pgd": {
        "clean": 0.85, "worst": {8.0: 0.55, 16.0: 0.25}, "seconds": 200.0,
        "recipe": {"name": "pgd", "eps": 8.0, "steps": 7},
    },
}  # fmt: skip


def test_a_collapsed_model_is_never_the_choice_and_is_named_with_why(tmp_path):
    paths = _demo_like(tmp_path / "demo", MODELS)
    md = write_markdown_report(paths, tmp_path / "r.md", eps=16).read_text()
    lines = _first_sentences(md)
    # At 16/255 fgsm64 has the highest figure (45.0%), yet the choice is another model.
    assert lines[0].startswith("Best trade-off:") and "fgsm64" not in lines[0]
    (aside,) = [s for s in lines if "fgsm64" in s]
    assert aside.startswith("Not a choice: fgsm64 scores 45.0%") and aside.count(". ") == 0
    assert (
        "the training guard stopped its training for catastrophic overfitting at epoch 3" in aside
    )
    assert "its figures carry 2 gradient-masking warnings" in aside
    row = next(ln for ln in md.splitlines() if ln.startswith("| fgsm64 |"))
    assert "catastrophic overfitting" in row  # the table's caveats column


def test_when_every_model_is_flagged_the_choice_carries_its_caveat(tmp_path):
    only = {"fgsm64": MODELS["fgsm64"]}
    md = write_markdown_report(_demo_like(tmp_path / "d", only), tmp_path / "r.md").read_text()
    first = _first_sentences(md)[0]
    assert "fgsm64" in first and "catastrophic overfitting" in first
    assert first.endswith("do not ship it on these figures.")


def test_the_summary_compares_at_the_eps_the_runs_own_tables_use(tmp_path):
    paths = _demo_like(tmp_path / "demo", MODELS)
    md = write_markdown_report(paths, tmp_path / "r.md").read_text()
    # Every run was evaluated at 8 and 16; their own summaries headline 8: no flip to 16.
    assert "ε = 8/255 (the ε the runs' own summaries use)" in md
    assert "worst-case robust acc. at ε=8/255" in md
    assert "(chosen)" in write_markdown_report(paths, tmp_path / "c.md", eps=16).read_text()
    undeclared = decide.Candidate("a", "a", 0.9, {8.0: (0.3, ["pgd"]), 16.0: (0.1, ["pgd"])})
    assert decide.headline_eps([undeclared]) == 16.0


def test_cost_is_stated_in_passes_counted_from_the_recipe(tmp_path):
    paths = _demo_like(tmp_path / "demo", MODELS)
    md = write_markdown_report(paths, tmp_path / "r.md").read_text()
    # 1000 images/s for 200 s = 200,000 images; PGD-7: 7 forward + 7 backward for the attack
    # and one of each for the step = 16 passes per image.
    row = next(ln for ln in md.splitlines() if ln.startswith("| pgd |"))
    assert "| 3,200,000 |" in row
    # Kurakin: half of every batch adversarial (one forward and backward each) + the step: 3.
    assert "| 180,000 |" in next(ln for ln in md.splitlines() if ln.startswith("| kurakin |"))
    assert "3.2 M passes" in _first_sentences(md)[0] or "180.0 k passes" in _first_sentences(md)[0]
    assert training_passes({"name": "clean"}, 10) == 20
    assert training_passes({"name": "fgsm"}, 10) == 40
    assert training_passes({"name": "kurakin", "k": 16, "m": 32}, 10) == 30
    assert training_passes({"name": "kurakin", "k": 32, "m": 32}, 10) == 40
    assert training_passes({"name": "no_such_recipe"}, 10) is None


def test_kurakin_warm_up_steps_are_counted_as_clean_steps():
    from advscale.report.facts import cost_of

    recipe = {"name": "kurakin", "k": 16, "m": 32, "warmup_steps": 10}
    # 40 steps of 25 images: 10 clean (2 passes an image), 30 with half adversarial (3).
    assert training_passes(recipe, 1000, steps=40) == 250 * 2 + 750 * 3
    assert training_passes(recipe, 1000, steps=5) == 2000  # still warming up
    assert training_passes(dict(recipe, warmup_steps=0), 1000, steps=40) == 3000
    summary = {"train_time_s": 10.0, "images_per_s": 100.0, "steps": 40}
    assert cost_of(summary, recipe) == (10.0, 2750)
    # Without the steps it cannot tell: every step is counted as adversarial.
    assert cost_of({"train_time_s": 10.0, "images_per_s": 100.0}, recipe) == (10.0, 3000)


def test_label_leak_points_are_points():
    assert fmt("leak_effect", -0.088) == "-8.8"
    assert fmt("leak_effect", 0.25) == "25.0"


def test_a_fine_tuning_run_the_guard_stopped_is_not_the_choice():
    from advscale.report.runs import collect_runs

    res = Results("compare", config={"name": "ft"})
    for method, robust, co in (("fgsm", 0.60, 1), ("pgd", 0.50, 0)):
        res.add(
            method=method, mode="full", eps=8.0, status="done", clean_accuracy=0.8,
            pgd_accuracy=robust, robust_accuracy=robust, wall_time_s=10.0,
            co_events=co, co_epochs=[2] if co else [],
            stop_reason="catastrophic_overfit" if co else None,
        )  # fmt: skip
    text = decide.verdict(decide.candidates(collect_runs([res])), 8.0)
    assert text[0].startswith("Best trade-off: PGD fine-tuning (full)")
    assert text[1].startswith("Not a choice: FGSM fine-tuning (full) scores 60.0%")
    assert "stopped its training for catastrophic overfitting at epoch 2" in text[1]


def test_costs_that_are_not_finite_are_no_costs(tmp_path):
    bad = dict(MODELS["pgd"], seconds=float("nan"))
    md = write_markdown_report(_demo_like(tmp_path / "d", {"pgd": bad}), tmp_path / "r.md")
    row = next(ln for ln in md.read_text().splitlines() if ln.startswith("| pgd |"))
    assert row.split("|")[5].strip() == "–" and row.split("|")[6].strip() == "–"
    assert training_passes({"name": "pgd", "steps": float("inf")}, 10) is None
    assert training_passes({"name": "fgsm"}, 10**400) is None
