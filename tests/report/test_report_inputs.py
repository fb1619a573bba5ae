"""What a report reads and writes is safe: results whose accuracies are no shares are refused
with the file and record named, and no CSV cell runs as a spreadsheet formula."""

from __future__ import annotations

import csv
import json
import os

import pytest

from advscale.report import write_report
from advscale.results import Results, ResultsError, load_results


def _eval(name: str, acc: float, **extra) -> Results:
    res = Results("eval", config={"name": name})
    res.add(attack="pgd", eps=8.0, accuracy=acc, clean_accuracy=0.9, **extra)
    return res


@pytest.mark.parametrize("acc", [float("nan"), float("inf"), 57.0, -0.1, 1.01, 10**400])
def test_accuracies_that_are_no_shares_are_refused_naming_file_and_record(tmp_path, acc):
    good, bad = _eval("good", 0.4), _eval("bad", 0.4)
    bad.add(attack="fgsm", eps=4.0, accuracy=acc)
    bad.save(tmp_path / "bad" / "results.json")
    good.save(tmp_path / "good" / "results.json")
    with pytest.raises(ResultsError) as e:
        write_report([tmp_path / "good", tmp_path / "bad"], tmp_path / "r.md")
    msg = str(e.value)
    assert str(tmp_path / "bad" / "results.json") in msg and "record 1" in msg
    assert "attack 'fgsm'" in msg and "accuracy is" in msg and "\n" not in msg
    assert not (tmp_path / "r.md").exists()
    for ok in (0.0, 1.0):  # the bounds themselves are shares
        _eval("edge", ok).save(tmp_path / "edge" / "results.json")
        write_report([tmp_path / "edge"], tmp_path / "edge.md")


def test_a_summary_accuracy_out_of_range_is_refused(tmp_path):
    res = _eval("m", 0.4)
    res.summary = {"clean_accuracy": 0.9, "worst_case": {"8": 5700.0}}
    res.save(tmp_path / "m.json")
    with pytest.raises(ResultsError, match=r"m\.json: summary worst_case\.8 is 5700"):
        write_report([tmp_path / "m.json"], tmp_path / "r.md")


def test_results_that_are_not_files_of_objects_are_refused(tmp_path):
    head = {"schema": "advscale.results", "version": 1, "kind": "eval"}
    cases = {
        "list.json": ({**head, "records": [1, 2]}, "record 0 must be an object, got int"),
        "dict.json": ({**head, "records": {"a": 1}}, "'records' must be a list"),
        "config.json": ({**head, "records": [], "config": [1]}, "'config' must be an object"),
    }
    for name, (raw, match) in cases.items():
        (tmp_path / name).write_text(json.dumps(raw))
        with pytest.raises(ResultsError, match=match):
            load_results(tmp_path / name)
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema": "advscale.results", "records": ' + "[" * 110 + "]" * 110 + "}")
    with pytest.raises(ResultsError, match="nested deeper than 100"):
        load_results(deep)
    with pytest.raises(ResultsError, match="/dev/zero: larger than"):
        load_results("/dev/zero")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # nobody writes: opening it would wait for ever
    with pytest.raises(ResultsError, match="not a regular file"):
        load_results(fifo)


def test_csv_cells_never_run_as_formulas(tmp_path):
    res = Results("eval", config={"name": '=HYPERLINK("http://x")'})
    res.add(attack="+cmd|' /C calc'!A0", eps=8.0, accuracy=0.25, note="@SUM(A1)", delta=-0.5)
    res.add(attack="-2+3", eps=8.0, accuracy=0.5, note="\tTAB", delta=-1)
    res.add(attack="pgd", eps=8.0, accuracy=0.5, note="\rCR", **{"=key": "plain"})
    res.save(tmp_path / "run" / "results.json")
    (out,) = write_report([tmp_path / "run"], tmp_path / "t.csv")
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    cells = [c for row in rows for c in row]
    text = [c for c in cells if c and c[0] in "=+-@\t\r"]
    # Only numbers may start with "-": a spreadsheet reads them as numbers, never formulas.
    assert all(float(c) < 0 for c in text), text
    header, first, second, third = rows
    col = {name: i for i, name in enumerate(header)}
    assert first[col["run"]] == '\'=HYPERLINK("http://x")'
    assert first[col["attack"]] == "'+cmd|' /C calc'!A0" and first[col["note"]] == "'@SUM(A1)"
    assert first[col["delta"]] == "-0.5" and second[col["delta"]] == "-1"
    assert second[col["attack"]] == "'-2+3" and second[col["note"]] == "'\tTAB"
    assert third[col["note"]] == "'\rCR" and "'=key" in header
