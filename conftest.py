"""The examples in the docstrings under src/ run as tests (src is in testpaths), so that they
cannot drift from the code. ``pytest --doctest-modules`` would also read the tests' conftest.py
files as modules, which clash by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule

SRC = Path(__file__).resolve().parent / "src"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if parent.config.option.doctestmodules:  # pytest collects them itself
        return None
    # __main__.py runs the command line when imported, as pytest's own collection knows.
    if file_path.suffix != ".py" or file_path.name == "__main__.py":
        return None
    if SRC in file_path.resolve().parents:
        return DoctestModule.from_parent(parent, path=file_path)
    return None
