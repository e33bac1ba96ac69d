"""Atomic writes, append-only records, locks, and versioned YAML with located errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops.errors import FormatError, LockHeldError, NewerFormatError
from mlops.formats import check_format, load_yaml
from mlops.fsio import FileLock, append_record, atomic_write, atomic_writer, read_records


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "state.yaml"
    atomic_write(target, "v1\n")
    with pytest.raises(KeyboardInterrupt), atomic_writer(target, "w") as handle:
        handle.write("half of v2")
        raise KeyboardInterrupt
    assert target.read_text() == "v1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.yaml"], "the temp file is removed"


def test_records_tolerate_a_torn_last_line(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    append_record(log, {"n": 1})
    append_record(log, {"n": 2})
    with open(log, "a") as handle:
        handle.write('{"n": 3, "tor')  # a crash mid-append
    assert read_records(log) == [{"n": 1}, {"n": 2}]
    log.write_text('{"n": 1}\nnot json\n{"n": 2}\n')
    with pytest.raises(FormatError, match="log.jsonl:2"):  # damage in the middle is not a torn tail
        read_records(log)


HOLDER = """
import sys, time
from mlops.fsio import FileLock
lock = FileLock(sys.argv[1], what="the test resource")
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_lock_names_its_holder_and_is_freed_when_the_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(LockHeldError) as caught:
            FileLock(path, what="the test resource", timeout=0.3).acquire()
        assert time.monotonic() - started >= 0.3
        assert f"another mlops process (pid {holder.pid}" in caught.value.message
        assert "holds the lock on the test resource" in caught.value.message
        holder.kill()
        holder.wait()
        with FileLock(path, what="the test resource", timeout=1):  # the kernel freed it with the process
            assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_shared_locks_coexist_and_exclude_an_exclusive_one(tmp_path: Path) -> None:
    path = tmp_path / "store.lock"
    with FileLock(path, what="store", shared=True), FileLock(path, what="store", shared=True, timeout=0.1):
        with pytest.raises(LockHeldError):
            FileLock(path, what="store", timeout=0.1).acquire()


def test_yaml_errors_name_file_line_and_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text("a: 1\nb: [unclosed\nc: 3\n")
    with pytest.raises(FormatError) as caught:
        load_yaml("bad.yaml")
    assert caught.value.message.startswith("bad.yaml:3:")
    with pytest.raises(NewerFormatError, match="newer mlops"):
        check_format({"format": 99}, "x.yaml", supported=1, kind="config")
    with pytest.raises(FormatError, match="expected a YAML mapping"):
        check_format([1, 2], "x.yaml", supported=1, kind="config")


def test_append_bytes_and_truncate_file_are_durable_edits_of_an_append_only_file(tmp_path: Path) -> None:
    from mlops.fsio import append_bytes, truncate_file

    log = tmp_path / "log.jsonl"
    append_bytes(log, b'{"a": 1}\n{"b": ')  # created, then a torn second line
    truncate_file(log, len(b'{"a": 1}\n'))
    append_bytes(log, b'{"b": 2}\n')
    assert read_records(log) == [{"a": 1}, {"b": 2}]
    from mlops.errors import StorageError

    with pytest.raises(StorageError, match="cannot write"):
        truncate_file(tmp_path / "missing.jsonl", 0)


def test_atomic_dir_places_a_whole_folder_or_nothing(tmp_path: Path) -> None:
    from mlops.fsio import atomic_dir, remove_dir

    target = tmp_path / "models" / "abc"
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as building:
        (building / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []  # no temp folder left
    with atomic_dir(target) as building:
        (building / "sub").mkdir()
        (building / "sub" / "w.bin").write_bytes(b"whole")
        os.chmod(building / "sub" / "w.bin", 0o444)
        assert not target.exists()  # not visible until the block completes
    assert (target / "sub" / "w.bin").read_bytes() == b"whole"
    with atomic_dir(target) as building:  # another process placed it first: theirs is kept, ours dropped
        (building / "other.bin").write_bytes(b"late")
    assert sorted(p.name for p in target.iterdir()) == ["sub"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["abc"]
    remove_dir(target)
    assert list((tmp_path / "models").iterdir()) == []


def test_remove_stale_temps_takes_only_temp_files(tmp_path: Path) -> None:
    from mlops.fsio import TMP_PREFIX, remove_stale_temps

    (tmp_path / "keep.json").write_text("{}")
    (tmp_path / f"{TMP_PREFIX}keep.json.x1").write_text("{")
    (tmp_path / f"{TMP_PREFIX}dir").mkdir()
    assert remove_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{TMP_PREFIX}dir", "keep.json"]
    assert remove_stale_temps(tmp_path / "nowhere") == 0


def test_a_lock_knows_when_its_file_was_unlinked_under_it(tmp_path) -> None:
    """A cleaner of free lock files (stage exec's) could unlink one between its taker's open and
    flock; the taker then held a lock on a file no one else would ever open. is_current says so."""
    path = tmp_path / "wt.lock"
    lock = FileLock(path, what="the test resource", timeout=0)
    assert not lock.is_current()  # not held
    lock.acquire()
    assert lock.is_current()
    path.unlink()
    assert not lock.is_current()
    path.write_text("")  # the next taker's new file
    assert not lock.is_current()
    lock.release()
    lock.acquire()
    assert lock.is_current()
    lock.release()
