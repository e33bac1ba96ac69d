"""S3Remote against a real S3 endpoint (moto's server on 127.0.0.1): no mocks."""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import ConfigError, CorruptObjectError, MissingObjectError, RemoteError
from mlops.remotes.base import open_remote
from mlops.remotes.s3 import S3Remote
from mlops.store.hashing import hash_bytes
from mlops.store.objects import ObjectStore

PREFIX = "team/cache"
S3Bucket = Any  # the s3_bucket fixture's value (tests/remotes/conftest.py): .name, .endpoint_url, .client, .keys()


def make_remote(bucket: S3Bucket, prefix: str = PREFIX, **settings: object) -> S3Remote:
    url = f"s3://{bucket.name}/{prefix}" if prefix else f"s3://{bucket.name}"
    return S3Remote("origin", url, {"url": url, "endpoint_url": bucket.endpoint_url, **settings})


def fill_store(root: Path, contents: list[bytes]) -> tuple[ObjectStore, list[str]]:
    store = ObjectStore(root)
    with store.batch() as batch:
        digests = [batch.add_bytes(data) for data in contents]
    return store, digests


def key(digest: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/{digest[:2]}/{digest[2:]}"


def corrupt(store: ObjectStore, digest: str, data: bytes) -> None:
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_round_trip(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    contents = [b"", b"hello", os.urandom(300_000)]
    store, digests = fill_store(tmp_path / "a", contents)
    remote = make_remote(s3_bucket)

    assert remote.missing(digests) == set(digests)  # the prefix does not exist yet
    assert remote.missing([]) == set()
    sizes = [remote.upload(d, store.path(d)) for d in digests]
    remote.finish()

    assert sizes == [len(c) for c in contents]
    assert remote.missing(digests) == set()
    assert s3_bucket.keys() == {key(d) for d in digests}  # the cache's own layout
    assert set(remote.iter_digests()) == set(digests)

    other = ObjectStore(tmp_path / "b")
    with other.batch() as batch:
        got = [remote.download(d, batch) for d in digests]
    assert got == sizes
    assert [other.read_bytes(d) for d in digests] == contents


def test_bucket_root_without_prefix(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store, [digest] = fill_store(tmp_path / "a", [b"at the root"])
    remote = make_remote(s3_bucket, prefix="")
    remote.upload(digest, store.path(digest))
    assert s3_bucket.keys() == {f"{digest[:2]}/{digest[2:]}"}
    assert list(remote.iter_digests()) == [digest]
    assert remote.missing([digest]) == set()


def test_many_threads_share_one_remote(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    contents = [f"object {i}".encode() * (i + 1) for i in range(48)]
    store, digests = fill_store(tmp_path / "a", contents)
    remote = make_remote(s3_bucket)
    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(lambda d: remote.upload(d, store.path(d)), digests)) == sum(map(len, contents))
        assert remote.missing(digests) == set()
        other = ObjectStore(tmp_path / "b")
        with other.batch() as batch:
            list(pool.map(lambda d: remote.download(d, batch), digests))
    assert sorted(other.iter_digests()) == sorted(digests)


def test_missing_with_many_digests_lists_once(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    contents = [f"item {i}".encode() for i in range(150)]
    store, digests = fill_store(tmp_path / "a", contents)
    remote = make_remote(s3_bucket)
    assert len(digests) >= remote.list_threshold

    assert remote.missing(digests) == set(digests)  # nothing under the prefix yet
    for digest in digests[:60]:
        remote.upload(digest, store.path(digest))
    # stray keys under the prefix are not objects
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/README", Body=b"x")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/ab/not-a-hash", Body=b"x")
    # nor are objects of a sibling prefix that merely starts alike
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key(digests[100], PREFIX + "-old"), Body=b"x")

    assert remote.missing(digests) == set(digests[60:])  # listing route
    assert remote.missing(digests[50:70]) == set(digests[60:70])  # HEAD route
    assert set(remote.iter_digests()) == set(digests[:60])


def test_listing_pages_through_many_pages(s3_bucket: S3Bucket) -> None:
    digests = sorted(hash_bytes(str(i).encode()) for i in range(130))
    client = s3_bucket.client
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda d: client.put_object(Bucket=s3_bucket.name, Key=key(d), Body=b""), digests))
    remote = make_remote(s3_bucket)
    remote.list_page_size = 25  # six pages instead of putting thousands of keys
    assert sorted(remote.iter_digests()) == digests
    extra = [hash_bytes(b"not there %d" % i) for i in range(5)]
    assert remote.missing(digests + extra) == set(extra)


def test_refs_are_listed_across_pages_and_a_listing_stopped_early_is_closed(s3_bucket: S3Bucket) -> None:
    remote = make_remote(s3_bucket)
    remote.list_page_size = 3  # botocore's paginator asks for 3 keys a page: 5 pages
    names = [f"runs/r{i:02d}.json" for i in range(13)]
    for name in names:
        remote.put_ref(name, b"{}")
    # a key mlops never writes, between the pages' keys: skipped, never used
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"{PREFIX}/refs/runs/r05 bad", Body=b"x")
    assert remote.list_refs("runs/") == names
    assert remote.list_refs("runs/r1") == names[10:]
    pages = remote._pages(f"{PREFIX}/refs/")
    first = next(pages)
    assert len(first["Contents"]) == 3 and first["IsTruncated"]
    pages.close()  # the paginator's generator on the IO loop is closed with it
    assert remote.list_refs("runs/") == names


def test_corrupt_local_object_is_not_uploaded(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store, [digest] = fill_store(tmp_path / "a", [b"the real bytes"])
    corrupt(store, digest, b"bit rot")
    remote = make_remote(s3_bucket)
    with pytest.raises(CorruptObjectError, match=f"local object {digest} is corrupt"):
        remote.upload(digest, store.path(digest))
    remote.abort()
    assert s3_bucket.keys() == set()
    assert remote.missing([digest]) == {digest}


def test_object_missing_locally_is_reported(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    remote = make_remote(s3_bucket)
    digest = hash_bytes(b"never stored")
    with pytest.raises(MissingObjectError, match=digest):
        remote.upload(digest, ObjectStore(tmp_path).path(digest))


def test_large_object_goes_multipart_and_is_verified(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    data = os.urandom(11 << 20)  # three parts of 5 MiB (S3's minimum part size)
    store, [digest] = fill_store(tmp_path / "a", [data])
    remote = make_remote(s3_bucket)
    remote.multipart_threshold = 6 << 20
    remote.part_size = 5 << 20

    assert remote.upload(digest, store.path(digest)) == len(data)
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key=key(digest))
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # really a multipart upload
    other = ObjectStore(tmp_path / "b")
    with other.batch() as batch:
        assert remote.download(digest, batch) == len(data)
    assert other.read_bytes(digest) == data

    # a large object whose last part is rotten: parts were sent, but nothing becomes visible
    s3_bucket.client.delete_object(Bucket=s3_bucket.name, Key=key(digest))
    corrupt(store, digest, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CorruptObjectError, match="corrupt; not pushed"):
        remote.upload(digest, store.path(digest))
    assert s3_bucket.keys() == set()
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []


def test_download_of_absent_object(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    remote = make_remote(s3_bucket)
    digest = hash_bytes(b"nobody pushed this")
    store = ObjectStore(tmp_path)
    with store.batch() as batch, pytest.raises(MissingObjectError, match=f"object {digest} is not on remote 'origin'"):
        remote.download(digest, batch)
    assert list(store.iter_digests()) == []


def test_corrupt_remote_object_is_not_taken(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    digest = hash_bytes(b"what was pushed")
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=key(digest), Body=b"what is there now")
    remote = make_remote(s3_bucket)
    store = ObjectStore(tmp_path)
    with store.batch() as batch:
        with pytest.raises(CorruptObjectError, match=f"object {digest} on remote 'origin' is corrupt"):
            remote.download(digest, batch)
    assert list(store.iter_digests()) == []
    assert [p for p in store.tmp.rglob("*") if p.is_file()] == []  # no temp file left (per-thread folders may stay)


def test_unreachable_endpoint_fails_fast(aws_env: None, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    remote = S3Remote("down", "s3://bucket/prefix", {"endpoint_url": endpoint})
    store, [digest] = fill_store(tmp_path, [b"data"])
    started = time.monotonic()
    for call in (
        lambda: remote.missing([digest]),
        lambda: remote.missing([hash_bytes(b"%d" % i) for i in range(200)]),
        lambda: remote.upload(digest, store.path(digest)),
        lambda: remote.download(digest, ObjectStore(tmp_path / "b").batch().__enter__()),
    ):
        with pytest.raises(RemoteError) as caught:
            call()
        assert str(caught.value) == f"remote 'down' is unreachable: could not connect to {endpoint}"
        assert caught.value.hint
    assert time.monotonic() - started < 15


def test_silent_server_times_out(aws_env: None) -> None:
    with socket.socket() as sock:  # accepts connections (the kernel does), never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        remote = S3Remote("mute", "s3://bucket/prefix", {"endpoint_url": endpoint, "timeout": 0.5})
        started = time.monotonic()
        with pytest.raises(RemoteError, match=rf"^remote 'mute' did not answer within 0.5 s \({endpoint}\)$"):
            remote.missing([hash_bytes(b"x")])
        assert time.monotonic() - started < 10


def test_refused_credentials(s3_auth_server: str, aws_env: None, tmp_path: Path) -> None:
    remote = S3Remote("secure", "s3://some-bucket/data", {"endpoint_url": s3_auth_server})
    store, [digest] = fill_store(tmp_path, [b"data"])
    calls = {
        "missing (HEAD)": lambda: remote.missing([digest]),
        "missing (list)": lambda: remote.missing([hash_bytes(b"%d" % i) for i in range(200)]),
        "upload": lambda: remote.upload(digest, store.path(digest)),
        "download": lambda: remote.download(digest, ObjectStore(tmp_path / "b").batch().__enter__()),
    }
    for label, call in calls.items():
        with pytest.raises(RemoteError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith("remote 'secure' refused the credentials ("), (label, message)
        assert "s3://some-bucket/data" in message and "\n" not in message
        assert "config.local.yaml" in (caught.value.hint or "")


def test_credentials_from_settings_win_over_the_environment(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store, [digest] = fill_store(tmp_path, [b"data"])
    with pytest.raises(RemoteError, match="remote 'origin' has no credentials"):
        make_remote(s3_bucket).missing([digest])
    remote = make_remote(s3_bucket, access_key_id="from-config", secret_access_key="secret", region="us-east-1")
    remote.upload(digest, store.path(digest))
    assert remote.missing([digest]) == set()


def test_missing_bucket_is_named(s3_server: str, aws_env: None, tmp_path: Path) -> None:
    remote = S3Remote("origin", "s3://no-such-bucket-here/data", {"endpoint_url": s3_server})
    store, [digest] = fill_store(tmp_path, [b"data"])
    expected = f"remote 'origin': bucket 'no-such-bucket-here' does not exist at {s3_server}"
    for call in (
        lambda: remote.missing([digest]),
        lambda: remote.missing([hash_bytes(b"%d" % i) for i in range(200)]),
        lambda: list(remote.iter_digests()),
        lambda: remote.upload(digest, store.path(digest)),
        lambda: remote.download(digest, ObjectStore(tmp_path / "b").batch().__enter__()),
    ):
        with pytest.raises(RemoteError) as caught:
            call()
        assert not isinstance(caught.value, MissingObjectError)
        assert str(caught.value) == expected


def test_open_remote_builds_an_s3_remote(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    remote = open_remote(
        "s", {"url": f"s3://{s3_bucket.name}/some/prefix/", "endpoint_url": s3_bucket.endpoint_url}, root=tmp_path
    )
    assert isinstance(remote, S3Remote)
    assert (remote.name, remote.bucket, remote.prefix) == ("s", s3_bucket.name, "some/prefix")
    assert remote.missing([hash_bytes(b"x")]) == {hash_bytes(b"x")}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "s3://"}, "no bucket"),
        ({"url": "s3://b/p", "access_key_id": "AKIA"}, "has access_key_id but no secret_access_key"),
        ({"url": "s3://b/p", "jobs": "many"}, "'jobs' must be a whole number above 0"),
        ({"url": "s3://b/p", "jobs": 0}, "'jobs' must be a whole number above 0"),
        ({"url": "s3://b/p", "timeout": -1}, "'timeout' must be a number above 0"),
        ({"url": "s3://b/p", "endpoint_url": 5}, "'endpoint_url' must be a string"),
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        open_remote("s", settings, root=tmp_path)
