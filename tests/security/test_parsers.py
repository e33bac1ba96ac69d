"""Bounded parsers: every YAML and JSON mlops reads refuses alias bombs, deep nesting, garbage and
non-UTF-8 bytes with one FormatError naming the file, and caches survive any damage.

The matrix in test_corrupt_files.py drives whole commands; these hold the loaders themselves,
including for bytes that arrive from a remote.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlops.cli.main import app
from mlops.errors import FormatError, LockHeldError, MlopsError, StorageError
from mlops.formats import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    load_json,
    load_yaml,
    parse_json,
    parse_json_lines,
    parse_yaml,
    parse_yaml_positions,
    read_text,
)
from mlops.fsio import FileLock, read_records
from mlops.repo.repo import Repo
from mlops.store.hashing import hash_bytes
from mlops.store.state import StateDB

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)
YAML_PARSERS = [parse_yaml, lambda text, source: parse_yaml_positions(text, source)[0]]


def flow(depth: int) -> str:
    return "[" * depth + "]" * depth


def block(depth: int) -> str:
    """``depth`` nodes deep: depth - 1 nested block sequences around one scalar."""
    return "".join("  " * level + "- \n" for level in range(depth - 2)) + "  " * (depth - 2) + "- x\n"


# --- YAML ----------------------------------------------------------------------------------------


@pytest.mark.timeout(20)  # a bomb that were expanded would not finish at all
@pytest.mark.parametrize("parse", YAML_PARSERS, ids=["parse_yaml", "positions"])
def test_a_billion_laughs_is_refused_naming_the_file(parse) -> None:
    with pytest.raises(FormatError, match=r"^params\.yaml: YAML aliases expand past"):
        parse(BILLION_LAUGHS, "params.yaml")


@pytest.mark.parametrize("parse", YAML_PARSERS, ids=["parse_yaml", "positions"])
def test_an_alias_that_refers_to_itself_is_refused(parse) -> None:
    with pytest.raises(FormatError, match="refers to itself"):
        parse("a: &a [1, *a]\n", "x.yaml")


@pytest.mark.parametrize("parse", YAML_PARSERS, ids=["parse_yaml", "positions"])
@pytest.mark.parametrize("shape", [flow, block], ids=["flow", "block"])
def test_nesting_is_bounded(parse, shape) -> None:
    assert parse(shape(MAX_DEPTH), "ok.yaml") is not None
    with pytest.raises(FormatError, match=rf"^deep\.yaml: nested deeper than {MAX_DEPTH} levels"):
        parse(shape(MAX_DEPTH + 1), "deep.yaml")


def test_nesting_far_past_any_limit_is_one_line() -> None:
    # libyaml's own limit (1000 levels) is a YAML error: still one FormatError naming the file
    for text in (flow(100_000), "- " * 100_000 + "x"):
        with pytest.raises(FormatError, match=r"^x\.yaml"):
            parse_yaml(text, "x.yaml")


def test_aliases_expanding_within_the_budget_load() -> None:
    # ordinary anchors and merge keys stay usable, up to MAX_ALIAS_NODES nodes of expansion
    text = "base: &base {lr: 0.1, depth: 3}\ntrain:\n  <<: *base\n  lr: 0.2\nagain: *base\n"
    assert parse_yaml(text, "p.yaml") == {
        "base": {"lr": 0.1, "depth": 3},
        "train": {"lr": 0.2, "depth": 3},
        "again": {"lr": 0.1, "depth": 3},
    }
    items = MAX_ALIAS_NODES // 2 - 10
    fits = "a: &a [" + ", ".join(["1"] * items) + "]\nb: *a\n"
    assert len(parse_yaml(fits, "p.yaml")["b"]) == items
    too_many = "a: &a [" + ", ".join(["1"] * items) + "]\nb: [*a, *a, *a]\n"
    with pytest.raises(FormatError, match="aliases expand past"):
        parse_yaml(too_many, "p.yaml")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("when: 2024-13-45\n", "month must be in 1..12"),
        ("n: " + "9" * 5000 + "\n", "Exceeds the limit"),
        ("? [1]\n: 2\n", "unhashable"),
        ("a: !!python/object:os.system ls\n", "could not determine a constructor"),
    ],
)
@pytest.mark.parametrize("parse", YAML_PARSERS, ids=["parse_yaml", "positions"])
def test_scalars_that_cannot_be_built_are_format_errors(parse, text: str, problem: str) -> None:
    with pytest.raises(FormatError, match=r"^x\.yaml") as caught:
        parse(text, "x.yaml")
    assert problem in caught.value.message
    assert "\n" not in caught.value.message


def test_load_yaml_names_a_folder_and_bytes_that_are_not_utf8(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("folder.yaml").mkdir()
    with pytest.raises(FormatError, match=r"^folder\.yaml: is a folder"):
        load_yaml("folder.yaml")
    Path("latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(FormatError, match=r"^latin\.yaml: not a text file \(not UTF-8\)"):
        load_yaml("latin.yaml")
    with pytest.raises(FileNotFoundError):  # missing stays the caller's decision (optional files)
        read_text("absent.yaml")


# --- JSON ----------------------------------------------------------------------------------------


def test_json_depth_is_bounded_without_a_recursion_error() -> None:
    assert parse_json(flow(MAX_DEPTH), "ok.json") is not None
    for depth in (MAX_DEPTH + 1, 5_000, 1_000_000):
        with pytest.raises(FormatError, match=rf"^deep\.json: nested deeper than {MAX_DEPTH} levels"):
            parse_json(flow(depth), "deep.json")
    nested_objects = '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    with pytest.raises(FormatError, match="nested deeper"):
        parse_json(nested_objects, "deep.json")
    assert parse_json('["[[[[", "{{{{"]', "strings.json") == ["[[[[", "{{{{"]  # brackets in strings do not nest


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"a": 1,', r"^m\.json:1:9: not valid JSON"),
        (b"\xff\xfe{}", r"^m\.json: not valid JSON \(not UTF-8\)"),
        (b"9" * 5000, r"^m\.json: not valid JSON: Exceeds the limit"),
        (b"", r"^m\.json:1:1: not valid JSON"),
    ],
)
def test_json_garbage_is_one_line_naming_the_file(data: bytes, problem: str) -> None:
    with pytest.raises(FormatError, match=problem) as caught:
        parse_json(data, "m.json")
    assert "\n" not in caught.value.message


def test_load_json_names_a_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("run.json").mkdir()
    with pytest.raises(FormatError, match=r"^run\.json: is a folder"):
        load_json("run.json")


def test_json_lines_name_a_damaged_middle_line_and_skip_a_torn_tail(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = Path("log.jsonl")
    log.write_text('{"n": 1}\n' + flow(10_000) + '\n{"n": 2}\n')
    with pytest.raises(FormatError, match=r"^log\.jsonl:2: nested deeper"):
        read_records(log)
    log.write_text('{"n": 1}\n{"n": 2')
    assert read_records(log) == [{"n": 1}]
    log.write_bytes(b'{"n": 1}\n\xff\n')
    assert read_records(log) == [{"n": 1}]  # a torn tail may hold any bytes
    log.unlink()
    log.mkdir()
    with pytest.raises(FormatError, match=r"^log\.jsonl: is a folder"):
        read_records(log)


def test_json_lines_keep_the_good_records_around_a_bomb() -> None:
    good = ['{"n": 1}', '{"n": 2}']
    assert parse_json_lines(good, "index.jsonl") == [{"n": 1}, {"n": 2}]
    mixed = [good[0], flow(100_000), "not json", good[1], '{"n": 3']
    assert parse_json_lines(mixed, "index.jsonl") == [{"n": 1}, None, None, {"n": 2}, None]


# --- any bytes at all: every reader of received files raises an mlops error or returns -----------


def _readers() -> dict[str, object]:
    from mlops.data.pointer import parse_pointer
    from mlops.pipeline.lock import parse_lock
    from mlops.registry.audit import _lines
    from mlops.registry.store import parse_model
    from mlops.store.tree import decode_manifest
    from mlops.tracking.diff import parse_values
    from mlops.tracking.sync import check_bundle

    return {
        "pointer": lambda data: parse_pointer(data, "d.csv.mlops"),
        "lock": lambda data: parse_lock(data.decode("utf-8", "replace"), "pipeline.lock"),
        "model": lambda data: parse_model(data, "churn.json"),
        "manifest": lambda data: decode_manifest(data, "0" * 32),
        "bundle": lambda data: check_bundle("r1", data),
        "metrics-json": lambda data: parse_values(data, "metrics.json"),
        "metrics-yaml": lambda data: parse_values(data, "metrics.yaml"),
        "audit-lines": _lines,
        "yaml": lambda data: parse_yaml(data.decode("utf-8", "replace"), "x.yaml"),
        "json": lambda data: parse_json(data, "x.json"),
    }


SEEDS = [
    BILLION_LAUGHS.encode(),
    flow(100_000).encode(),
    b"format: 1\nkind: dir\nhash: *h\nsize: &h 3\n",
    b'{"format": 1, "entries": [["a", "f", "x", 1, [[[[1]]]]]]}',
    b'{"format": 1, "name": "churn", "next_version": 2, "versions": [{"version": "1"}]}',
    b"format: 1\nstages: {train: {outs: [{path: 5}]}}\n",
]
FUZZ_BYTES = st.one_of(
    st.sampled_from(SEEDS),
    st.binary(max_size=300),
    st.text(alphabet="[]{}:,-*&!?\"' \n\tab01.#|>", max_size=300).map(str.encode),
    st.tuples(st.sampled_from(SEEDS), st.integers(0, 400)).map(lambda pair: pair[0][: pair[1]]),
)


@pytest.mark.parametrize("reader", sorted(_readers()))
@settings(max_examples=150, deadline=None, database=None)
@given(data=FUZZ_BYTES)
def test_readers_of_received_bytes_raise_only_mlops_errors(reader: str, data: bytes) -> None:
    try:
        _readers()[reader](data)
    except MlopsError as exc:
        assert "\n" not in exc.message, exc.message


# --- the state database and other caches under .mlops/tmp ---------------------------------------


DIE_WRITING = """
import os, sqlite3, sys
writer = sqlite3.connect(sys.argv[1], isolation_level=None)
writer.execute("BEGIN IMMEDIATE")
writer.execute("INSERT OR REPLACE INTO hashes VALUES (9, 9, 9, 'half')")
os._exit(0)
"""


def _state(tmp_path: Path) -> tuple[StateDB, Path]:
    path = tmp_path / "tmp" / "state.db"
    db = StateDB(path)
    assert db.record([((1, 2, 3), "h1")]) == 1
    db.close()
    return StateDB(path), path


@pytest.mark.parametrize(
    "damage", ["empty", "garbage", "truncated", "folder", "full-folder", "other-schema", "garbage-wal", "dead-writer"]
)
def test_a_damaged_state_database_is_rebuilt_or_bypassed_silently(tmp_path: Path, damage: str) -> None:
    db, path = _state(tmp_path)
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1500])
    elif damage in ("folder", "full-folder"):
        path.unlink()
        path.mkdir()
        if damage == "full-folder":
            (path / "keep").write_text("someone's file\n")
    elif damage == "other-schema":
        path.unlink()
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE hashes (something_else TEXT)")
    elif damage == "garbage-wal":
        path.with_name("state.db-wal").write_bytes(os.urandom(20_000))
        path.with_name("state.db-shm").write_bytes(os.urandom(32_768))
    elif damage == "dead-writer":  # a process that died inside a transaction: its lock died with it
        subprocess.run([sys.executable, "-c", DIE_WRITING, str(path)], check=True)
    assert db.lookup((1, 2, 3)) in (None, "h1")  # a miss costs a rehash, never an error
    kept = db.record([((5, 6, 7), "h2")])
    assert db.lookup((5, 6, 7)) == ("h2" if kept else None)
    if damage == "full-folder":
        assert (path / "keep").read_text() == "someone's file\n" and kept == 0  # not removed: worked without
    else:
        assert kept == 1  # rebuilt: the cache works again
    assert db.lookup_trees(["fp"]) == {}
    db.record_trees([("fp", "h3", 1, 1, 0)])
    db.close()


def test_a_folder_in_place_of_the_tick_file_records_nothing(tmp_path: Path) -> None:
    db, path = _state(tmp_path)
    (path.parent / "state.tick").unlink()
    (path.parent / "state.tick").mkdir()
    assert db.record([((5, 6, 7), "h2")]) == 0
    assert db.lookup((1, 2, 3)) == "h1"


def test_a_folder_in_place_of_a_lock_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "locks" / "store.lock").mkdir(parents=True)
    with pytest.raises(StorageError, match=r"cannot take the lock on the store: .*store\.lock"):
        FileLock(tmp_path / "locks" / "store.lock", what="the store").acquire()


@pytest.mark.parametrize(
    "note", [b"\xff\xfe", b"[" * 100_000, b'{"pid": "1\\n2", "started": "soon", "host": 5}', b"[1, 2]"]
)
def test_a_damaged_lock_note_still_explains_the_wait(tmp_path: Path, note: bytes) -> None:
    path = tmp_path / "store.lock"
    holder = FileLock(path, what="the store")
    holder.acquire()
    try:
        path.write_bytes(note)
        with pytest.raises(LockHeldError) as caught:
            FileLock(path, what="the store", timeout=0.05).acquire()
        assert "\n" not in caught.value.message
        assert "unknown time" in caught.value.message
    finally:
        holder.release()


def test_a_dead_workers_stats_file_with_a_garbage_time_is_pruned(tmp_path: Path) -> None:
    import socket

    from mlops.serve.health import read_snapshots, stats_dir

    folder = stats_dir(tmp_path)
    folder.mkdir(parents=True)
    dead = folder / "dead.json"
    dead.write_text(json.dumps({"format": 1, "host": socket.gethostname(), "pid": 2**22 + 7, "written": "soon"}))
    (folder / "deep.json").write_text(flow(100_000))
    assert read_snapshots(tmp_path, prune=True) == []
    assert not dead.exists()


# --- whole commands over received files ----------------------------------------------------------


def test_a_config_section_of_the_wrong_shape_is_named(repo: Repo, cli) -> None:
    (repo.root / "data.csv").write_text("a\n1\n")
    (repo.dot / "config.yaml").write_text("format: 1\ncore: [origin]\n")
    result = cli("add", "data.csv", code=2)
    assert "config.yaml: 'core' must be a mapping, found list" in result.stderr
    (repo.dot / "config.yaml").write_text("format: 1\ncore: {remote: [1]}\n")
    result = cli("push", code=2)
    assert "core.remote must be a remote's name" in result.stderr


def test_a_received_pointer_to_a_bomb_manifest_stops_pull_with_one_line(repo: Repo, hostile_remote) -> None:
    # the pointer file arrives in a commit, the manifest object from the remote: both the attacker's
    deep = json.dumps({"format": 1, "entries": []}).encode()[:-1] + b',"x":' + flow(100_000).encode() + b"}"
    bomb_manifest = hash_bytes(deep)
    hostile_remote.put_object(bomb_manifest, deep)
    pointer = f"format: 1\npath: data\nkind: dir\nhash: {bomb_manifest}\nsize: 1\nfiles: 1\n"
    (repo.root / "data.mlops").write_text(pointer)
    outcome = CliRunner().invoke(app, ["pull"], catch_exceptions=False)
    assert outcome.exit_code in (2, 3), outcome.stderr
    assert "internal error" not in outcome.stderr
    assert bomb_manifest in outcome.stderr and "nested deeper" in outcome.stderr
    assert not (repo.root / "data").exists()


def test_a_pointer_file_alias_bomb_stops_status_naming_the_file(repo: Repo, cli) -> None:
    (repo.root / "data.csv.mlops").write_text(BILLION_LAUGHS)
    result = cli("status", code=2)
    assert "data.csv.mlops: YAML aliases expand past" in result.stderr


def test_config_read_through_the_bounded_loader(repo: Repo, cli) -> None:
    (repo.dot / "config.local.yaml").write_text(BILLION_LAUGHS)
    result = cli("remote", "list", code=2)
    assert "config.local.yaml: YAML aliases expand past" in result.stderr
    (repo.dot / "config.local.yaml").unlink()
    (repo.dot / "config.local.yaml").mkdir()
    result = cli("remote", "list", code=2)
    assert "config.local.yaml: is a folder" in result.stderr
