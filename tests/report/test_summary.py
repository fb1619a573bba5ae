"""The report's summary: the ε that matters, worst case, cost, Pareto front and the sentence
naming the best trade-off; and the readable tables and axes around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from advscale.report import decide, write_markdown_report
from advscale.report.runs import collect_runs
from advscale.results import Results


def _compare(points: list[tuple[str, str, float, float, float]]) -> Results:
    """A compare run: (method, mode, ε, robust accuracy, seconds) per point."""
    res = Results("compare", config={"name": "ft"})
    for method, mode, eps, robust, seconds in points:
        res.add(
            method=method,
            mode=mode,
            eps=eps,
            status="done",
            clean_accuracy=0.8,
            pgd_accuracy=robust + 0.01,
            apgd_accuracy=robust,
            robust_accuracy=robust,
            wall_time_s=seconds,
            co_events=0,
        )
    return res


def _summary(md: str) -> str:
    return md.split("## Summary")[1].split("\n## ")[0]


def test_the_cheaper_method_within_noise_is_named_with_its_cost_ratio(tmp_path):
    res = _compare([("fgsm", "full", 8.0, 0.547, 10.0), ("pgd", "full", 8.0, 0.55, 37.0)])
    md = write_markdown_report([res], tmp_path / "r.md").read_text()
    first = _summary(md).strip().splitlines()[0]
    assert first == (
        "**Best trade-off: FGSM fine-tuning (full) reaches PGD fine-tuning (full)'s robustness "
        "within 0.3 points (54.7% against 55.0%, worst case over PGD, APGD at ε = 8/255) at "
        "1/3.7 of its training time (10 s against 37 s). Clean accuracy: 80.0% against 80.0%.**"
    )


def test_a_clearly_more_robust_method_is_named_even_when_dearer(tmp_path):
    res = _compare([("fgsm", "full", 8.0, 0.30, 10.0), ("pgd", "full", 8.0, 0.55, 37.0)])
    first = _summary(write_markdown_report([res], tmp_path / "r.md").read_text()).split("\n")[2]
    assert first.startswith("**Best trade-off: PGD fine-tuning (full) — the most robust, 55.0%")
    assert "every cheaper option is more than 1.0 points less robust" in first


def test_one_step_figures_are_never_called_robust(tmp_path):
    weak = Results("eval", config={"name": "weak", "n": 500})
    weak.add(attack="fgsm", eps=8.0, accuracy=0.9)
    strong = Results("eval", config={"name": "strong", "n": 500})
    for attack, acc in (("fgsm", 0.5), ("pgd", 0.2)):
        strong.add(attack=attack, eps=8.0, accuracy=acc)
    summary = _summary(write_markdown_report([weak, strong], tmp_path / "r.md").read_text())
    assert "weak: only one-step attacks (FGSM) were run at ε = 8/255" in summary
    assert "| weak | – | 90.0 (one-step only: upper bound) | FGSM |" in summary
    assert "Most robust: strong, 20.0%" in summary
    assert "Most robust: weak" not in summary and "Best trade-off: weak" not in summary


def test_headline_eps_is_the_largest_shared_one_unless_chosen():
    a = decide.Candidate("a", "a", 0.9, {2.0: (0.5, ["pgd"]), 8.0: (0.2, ["pgd"])})
    b = decide.Candidate(
        "b", "b", 0.9, {2.0: (0.6, ["pgd"]), 8.0: (0.3, ["pgd"]), 16.0: (0.1, ["pgd"])}
    )
    assert decide.headline_eps([a, b]) == 8.0
    assert decide.headline_eps([a, b], 2) == 2.0
    assert decide.headline_eps([b]) == 16.0
    assert decide.headline_eps([]) is None


def test_pareto_front_of_cost_and_robustness():
    # (seconds, robust): the third is dominated by the first (cheaper and more robust).
    assert decide.pareto([(10, 0.5), (40, 0.6), (20, 0.4), (5, 0.1)]) == [True, True, False, True]
    assert decide.pareto([(10, 0.5), (10, 0.5)]) == [True, True]


def test_tolerance_is_the_sampling_uncertainty_but_at_least_one_point():
    assert decide.tolerance_points(0.5, 1000) == pytest.approx(3.1, abs=0.05)
    assert decide.tolerance_points(0.5, None) == 1.0
    assert decide.tolerance_points(0.999, 100000) == 1.0


def test_readable_headers_units_and_no_percent_for_points():
    from advscale.report.blocks import fmt
    from advscale.report.labels import column_label

    assert column_label("fgsm_pred_accuracy") == "FGSM-pred acc. (%)"
    assert column_label("robust_accuracy_gap_points") == "robust gap (points)"
    assert column_label("co_events") == "catastrophic overfitting events"
    assert column_label("eval_eps") == "evaluation ε"
    assert fmt("eval_eps", 8) == "8/255" and fmt("eps", 16.0) == "16/255"
    assert fmt("robust_accuracy_gap_points", 0.3) == "0.3"


def test_wide_tables_are_split_into_parts_that_each_repeat_the_first_column():
    from advscale.report.blocks import Table

    t = Table([f"c{i}" for i in range(25)], [[f"r{i}" for i in range(25)]], "wide")
    parts = t.parts(10)
    assert len(parts) == 3 and all(len(p.columns) <= 10 for p in parts)
    assert all(p.columns[0] == "c0" and p.rows[0][0] == "r0" for p in parts)
    assert [c for p in parts for c in p.columns[1:]] == t.columns[1:]
    assert parts[0].caption == "wide (1/3)"
    assert Table(["a", "b"], [["1", "2"]]).parts(10)[0].columns == ["a", "b"]


def test_axes_a_single_epoch_and_accuracies_on_0_to_100():
    from advscale.report import plots

    fig = plots.training_curves({"val_acc": [(0.0, 0.6)], "train_loss": [(0.0, 1.2)]})
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert hi - lo >= 2  # a point on a range, not on -0.04..0.04
    acc = next(ax for ax in fig.axes if "accuracy" in ax.get_ylabel())
    assert acc.get_ylim() == (-2, 102)
    pts = [
        {"method": "fgsm", "mode": "full", "seconds": 10.0, "robust_accuracy": 0.069},
        {"method": "pgd", "mode": "full", "seconds": 37.0, "robust_accuracy": 0.071},
    ]
    (ax,) = plots.cost_robustness_scatter(pts, "robust_accuracy").axes
    assert ax.get_ylim() == (-2, 102) and ax.get_ylabel() == "robust acc. (%)"


def test_report_of_a_demo_directory_shows_its_evaluations_and_training_runs(tmp_path: Path):
    out = tmp_path / "demo"
    models = {"baseline": {"name": "clean"}, "fgsm": {"name": "fgsm", "eps": 64.0}}
    demo = Results("demo", config={"models": models})
    for name in models:
        ev = Results("eval", config={"model": name, "train_run": str(out / "train" / name)})
        ev.add(attack="pgd", eps=8.0, accuracy=0.3, clean_accuracy=0.8)
        ev.save(out / "eval" / f"{name}.json")
        demo.records += [{"model": name, **r} for r in ev.records]
        tr = Results("train", config={"name": name}, summary={"train_time_s": 5.0})
        tr.add(type="epoch", epoch=0, train_loss=1.0, val_acc=0.7)
        tr.save(out / "train" / name / "results.json")
    demo.save(out / "results.json")
    runs = collect_runs([out])
    assert [(r.label, r.results.kind) for r in runs] == [
        ("baseline", "eval"),
        ("baseline (training)", "train"),
        ("fgsm", "eval"),
        ("fgsm (training)", "train"),
    ]
    md = write_markdown_report([out], tmp_path / "r.md").read_text()
    assert "## Training: baseline (training)" in md and "## Training: fgsm (training)" in md
    assert "| baseline | 80.0 | 30.0 | PGD | 5.0 |" in _summary(md)
    # Below a directory given, the demo's runs are each shown once.
    assert [r.label for r in collect_runs([tmp_path])] == [r.label for r in runs]
    # Given the results file alone, without the runs beside it, the demo's records are shown.
    alone = tmp_path / "alone" / "results.json"
    alone.parent.mkdir()
    alone.write_bytes((out / "results.json").read_bytes())
    assert [r.label for r in collect_runs([alone])] == ["alone"]


def test_unknown_report_format_and_bad_examples_file_name_the_file(tmp_path, capsys):
    from advscale.cli import main
    from advscale.report import read_examples
    from advscale.results import ResultsError

    res = Results("eval", config={"name": "m"})
    res.add(attack="pgd", eps=8.0, accuracy=0.3)
    res.save(tmp_path / "run" / "results.json")
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.txt")]) != 0
    err = capsys.readouterr().err
    assert "r.txt" in err and ".html, .md, .csv" in err
    bad = tmp_path / "run" / "examples.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ResultsError, match=str(bad)):
        read_examples(bad)
    # The report still shows the numbers, with the unreadable file named.
    md = write_markdown_report([tmp_path / "run"], tmp_path / "r.md").read_text()
    assert "## Adversarial examples: m" in md and f"> **Warning:** {bad}: cannot read" in md


def test_robustness_bought_with_clean_accuracy_is_flagged():
    """A model that is most robust only because it gave up clean accuracy gets a caution."""
    at = ["iter_basic", "pgd", "apgd"]
    lossy = decide.Candidate("fgsm", "fgsm", 0.52, {16.0: (0.35, at)}, seconds=33, n=1000)
    good = decide.Candidate("kurakin", "kurakin", 0.88, {16.0: (0.20, at)}, seconds=250, n=1000)
    text = decide.verdict([lossy, good], 16.0)
    assert text[0].startswith("Best trade-off: fgsm")
    assert any(
        "Caution: fgsm's clean accuracy" in t and "36.0 points below kurakin" in t for t in text
    )
    close = decide.Candidate("pgd", "pgd", 0.86, {16.0: (0.35, at)}, seconds=300, n=1000)
    assert not any(t.startswith("Caution") for t in decide.verdict([close, good], 16.0))
