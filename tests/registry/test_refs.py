"""References (churn:3, churn@production, churn@staging, churn@champion, churn) resolve the
same everywhere: the Python API, load_model, and every command that names a model."""

from __future__ import annotations

import pytest
from regkit import js, write_pickle

import mlops
from mlops.errors import UnknownModelError, UsageError
from mlops.registry import load_model, parse_ref, promote, register, resolve, set_alias


@pytest.fixture
def three(repo):
    for number in (1, 2, 3):
        write_pickle(repo.root / f"m{number}.pkl", {"model": number})
        register(repo, "churn", f"m{number}.pkl", description=f"v{number}")
    promote(repo, "churn", 1, "production", actor="ci")
    promote(repo, "churn", 2, "staging", actor="ci")
    set_alias(repo, "churn", 3, "champion", actor="ci")
    return repo


@pytest.mark.parametrize(
    "ref, version",
    [
        ("churn:1", 1),
        ("churn:v2", 2),
        ("churn", 3),
        ("churn@latest", 3),
        ("churn@production", 1),
        ("churn@staging", 2),
        ("churn@champion", 3),
    ],
)
def test_references_resolve_in_the_api_in_load_model_and_in_the_cli(three, cli, ref, version) -> None:
    assert resolve(three, ref).version == version
    assert load_model(ref, three) == {"model": version}
    assert mlops.load_model(ref) == {"model": version}  # the top-level API, from the working folder
    shown = js(cli("models", "show", ref, "--json"))
    if ref == "churn":  # a bare name shows the model: every version
        assert [v["version"] for v in shown["versions"]] == [1, 2, 3]
    else:
        assert shown["version"] == version
    assert js(cli("lineage", ref, "--json"))["model"]["version"] == version
    assert f"churn:{version}" in cli("card", ref).stdout


@pytest.mark.parametrize(
    "ref, message, listed",
    [
        ("nope", "no model 'nope'", "models: churn"),
        ("churn:9", "has no version 9", "versions: 1, 2, 3"),
        ("churn@archived", "has no version in archived", "production (v1)"),
        ("churn@best", "no stage or alias 'best'", "champion (v3)"),
    ],
)
def test_unknown_references_exit_2_naming_what_exists(three, cli, ref, message, listed) -> None:
    with pytest.raises(UnknownModelError, match=message):
        resolve(three, ref)
    for args in (["models", "show", ref], ["lineage", ref], ["card", ref]):
        result = cli(*args, code=2)
        assert message in result.stderr and listed in result.stderr, result.stderr
    doc = js(cli("lineage", ref, "--json", code=2))
    assert doc["error"] == "unknown_model" and doc["exit_code"] == 2


@pytest.mark.parametrize("text", ["", "churn:", "churn:x", "churn:0", "churn@", "@prod", "a b:1", "churn@bad alias"])
def test_malformed_references_are_usage_errors(text) -> None:
    with pytest.raises(UsageError):
        parse_ref(text)


def test_unknown_stage_and_version_in_commands_exit_2(three, cli) -> None:
    assert "unknown stage 'prod'" in cli("promote", "churn", "1", "--to", "prod", code=2).stderr
    assert "no version 7" in cli("promote", "churn", "7", "--to", "staging", code=2).stderr
    assert "not a version number" in cli("approve", "churn", "x", "--to", "production", code=2).stderr
    assert "no model 'ghost'" in cli("rollback", "ghost", code=2).stderr
    assert "no model 'ghost'" in cli("history", "ghost", code=2).stderr
    assert "no version 8" in cli("alias", "churn", "8", "best", code=2).stderr
    assert "no version 8" in cli("card", "churn", "8", code=2).stderr


def test_commands_that_take_name_and_version_also_take_a_reference(three, cli) -> None:
    cli("approve", "churn@staging", "--to", "production", "--by", "alice")
    assert resolve(three, "churn:2").approvals[0]["by"] == "alice"
    done = js(cli("promote", "churn@staging", "--to", "production", "--json"))
    assert (done["version"], done["from_stage"], done["to_stage"]) == (2, "staging", "production")
    cli("alias", "churn@production", "live")
    assert resolve(three, "churn@live").version == 2
    cli("alias", "churn:1", "old")
    assert resolve(three, "churn@old").version == 1
    assert "which version of 'churn'" in cli("promote", "churn", "--to", "staging", code=2).stderr
    assert "not both" in cli("promote", "churn:1", "2", "--to", "staging", code=2).stderr
    assert "no version in staging" in cli("promote", "churn@staging", "--to", "production", code=2).stderr


def test_history_and_rollback_take_references(three, cli) -> None:
    by_name = js(cli("history", "churn", "--json"))
    assert js(cli("history", "churn@production", "--json")) == by_name  # the model's history
    assert js(cli("history", "churn:2", "--json"))["model"] == "churn"
    assert "has no stage or alias 'best'" in cli("history", "churn@best", code=2).stderr
    assert "no version 9" in cli("history", "churn:9", code=2).stderr
    promote(three, "churn", 3, "production", actor="ci")
    done = js(cli("rollback", "churn@production", "--reason", "bad canary", "--json"))
    assert (done["model"], done["from_version"], done["to_version"]) == ("churn", 3, 1)
    for ref in ("churn@staging", "churn:1", "churn@champion", "churn@latest"):
        result = cli("rollback", ref, code=2)
        assert "rollback acts on the production version" in result.stderr and "mlops rollback churn" in result.stderr
    assert resolve(three, "churn@production").version == 1


def test_an_unknown_models_subcommand_is_one_line(three, mlops_bin) -> None:
    result = mlops_bin("models", "churn", code=2, cwd=three.root)
    assert result.stderr.splitlines() == [
        "error: 'mlops models' has no command 'churn'",
        "hint: to show a model: mlops models show churn",
    ]
    assert result.stdout == ""
    doc = js(mlops_bin("models", "churn", "--json", code=2, cwd=three.root))  # --json: the error document on stdout
    assert doc["error"] == "usage" and doc["exit_code"] == 2 and "has no command 'churn'" in doc["message"]
    assert "churn" in mlops_bin("models", cwd=three.root).stdout  # the list, and show, still work
    assert js(mlops_bin("models", "show", "churn", "--json", cwd=three.root))["model"] == "churn"


def test_a_version_after_at_is_refused_with_the_accepted_forms(three, cli) -> None:
    result = cli("export", "model", "churn@1", "--output", "bundle", code=2)
    lines = result.stderr.splitlines()
    assert lines[0] == "error: not a model reference: 'churn@1'"
    assert lines[1].startswith("hint: a model reference is NAME, NAME:VERSION") and "NAME@STAGE" in lines[1]
    assert lines[1].endswith("version 1 is 'churn:1'")
    assert not (three.root / "bundle").exists()
