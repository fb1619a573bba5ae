"""TensorBoard logging asked for but not installed is said on the console, once, by the main process."""

from __future__ import annotations

import sys

from advscale.train.metrics import MetricsLog


def test_missing_tensorboard_is_said_on_the_console(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    notes = MetricsLog(tmp_path, enabled=True).open_tensorboard()
    err = capsys.readouterr().err.strip().splitlines()
    assert notes == ["tensorboard not installed: no event files (pip install tensorboard)"]
    assert err == [f"note: {notes[0]}"]
    assert MetricsLog(tmp_path, enabled=False).open_tensorboard() == []
    assert capsys.readouterr().err == ""
