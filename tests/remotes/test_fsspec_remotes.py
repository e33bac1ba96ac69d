"""The GCS, Azure and SSH remotes against real servers on 127.0.0.1 (gcp-storage-emulator, Azurite, OpenSSH).

The same contract as the S3 remote: objects moved and checked by hash, a corrupt one refused,
refs bounded, ``create_ref`` conditional (racing creators leave exactly one), clear one-line
errors for a store that is down or refuses.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import CorruptObjectError, MissingObjectError, RemoteError
from mlops.remotes.base import Remote, open_remote
from mlops.store.hashing import hash_bytes
from mlops.store.objects import ObjectStore

REF = "runcache/ab/cdef.json"
BACKENDS = ["gcs", "azure", "ssh"]


def make_settings(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A fresh, empty remote of ``kind`` on its server: settings as `remote add` + `remote modify` write them."""
    if kind == "gcs":
        endpoint = request.getfixturevalue("gcs_endpoint")
        bucket = f"mlops-{uuid.uuid4().hex[:12]}"
        from gcsfs.core import GCSFileSystem

        GCSFileSystem(endpoint_url=endpoint, token="anon", skip_instance_cache=True).mkdir(bucket)
        return {"url": f"gs://{bucket}/team", "endpoint_url": endpoint}
    if kind == "azure":
        server = request.getfixturevalue("azure_server")
        container = f"mlops-{uuid.uuid4().hex[:12]}"
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(server.connection_string).create_container(container)
        return {"url": f"azure://{container}/team", "connection_string": server.connection_string}
    server = request.getfixturevalue("ssh_server")
    return {
        "url": server.url(tmp_path / "srv" / "mlops"),
        "key_file": str(server.key_file),
        "known_hosts": str(server.known_hosts),
    }


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return make_settings(request.param, request, tmp_path)


@pytest.fixture
def remote(settings: dict[str, Any], tmp_path: Path) -> Remote:
    return open_remote("origin", settings, root=tmp_path)


def _object(store: ObjectStore, data: bytes) -> str:
    digest = hash_bytes(data)
    with store.batch() as batch:
        path = store.root / "in.tmp"
        path.write_bytes(data)
        batch.add_verified(path, digest)
    return digest


def test_objects_round_trip(remote: Remote, tmp_path: Path) -> None:
    local = ObjectStore(tmp_path / "cache")
    blobs = [os.urandom(100) for _ in range(5)] + [os.urandom(9 << 20)]  # one large: streamed, not one request
    digests = [_object(local, data) for data in blobs]
    assert remote.missing(digests) == set(digests)
    for digest in digests:
        assert remote.upload(digest, local.file(digest)) == os.path.getsize(local.file(digest))
    remote.finish()
    assert remote.missing(digests) == set()
    assert sorted(remote.iter_digests()) == sorted(digests)

    fresh = ObjectStore(tmp_path / "fresh")  # an empty cache
    with fresh.batch() as batch:
        for digest, data in zip(digests, blobs, strict=True):
            assert remote.download(digest, batch, size=len(data)) == len(data)
    for digest, data in zip(digests, blobs, strict=True):
        assert Path(fresh.file(digest)).read_bytes() == data

    absent = hash_bytes(b"never pushed")
    with fresh.batch() as batch, pytest.raises(MissingObjectError):
        remote.download(absent, batch)


def test_corrupt_object_is_refused(remote: Remote, tmp_path: Path) -> None:
    local = ObjectStore(tmp_path / "cache")
    digest = _object(local, b"the real bytes")
    remote.upload(digest, local.file(digest))
    remote.finish()
    remote.fs.pipe_file(remote._key(digest), b"the fake bytes")  # type: ignore[attr-defined]  # same length
    fresh = ObjectStore(tmp_path / "fresh")
    with fresh.batch() as batch, pytest.raises(CorruptObjectError, match="corrupt"):
        remote.download(digest, batch, size=len(b"the real bytes"))
    assert not fresh.exists(digest)
    remote.fs.pipe_file(remote._key(digest), b"longer than the manifest says")  # type: ignore[attr-defined]
    with fresh.batch() as batch, pytest.raises(CorruptObjectError, match="corrupt"):
        remote.download(digest, batch, size=len(b"the real bytes"))
    assert not fresh.exists(digest)


def test_corrupt_local_object_is_not_pushed(remote: Remote, tmp_path: Path) -> None:
    local = ObjectStore(tmp_path / "cache")
    for data in (b"small object", os.urandom(9 << 20)):
        digest = _object(local, data)
        path = Path(local.file(digest))
        path.chmod(0o644)
        path.write_bytes(data[:-1] + b"!")  # rotten on disk
        with pytest.raises(CorruptObjectError, match="not pushed"):
            remote.upload(digest, path)
        assert remote.missing([digest]) == {digest}  # nothing, not even a part, became visible
    assert list(remote.iter_digests()) == []


def test_refs(remote: Remote) -> None:
    assert remote.get_ref(REF) is None
    assert remote.list_refs() == []
    remote.put_ref(REF, b"one")
    remote.put_ref("runs/r1.json", b"{}")
    assert remote.get_ref(REF) == b"one"
    remote.put_ref(REF, b"two")  # replaced whole
    assert remote.get_ref(REF) == b"two"
    assert remote.list_refs("runcache/") == [REF]
    assert remote.list_refs() == [REF, "runs/r1.json"]
    assert list(remote.iter_digests()) == []  # refs are not objects


def test_ref_reads_are_bounded(remote: Remote, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlops.remotes.fsspec_remote as fsspec_remote

    remote.put_ref(REF, b"x" * 2048)
    monkeypatch.setattr(fsspec_remote, "MAX_REF_SIZE", 1024)
    with pytest.raises(RemoteError, match="larger than"):
        remote.get_ref(REF)


def test_create_ref_only_if_absent(remote: Remote) -> None:
    assert remote.create_ref(REF, b"first") is True
    assert remote.create_ref(REF, b"second") is False
    assert remote.get_ref(REF) == b"first"
    assert remote.probe_conditional_create() is True
    assert remote.list_refs(".probe/") == []
    assert remote.list_refs() == [REF]  # no temp file left behind


@pytest.mark.timeout(120)
def test_create_ref_race_leaves_one(settings: dict[str, Any], tmp_path: Path) -> None:
    racers = 8
    remotes = [open_remote(f"r{i}", settings, root=tmp_path) for i in range(racers)]  # a client each: 8 machines
    for remote in remotes:
        remote.get_ref("warm")  # connect first, so that the creates race each other, not the log-ins
    with ThreadPoolExecutor(racers) as pool:
        won = list(pool.map(lambda i: remotes[i].create_ref(REF, f"racer {i}".encode()), range(racers)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert all(remote.get_ref(REF) == f"racer {winner}".encode() for remote in remotes)
    assert remotes[0].list_refs() == [REF]


def _one_line_error(remote: Remote, match: str) -> None:
    with pytest.raises(RemoteError, match=match) as caught:
        remote.missing([hash_bytes(b"x")])
    assert "\n" not in caught.value.message


@pytest.mark.timeout(120)
def test_refusals_are_one_clear_line(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    ssh = make_settings("ssh", request, tmp_path)
    stranger = tmp_path / "stranger"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    _one_line_error(open_remote("box", {**ssh, "key_file": str(stranger)}, root=tmp_path), "refused")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    _one_line_error(open_remote("box", {**ssh, "known_hosts": str(empty)}, root=tmp_path), "host key .* is not known")

    azure = make_settings("azure", request, tmp_path)
    wrong = azure["connection_string"].replace("AccountKey=", "AccountKey=AAAA")
    _one_line_error(
        open_remote("blob", {**azure, "connection_string": wrong}, root=tmp_path), "refused the credentials"
    )
    no_container = {**azure, "url": "azure://no-such-container/x"}
    _one_line_error(open_remote("blob", no_container, root=tmp_path), "container 'no-such-container' does not exist")
    _absent_root_is_not_empty(open_remote("blob", no_container, root=tmp_path), "container 'no-such-container'")

    gcs = make_settings("gcs", request, tmp_path)
    no_bucket = {**gcs, "url": "gs://no-such-bucket/x"}
    _one_line_error(open_remote("gcs", no_bucket, root=tmp_path), "bucket 'no-such-bucket' does not exist")
    _absent_root_is_not_empty(open_remote("gcs", no_bucket, root=tmp_path), "bucket 'no-such-bucket'")

    moved = open_remote("box", ssh, root=tmp_path)  # its folder was never made: as if moved away
    with pytest.raises(RemoteError, match=r"at ssh://.* does not exist \(or is not reachable\)"):
        moved.check_root()
    with pytest.raises(RemoteError, match="does not exist"):
        moved.download(hash_bytes(b"x"), ObjectStore(tmp_path / "cache").batch().__enter__())


def _absent_root_is_not_empty(remote: Remote, what: str) -> None:
    """A missing bucket or container is said by check_root and by a listing of refs, never read as no refs."""
    for call in (remote.check_root, remote.list_refs, lambda: remote.get_ref(REF)):
        with pytest.raises(RemoteError, match=f"{what} does not exist"):
            call()


def test_what_the_store_lists_is_filtered(remote: Remote, tmp_path: Path) -> None:
    """Keys planted by someone else: neither objects nor refs, never turned into names or paths."""
    local = ObjectStore(tmp_path / "cache")
    digest = _object(local, b"real")
    remote.upload(digest, local.file(digest))
    fs, root = remote.fs, remote.root  # type: ignore[attr-defined]
    for junk in ("zz/notahash", f"{digest[:2]}/{digest[2:]}.extra", "ab/cd/ef", "refs/bad!name", "refs/a..b"):
        fs.pipe_file(f"{root}/{junk}", b"junk")
    fs.pipe_file(f"{root}/refs/runs/.tmp-mlops-r1.json.abc", b"half")  # an interrupted writer's temp file
    remote.put_ref("runs/r1.json", b"{}")
    assert list(remote.iter_digests()) == [digest]
    assert remote.list_refs() == ["runs/r1.json"]
