"""Contracts that keep the project honest: docs in sync, start-up light, layers held."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops import errors

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "pyarrow", "scipy", "sklearn", "matplotlib", "duckdb", "redis", "ray")


def test_cli_reference_is_generated_from_the_app() -> None:
    from mlops.cli.reference import render

    assert (ROOT / "docs" / "cli.md").read_text() == render(), "run: python -m mlops.cli.reference > docs/cli.md"


def test_every_command_is_in_the_cli_reference() -> None:
    import typer

    from mlops.cli.main import app

    text = (ROOT / "docs" / "cli.md").read_text()
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        assert f"## `mlops {name}`" in text
        for sub in getattr(cmd, "commands", {}) or {}:
            assert f"## `mlops {name} {sub}`" in text


def test_exit_code_table_matches_errors() -> None:
    text = (ROOT / "docs" / "exit-codes.md").read_text()
    documented = {m[0]: (int(m[1]), m[2]) for m in re.findall(r"\| `(\w+)` \| (\d+) \| `(\w+)` \|", text)}
    in_code = {cls.__name__: (cls.exit_code, cls.kind) for cls in errors.ALL_ERRORS}
    assert documented == in_code
    # every public error class in errors.py is listed (private helpers elsewhere subclass these)
    public = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.MlopsError) and obj is not errors.MlopsError
    }
    assert public == set(errors.ALL_ERRORS)


def test_exit_codes_are_the_contract() -> None:
    assert {cls.exit_code for cls in errors.ALL_ERRORS} == {1, 2, 3, 130}


@pytest.mark.parametrize("argv", [["--help"], ["status"], ["add", "data"]])
def test_startup_imports_no_heavy_library(argv: list[str], repo, tree) -> None:
    tree({"data/a.txt": "a"})
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['mlops', *{argv!r}]\n"
        "try:\n    runpy.run_module('mlops', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = [err_line for err_line in proc.stderr.splitlines() if err_line.startswith("HEAVY=")]
    assert line == ["HEAVY="], proc.stderr


# --- layers: each package imports only what stands below it; nothing imports cli ---------
# Rooms on one rank may not import each other either (drift and serve meet only in workflows).
LAYERS = [
    {"errors"},
    {"deepfs"},  # below paths, which reaches long destinations through it
    {"fsio", "progress", "parallel", "paths"},
    {"formats"},  # writes through fsio.atomic_write
    {"store"},
    {"remotes"},
    {"repo"},
    {"data"},
    {"tracking"},
    {"pipeline"},
    {"experiments"},  # the pipeline run in private worktrees with changed params, recorded
    {"registry"},
    {"features"},  # point-in-time joins and the online store; serve looks features up
    {"drift", "serve"},
    {"monitor"},  # profiles of served traffic: drift's statistics over serve's request logs
    {"exporters"},  # plain files for other engines, from the pipeline, the registry and serve
    {"workflows"},
    {"cli", "ui"},  # nothing imports either; they do not import each other
]
# (importer, imported) pairs the ranks refuse but the code needs, each with its reason.
ALLOWED = {
    ("fsio", "formats"): "fsio.read_records parses JSON lines with formats' located parser, "
    "imported inside the function (formats imports fsio at load time)",
    ("cli", "ui"): "`mlops ui` starts the UI's server (cli/ui.py, inside the command function): the one door "
    "into the pages; ui never imports cli",
}
RANK = {name: index for index, names in enumerate(LAYERS) for name in names}


def _room(module_path: Path) -> str:
    rel = module_path.relative_to(ROOT / "mlops")
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else "__init__"


def _imported_rooms(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    rooms: set[str] = set()
    package_parts = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - node.level + 1])
                target = [*base, *(node.module.split(".") if node.module else [])]
                if not node.module:  # from . import x, y
                    for alias in node.names:
                        full = [*target, alias.name]
                        if len(full) > 1 and full[0] == "mlops":
                            rooms.add(full[1])
                    continue
            else:
                target = (node.module or "").split(".")
            if target and target[0] == "mlops" and len(target) > 1:
                rooms.add(target[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mlops" and len(parts) > 1:
                    rooms.add(parts[1])
    return rooms


def _layer_problem(room: str, used: str) -> str | None:
    """Why ``room`` may not import ``used``, or None when it may."""
    if used == room or used == "__init__" or (room, used) in ALLOWED:
        return None
    if used == "cli" or RANK.get(used, -1) > RANK[room]:
        return "which stands above it"
    if RANK.get(used) == RANK[room]:
        return "a room on the same rank"
    return None


def test_layers_hold() -> None:
    problems = []
    for path in sorted((ROOT / "mlops").rglob("*.py")):
        room = _room(path)
        if room in ("__init__", "__main__"):
            continue
        assert room in RANK, f"{path}: room '{room}' is not in the layer table of this test"
        for used in sorted(_imported_rooms(path)):
            problem = _layer_problem(room, used)
            if problem:
                problems.append(f"{path.relative_to(ROOT)} ({room}) imports {used}, {problem}")
    assert not problems, "\n".join(problems)


def test_the_layer_rule_refuses_upward_and_same_rank_imports() -> None:
    assert _layer_problem("drift", "serve") == _layer_problem("serve", "drift") == "a room on the same rank"
    assert _layer_problem("paths", "progress") == "a room on the same rank"
    assert _layer_problem("store", "registry") == "which stands above it"
    assert _layer_problem("workflows", "cli") == "which stands above it"
    assert _layer_problem("workflows", "serve") is None and _layer_problem("formats", "fsio") is None
    assert _layer_problem("fsio", "formats") is None  # the one stated exception


def test_the_allowed_imports_are_still_needed() -> None:
    """An exception to the layers that the code no longer uses is dropped from ALLOWED."""
    used = {
        (_room(path), other)
        for path in (ROOT / "mlops").rglob("*.py")
        if _room(path) not in ("__init__", "__main__")
        for other in _imported_rooms(path)
    }
    assert set(ALLOWED) <= used, set(ALLOWED) - used


def test_the_console_script_builds_the_right_group_for_each_command() -> None:
    """main() builds only the invoked command's group (start-up): the map must name every
    top-level command, each under the group that registers it."""
    import typer

    from mlops.cli.main import COMMAND_GROUPS, GROUPS, _group_of, app, build_app

    assert set(COMMAND_GROUPS) == set(typer.main.get_command(app).commands)
    for group in GROUPS:
        registered = set(typer.main.get_command(build_app((group,))).commands)
        assert registered == {word for word, g in COMMAND_GROUPS.items() if g == group}, group
    assert _group_of(["-q", "status", "--json"]) == "data"
    assert _group_of(["--help"]) is None and _group_of(["--version"]) is None and _group_of(["statu"]) is None
