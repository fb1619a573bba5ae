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
    assert "| pgd | 20.0% | 10.0% | 5.0% |" in text  # baseline: 0.2 * 2 / eps
    assert "| pgd | 60.0% | 30.0% | 15.0% |" in text
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
    assert "| fgsm | 50.0% |" in text
    assert "> **Warning:** demo/fgsm: label leaking detected." in text
    assert "> **Warning:** demo/baseline: [zero_gradients] m" in text
