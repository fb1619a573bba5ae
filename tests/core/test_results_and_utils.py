"""The one results schema and atomic writes."""

import json

import pytest

from advscale.results import SCHEMA_VERSION, Results, ResultsError, load_results
from advscale.utils import atomic_write_text, environment_info


def test_results_round_trip_with_environment(tmp_path):
    r = Results(kind="eval", config={"model": "m"})
    r.add(attack="pgd", eps=8.0, eps_unit="1/255", accuracy=0.4)
    r.save(tmp_path / "results.json")
    back = load_results(tmp_path)  # a run directory works too
    assert back.kind == "eval" and back.select(attack="pgd")[0]["accuracy"] == 0.4
    assert back.environment["torch"] and back.complete


def test_newer_schema_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "r.json"
    d = Results(kind="eval").to_dict()
    d["version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(d))
    with pytest.raises(ResultsError, match=r"r\.json.*newer"):
        load_results(path)


def test_foreign_json_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(ResultsError, match="not an advscale results file"):
        load_results(path)


def test_unknown_kind_is_refused():
    with pytest.raises(ResultsError, match="allowed"):
        Results(kind="nope")


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    from advscale.utils import atomic_write

    def fail(p):
        p.write_text("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_environment_records_versions():
    env = environment_info()
    assert {"advscale", "torch", "python", "cpu", "cpu_count"} <= set(env)


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o644
