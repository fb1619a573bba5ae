"""One writer per run directory, and one answer to "is this the same run?"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from advscale.errors import UserError
from advscale.results import Results
from advscale.train import load_config, train
from advscale.train.rundir import LOCK, RunDir, RunLockedError, config_diff

HOLD = """
import sys, time
from advscale.train.rundir import RunDir
RunDir(sys.argv[1]).lock()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """``holder(path)``: another process that holds the lock of ``path`` until the test ends."""
    procs: list[subprocess.Popen] = []

    def start(path: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        p = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def _cfg(tiny_settings):
    return load_config(None, tiny_settings())


def test_a_second_writer_is_refused_naming_the_holder(holder, tmp_path, tiny_settings):
    run = tmp_path / "run"
    p = holder(run)
    with pytest.raises(RunLockedError, match=rf"being written by process {p.pid} on "):
        train(_cfg(tiny_settings), run)
    assert not (run / "config.json").exists()  # refused before writing anything
    assert json.loads((run / LOCK).read_text())["pid"] == p.pid  # its lock is left alone


def test_force_does_not_override_a_live_writer(holder, tmp_path, tiny_settings):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    holder(run)
    with pytest.raises(RunLockedError, match="--force does not override a live writer"):
        train(_cfg(tiny_settings), run, force=True)
    assert (run / "config.json").read_text() == "{}"


def test_a_lock_left_by_a_killed_writer_is_taken_over(holder, tmp_path):
    run = tmp_path / "run"
    p = holder(run)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert RunDir(run).holder()["pid"] == p.pid  # the dead writer's lock file is still there
    rd = RunDir(run)
    with rd.locked():
        assert rd.holder()["pid"] == os.getpid()
        with pytest.raises(RunLockedError):  # and now it is ours alone
            RunDir(run).lock()
    assert not (run / LOCK).exists()


def test_same_run_ignores_logging_keys_and_names_what_differs(tmp_path, tiny_settings):
    from advscale.train.config import config_to_dict

    cfg = config_to_dict(_cfg(tiny_settings))
    rd = RunDir(tmp_path / "run")
    assert rd.state(cfg) == "new"
    rd.path.mkdir()
    rd.start(cfg, [])
    assert rd.state(cfg) == "started"
    assert rd.state({**cfg, "log_every": 1, "progress": True}) == "started"
    other = json.loads(json.dumps(cfg))
    other["optimizer"]["lr"] = 0.5
    assert rd.state(other) == "changed"
    assert config_diff(cfg, other) == ["optimizer.lr: 0.005 in the run, 0.5 now"]
    Results("train", config=cfg, complete=True).save(rd.path / "results.json")
    assert rd.state(cfg) == "finished"
    assert rd.state(other) == "changed"


def test_a_sweep_into_a_directory_another_sweep_writes_is_refused(holder, tmp_path):
    from advscale.sweep import SweepConfig, run_sweep

    out = tmp_path / "sweep"
    p = holder(out)
    cfg = SweepConfig(base={}, field="epochs", values=[1], out=str(out))
    with pytest.raises(RunLockedError, match=rf"process {p.pid} on "):
        run_sweep(cfg)
    assert not (out / "results.json").exists() and not (out / "run").exists()


def test_a_run_differing_only_in_its_eval_section_resumes_to_evaluate_again(tmp_path):
    rd = RunDir(tmp_path / "run")
    saved = {"recipe": {"eps": 8.0}, "eval": {"n": 1000, "eps": [8.0]}}
    rd.start(saved, [])
    cheaper = {**saved, "eval": {"n": 100, "eps": [8.0]}}
    assert rd.state(saved) == "started" and rd.state(cheaper) == "started"
    assert rd.check_resume(cheaper) == ["eval.n: 1000 in the run, 100 now"]
    other = {**cheaper, "recipe": {"eps": 4.0}}
    assert rd.state(other) == "changed"
    with pytest.raises(
        UserError, match=r"different config \(recipe.eps: 8.0 in the run, 4.0 now\)"
    ):
        rd.check_resume(other)
