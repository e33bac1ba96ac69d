"""The CI examples (examples/ci/) call real commands with real options: a renamed option or
command breaks this test, not a user's pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
import yaml

from mlops.cli.main import app

CI = Path(__file__).resolve().parents[1] / "examples" / "ci"
CALL = re.compile(r"(?<![\w./-])mlops ([^|;&>)\n]*)")  # not .mlops/ or a path ending in mlops


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _calls(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())  # the file is valid YAML first of all
    calls = []
    for text in _strings(doc):
        for line in text.replace("\\\n", " ").splitlines():  # continuation lines joined
            if "pip install mlops" in line:
                line = line.replace("pip install mlops", "")
            # a command substitution is a call of its own: "$(mlops runs list ...)"
            calls += [m.group(1).strip() for m in CALL.finditer(line.replace("$(", "; "))]
    return calls


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_every_mlops_call_in_the_ci_examples_exists(name: str) -> None:
    root = typer.main.get_command(app)
    calls = _calls(CI / name)
    assert len(calls) >= 8, calls  # validate, run, drift, register, promote, deploy, canary status/promote ...
    for call in calls:
        # quotes dropped: only the command path and the --options are checked
        words = call.replace("\\", " ").replace('"', " ").replace("'", " ").split()
        command = root
        path = []
        while words and hasattr(command, "commands") and words[0] in command.commands:
            path.append(words[0])
            command = command.commands[words.pop(0)]
        assert path and not hasattr(command, "commands"), f"{name}: 'mlops {call}' names no command"
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{name}: 'mlops {' '.join(path)}' has no option {word}"


def test_the_canary_request_body_is_valid_json() -> None:
    import json

    body = json.loads((CI / "request.json").read_text())
    assert set(body["records"][0]) == {"tenure", "plan", "monthly_charges"}


# commands that only change settings or start something: a one-line confirmation, no report
NO_REPORT = {
    "init",
    "plots",
    "serve",
    "hooks run",
    "remote add",
    "remote modify",
    "remote remove",
    "remote default",
}


def test_every_reporting_command_takes_json() -> None:
    """CI parses --json; a new command that reports must take it (or be added above, with why)."""
    lacking = set()

    def walk(command: object, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():  # type: ignore[attr-defined]
                walk(sub, [*path, name])
        elif "--json" not in {o for p in command.params for o in p.opts}:  # type: ignore[attr-defined]
            lacking.add(" ".join(path))

    walk(typer.main.get_command(app), [])
    assert lacking == NO_REPORT
