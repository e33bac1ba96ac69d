"""``Remote.create_ref``: create a ref only if absent, on a local folder and on a real S3 server (moto).

Racers are real threads and real processes; a killed writer is a real process killed with SIGKILL
while its write is in flight (local: between the complete temp file and its publication; S3: with
its PUT body half sent through a stalling TCP proxy on 127.0.0.1).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlops.fsio import TMP_PREFIX
from mlops.remotes.base import Remote, open_remote
from mlops.remotes.local import LocalRemote
from mlops.remotes.s3 import S3Remote

REF = "runcache/ab/cdef.json"


def s3_remote(bucket: Any, endpoint: str | None = None) -> S3Remote:
    url = f"s3://{bucket.name}/team"
    return S3Remote("origin", url, {"url": url, "endpoint_url": endpoint or bucket.endpoint_url})


@pytest.fixture(params=["local", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    if request.param == "local":
        return open_remote("origin", {"url": str(tmp_path / "remote")}, root=tmp_path)
    return s3_remote(request.getfixturevalue("s3_bucket"))


def test_create_only_if_absent(remote: Remote) -> None:
    assert remote.get_ref(REF) is None
    assert remote.create_ref(REF, b"first") is True
    assert remote.create_ref(REF, b"second") is False
    assert remote.get_ref(REF) == b"first"  # the loser changed nothing
    assert remote.list_refs("runcache/") == [REF]
    remote.put_ref(REF, b"replaced")  # put_ref still replaces
    assert remote.create_ref(REF, b"third") is False
    assert remote.get_ref(REF) == b"replaced"


def test_probe_conditional_create(remote: Remote) -> None:
    assert remote.probe_conditional_create() is True
    assert remote.list_refs(".probe/") == []  # the probe removed what it wrote


@pytest.mark.timeout(120)
def test_threads_racing_leave_one(remote: Remote) -> None:
    for round_ in range(5):
        name = f"runcache/race/{round_}.json"
        barrier = threading.Barrier(8)

        def create(index: int, name: str = name, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return remote.create_ref(name, f"writer {index}".encode() * 100)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(create, range(8)))
        assert results.count(True) == 1, results
        winner = results.index(True)
        assert remote.get_ref(name) == f"writer {winner}".encode() * 100


RACER = """
import sys
from pathlib import Path
from mlops.remotes.base import open_remote
remote = open_remote("origin", {"url": sys.argv[1]}, root=Path.cwd())
go = Path(sys.argv[3])
while not go.exists():
    pass
print(remote.create_ref(sys.argv[2], ("process " + sys.argv[4]).encode() * 1000))
"""


@pytest.mark.timeout(120)
def test_processes_racing_leave_one_local(tmp_path: Path) -> None:
    url = str(tmp_path / "remote")
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, REF, str(go), str(i)], stdout=subprocess.PIPE, text=True, env=env
        )
        for i in range(4)
    ]
    time.sleep(1.0)  # let them all import and spin on the start line
    go.touch()
    outputs = [p.communicate(timeout=90)[0].strip() for p in racers]
    assert all(p.returncode == 0 for p in racers)
    assert outputs.count("True") == 1 and outputs.count("False") == 3, outputs
    winner = outputs.index("True")
    remote = LocalRemote("origin", url, Path(url))
    assert remote.get_ref(REF) == f"process {winner}".encode() * 1000
    leftovers = [p.name for p in (Path(url) / "refs/runcache/ab").iterdir()]
    assert leftovers == ["cdef.json"]  # every racer removed its temp file


KILLED_LOCAL = """
import os, sys, time
from pathlib import Path
from mlops.remotes.base import open_remote
remote = open_remote("origin", {"url": sys.argv[1]}, root=Path.cwd())
def stall(src, dst):  # killed after the temp file is complete, before it is published
    Path(sys.argv[3]).touch()
    time.sleep(600)
os.link = stall
remote.create_ref(sys.argv[2], b"x" * 100_000)
"""


@pytest.mark.timeout(120)
def test_killed_writer_leaves_no_ref_local(tmp_path: Path) -> None:
    url = str(tmp_path / "remote")
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_LOCAL, url, REF, str(ready)], env=env)
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never got to publish"
            time.sleep(0.05)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    remote = LocalRemote("origin", url, Path(url))
    assert remote.get_ref(REF) is None
    assert remote.list_refs() == []
    left = [p.name for p in (Path(url) / "refs/runcache/ab").iterdir()]
    assert len(left) == 1 and left[0].startswith(TMP_PREFIX)  # only a temp file, which listings skip
    assert remote.create_ref(REF, b"retry") is True  # a retry completes
    assert remote.get_ref(REF) == b"retry"


class StallingProxy:
    """A TCP proxy to ``upstream`` that forwards at most ``limit`` bytes from the client, then holds."""

    def __init__(self, upstream: str, limit: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.limit = limit
        self.forwarded = 0
        self.stalled = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 60)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        room = self.limit - self.forwarded
                        if room <= 0:
                            self.stalled.set()
                            continue  # swallowed: the server never sees the rest of the body
                        upstream.sendall(data[:room])
                        self.forwarded += min(room, len(data))
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            sock.close()


KILLED_S3 = """
import sys
from mlops.remotes.s3 import S3Remote
url = "s3://" + sys.argv[1] + "/team"
remote = S3Remote("origin", url, {"url": url, "endpoint_url": sys.argv[2]})
remote.create_ref(sys.argv[3], b"y" * (4 << 20))
"""


@pytest.mark.timeout(120)
def test_killed_writer_leaves_no_ref_s3(s3_bucket: Any) -> None:
    proxy = StallingProxy(s3_bucket.endpoint_url, limit=256 << 10)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_S3, s3_bucket.name, proxy.url, REF], env=env)
    try:
        assert proxy.stalled.wait(90), "the writer's body never reached the proxy's limit"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        proxy.close()
    remote = s3_remote(s3_bucket)
    assert remote.get_ref(REF) is None
    assert s3_bucket.keys() == set()  # nothing partial under any key
    assert remote.create_ref(REF, b"retry") is True  # a retry completes
    assert remote.get_ref(REF) == b"retry"
    assert s3_bucket.keys() == {"team/refs/" + REF}


def test_a_symlinked_ref_folder_is_refused_for_writes_local(tmp_path: Path) -> None:
    """create_ref and put_ref followed a symlink planted as a ref folder on a folder remote
    (refs/runcache/ab -> elsewhere) and wrote this machine's entry wherever it pointed (reads
    already refused such folders). Refused, nothing written there."""
    from mlops.errors import RemoteError

    url = tmp_path / "remote"
    remote = LocalRemote("origin", str(url), url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (url / "refs" / "runcache").mkdir(parents=True)
    (url / "refs" / "runcache" / "ab").symlink_to(elsewhere)
    for write in (remote.create_ref, remote.put_ref):
        with pytest.raises(RemoteError) as refused:
            write(REF, b"entry")
        assert "symlink" in refused.value.message and refused.value.exit_code == 3
    assert list(elsewhere.iterdir()) == []
    assert remote.create_ref("runcache/cd/ef01.json", b"entry") is True  # a real folder is fine
