"""The Markdown report: tables per model, a plot beside it, clear errors on unreadable results."""

from __future__ import annotations

import json

import pytest

from advscale.cli import main
from advscale.report import write_markdown_report
from advscale.results import ResultsError, load_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_markdown_report_has_a_table_per_model_and_the_plot(run_dirs, tmp_path):
    out = write_markdown_report(
        [run_dirs["baseline"], run_dirs["hardened"]], tmp_path / "rep" / "report.md"
    )
    text = out.read_text()
    # Each model is named after its checkpoint and has its own table with ε as the papers write it.
    assert "*baseline: accuracy under attack*" in text
    assert "*hardened: accuracy under attack*" in text
    assert "| attack | ε=2/255 | ε=4/255 | ε=8/255 |" in text
    assert "| PGD | 20.0% | 10.0% | 5.0% |" in text  # baseline: 0.2 * 2 / eps
    assert "| PGD | 60.0% | 30.0% | 15.0% |" in text
    assert "clean accuracy: 90.0%" in text
    # The plot is a real PNG next to the Markdown, linked relatively.
    links = [line for line in text.splitlines() if line.startswith("![")]
    assert links == ["![Accuracy against ε per attack](report_accuracy_vs_eps.png)"]
    png = (out.parent / "report_accuracy_vs_eps.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    # Masking warnings of the hardened model are reported.
    assert "> **Warning:** hardened: one-step attack stronger than iterative" in text


def test_in_memory_results_and_names(run_dirs, tmp_path):
    res = load_results(run_dirs["baseline"])
    out = write_markdown_report([("my model", res)], tmp_path / "r.md")
    text = out.read_text()
    assert "*my model: accuracy under attack*" in text
    assert (tmp_path / "r_accuracy_vs_eps.png").exists()


def test_incomplete_run_is_shown_and_marked(run_dirs, tmp_path):
    text = write_markdown_report([run_dirs["train"]], tmp_path / "r.md").read_text()
    assert "| fgsm-run | train | NO (incomplete) |" in text
    assert "did not finish (complete=false)" in text
    assert "catastrophic_overfit at epoch 3: PGD accuracy fell from 30.0% to 2.0%" in text


def test_records_no_section_knows_are_listed_not_dropped(tmp_path):
    from advscale.results import Results

    res = Results("demo", records=[{"widget": "x", "score": 0.25}])
    text = write_markdown_report([("odd", res)], tmp_path / "r.md").read_text()
    assert "## Other records" in text
    assert "| widget | score |" in text and "| x | 0.25 |" in text


def test_newer_schema_is_refused_with_the_file_named(run_dirs, tmp_path):
    path = run_dirs["baseline"] / "results.json"
    raw = json.loads(path.read_text())
    raw["version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match=rf"{path}.*version 99 is newer"):
        write_markdown_report([path], tmp_path / "r.md")
    assert not (tmp_path / "r.md").exists()


def test_report_command_reports_unreadable_results_without_traceback(tmp_path, capsys):
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "results.json").write_text('{"schema": "something else"}')
    assert main(["report", str(bad), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert str(bad / "results.json") in err and "not an advscale results file" in err
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_directory_of_runs_contributes_every_run(full_report):
    text = full_report.with_suffix(".md").read_text()
    overview = text.split("## Robust accuracy")[0]
    for name in ("baseline", "hardened", "fgsm-run", "fgsm-vs-pgd", "transfer", "sweep"):
        assert f"| {name} |" in overview


def test_unknown_results_kind_is_refused_with_the_file_named(run_dirs, tmp_path):
    path = run_dirs["baseline"] / "results.json"
    raw = json.loads(path.read_text())
    raw["kind"] = "hologram"
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match=rf"{path}: unknown results kind 'hologram'"):
        write_markdown_report([path], tmp_path / "r.md")


def test_one_results_file_with_several_models_shows_each(tmp_path):
    """As ``advscale demo`` writes it: records carry ``model``, the summary one entry per model."""
    from advscale.results import Results

    res = Results("demo")
    for model, acc in (("baseline", 0.1), ("fgsm", 0.5)):
        res.add(model=model, attack="fgsm", eps=8.0, clean_accuracy=0.9, accuracy=acc)
        res.add(
            model=model,
            check="label_leak",
            eps=8.0,
            clean_accuracy=0.9,
            fgsm_accuracy=acc,
            leak=acc > 0.3,
        )
        res.summary[model] = {
            "label_leak": acc > 0.3,
            "warnings": [{"check": "zero_gradients", "message": "m"}],
        }
    text = write_markdown_report([("demo", res)], tmp_path / "r.md").read_text()
    assert "*baseline: accuracy under attack*" in text and "*fgsm: accuracy under attack*" in text
    assert "| FGSM | 50.0% |" in text
    assert "> **Warning:** demo/fgsm: label leaking detected." in text
    assert "> **Warning:** demo/baseline: [zero_gradients] m" in text


def _train_run(root, name: str, pgd: float):
    """A finished training run directory as ``advscale train`` writes it: per-epoch records
    and its end-of-training check (``type: eval`` records)."""
    from advscale.results import Results

    res = Results("train", config={"name": name, "recipe": {"name": "pgd", "eps": 8}})
    res.add(epoch=1, loss=0.9, train_accuracy=0.6, test_accuracy=0.7)
    for attack, acc in (("fgsm", pgd + 0.1), ("pgd", pgd)):
        res.add(type="eval", attack=attack, eps=8.0, clean_accuracy=0.8, accuracy=acc, n=100)
    res.save(root / name / "results.json")
    return root / name


def test_an_unrelated_evaluation_keeps_a_training_runs_numbers(run_dirs, tmp_path):
    train_dir = _train_run(tmp_path / "runs", "pgd-run", 0.37)
    # The baseline evaluation attacked runs/demo/models/baseline, not this run's model.
    text = write_markdown_report([train_dir, run_dirs["baseline"]], tmp_path / "r.md").read_text()
    assert "*pgd-run: accuracy under attack*" in text
    assert "| PGD | 37.0% |" in text
    assert "*baseline: accuracy under attack*" in text
    assert "| PGD | 20.0% | 10.0% | 5.0% |" in text
    assert "left out" not in text


def test_an_evaluation_of_a_training_runs_model_replaces_its_check_with_a_note(tmp_path):
    from advscale.results import Results, load_results

    train_dir = _train_run(tmp_path / "runs", "pgd-run", 0.37)
    other_dir = _train_run(tmp_path / "runs", "other-run", 0.11)
    for key, value in (("train_run", str(train_dir)), ("model", str(train_dir / "model"))):
        ev = Results("eval", config={"name": "eval", key: value})
        ev.add(attack="pgd", eps=8.0, clean_accuracy=0.8, accuracy=0.29)
        ev.save(tmp_path / "eval" / "results.json")
        text = write_markdown_report(
            [train_dir, other_dir, tmp_path / "eval"], tmp_path / "r.md"
        ).read_text()
        robust = text.split("## Robust accuracy")[1].split("\n## ")[0]
        assert "pgd-run: accuracy under attack" not in robust and "37.0%" not in robust
        assert "| PGD | 29.0% |" in robust
        # The note says what was left out and where to find it.
        assert (
            "pgd-run: its end-of-training robustness check (2 records) is left out of this "
            f"section because eval evaluates the same model; those numbers stay in "
            f"{train_dir / 'results.json'}."
        ) in robust
        # The other training run, which nothing evaluated again, keeps its numbers.
        assert "other-run: accuracy under attack" in robust and "| PGD | 11.0% |" in robust
        assert "other-run: its end-of-training" not in robust
        # Nothing is lost from the run itself.
        assert len(load_results(train_dir).records) == 3


def test_demo_layout_hides_the_training_time_check(tmp_path):
    """As ``advscale demo`` reports: in-memory evaluations naming their training runs."""
    from advscale.results import Results

    runs = []
    trained = []
    for name, acc in (("baseline", 0.05), ("fgsm", 0.2)):
        train_dir = _train_run(tmp_path / "train", name, 0.9)
        ev = Results("eval", config={"model": name, "train_run": str(train_dir)})
        ev.add(attack="pgd", eps=8.0, clean_accuracy=0.8, accuracy=acc)
        runs.append((name, ev))
        trained.append((f"{name} (training)", train_dir))
    text = write_markdown_report(runs + trained, tmp_path / "r.md").read_text()
    robust = text.split("## Robust accuracy")[1].split("\n## ")[0]
    assert (
        "*baseline: accuracy under attack*" in robust and "*fgsm: accuracy under attack*" in robust
    )
    assert "(training): accuracy under attack" not in robust and "90.0%" not in robust
    for name in ("baseline", "fgsm"):
        assert f"{name} (training): its end-of-training robustness check" in robust
        assert f"because {name} evaluates the same model" in robust
