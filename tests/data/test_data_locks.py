"""Locks between real processes: bounded waits that name the holder, takeover of a dead holder's
lock, and readers (status, verify, diff) that never wait for a writer."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from datakit import assert_error, cache_objects, hold_lock, mlops, stop

SHORT = {"MLOPS_LOCK_TIMEOUT": "0.3"}
NO_WAIT = {"MLOPS_LOCK_TIMEOUT": "0"}  # a lock that is not free at the first try fails at once


@pytest.fixture
def tracked(repo, cli, tree):
    tree({"data/a.txt": "a\n", "data/b/c.txt": "c\n", "other.txt": "o\n"})
    cli("add", "data", "other.txt")
    return repo


@pytest.fixture
def holders():
    procs = []
    yield procs
    for proc in procs:
        stop(proc)


def test_add_times_out_on_held_path_lock_and_names_holder(tracked, holders):
    Path("data/a.txt").write_text("changed\n")
    before = Path("data.mlops").read_text()
    holder = hold_lock(tracked.root, "path", "data")
    holders.append(holder)
    proc = mlops("add", "data", cwd=tracked.root, code=3, env=SHORT)
    line = assert_error(proc.stderr, f"another mlops process (pid {holder.pid}", "data")
    assert "started" in line
    assert "wait for it to finish" in proc.stderr  # the hint
    assert Path("data.mlops").read_text() == before  # nothing written
    doc = json.loads(mlops("add", "data", "--json", cwd=tracked.root, code=3, env=SHORT).stdout)
    assert doc["error"] == "lock_held" and doc["pid"] == holder.pid and doc["exit_code"] == 3
    # another path is not blocked by it
    Path("other.txt").write_text("changed\n")
    mlops("add", "other.txt", cwd=tracked.root, env=SHORT)


def test_writers_time_out_on_exclusive_store_lock(tracked, holders, remote_dir):
    mlops("remote", "add", "store", str(remote_dir), "--default", cwd=tracked.root)
    Path("data/a.txt").write_text("changed\n")
    holder = hold_lock(tracked.root, "store", "exclusive")
    holders.append(holder)
    for args in (["add", "data"], ["checkout", "--force"], ["fetch"], ["pull"]):
        proc = mlops(*args, cwd=tracked.root, code=3, env=SHORT)
        assert_error(proc.stderr, f"another mlops process (pid {holder.pid}", "object store")


def test_gc_times_out_while_a_writer_holds_the_store(tracked, holders):
    holder = hold_lock(tracked.root, "store", "shared")  # what add/checkout/fetch hold
    holders.append(holder)
    before = set(cache_objects(tracked.root))
    Path("other.txt.mlops").unlink()  # make an object unreferenced: gc would want to remove it
    proc = mlops("gc", cwd=tracked.root, code=3, env=SHORT)
    assert_error(proc.stderr, "another mlops process", "object store")
    assert set(cache_objects(tracked.root)) == before
    # writers share the store: a second writer is not blocked by the first
    Path("data/a.txt").write_text("changed\n")
    mlops("add", "data", cwd=tracked.root, env=SHORT)


def test_lock_of_killed_process_is_taken_over_at_once(tracked, holders):
    holder = hold_lock(tracked.root, "path", "data")
    holders.append(holder)
    lock_files = list((tracked.root / ".mlops" / "tmp" / "locks").glob("path-*.lock"))
    notes = [json.loads(p.read_text()) for p in lock_files if p.read_text()]
    assert any(n.get("pid") == holder.pid for n in notes)  # the holder signed its note
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    Path("data/a.txt").write_text("after the crash\n")
    # the stale note still names the dead process, but the OS lock died with it: no wait at all
    proc = mlops("add", "data", cwd=tracked.root, env=NO_WAIT)
    assert proc.stdout.startswith("added\tdata")
    mlops("status", "--check", cwd=tracked.root)
    # a new holder is named, not the dead one
    second = hold_lock(tracked.root, "path", "data")
    holders.append(second)
    proc = mlops("add", "data", cwd=tracked.root, code=3, env=NO_WAIT)
    assert f"pid {second.pid}" in proc.stderr and f"pid {holder.pid}," not in proc.stderr


def test_store_lock_of_killed_gc_is_taken_over(tracked, holders):
    holder = hold_lock(tracked.root, "store", "exclusive")
    holders.append(holder)
    mlops("add", "data", cwd=tracked.root, code=3, env=NO_WAIT)
    holder.kill()
    holder.wait(timeout=30)
    Path("data/a.txt").write_text("x\n")
    mlops("add", "data", cwd=tracked.root, env=NO_WAIT)


def test_readers_do_not_wait_for_an_exclusive_writer(tracked, holders):
    holders.append(hold_lock(tracked.root, "store", "exclusive"))
    holders.append(hold_lock(tracked.root, "path", "data"))
    # with no wait allowed, any lock these took would fail them at once
    mlops("status", "--check", cwd=tracked.root, env=NO_WAIT)
    mlops("verify", cwd=tracked.root, env=NO_WAIT)
    Path("data/a.txt").write_text("changed\n")
    assert "modified\tdata" in mlops("status", cwd=tracked.root, env=NO_WAIT).stdout
    assert json.loads(mlops("verify", "--json", cwd=tracked.root, env=NO_WAIT).stdout)["ok"] is True
    mlops("diff", cwd=tracked.root, env=NO_WAIT, code=2)  # no commit yet: a usage error, not a lock error


def test_lock_timeout_setting_is_respected(tracked, holders):
    """MLOPS_LOCK_TIMEOUT=0 fails at the first try; the message quotes the wait."""
    holders.append(hold_lock(tracked.root, "path", "other.txt"))
    Path("other.txt").write_text("changed\n")
    proc = mlops("add", "other.txt", cwd=tracked.root, code=3, env={"MLOPS_LOCK_TIMEOUT": "0.2"})
    assert "waited 0.2s" in proc.stderr
