"""The grid runner behind sweeps and comparisons: reuse, resume, refuse, record, save on Ctrl-C."""

from __future__ import annotations

import pytest

from advscale.results import Results
from advscale.train.grid import GridPoint, PointStart, run_grid
from advscale.train.rundir import RunDir

CFG = {"seed": 0, "optimizer": {"lr": 0.1}, "log_every": 10}


def _started(path, config):
    rd = RunDir(path)
    rd.path.mkdir(parents=True)
    rd.start(config, [])
    return rd


def test_points_are_reused_resumed_refused_and_failures_recorded(tmp_path):
    _started(tmp_path / "finished", CFG)
    Results("train", config=CFG, complete=True).save(tmp_path / "finished" / "results.json")
    _started(tmp_path / "started", {**CFG, "log_every": 1})  # logging keys do not count
    _started(tmp_path / "changed", {**CFG, "optimizer": {"lr": 0.5}})
    seen: dict[str, PointStart] = {}

    def run(name):
        def go(start):
            seen[name] = start
            if name == "broken":
                raise ValueError("bad value")
            return name.upper()

        return go

    names = ["finished", "started", "changed", "broken", "new"]
    points = [GridPoint(n, tmp_path / n, CFG, run(n)) for n in names]
    saves = []
    lines: list[str] = []
    outcomes = run_grid(
        points, save=lambda o, final: saves.append((len(o), final)), log=lines.append
    )
    assert [o.status for o in outcomes] == ["done", "done", "failed", "failed", "done"]
    assert seen["finished"].reuse and seen["started"].resume and not seen["started"].reuse
    assert not seen["new"].resume and not seen["new"].force
    assert "changed" not in seen  # refused before it runs
    assert "optimizer.lr: 0.5 in the run, 0.1 now" in outcomes[2].error
    assert outcomes[3].error == "ValueError: bad value"
    assert outcomes[4].value == "NEW"
    assert saves == [(1, False), (2, False), (3, False), (4, False), (5, False), (5, True)]
    assert "[1/5] finished: finished earlier, reused" in lines[0]
    assert "[2/5] started: resuming" in lines[1] and "[5/5] new: training" in lines[-1]

    # The caller may overwrite a run made by another config instead.
    (out,) = run_grid(points[2:3], save=lambda o, f: None, on_changed="overwrite", log=print)
    assert out.status == "done" and seen["changed"].force


def test_an_interrupt_saves_what_was_done_and_goes_on(tmp_path):
    def stop(start):
        raise KeyboardInterrupt

    points = [
        GridPoint("a", tmp_path / "a", CFG, lambda start: 1),
        GridPoint("b", tmp_path / "b", CFG, stop),
        GridPoint("c", tmp_path / "c", CFG, lambda start: 3),
    ]
    saves = []
    with pytest.raises(KeyboardInterrupt):
        run_grid(points, save=lambda o, final: saves.append(([x.status for x in o], final)))
    assert saves[-1] == (["done", "interrupted"], False)
