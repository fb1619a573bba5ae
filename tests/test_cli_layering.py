"""The command layer is the only code that sees argparse; report/ only reads results."""

from __future__ import annotations

import ast
from pathlib import Path

import advscale

SRC = Path(advscale.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _modules() -> dict[str, set[str]]:
    return {str(p.relative_to(SRC)): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def test_only_cli_and_commands_import_argparse():
    users = {m for m, imports in _modules().items() if "argparse" in imports}
    assert users and all(m == "cli.py" or m.startswith("commands/") for m in users), users


def test_report_imports_only_results_utils_and_errors():
    allowed = ("advscale.report", "advscale.results", "advscale.utils", "advscale.errors")
    for module, imports in _modules().items():
        if module.startswith("report/"):
            ours = {i for i in imports if i == "advscale" or i.startswith("advscale.")}
            assert all(i.startswith(allowed) for i in ours), (module, ours)


def test_every_subcommand_has_a_command_module():
    from advscale.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert (SRC / "commands" / f"{name.replace('-', '_')}.py").is_file(), name
