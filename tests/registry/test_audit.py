"""The audit trail: every change appended and chained; `audit verify` finds an edited, deleted,
reordered or truncated entry (and a registry file changed behind its back) and says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from regkit import audit_entries, audit_lines, js, write_pickle

from mlops.registry import approve, audit_append, promote, register, set_alias, verify_audit
from mlops.registry.audit import GENESIS, entry_hash


@pytest.fixture
def logged(repo):
    """Eight entries: registrations, an approval, transitions, an alias."""
    for number in (1, 2):
        write_pickle(repo.root / "m.pkl", {"v": number})
        register(repo, "churn", "m.pkl", actor="ann")
    approve(repo, "churn", 1, "production", by="alice")
    promote(repo, "churn", 1, "staging", actor="ann")
    promote(repo, "churn", 1, "production", actor="ann")
    promote(repo, "churn", 2, "production", actor="ann", reason="better")  # + v1 archived
    set_alias(repo, "churn", 1, "fallback", actor="ann")
    assert len(audit_lines(repo.root)) == 8
    return repo


def _log(repo) -> Path:
    return repo.root / ".mlops" / "registry" / "audit.jsonl"


def _write(repo, lines: list[str]) -> None:
    _log(repo).write_text("".join(line + "\n" for line in lines))


def test_an_untouched_log_verifies_and_entries_chain(logged, cli) -> None:
    entries = audit_entries(logged.root)
    assert [e["seq"] for e in entries] == list(range(1, 9))
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))
    assert all(entry_hash(e) == e["hash"] for e in entries)
    assert {e["event"] for e in entries} == {"registered", "approved", "stage_changed", "alias_set"}
    doc = js(cli("audit", "verify", "--json"))
    assert doc["ok"] and doc["entries"] == 8 and doc["head"] == 8 and doc["problems"] == []
    assert "audit log ok: 8 entries" in cli("audit", "verify").stdout


def _problems(cli, code=1):
    doc = js(cli("audit", "verify", "--json", code=code))
    return doc["problems"]


def test_an_edited_entry_is_named(logged, cli) -> None:
    lines = audit_lines(logged.root)
    entry = json.loads(lines[2])
    entry["actor"] = "mallory"  # who approved, rewritten
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    _write(logged, lines)
    problems = _problems(cli)
    assert problems[0]["kind"] == "edited" and problems[0]["seq"] == 3 and problems[0]["line"] == 3
    result = cli("audit", "verify", code=1)
    assert "entry #3 (line 3) was edited" in result.stdout and "audit log tampered" in result.stderr


def test_an_edited_and_rehashed_entry_breaks_the_chain_after_it(logged, cli) -> None:
    lines = audit_lines(logged.root)
    entry = json.loads(lines[3])
    entry["reason"] = "nothing to see"
    entry["hash"] = entry_hash(entry)  # a careful forger re-hashes the entry
    lines[3] = json.dumps(entry)
    _write(logged, lines)
    problems = _problems(cli)
    assert [(p["kind"], p["seq"]) for p in problems] == [("edited", 4)]
    assert "entry #5 (line 5) does not follow entry #4" in problems[0]["message"]


def test_a_deleted_entry_is_named(logged, cli) -> None:
    lines = audit_lines(logged.root)
    del lines[4]
    _write(logged, lines)
    problems = _problems(cli)
    assert any(p["kind"] == "deleted" and p["seq"] == 5 and "entry #5 deleted" in p["message"] for p in problems)


def test_reordered_entries_are_named(logged, cli) -> None:
    lines = audit_lines(logged.root)
    lines[3], lines[4] = lines[4], lines[3]
    _write(logged, lines)
    problems = _problems(cli)
    assert [p["kind"] for p in problems] == ["reordered"]
    assert "entry #4 (line 5) comes after entry #5 (line 4)" in problems[0]["message"]


def test_a_truncated_log_is_caught_by_the_head(logged, cli) -> None:
    _write(logged, audit_lines(logged.root)[:6])
    problems = _problems(cli)
    assert any(p["kind"] == "truncated" and "entries #7-#8 missing from its end" in p["message"] for p in problems)


def test_a_truncated_log_with_a_forged_head_is_caught_by_the_model_file(logged, cli) -> None:
    lines = audit_lines(logged.root)[:6]
    _write(logged, lines)
    last = json.loads(lines[-1])
    (logged.root / ".mlops/registry/audit.head").write_text(
        json.dumps({"format": 1, "seq": last["seq"], "hash": last["hash"]})
    )
    problems = _problems(cli)
    assert [p["kind"] for p in problems] == ["truncated"]
    assert "churn.json names audit entry #8, which is not in the log" in problems[0]["message"]


def test_a_model_file_changed_outside_mlops_is_caught(logged, cli) -> None:
    path = logged.root / ".mlops/registry/models/churn.json"
    doc = json.loads(path.read_text())
    doc["versions"][0]["stage"] = "production"  # someone "promotes" by editing the file
    path.write_text(json.dumps(doc, indent=2))
    problems = _problems(cli)
    assert [p["kind"] for p in problems] == ["model_file"]
    assert "was changed outside mlops" in problems[0]["message"]


def test_a_whole_line_replaced_by_garbage_is_named(logged, cli) -> None:
    lines = audit_lines(logged.root)
    lines[1] = "not json at all"
    _write(logged, lines)
    problems = _problems(cli)
    assert problems[0]["kind"] == "edited" and problems[0]["line"] == 2


def test_a_torn_last_line_is_not_tampering_and_the_next_write_repairs_it(logged, cli) -> None:
    with open(_log(logged), "a") as handle:
        handle.write('{"seq": 9, "time": "2026')  # a crash mid-append
    doc = js(cli("audit", "verify", "--json"))
    assert doc["ok"] and doc["notes"][0]["kind"] == "torn"
    audit_append(logged, "canary_rollback", model="churn", version=2, detail="error rate 9%")
    assert js(cli("audit", "verify", "--json"))["ok"]
    entry = audit_entries(logged.root)[-1]
    assert entry["seq"] == 9 and entry["event"] == "canary_rollback" and entry["detail"] == "error rate 9%"


def test_an_interrupted_change_is_settled_by_an_entry_not_a_rewrite(logged, cli) -> None:
    # a crash after the audit append but before the model file was written: simulate the append
    from mlops.registry.audit import Appender, read_head

    log = _log(logged)
    appender = Appender.open(log)
    appender.append(
        "stage_changed",
        {"model": "churn", "version": 2, "from_stage": "production", "to_stage": "archived", "state": "f" * 64},
    )
    notes = js(cli("audit", "verify", "--json"))
    assert notes["ok"] and notes["notes"][0]["kind"] == "pending"
    set_alias(logged, "churn", 2, "best", actor="ann")  # the next change settles first
    entries = audit_entries(logged.root)
    assert [e["event"] for e in entries[-3:]] == ["stage_changed", "interrupted", "alias_set"]
    assert entries[-2]["of"] == 9 and "did not happen" in entries[-2]["note"]
    assert read_head(logged.root / ".mlops/registry/audit.head")["seq"] == 11
    assert js(cli("audit", "verify", "--json"))["ok"]


def test_audit_append_records_custom_events_under_the_chain(logged) -> None:
    audit_append(logged, "canary_promoted", model="churn", version=2, traffic=0.1)
    assert verify_audit(logged).ok
    with pytest.raises(Exception, match="reserved"):
        audit_append(logged, "x", seq=4)


def test_an_empty_registry_verifies(repo, cli) -> None:
    assert js(cli("audit", "verify", "--json"))["entries"] == 0


def test_an_older_copy_of_a_model_file_put_back_is_caught(logged, cli) -> None:
    path = logged.root / ".mlops/registry/models/churn.json"
    older = path.read_text()
    set_alias(logged, "churn", 2, "best", actor="ann")
    path.write_text(older)  # a whole, self-consistent older file: the alias change quietly undone
    problems = _problems(cli)
    assert [p["kind"] for p in problems] == ["model_file"]
    assert "older than audit entry #9" in problems[0]["message"]


@pytest.mark.parametrize("damage", ["truncate", "drop_head", "replace_last"])
def test_no_change_is_written_into_a_cut_or_replaced_log(logged, cli, damage) -> None:
    lines = audit_lines(logged.root)
    head = logged.root / ".mlops/registry/audit.head"
    if damage == "truncate":
        _write(logged, lines[:-2])
    elif damage == "drop_head":
        head.unlink()
    else:
        forged = json.loads(lines[-1])
        forged["actor"] = "mallory"
        forged["hash"] = entry_hash(forged)
        _write(logged, [*lines[:-1], json.dumps(forged)])
    before = (_log(logged).read_bytes(), (logged.root / ".mlops/registry/models/churn.json").read_bytes())
    result = cli("alias", "churn", "2", "best", code=3)  # could not complete: not a gate refusal (1)
    assert "refusing to write" in result.stderr and "mlops audit verify" in result.stderr
    assert (_log(logged).read_bytes(), (logged.root / ".mlops/registry/models/churn.json").read_bytes()) == before
    cli("audit", "verify", code=1)


def test_the_torn_tail_repair_cuts_a_torn_line_and_ends_a_whole_one(logged) -> None:
    from mlops.registry.audit import drop_torn_tail

    log = _log(logged)
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"seq": 9, "ti')
    assert drop_torn_tail(log) is True and log.read_bytes() == whole
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[1]
    log.write_bytes(whole[:-1])  # the last entry is whole but lost its newline
    assert drop_torn_tail(log) is False and log.read_bytes() == whole and last in whole
    assert drop_torn_tail(log) is False and log.read_bytes() == whole  # nothing to do
