"""Results files say what they hold: ``kind`` per file, ``record`` per record, old files too."""

from __future__ import annotations

import json

import pytest

from advscale.errors import UserError
from advscale.results import SCHEMA, Results, load_results
from advscale.utils import read_structured


def test_saved_records_carry_their_kind(tmp_path):
    res = Results("eval")
    res.add(attack="fgsm", eps=8.0, accuracy=0.4)
    res.add(check="label_leak", eps=8.0, clean_accuracy=0.9, fgsm_accuracy=0.95, leak=True)
    res.add(check="unbounded", attack="pgd", eps=255.0, passed=True)
    res.add(epoch=1, loss=0.5, record="epoch")
    saved = json.loads(res.save(tmp_path / "r.json").read_text())
    assert [r["record"] for r in saved["records"]] == ["robust", "label_leak", "masking", "epoch"]
    # In memory, records stay as the producer wrote them.
    assert "record" not in res.records[0]


@pytest.mark.parametrize(
    ("config", "record", "kind"),
    [
        ({"command": "transfer-matrix"}, {"source": "a", "target": "b"}, "transfer_matrix"),
        ({}, {"variant": "w", "value": 2, "ratio": 0.5}, "sweep"),
        ({}, {"method": "fgsm", "mode": "linear", "eps": 8}, "compare"),
        ({"recipe": {"name": "pgd"}}, {"epoch": 1, "loss": 0.3}, "train"),
        ({"model": "runs/a/model"}, {"attack": "fgsm", "eps": 8, "accuracy": 0.2}, "eval"),
    ],
)
def test_files_written_without_kind_get_one_when_read(tmp_path, config, record, kind):
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps({"schema": SCHEMA, "version": 1, "config": config, "records": [record]})
    )
    assert load_results(path).kind == kind


def test_read_structured_names_the_file_in_its_errors(tmp_path):
    bad_yaml, bad_json = tmp_path / "c.yaml", tmp_path / "r.json"
    bad_yaml.write_text("epochs: [1, 2\n")
    bad_json.write_text("{not json")
    with pytest.raises(UserError, match=r"c\.yaml: not valid YAML"):
        read_structured(bad_yaml, "config file")
    with pytest.raises(UserError, match=r"r\.json: not valid JSON"):
        read_structured(bad_json, "results file")
    with pytest.raises(UserError, match=r"missing\.yaml: no such sweep file"):
        read_structured(tmp_path / "missing.yaml", "sweep file")
    (tmp_path / "ok.yaml").write_text("recipe: {eps: 8}\n")
    assert read_structured(tmp_path / "ok.yaml", "config file") == {"recipe": {"eps": 8}}
