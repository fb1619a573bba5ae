"""Every subcommand has its module in the command layer (the layering itself:
tests/core/test_layering.py)."""

from __future__ import annotations

from pathlib import Path

import advscale

SRC = Path(advscale.__file__).parent


def test_every_subcommand_has_a_command_module():
    from advscale.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert (SRC / "commands" / f"{name.replace('-', '_')}.py").is_file(), name
