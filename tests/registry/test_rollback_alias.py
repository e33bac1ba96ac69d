"""rollback puts the previous production version back (recorded); aliases as in MLflow."""

from __future__ import annotations

import pytest
from regkit import audit_entries, js, write_pickle

from mlops.errors import UsageError
from mlops.registry import delete_alias, promote, register, resolve, rollback, set_alias


@pytest.fixture
def four(repo):
    for number in range(1, 5):
        write_pickle(repo.root / "m.pkl", {"v": number})
        register(repo, "churn", "m.pkl")
    return repo


def test_rollback_restores_the_previous_production_version_and_records_it(four, cli) -> None:
    for number in (1, 2, 3):
        promote(four, "churn", number, "production", actor="ci")
    assert resolve(four, "churn@production").version == 3
    doc = js(cli("rollback", "churn", "--reason", "v3 errors in canary", "--by", "oncall", "--json"))
    assert (doc["from_version"], doc["to_version"], doc["to_version_was"]) == (3, 2, "archived")
    assert resolve(four, "churn@production").version == 2 and resolve(four, "churn:3").stage == "archived"
    entry = audit_entries(four.root)[-1]
    assert entry["event"] == "rolled_back" and (entry["from_version"], entry["to_version"]) == (3, 2)
    assert entry["actor"] == "oncall" and entry["reason"] == "v3 errors in canary"
    # a second rollback goes one further back, not back to v3
    cli("rollback", "churn")
    assert resolve(four, "churn@production").version == 1
    assert "no earlier production version than v1" in cli("rollback", "churn", code=2).stderr
    # a new release after rollbacks stacks on what is in production now
    promote(four, "churn", 4, "production", actor="ci")
    assert rollback(four, "churn", reason="again", actor="ci").to_version == 1
    assert [v.stage for v in map(lambda n: resolve(four, f"churn:{n}"), range(1, 5))] == [
        "production",
        "archived",
        "archived",
        "archived",
    ]
    assert "rollback: production v4 -> v1" in cli("history", "churn").stdout


def test_rollback_without_production_is_a_usage_error(four, cli) -> None:
    assert "no version in production" in cli("rollback", "churn", code=2).stderr
    promote(four, "churn", 1, "production", actor="ci")
    with pytest.raises(UsageError, match="no earlier production version"):
        rollback(four, "churn", actor="ci")


def test_aliases_set_move_resolve_and_delete_with_audit_entries(four, cli) -> None:
    cli("alias", "churn", "2", "champion")
    assert resolve(four, "churn@champion").version == 2
    moved = js(cli("alias", "churn", "3", "champion", "--json"))
    assert (moved["version"], moved["previous"]) == (3, 2)
    set_alias(four, "churn", 1, "challenger", actor="ci")
    assert resolve(four, "churn:3").aliases == ("champion",)
    listing = js(cli("models", "--json"))["models"][0]
    assert listing["aliases"] == {"challenger": 1, "champion": 3}
    same = js(cli("alias", "churn", "3", "champion", "--json"))  # no change, no entry
    cli("alias", "churn", "champion", "--delete")
    assert "no stage or alias 'champion'" in cli("models", "show", "churn@champion", code=2).stderr
    events = [
        (e["event"], e.get("alias"), e.get("version"), e.get("previous"))
        for e in audit_entries(four.root)
        if e["event"].startswith("alias")
    ]
    assert events == [
        ("alias_set", "champion", 2, None),
        ("alias_set", "champion", 3, 2),
        ("alias_set", "challenger", 1, None),
        ("alias_removed", "champion", 3, None),
    ]
    assert same["version"] == 3
    with pytest.raises(UsageError, match="no alias 'champion'"):
        delete_alias(four, "churn", "champion", actor="ci")


@pytest.mark.parametrize("alias", ["production", "staging", "latest", "none", "9lives", "a b"])
def test_reserved_or_malformed_aliases_are_refused(four, cli, alias) -> None:
    cli("alias", "churn", "1", alias, code=2)


def test_alias_argument_shapes(four, cli) -> None:
    assert "name the alias" in cli("alias", "churn", "1", code=2).stderr
    assert "name only the alias" in cli("alias", "churn", "1", "x", "--delete", code=2).stderr
