"""click's usage errors (a bad value, a missing parameter, an unknown option or command) leave through
the one error boundary, for every command: one `error:` line and a hint on stderr, exit 2, and with
--json (wherever it stands on the command line) the JSON error object on stdout."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.repo.repo import Repo


@pytest.mark.parametrize(
    "args, message, hint",
    [
        (
            ("monitor", "check", "walkm", "--min-accuracy", "abc"),
            "--min-accuracy: 'abc' is not a valid float",
            "see 'mlops monitor check --help'",
        ),
        (
            ("export", "prometheus-rules", "walkm", "--error-rate", "2"),
            "--error-rate: 2.0 is not in the range 0.0<=x<=1.0",
            "see 'mlops export prometheus-rules --help'",
        ),
        (("export", "model", "--output", "out"), "missing argument REF", "see 'mlops export model --help'"),
        (("push", "--jobs", "0"), "--jobs: 0 is not in the range 1<=x<=256", "see 'mlops push --help'"),
        (
            ("export", "model", "m", "--jsn"),
            "no such option '--jsn'",
            "did you mean --json? see 'mlops export model --help'",
        ),
        (("--bogus", "status"), "no such option '--bogus'", "see 'mlops --help'"),
    ],
)
def test_a_usage_error_is_one_line_and_a_hint(repo: Repo, cli: Any, args, message, hint) -> None:
    result = cli(*args, code=2)
    assert result.stderr.splitlines() == [f"error: {message}", f"hint: {hint}"]
    assert result.stdout == ""


def test_an_unknown_command_suggests_in_the_hint(repo: Repo, cli: Any) -> None:
    result = cli("statu", code=2)
    assert result.stderr.splitlines()[0] == "error: no such command 'statu'"
    assert "'status'" in result.stderr.splitlines()[1]


@pytest.mark.parametrize(
    "args",
    [
        ("monitor", "check", "walkm", "--min-accuracy", "abc", "--json"),
        ("monitor", "check", "walkm", "--json", "--min-accuracy", "abc"),  # --json before the bad option
        ("export", "model", "--json"),
        ("runs", "list", "--json", "--limit", "many"),
    ],
)
def test_with_json_the_error_object_is_on_stdout(repo: Repo, cli: Any, args) -> None:
    result = cli(*args, code=2)
    doc = json.loads(result.stdout)
    assert doc["error"] == "usage" and doc["exit_code"] == 2
    assert result.stderr.splitlines()[0] == f"error: {doc['message']}"
    assert doc["hint"].startswith("see 'mlops ")


def test_the_console_script_says_it_the_same_way(repo: Repo, mlops_bin: Any) -> None:
    proc = mlops_bin("export", "prometheus-rules", "walkm", "--json", "--error-rate", "2", code=2)
    assert proc.stderr.splitlines() == [
        "error: --error-rate: 2.0 is not in the range 0.0<=x<=1.0",
        "hint: see 'mlops export prometheus-rules --help'",
    ]
    assert json.loads(proc.stdout)["message"] == "--error-rate: 2.0 is not in the range 0.0<=x<=1.0"


def test_a_bare_group_still_prints_its_help(repo: Repo, mlops_bin: Any) -> None:
    proc = mlops_bin("monitor", code=None)
    assert "Usage:" in proc.stdout + proc.stderr and "check" in proc.stdout + proc.stderr
