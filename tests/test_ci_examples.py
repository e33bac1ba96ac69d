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


class _Yaml12Loader(yaml.SafeLoader):
    """YAML as GitHub and GitLab read it (1.2 booleans): `on:` is a key named "on", not True."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@pytest.mark.parametrize(
    ("name", "schema_name"),
    [("github-actions.yml", "vendor.github-workflows"), ("gitlab-ci.yml", "vendor.gitlab-ci")],
)
def test_the_ci_examples_are_valid_for_their_ci(name: str, schema_name: str) -> None:
    """Against the official schemas (GitHub's workflow schema, GitLab's CI schema) as
    check-jsonschema vendors them: read from the installed package, never fetched."""
    import jsonschema
    import referencing
    import referencing.exceptions
    from check_jsonschema.builtin_schemas import get_builtin_schema

    def offline(uri: str) -> referencing.Resource:
        raise referencing.exceptions.NoSuchResource(uri)  # a schema that needs the network fails here

    schema = get_builtin_schema(schema_name)
    doc = yaml.load((CI / name).read_text(), Loader=_Yaml12Loader)  # a SafeLoader
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(
        schema, registry=referencing.Registry(retrieve=offline), format_checker=validator_class.FORMAT_CHECKER
    )
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]
    assert not errors, f"{name} is not a valid {schema_name} file:\n" + "\n".join(errors)


def test_the_canary_request_body_is_valid_json() -> None:
    import json

    body = json.loads((CI / "request.json").read_text())
    assert set(body["records"][0]) == {"tenure", "plan", "monthly_charges"}


# commands that only change settings or start something: a one-line confirmation, no report
NO_REPORT = {
    "init",
    "plots",
    "serve",
    "ui",
    "hooks run",
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
