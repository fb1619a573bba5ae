"""The package's layering, read from the source: imports point only downwards.

data -> models -> attacks -> evaluate / train -> transfer, sweep -> results -> report; the command
layer on top. A newcomer finds each concept in one room only while these rules hold.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import advscale

SRC = Path(advscale.__file__).resolve().parent

# What each top-level part of the package may import from advscale (besides itself). The bottom
# (errors, utils, results) imports nothing above it; report reads results only.
BOTTOM = {"errors", "files", "utils", "results", "_version"}
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "errors": set(),
    "files": {"errors"},
    "utils": {"errors", "files", "_version"},
    "results": {"errors", "files", "utils", "_version"},
    "data": BOTTOM,
    "models": BOTTOM,
    "attacks": BOTTOM,
    "evaluate": BOTTOM | {"data", "models", "attacks"},
    "train": BOTTOM | {"data", "models", "attacks", "evaluate"},
    "transfer": BOTTOM | {"data", "models", "attacks", "evaluate", "train"},
    "sweep": BOTTOM | {"data", "models", "attacks", "evaluate", "train"},
    "report": BOTTOM,
    "demo": BOTTOM | {"data", "models", "attacks", "evaluate", "train", "report"},
}
# The command layer sits on top and may import anything; nothing imports it.
COMMAND_LAYER = {"cli", "commands", "__main__"}
# The package root re-exports a few public names for `import advscale` users.
ROOT_MAY_IMPORT = BOTTOM | {"models"}


def _part(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem


def _module_parts(path: Path) -> list[str]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> list[tuple[str, int]]:
    """Top-level advscale parts imported by ``path`` (absolute and relative), with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                package = _module_parts(path) if is_pkg else _module_parts(path)[:-1]
                base = package[: len(package) - (node.level - 1)]
                mod = [*base, *(node.module.split(".") if node.module else [])]
                if mod:
                    names.append(mod[0])
                else:  # "from . import x" at the package root
                    names.extend(a.name for a in node.names)
            elif node.module and (node.module == "advscale" or node.module.startswith("advscale.")):
                rest = node.module.split(".")[1:]
                names.extend(rest[:1] or [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            names.extend(a.name.split(".")[1] for a in node.names if a.name.startswith("advscale."))
        out.extend((n, node.lineno) for n in names)
    return out


def _graph() -> dict[str, dict[str, list[str]]]:
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(SRC.rglob("*.py")):
        part = _part(path)
        for target, line in _imports(path):
            is_part = (SRC / target).is_dir() or (SRC / f"{target}.py").exists()
            if target != part and is_part:  # names re-exported by the root are not parts
                graph[part][target].append(f"{path.relative_to(SRC)}:{line}")
    return graph


def test_every_part_of_the_package_has_a_rule():
    parts = {_part(p) for p in SRC.rglob("*.py")} - COMMAND_LAYER - {"__init__"}
    assert parts <= set(ALLOWED), f"add a layering rule for {sorted(parts - set(ALLOWED))}"


def test_imports_point_only_downwards():
    wrong = []
    for part, targets in _graph().items():
        if part in COMMAND_LAYER:
            continue
        allowed = ROOT_MAY_IMPORT if part == "__init__" else ALLOWED.get(part, set())
        for target, where in targets.items():
            if target not in allowed:
                wrong.append(f"{part} -> {target} ({', '.join(where)})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_nothing_imports_the_command_layer():
    users = [
        f"{part} -> {target} ({', '.join(where)})"
        for part, targets in _graph().items()
        if part not in COMMAND_LAYER
        for target, where in targets.items()
        if target in COMMAND_LAYER
    ]
    assert not users, "\n".join(users)


def test_no_cycle_between_top_level_parts():
    graph = {p: set(t) - {"__init__"} for p, t in _graph().items() if p != "__init__"}
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack, node, nxt]))
            if nxt not in seen:
                visit(nxt, [*stack, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


def test_argparse_only_in_the_command_layer():
    users = []
    for path in sorted(SRC.rglob("*.py")):
        if _part(path) in COMMAND_LAYER:
            continue
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                users.append(f"{path.relative_to(SRC)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "argparse":
                users.append(f"{path.relative_to(SRC)}:{node.lineno}")
        if "Namespace" in text and "argparse" in text:
            users.append(f"{path.relative_to(SRC)} (argparse.Namespace)")
    assert not users, "argparse outside cli.py and commands/: " + ", ".join(users)


def test_no_source_file_over_500_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, f"split these files (lines): {long}"


def test_the_rules_catch_a_wrong_import(tmp_path, monkeypatch):
    """The checker itself: a models/ file importing evaluate/ is reported."""
    fake = tmp_path / "advscale"
    (fake / "models").mkdir(parents=True)
    (fake / "evaluate").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "evaluate" / "__init__.py").write_text("")
    (fake / "models" / "__init__.py").write_text("from ..evaluate import x\n")
    (fake / "models" / "a.py").write_text("from advscale.evaluate.robust import y\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", fake)
    graph = _graph()
    assert set(graph["models"]) == {"evaluate"}
    assert len(graph["models"]["evaluate"]) == 2
