"""cache.type reflink: a large file is reflinked into the cache and the clone hashed (read
once, written never), checkout reflinks it back, and where the filesystem has no reflink both
fall back to a copy that hashes the bytes it writes. Either way an object's bytes match its
name even while another process writes the file.

The reflink tests need a filesystem with reflink (XFS, btrfs): the test folder when it has
one, else MLOPS_TEST_REFLINK_DIR (`.ci/run` mounts a small XFS image there when it can).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from datakit import bad_objects, cache_objects, git, mlops, xxh

from mlops.repo.repo import init_repo
from mlops.store.links import FICLONE, read_lease
from mlops.store.objects import CLONE_FROM, ObjectStore

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
OLD = 1_600_000_000  # an mtime long past, as data usually has


def _has_reflink(folder: Path) -> bool:
    a, b = folder / f".probe-{uuid.uuid4().hex}", folder / f".probe-{uuid.uuid4().hex}"
    try:
        a.write_bytes(b"x" * 4096)
        with open(a, "rb") as src, open(b, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError:
        return False
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)


@pytest.fixture
def reflink_dir(tmp_path: Path) -> Iterator[Path]:
    if _has_reflink(tmp_path):
        yield tmp_path
        return
    given = os.environ.get("MLOPS_TEST_REFLINK_DIR")
    if not given or not Path(given).is_dir() or not _has_reflink(Path(given)):
        pytest.skip("no filesystem with reflink here (set MLOPS_TEST_REFLINK_DIR to a folder on XFS or btrfs)")
    folder = Path(given) / f"t-{uuid.uuid4().hex}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _shared(path: Path) -> bool:
    """Whether every extent of the file is shared with another file (FIEMAP)."""
    count = 32
    answer = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, count, 0) + b"\0" * (56 * count))
    with open(path, "rb") as handle:
        fcntl.ioctl(handle.fileno(), FS_IOC_FIEMAP, answer)  # fills the buffer in place
    mapped = struct.unpack_from("=QQIIII", answer)[3]
    flags = [struct.unpack_from("=QQQQQIIII", answer, 32 + 56 * n)[5] for n in range(mapped)]
    return bool(flags) and all(f & FIEMAP_EXTENT_SHARED for f in flags)


def _big_file(path: Path, size: int = CLONE_FROM * 3) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return data


def _repo(folder: Path) -> Path:
    root = folder / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    init_repo(root)
    return root


def test_add_reflinks_a_large_file_into_the_cache_and_checkout_reflinks_it_back(reflink_dir: Path) -> None:
    root = _repo(reflink_dir)
    data = _big_file(root / "model.bin")
    mlops("add", "model.bin", cwd=root)
    obj = cache_objects(root)[xxh(data)]
    assert obj.read_bytes() == data
    assert _shared(obj), "the object should share its extents with the workspace file, not hold a copy"
    assert os.stat(obj).st_mode & 0o222 == 0

    (root / "model.bin").unlink()
    mlops("checkout", cwd=root)
    assert (root / "model.bin").read_bytes() == data
    assert _shared(root / "model.bin")
    mlops("status", "--check", cwd=root)
    mlops("verify", cwd=root)  # exit 0: no object corrupt

    # the workspace file is its own: an edit in place changes it, not the cache object
    with open(root / "model.bin", "r+b") as handle:
        handle.write(b"edited")
    assert obj.read_bytes() == data
    mlops("status", "--check", cwd=root, code=1)


WRITER = """
import mmap, os, random, sys, time
path, ready, stop = sys.argv[1:4]
with open(path, "r+b") as handle, mmap.mmap(handle.fileno(), 0) as mapped:
    for at in range(0, len(mapped), 4096):
        mapped[at] = 1            # every page dirty: the mtime is set now, and not again
    time.sleep(2.5)               # until a page is written back: the file looks settled
    open(ready, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(stop) and time.monotonic() < deadline:
        at = random.randrange(0, len(mapped) - 4096)
        mapped[at:at + 4096] = os.urandom(4096)   # writes to dirty pages change no timestamp
"""


OPENER = """
import os, random, sys, time
path, ready, stop = sys.argv[1:4]
size = os.path.getsize(path)
open(ready, "w").close()
deadline = time.monotonic() + 30
n = 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    n += 1
    if n % 25 == 0:
        os.close(os.open(path, os.O_RDONLY | os.O_TRUNC))  # empties the file without breaking a lease
        fd = os.open(path, os.O_RDWR)
        os.pwrite(fd, os.urandom(size), 0)
    else:
        fd = os.open(path, os.O_RDWR)  # waits while add holds its lease
        os.pwrite(fd, os.urandom(4096), random.randrange(0, size - 4096))
    os.close(fd)
"""


def _add_racing(root: Path, script: str) -> None:
    _big_file(root / "live.bin", 16 << 20)
    ready, stop = root.parent / "writer-ready", root.parent / "stop-writer"
    writer = subprocess.Popen([sys.executable, "-c", script, str(root / "live.bin"), str(ready), str(stop)])
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the writer did not start"
        for _ in range(5):
            mlops("add", "live.bin", cwd=root)
    finally:
        stop.touch()
        writer.wait(timeout=60)
    # every object's bytes hash to its name (how many objects there are is not asserted: writes
    # through a mapping change no timestamp, so the state database may take the file as known)
    assert bad_objects(root / ".mlops" / "cache") == []


# a writer through a mapping holds the file open throughout (add gets no lease and hashes
# what it stored); one that opens, writes and closes in a loop lets add take its lease
# between two writes, and its next open waits for add
WRITERS = pytest.mark.parametrize("script", [WRITER, OPENER], ids=["mmap-writer", "open-write-close"])


@WRITERS
def test_add_racing_a_writer_never_stores_bytes_under_a_wrong_name_with_reflink(reflink_dir: Path, script: str) -> None:
    _add_racing(_repo(reflink_dir), script)


@WRITERS
def test_add_racing_a_writer_never_stores_bytes_under_a_wrong_name_by_copy(tmp_path: Path, script: str) -> None:
    _add_racing(_repo(tmp_path), script)


def test_small_files_are_copied_in(reflink_dir: Path) -> None:
    store = ObjectStore(reflink_dir / "cache")
    source = reflink_dir / "small.bin"
    data = _big_file(source, CLONE_FROM - 1)
    with store.batch() as batch:
        digest, size = batch.add_file(source, clone=True)
    assert (digest, size) == (xxh(data), len(data))
    assert not _shared(Path(store.file(digest)))


@pytest.mark.parametrize("clone", [True, False])
def test_add_file_stores_the_right_bytes_on_any_filesystem(tmp_path: Path, clone: bool) -> None:
    # where there is no reflink (ext4, tmpfs) a clone request falls back to the copy
    store = ObjectStore(tmp_path / "cache")
    source = tmp_path / "big.bin"
    data = _big_file(source)
    with store.batch() as batch:
        digest, size = batch.add_file(source, clone=clone)
    assert (digest, size) == (xxh(data), len(data))
    assert Path(store.file(digest)).read_bytes() == data
    assert [p for p in (tmp_path / "cache" / ".tmp").rglob("*") if p.is_file()] == []


def test_a_read_lease_is_refused_while_a_writer_has_the_file_open(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 4096)
    with open(path, "r+b"), open(path, "rb") as reader, read_lease(reader.fileno()) as held:
        assert not held()
    with open(path, "rb") as reader, read_lease(reader.fileno()) as held:
        assert held()


def test_a_writer_opening_the_file_breaks_the_lease_and_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 4096)
    opener = "import sys, time; f = open(sys.argv[1], 'r+b'); print(time.monotonic(), flush=True)"
    with open(path, "rb") as reader, read_lease(reader.fileno()) as held:
        assert held()
        writer = subprocess.Popen([sys.executable, "-c", opener, str(path)], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while held() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not held(), "the writer's open should have broken the lease"
        time.sleep(0.3)
        assert writer.poll() is None, "the writer's open should wait while the lease is held"
        released_at = time.monotonic()
    out, _ = writer.communicate(timeout=60)
    assert float(out) >= released_at  # it opened only once the lease was let go


def test_an_emptying_open_that_breaks_no_lease_still_shows_in_the_check(tmp_path: Path) -> None:
    # open(O_RDONLY | O_TRUNC) truncates without breaking a read lease
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 4096)
    with open(path, "rb") as reader, read_lease(reader.fileno()) as steady:
        assert steady()
        os.close(os.open(path, os.O_RDONLY | os.O_TRUNC))
        assert fcntl.fcntl(reader.fileno(), fcntl.F_GETLEASE) == fcntl.F_RDLCK  # the lease held...
        assert not steady()  # ...but the check saw the file change


def test_hardlink_adoption_hashes_under_a_lease_and_falls_back_to_a_copy_while_a_writer_is_open(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "cache")
    source = tmp_path / "big.bin"
    data = _big_file(source)
    with open(source, "r+b"), store.batch() as batch:  # a writer holds it open: no lease
        assert batch.adopt_file(source) is None
    with store.batch() as batch:
        digest, size = batch.adopt_file(source)
    assert (digest, size) == (xxh(data), len(data))
    assert os.stat(store.file(digest)).st_ino == os.stat(source).st_ino  # the file itself, linked in


def test_identical_files_adopted_at_once_each_keep_their_own_link(tmp_path: Path) -> None:
    # two threads adopting the same content must not share a temp name: the second's
    # dedupe would unlink the first's staged link, and the commit would fail
    data = os.urandom(4096)
    sources = []
    for n in range(8):
        source = tmp_path / f"same-{n}.bin"
        source.write_bytes(data)
        sources.append(source)
    for attempt in range(30):
        store = ObjectStore(tmp_path / f"cache-{attempt}")
        with store.batch() as batch:
            barrier = threading.Barrier(len(sources))
            adopted: list[object] = []

            def adopt(source: Path, barrier: threading.Barrier = barrier, adopted: list[object] = adopted) -> None:
                barrier.wait()
                adopted.append(batch.adopt_file(source))

            threads = [threading.Thread(target=adopt, args=(s,)) for s in sources]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert adopted == [(xxh(data), len(data))] * len(sources)
        assert Path(store.file(xxh(data))).read_bytes() == data
