"""The object store, tree manifests, the state database and workspace links, without a repo."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
import xxhash

from mlops.errors import CorruptObjectError, MissingObjectError
from mlops.store.hashing import copy_and_hash, hash_bytes, hash_file, is_hash
from mlops.store.links import place
from mlops.store.objects import ObjectStore
from mlops.store.state import StateDB, stat_key
from mlops.store.tree import FileRecord, build_tree, decode_manifest, flatten_tree, tree_objects


def test_hash_is_xxh3_128_of_the_bytes(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"hello")
    payload = os.urandom(3 * 1024 * 1024 + 17)  # crosses the small-file and chunk boundaries
    large.write_bytes(payload)
    assert hash_file(small) == (xxhash.xxh3_128_hexdigest(b"hello"), 5)
    assert hash_file(large) == (xxhash.xxh3_128_hexdigest(payload), len(payload))
    assert is_hash(hash_bytes(b"x")) and not is_hash("xyz") and not is_hash("A" * 32)


def test_copy_and_hash_copies_exactly_what_it_hashes(tmp_path: Path) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 5)
    (tmp_path / "src").write_bytes(payload)
    fd = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    with open(tmp_path / "src", "rb", buffering=0) as src:
        digest, size = copy_and_hash(src, fd)
    os.close(fd)
    assert (tmp_path / "dst").read_bytes() == payload
    assert (digest, size) == (xxhash.xxh3_128_hexdigest(payload), len(payload))


@pytest.mark.parametrize("size", [0, 1, 10_000, (1 << 18) - 1, 1 << 18, (1 << 18) + 1])
@pytest.mark.parametrize("kind", ["file", "pipe", "stream"])
def test_copy_and_hash_reads_whole_sources_of_every_kind(tmp_path: Path, size: int, kind: str) -> None:
    """A file is read by its own size; a pipe (size 0 to fstat) and a stream without a descriptor
    are read to their end: every byte copied and hashed, around the small-file boundary too."""
    import io
    import threading

    payload = os.urandom(size)
    fd = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    if kind == "file":
        (tmp_path / "src").write_bytes(payload)
        with open(tmp_path / "src", "rb", buffering=0) as src:
            got = copy_and_hash(src, fd)
    elif kind == "pipe":
        read_end, write_end = os.pipe()
        writer = threading.Thread(target=lambda: (os.write(write_end, payload), os.close(write_end)))
        writer.start()
        with open(read_end, "rb") as src:
            got = copy_and_hash(src, fd)
        writer.join()
    else:
        got = copy_and_hash(io.BytesIO(payload), fd)
    os.close(fd)
    assert got == (xxhash.xxh3_128_hexdigest(payload), size)
    assert (tmp_path / "dst").read_bytes() == payload


def test_copy_and_hash_stops_one_byte_past_the_limit(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"x" * 100)
    fd = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT)
    with open(tmp_path / "src", "rb", buffering=0) as src:
        _, size = copy_and_hash(src, fd, limit=10)
    os.close(fd)
    assert size == 11


def test_batch_publishes_read_only_objects_once(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(b"same bytes")
    with store.batch() as batch:
        d1, _ = batch.add_file(tmp_path / "a")
        d2, _ = batch.add_file(tmp_path / "b")
        assert not store.exists(d1), "nothing is visible before the batch commits"
    assert d1 == d2 and store.exists(d1)
    assert list(store.iter_digests()) == [d1]
    assert stat.S_IMODE(store.path(d1).stat().st_mode) == 0o444
    assert [p for p in (tmp_path / "cache" / ".tmp").rglob("*") if p.is_file()] == []


def test_large_batch_is_made_durable_and_published(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    with store.batch() as batch:  # above SYNCFS_BATCH: one syncfs for all
        digests = {batch.add_bytes(f"object {i}".encode()) for i in range(100)}
    assert set(store.iter_digests()) == digests


def test_an_exception_publishes_nothing_and_leaves_no_temp(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    (tmp_path / "a").write_bytes(b"a")
    with pytest.raises(KeyboardInterrupt), store.batch() as batch:
        digest, _ = batch.add_file(tmp_path / "a")
        raise KeyboardInterrupt
    assert not store.exists(digest)
    assert [p for p in (tmp_path / "cache" / ".tmp").rglob("*") if p.is_file()] == []


def test_abort_removes_a_temp_file_interrupted_before_it_was_staged(tmp_path: Path) -> None:
    # Ctrl-C on the main thread can land after a temp file is created and before it is staged
    store = ObjectStore(tmp_path / "cache")
    other = store.batch().__enter__()  # another batch of the same process keeps its own files
    kept_fd, kept = other._new_temp()
    os.close(kept_fd)
    with pytest.raises(KeyboardInterrupt), store.batch() as batch:
        fd, _temp = batch._new_temp()
        os.close(fd)
        raise KeyboardInterrupt
    assert [str(p) for p in (tmp_path / "cache" / ".tmp").rglob("*") if p.is_file()] == [kept]
    other.abort()


def test_add_verified_refuses_bytes_that_do_not_match(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    (tmp_path / "a").write_bytes(b"actual")
    with store.batch() as batch, pytest.raises(CorruptObjectError):
        batch.add_verified(tmp_path / "a", hash_bytes(b"expected"))
    assert list(store.iter_digests()) == []


def test_read_bytes_checks_the_name(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    with store.batch() as batch:
        digest = batch.add_bytes(b"manifest")
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(CorruptObjectError):
        store.read_bytes(digest)
    assert not store.check(digest)
    with pytest.raises(MissingObjectError):
        store.read_bytes(hash_bytes(b"never stored"))


def test_tree_changes_only_the_manifests_on_the_changed_path() -> None:
    files = {f"d{d}/f{f}.txt": FileRecord(hash_bytes(f"{d}/{f}".encode()), 10) for d in range(5) for f in range(5)}
    files["top.txt"] = FileRecord(hash_bytes(b"top"), 3, True)
    first = build_tree(files)
    assert (first.files, first.size) == (26, 253)
    changed = dict(files)
    changed["d3/f1.txt"] = FileRecord(hash_bytes(b"new"), 10)
    second = build_tree(changed)
    assert second.hash != first.hash
    new_manifests = set(second.manifests) - set(first.manifests)
    assert len(new_manifests) == 2  # d3's manifest and the top one
    assert build_tree(dict(reversed(list(files.items())))).hash == first.hash, "order of discovery does not matter"


def test_tree_round_trips_through_the_store(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    files = {
        "a/b/c.txt": FileRecord(hash_bytes(b"c"), 1),
        "a/d.txt": FileRecord(hash_bytes(b"d"), 1, True),
        "e": FileRecord(hash_bytes(b"e"), 1),
    }
    tree = build_tree(files)
    with store.batch() as batch:
        for data in tree.manifests.values():
            batch.add_bytes(data)
    assert flatten_tree(store.read_bytes, tree.hash) == files
    kinds = [k for k, _ in tree_objects(store.read_bytes, tree.hash)]
    assert kinds.count("t") == 3 and kinds.count("f") == 3
    top = decode_manifest(store.read_bytes(tree.hash), tree.hash)
    assert [e.name for e in top] == ["a", "e"] and top[0].files == 2


def test_state_database_skips_racy_entries(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    old.write_text("old")
    past = time.time() - 10
    os.utime(old, (past, past))
    fresh.write_text("fresh")
    future = time.time() + 60  # an mtime at or after the tick is racy
    os.utime(fresh, (future, future))
    kept = db.record([(stat_key(old.stat()), "a" * 32), (stat_key(fresh.stat()), "b" * 32)])
    assert kept == 1
    reopened = StateDB(tmp_path / "state.db")
    assert reopened.lookup(stat_key(old.stat())) == "a" * 32
    assert reopened.lookup(stat_key(fresh.stat())) is None
    os.utime(old, (past + 1, past + 1))  # same size, new mtime: not trusted
    assert reopened.lookup(stat_key(old.stat())) is None


def test_damaged_state_database_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    db = StateDB(path)
    assert db.lookup((1, 2, 3)) is None
    (tmp_path / "f").write_text("x")
    os.utime(tmp_path / "f", (1, 1))
    assert db.record([(stat_key((tmp_path / "f").stat()), "c" * 32)]) == 1


@pytest.mark.parametrize("kinds", [("copy",), ("hardlink", "copy"), ("symlink", "copy"), ("reflink", "copy")])
def test_place_puts_the_object_and_leaves_no_temp(tmp_path: Path, kinds: tuple[str, ...]) -> None:
    obj = tmp_path / "obj"
    obj.write_bytes(b"payload")
    os.chmod(obj, 0o444)
    dest = tmp_path / "work" / "file"
    dest.parent.mkdir()
    dest.write_text("old content")
    used = place(str(obj), str(dest), kinds)
    assert dest.read_bytes() == b"payload"
    assert used in kinds
    if used == "hardlink":
        assert dest.stat().st_ino == obj.stat().st_ino
    if used == "symlink":
        assert dest.is_symlink() and os.path.realpath(dest) == str(obj)
    if used == "copy":
        assert dest.stat().st_ino != obj.stat().st_ino and os.access(dest, os.W_OK)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file"]


STATE_DB_THREADS = """
import os, sys, threading, time
from mlops.store.state import StateDB

db = StateDB(sys.argv[1])
files = []
for index in range(64):
    path = os.path.join(os.path.dirname(sys.argv[1]), f"f{index}")
    with open(path, "w") as handle:
        handle.write(str(index))
    files.append(path)
time.sleep(0.05)  # every file's mtime strictly older than the ticks taken below: none is racy
errors = []

def work(offset):
    try:
        for round_ in range(150):
            chunk = files[(offset + round_) % 57 :][:8]
            keys = [(st.st_ino, st.st_size, st.st_mtime_ns) for st in map(os.stat, chunk)]
            db.record((key, f"h{key[0]}") for key in keys)
            db.lookup_many(keys)
            if round_ % 50 == 49:
                db.close()  # a command may close while other threads still record
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=work, args=(offset,)) for offset in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
keys = [(st.st_ino, st.st_size, st.st_mtime_ns) for st in map(os.stat, files)]
found = db.lookup_many(keys)
print(len(errors), sum(hit == f"h{key[0]}" for hit, key in zip(found, keys)))
"""


def test_state_database_shared_by_threads_neither_crashes_nor_loses_records(tmp_path: Path) -> None:
    """`mlops run -j 8` records hashes from eight threads into one StateDB: interleaved
    transactions on its one connection (and a close in one thread while another executes)
    crashed the interpreter with SIGSEGV. Run in a child so a crash fails this test."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", STATE_DB_THREADS, str(tmp_path / "state.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors, kept = map(int, proc.stdout.split())
    assert errors == 0, proc.stdout
    assert kept == 64
