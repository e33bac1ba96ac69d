"""A hostile remote serves objects, listings and refs crafted to hurt the puller: none of it lands.

Every attack runs on both remote kinds (``hostile_remote``: a local folder and the moto S3
server) where the kind allows it. Each test checks the exit code and the one error line
(naming the object, where the snapshot has it, and the remote), that nothing reached the
workspace or the cache (no object published, no temp file left), and, through ``guard``,
that nothing beside the repository and nothing in ``.git`` changed.

The S3 servers that stall, dribble or never stop sending are tiny HTTP servers started here
on 127.0.0.1; how long they take is bounded by pytest-timeout, never asserted.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash

from mlops.data.transfer import get_remote
from mlops.remotes.base import MAX_REF_SIZE
from mlops.repo.repo import Repo, find_repo
from mlops.store.objects import ObjectStore

Guard = Any  # tests/security/conftest.py: Guard, HostileRemote (conftest modules are not imported by name)
HostileRemote = Any
MLOPS_BIN = str(Path(sys.executable).with_name("mlops"))

SMALL = b"0123456789"  # data/a.txt and model.bin: 10 bytes each, as their records say
FILES = {"data/a.txt": SMALL, "data/sub/b.txt": b"b" * 300, "model.bin": SMALL + b"!"}
MIB = 1 << 20


def xxh(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


A_TXT = xxh(SMALL)
MODEL = xxh(FILES["model.bin"])


# --- the world: data added and pushed, then the local copy gone (a fresh clone's state) ---------
def _add_and_push(repo: Repo, run_mlops: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    for rel, data in FILES.items():
        path = repo.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    run_mlops("add", "data", "model.bin", cwd=repo.root)
    run_mlops("push", cwd=repo.root)
    _forget(repo)


def _forget(repo: Repo) -> None:
    """Remove the workspace's data and the cache: the next pull must take everything from the remote."""
    shutil.rmtree(repo.root / "data")
    (repo.root / "model.bin").unlink()
    cache = repo.root / ".mlops" / "cache"
    for folder, dirs, _files in os.walk(cache):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
    shutil.rmtree(cache)


@pytest.fixture
def pushed(repo: Repo, hostile_remote: HostileRemote, guard: Guard, mlops_bin: Any) -> HostileRemote:
    _add_and_push(repo, mlops_bin)
    return hostile_remote


def cache_files(repo: Repo) -> tuple[set[str], list[str]]:
    """The cache's published objects and any file left in its temp folder."""
    cache = repo.root / ".mlops" / "cache"
    objects = set(ObjectStore(cache).iter_digests())
    temps = [str(p) for p in (cache / ".tmp").rglob("*") if not p.is_dir()] if (cache / ".tmp").exists() else []
    return objects, temps


def one_error_line(stderr: str, *needles: str) -> str:
    """Exactly one 'error:' line naming every needle (plus 'hint:' lines); no traceback."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"want exactly one error line:\n{stderr}"
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), stderr
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def one_skipped_ref_line(stderr: str, *needles: str) -> str:
    """A refused ref in a pull of records: exactly one 'warning:' line naming it (every needle),
    saying it was skipped; no error, no traceback. The pull goes on with the other refs
    (tracking/refsync.py: one rule for runs, experiments and monitoring profiles)."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: "), stderr
    assert lines[0].endswith("skipped"), stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_refused(
    repo: Repo, guard: Guard, proc: subprocess.CompletedProcess[str], *needles: str, code: int = 3
) -> str:
    assert proc.returncode == code, f"exit {proc.returncode} (wanted {code})\n{proc.stdout}\n{proc.stderr}"
    line = one_error_line(proc.stderr, *needles)
    assert not (repo.root / "data").exists() and not (repo.root / "model.bin").exists(), "the workspace got data"
    objects, temps = cache_files(repo)
    assert objects == set(), f"objects published from a refused pull: {sorted(objects)}"
    assert temps == [], f"temp files left in the cache: {temps}"
    guard.check()
    return line


def pull(run_mlops: Callable[..., subprocess.CompletedProcess[str]], repo: Repo, *args: str, **kw: Any) -> Any:
    return run_mlops("pull", *args, cwd=repo.root, code=None, **kw)


# --- objects whose bytes are not what their records say ------------------------------------------
def test_bytes_that_do_not_match_the_hash(pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any) -> None:
    pushed.put_object(A_TXT, b"9876543210")  # the right length, the wrong bytes
    proc = pull(mlops_bin, repo)
    line = assert_refused(repo, guard, proc, A_TXT, "data/a.txt", "'storage'", "corrupt")
    assert "hash" in line


@pytest.mark.parametrize(
    ("digest", "label"), [(A_TXT, "data/a.txt"), (MODEL, "model.bin")], ids=["in-a-manifest", "in-a-pointer"]
)
def test_one_byte_more_than_recorded(
    pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any, digest: str, label: str
) -> None:
    size = len(FILES[label])
    pushed.put_object(digest, FILES[label] + b"x")
    proc = pull(mlops_bin, repo)
    assert_refused(repo, guard, proc, digest, label, "'storage'", f"larger than the {size} bytes expected")


def test_fifty_mib_where_ten_bytes_are_recorded(
    pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any
) -> None:
    pushed.put_object(A_TXT, SMALL + bytes(50 * MIB))
    proc = pull(mlops_bin, repo)
    assert_refused(repo, guard, proc, A_TXT, "data/a.txt", "'storage'", "larger than the 10 bytes expected")


def test_shorter_than_recorded(pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any) -> None:
    pushed.put_object(MODEL, SMALL[:4])
    proc = pull(mlops_bin, repo)
    assert_refused(repo, guard, proc, MODEL, "model.bin", "'storage'", "4 bytes where 11 were expected")


def test_an_oversized_manifest_is_refused(
    pushed: HostileRemote, repo: Repo, guard: Guard, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest has no recorded length: it is bounded by MAX_MANIFEST_SIZE (lowered here, so
    the planted manifest stays small; the rule is the same at 64 MiB)."""
    from mlops.data import transfer

    monkeypatch.setattr(transfer, "MAX_MANIFEST_SIZE", 4096)
    top = _pointer_hash(repo, "data.mlops")
    pushed.put_object(top, b'{"format":"mlops-tree/1","entries":[' + b" " * 5000 + b"]}")
    result = cli("pull", code=3)
    line = one_error_line(result.stderr, top, "(data)", "'storage'", "larger than the limit of 4096 bytes")
    assert line
    assert not (repo.root / "data").exists()
    assert cache_files(repo)[1] == []
    guard.check()


def _pointer_hash(repo: Repo, pointer: str) -> str:
    from mlops.data.pointer import read_pointer

    return read_pointer(repo.root, pointer).hash


def test_an_endless_stream_is_read_only_one_byte_past_its_size(tmp_path: Path) -> None:
    """The bound is on the reading itself, not only on what the remote says first: a source
    that never ends is read for at most size + 1 bytes, then refused, and leaves no temp."""
    from mlops.errors import CorruptObjectError

    class Endless:
        consumed = 0

        def read(self, size: int) -> bytes:
            self.consumed += size
            return b"z" * size

        def readinto(self, buffer: Any) -> int:
            self.consumed += len(buffer)
            return len(buffer)

    store = ObjectStore(tmp_path / "cache")
    for size in (10, 3 * MIB):
        source = Endless()
        with store.batch() as batch, pytest.raises(CorruptObjectError, match=f"larger than the {size} bytes"):
            batch.add_stream(source, A_TXT, size=size)  # type: ignore[arg-type]
        assert source.consumed == size + 1
        source = Endless()
        with store.batch() as batch, pytest.raises(CorruptObjectError, match="larger than the limit of 1000 bytes"):
            batch.add_stream(source, A_TXT, max_size=1000)  # type: ignore[arg-type]
        assert source.consumed == 1001
    assert list(store.iter_digests()) == []
    assert [p for p in store.tmp.rglob("*") if p.is_file()] == []


# --- entries of a local remote that are not regular files ---------------------------------------
def _local(remote: HostileRemote) -> Path:
    if remote.kind != "local":
        pytest.skip("a local remote's entries only")
    assert remote.root is not None
    return remote.root


def _object_path(root: Path, digest: str) -> Path:
    path = root / digest[:2] / digest[2:]
    os.chmod(path, 0o644)
    path.unlink()
    return path


@pytest.mark.timeout(30)
def test_a_fifo_is_refused_without_waiting(pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any) -> None:
    path = _object_path(_local(pushed), A_TXT)
    os.mkfifo(path)
    proc = pull(mlops_bin, repo, timeout=25)
    assert_refused(repo, guard, proc, A_TXT, "data/a.txt", "'storage'", "a FIFO, not a regular file")


def test_a_device_is_refused(pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any) -> None:
    path = _object_path(_local(pushed), A_TXT)
    try:
        os.mknod(path, 0o644 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero's numbers
    except PermissionError:
        pytest.skip("making a device node needs root")
    proc = pull(mlops_bin, repo)
    assert_refused(repo, guard, proc, A_TXT, "data/a.txt", "'storage'", "a device, not a regular file")


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_a_symlink_is_refused_even_to_the_right_bytes(
    pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any, tmp_path: Path, where: str
) -> None:
    """The link's target holds exactly the right bytes: only the rule on symlinks refuses it."""
    root = _local(pushed)
    target = (tmp_path / "elsewhere" / "a.txt") if where == "outside" else (root / "kept" / "a.txt")
    target.parent.mkdir()
    target.write_bytes(SMALL)
    guard.take()  # the planted target is the test's own doing
    _object_path(root, A_TXT).symlink_to(target)
    proc = pull(mlops_bin, repo)
    assert_refused(repo, guard, proc, A_TXT, "data/a.txt", "'storage'", "a symlink, not a regular file")


def test_a_symlinked_shard_folder_is_refused(
    pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any, tmp_path: Path
) -> None:
    root = _local(pushed)
    shard = root / A_TXT[:2]
    moved = tmp_path / "moved-shard"
    shard.rename(moved)  # the right bytes, one folder away
    guard.take()
    shard.symlink_to(moved, target_is_directory=True)
    proc = pull(mlops_bin, repo)
    assert_refused(repo, guard, proc, A_TXT, "'storage'", f"its folder {A_TXT[:2]} is a symlink")


# --- listings -------------------------------------------------------------------------------------
def test_listing_keys_that_are_not_hashes_are_skipped(pushed: HostileRemote, repo: Repo, guard: Guard) -> None:
    remote = get_remote(find_repo(repo.root))
    real = set(remote.iter_digests())
    assert A_TXT in real and MODEL in real
    for key in (
        f"{A_TXT[:2]}/{A_TXT[2:].upper()}",  # an upper-case twin of a real name
        f"{A_TXT[:2]}/{A_TXT[2:12]}",  # too short
        f"{A_TXT[:2]}/nested/{A_TXT[2:]}",
        f"zz/{A_TXT[2:]}",  # not hex
        f"{A_TXT[:2]}/{A_TXT[2:]}.tmp",
    ):
        pushed.put_key(key, b"planted")
    if pushed.kind == "s3":
        pushed.put_key(f"../{A_TXT[:2]}/{A_TXT[2:]}", b"planted")  # a key S3 keeps literally
    assert set(remote.iter_digests()) == real
    upper = xxh(b"never pushed")
    pushed.put_key(f"{upper[:2]}/{upper[2:].upper()}", b"never pushed")
    many = [xxh(b"%d" % i) for i in range(150)] + [upper]  # enough for S3's one-listing path
    assert upper in remote.missing(many)
    assert upper in remote.missing([upper])
    guard.check()


def test_ref_names_that_are_not_valid_are_skipped(
    pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any
) -> None:
    bundle = b'{"format":1,"run":{"id":"x"},"files":{}}'
    planted = ["refs/runs/-..-x.json", "refs/runs/a b.json"]
    if pushed.kind == "s3":  # keys S3 keeps literally, which a folder cannot hold
        planted += ["refs/runs/../../x.json", "refs/runs/../../../escape.json", "refs/runs//x.json"]
    else:  # a name moto's server cannot take
        planted += ["refs/runs/x.json\n"]
    for key in planted:
        pushed.put_key(key, bundle)
    remote = get_remote(find_repo(repo.root))
    assert remote.list_refs("runs/") == []
    assert remote.list_refs() == []
    proc = mlops_bin("pull", "--runs", "model.bin", cwd=repo.root, code=None)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    runs = repo.root / ".mlops" / "runs"
    assert not runs.exists() or [p.name for p in runs.iterdir() if not p.name.startswith(".")] == []
    guard.check()


def test_an_oversized_ref_is_refused(pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any) -> None:
    if pushed.kind == "local":
        assert pushed.root is not None
        path = pushed.root / "refs" / "runs" / "big.json"
        path.parent.mkdir(parents=True)
        with open(path, "wb") as handle:
            handle.truncate(MAX_REF_SIZE + 1)  # sparse: no 16 MiB written
    else:
        pushed.put_key("refs/runs/big.json", bytes(MAX_REF_SIZE + 1))
    proc = mlops_bin("pull", "--runs", "model.bin", cwd=repo.root, code=None)
    assert proc.returncode == 0, proc.stderr  # one hostile ref is skipped, not the whole pull stopped
    one_skipped_ref_line(proc.stderr, "'storage'", "ref runs/big.json is larger than 16 MiB")
    assert not (repo.root / ".mlops" / "runs" / "big").exists()
    guard.check()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_ref_that_is_not_a_regular_file_is_refused(
    pushed: HostileRemote, repo: Repo, guard: Guard, mlops_bin: Any, tmp_path: Path, kind: str
) -> None:
    root = _local(pushed)
    path = root / "refs" / "runs" / "r1.json"
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(tmp_path / "victim.txt")  # the guard's file beside the repository
    proc = mlops_bin("pull", "--runs", "model.bin", cwd=repo.root, code=None, timeout=25)
    assert proc.returncode == 0, proc.stderr  # one hostile ref is skipped, not the whole pull stopped
    what = "a FIFO" if kind == "fifo" else "a symlink"
    one_skipped_ref_line(proc.stderr, "'storage'", "ref runs/r1.json is refused", what)
    assert not (repo.root / ".mlops" / "runs" / "r1").exists()
    guard.check()


# --- S3 servers that stall, dribble, or never stop -------------------------------------------------
class RogueServer:
    """An HTTP server on 127.0.0.1 that answers every request with ``behave(conn)``; counts what it sent."""

    def __init__(self, behave: Callable[[socket.socket, RogueServer], None]) -> None:
        self.behave = behave
        self.sent = 0
        self.requests: list[bytes] = []
        self.body_started = threading.Event()
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    request += chunk
                self.requests.append(request.split(b"\r\n", 1)[0])
                self.behave(conn, self)
            except OSError:
                return  # the client hung up: what the bound is for

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _silent(conn: socket.socket, server: RogueServer) -> None:
    server.stop.wait(60)  # accepts the GET, then says nothing


def _dribble(conn: socket.socket, server: RogueServer) -> None:
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\nContent-Type: application/octet-stream\r\n\r\n")
    while not server.stop.is_set():  # a byte every 0.2 s: never silent long enough for a read timeout
        server.send(conn, b"x")
        server.body_started.set()
        server.stop.wait(0.2)


def _endless(conn: socket.socket, server: RogueServer) -> None:
    server.send(
        conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    chunk = bytes(64 * 1024)
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    while not server.stop.is_set():  # a body with no length that never ends
        server.send(conn, frame)


@pytest.fixture
def rogue(request: pytest.FixtureRequest, repo: Repo, guard: Guard, mlops_bin: Any, aws_env: None) -> Iterator[Any]:
    """``model.bin`` (3,000,000 bytes) and ``data`` added locally, their objects gone, the default
    remote an S3 endpoint served by a RogueServer acting as ``request.param`` says."""
    behave = {"silent": _silent, "dribble": _dribble, "endless": _endless}[request.param]
    server = RogueServer(behave)
    files = {"model.bin": b"m" * 3_000_000}
    for rel, data in files.items():
        (repo.root / rel).write_bytes(data)
    mlops_bin("add", "model.bin", cwd=repo.root)
    (repo.root / "model.bin").unlink()
    shutil.rmtree(repo.root / ".mlops" / "cache")
    mlops_bin("remote", "add", "rogue", "s3://bucket/project", "--default", cwd=repo.root)
    mlops_bin("remote", "modify", "rogue", "endpoint_url", server.url, cwd=repo.root)
    mlops_bin("remote", "modify", "rogue", "timeout", "1", cwd=repo.root)
    yield server
    server.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rogue", ["silent"], indirect=True)
def test_a_silent_server_ends_the_pull_within_its_timeout(rogue: RogueServer, repo: Repo, mlops_bin: Any) -> None:
    proc = pull(mlops_bin, repo, timeout=50)
    assert proc.returncode == 3, proc.stderr
    one_error_line(proc.stderr, "'rogue'", "did not answer within 1 s")
    assert rogue.requests and rogue.requests[0].startswith(b"GET /bucket/project/")
    assert not (repo.root / "model.bin").exists() and cache_files(repo) == (set(), [])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rogue", ["dribble"], indirect=True)
def test_a_dribbling_server_ends_the_pull_within_its_timeout(rogue: RogueServer, repo: Repo, mlops_bin: Any) -> None:
    """A byte every 0.2 s keeps a socket's read timeout quiet forever (3 MB would take a week):
    the deadline on each read of the body ends it."""
    proc = pull(mlops_bin, repo, timeout=50)
    assert proc.returncode == 3, proc.stderr
    one_error_line(proc.stderr, "'rogue'", "sent less than", "in 1 s")
    assert rogue.sent < 10_000  # far from the 3,000,000 bytes announced: stopped, not waited out
    assert not (repo.root / "model.bin").exists() and cache_files(repo) == (set(), [])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rogue", ["endless"], indirect=True)
def test_an_endless_body_is_cut_at_the_recorded_size(rogue: RogueServer, repo: Repo, mlops_bin: Any) -> None:
    """No Content-Length to refuse up front: the read itself stops one byte past the size."""
    model = _pointer_hash(repo, "model.bin.mlops")
    proc = pull(mlops_bin, repo, timeout=50)
    assert proc.returncode == 3, proc.stderr
    one_error_line(proc.stderr, model, "model.bin", "'rogue'", "larger than the 3000000 bytes expected")
    rogue.close()
    rogue.thread.join(5)
    # what the server pushed into the socket before the client hung up: the size read plus
    # the kernel's buffers, nowhere near endless
    assert rogue.sent < 3_000_000 + 64 * MIB
    assert not (repo.root / "model.bin").exists() and cache_files(repo) == (set(), [])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rogue", ["dribble"], indirect=True)
def test_ctrl_c_during_a_download_leaves_nothing(rogue: RogueServer, repo: Repo, mlops_bin: Any) -> None:
    """Interrupted mid-object (its temp file open and half written): exit 130, no temp, no object."""
    mlops_bin("remote", "modify", "rogue", "timeout", "10", cwd=repo.root)  # the interrupt comes first
    proc = subprocess.Popen(
        [MLOPS_BIN, "pull"], cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert rogue.body_started.wait(30), "the download never started"
        tmp = repo.root / ".mlops" / "cache" / ".tmp"
        for _ in range(300):  # until the temp file being written exists (a condition, not a time)
            if tmp.exists() and any(p.is_file() for p in tmp.rglob("*")):
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("no temp file appeared while the body was arriving")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert cache_files(repo) == (set(), [])
    assert not (repo.root / "model.bin").exists()
