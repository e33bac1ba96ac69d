"""A remote in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, ...), laid out like the cache.

Keys: ``s3://<bucket>/<prefix>/<first 2 hex>/<other 30 hex>``, the names of the local cache;
refs (``base.check_ref_name``) at ``s3://<bucket>/<prefix>/refs/<name>``, each written in one
PUT (atomic in S3: a reader sees the old value or the whole new one). ``create_ref`` is the
same PUT with ``If-None-Match: *``: S3 answers 412 PreconditionFailed when the key exists (the
loser), and 409 ConditionalRequestConflict while a racing conditional write is in flight (retried).

Design:
- One ``s3fs.S3FileSystem`` per remote, built on first use with ``skip_instance_cache`` (two
  remotes with different credentials never share a client); s3fs is imported then, without
  aiobotocore's unused httpx backend (``_import_s3fs``): a command that reaches no S3 remote
  (``mlops run`` restoring from the local run cache) loads none of it. Its coroutines run on fsspec's
  IO loop thread; worker threads hand them over with ``fsspec.asyn.sync``, so every method
  here may be called from several threads at once.
- ``missing``: under ``LIST_THRESHOLD`` digests, one HEAD per object, concurrently on the
  loop; from there on, one listing of the prefix (1000 keys a request, botocore's paginator
  following the continuation tokens) diffed against them.
- ``upload`` reads the local object once, hashing it as it goes, and never makes a key
  visible before the hash matched: a small object is read into memory, checked, then sent in
  one PUT; a large one is sent as a multipart upload whose parts stay invisible until
  ``CompleteMultipartUpload``, which is only called once the whole stream hashed right
  (otherwise the upload is aborted). Both are atomic in S3: a reader sees all or nothing.
- ``download`` streams one GET into ``ObjectBatch.add_stream``, which checks the hash and
  the length: an answer whose Content-Length is not the size expected is refused before its
  body is read, and a body (chunked, or lying about its length) is never read past one byte
  more than expected. ``get_ref`` reads at most ``MAX_REF_SIZE`` bytes the same way.
- Fail fast: 5 s to connect, one retry; every botocore/aiohttp/s3fs error becomes one
  ``RemoteError`` line (unreachable, credentials refused, no such bucket, ...) and never
  escapes raw.
- Bounded in time: a server silent for ``timeout`` seconds fails the read (aiohttp's socket
  read timeout); one that dribbles bytes to keep that timer quiet is caught by a deadline of
  ``timeout`` seconds on each read of at most 1 MiB (``CHUNK``) of a body, and of
  ``ATTEMPTS x (connect + timeout)`` on a request's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Collection, Iterator
from typing import Any, BinaryIO

import xxhash

from ..errors import ConfigError, MlopsError, RemoteError
from ..parallel import default_jobs
from ..store.hashing import hash_bytes
from ..store.objects import ObjectBatch
from .base import (
    MAX_REF_SIZE,
    REFS,
    ExactReader,
    Remote,
    check_ref_name,
    digest_of_key,
    error_chain,
    first_in,
    is_ref_name,
    one_line,
)
from .settings import number_setting, split_bucket_url, text_setting

CONNECT_TIMEOUT = 5.0  # seconds to open a connection: an endpoint that is down fails fast
DEFAULT_TIMEOUT = 60.0  # seconds without a byte from the server (settings: timeout)
# botocore's "standard" retries (throttling, 5xx, connection errors, timeouts): 2 attempts in
# all, i.e. one retry after 0-1 s. s3fs's own retry loop is turned off (1 attempt) so that the
# two do not multiply: a closed port fails within ~1 s, a silent host within ~11 s (2 x connect
# timeout), a server that accepts and then hangs within 2 x timeout.
ATTEMPTS = 2
S3FS_ATTEMPTS = 1
LIST_THRESHOLD = 100  # from this many digests on, `missing` lists the prefix instead of HEADs
# Memory per upload thread is at most 8 MiB either way (boto3's own defaults).
MULTIPART_THRESHOLD = 8 << 20  # smaller objects are read whole into memory and sent in one PUT
PART_SIZE = 8 << 20  # multipart part size (S3's minimum is 5 MiB), grown for objects over ~78 GiB
MAX_PARTS = 10_000  # S3's limit on parts per upload
ABORT_TIMEOUT = 10.0  # seconds granted to cleaning up a failed multipart upload
CONFLICT_RETRIES = 5  # 409 ConditionalRequestConflict: another conditional PUT of the key in flight
PRECONDITION_CODES = {"412", "PreconditionFailed"}
CONFLICT_CODES = {"409", "ConditionalRequestConflict"}

NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
CREDENTIAL_CODES = {
    "403",
    "AccessDenied",
    "AccountProblem",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
}
REGION_CODES = {"301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "PermanentRedirect"}
# aiobotocore imports httpx when it is installed (an HTTP backend it offers besides aiohttp, the one
# s3fs and this remote use), and httpx its command line's rich and pygments: a third of the time
# `import s3fs` takes. aiobotocore's one shim module for it is stood in for (``_import_s3fs``).
HTTPX_SHIM = "aiobotocore._httpx"
CREDENTIALS_HINT = (
    "set access_key_id and secret_access_key (or profile) for this remote in .mlops/config.local.yaml, "
    "or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE in the environment"
)


class _NotFound(RemoteError):
    """A key that is not there (404): callers turn it into MissingObjectError or 'missing'."""


class _Refused(RemoteError):
    """The endpoint refused the credentials, or what they may do (403)."""


class S3Remote(Remote):
    list_threshold = LIST_THRESHOLD
    list_page_size = 1000  # keys per listing request (S3's maximum)
    multipart_threshold = MULTIPART_THRESHOLD
    part_size = PART_SIZE

    def __init__(self, name: str, url: str, settings: dict[str, Any]) -> None:
        super().__init__(name, url)
        self.bucket, self.prefix = split_bucket_url(name, url, "bucket")
        self.endpoint_url = text_setting(name, settings, "endpoint_url")
        self.region = text_setting(name, settings, "region")
        self.profile = text_setting(name, settings, "profile")
        self.access_key_id = text_setting(name, settings, "access_key_id")
        self.secret_access_key = text_setting(name, settings, "secret_access_key")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            given, lacking = (
                ("access_key_id", "secret_access_key") if self.access_key_id else ("secret_access_key", "access_key_id")
            )
            raise ConfigError(
                f"remote '{name}' has {given} but no {lacking}",
                hint="set both in .mlops/config.local.yaml, or neither to use the AWS environment",
            )
        self.jobs = int(number_setting(name, settings, "jobs", default_jobs(), integer=True))
        self.timeout = number_setting(name, settings, "timeout", DEFAULT_TIMEOUT)
        self._fs: Any = None
        self._fs_lock = threading.Lock()
        self._bucket_seen = False

    # --- names -------------------------------------------------------------------------
    def _key(self, digest: str) -> str:
        return f"{self.prefix}/{digest[:2]}/{digest[2:]}" if self.prefix else f"{digest[:2]}/{digest[2:]}"

    def _ref_key(self, name: str) -> str:
        return f"{self.prefix}/{REFS}/{name}" if self.prefix else f"{REFS}/{name}"

    @property
    def _endpoint(self) -> str:
        if self.endpoint_url:
            return self.endpoint_url
        return f"s3.{self.region}.amazonaws.com" if self.region else "s3.amazonaws.com"

    @property
    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    # --- the client --------------------------------------------------------------------
    def _filesystem(self) -> Any:
        with self._fs_lock:
            if self._fs is None:
                s3fs = _import_s3fs()  # lazily: only S3 remotes pay for it

                kwargs: dict[str, Any] = {
                    "skip_instance_cache": True,
                    "use_listings_cache": False,
                    "endpoint_url": self.endpoint_url,
                    "key": self.access_key_id,
                    "secret": self.secret_access_key,
                    "client_kwargs": {"region_name": self.region} if self.region else {},
                    "config_kwargs": {
                        "connect_timeout": CONNECT_TIMEOUT,
                        "read_timeout": self.timeout,
                        "retries": {"total_max_attempts": ATTEMPTS, "mode": "standard"},
                        "max_pool_connections": max(10, self.jobs, default_jobs()),
                    },
                }
                if self.profile:
                    kwargs["profile"] = self.profile
                from botocore.config import Config

                if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
                    # Only the checksums S3 requires: many S3-compatible stores reject the
                    # newer default ones, and every object's hash is checked end to end anyway.
                    kwargs["config_kwargs"]["request_checksum_calculation"] = "when_required"
                    kwargs["config_kwargs"]["response_checksum_validation"] = "when_required"
                fs = s3fs.S3FileSystem(**kwargs)
                fs.retries = S3FS_ATTEMPTS
                self._fs = fs
            return self._fs

    def _run(self, func: Callable[..., Any], *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run coroutine function ``func`` on fsspec's IO loop from this thread; errors become MlopsErrors."""
        from fsspec.asyn import sync

        fs = self._filesystem()
        try:
            return sync(fs.loop, func, *args, timeout=timeout, **kwargs)
        except (MlopsError, _Deadline):
            raise
        except Exception as exc:
            translated = self._error(exc)
            if translated is None:
                raise
            raise translated from exc

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return await self._fs._call_s3(method, Bucket=self.bucket, **kwargs)

    # --- Remote ------------------------------------------------------------------------
    def missing(self, digests: Collection[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        if len(wanted) < self.list_threshold:
            ordered = sorted(wanted)
            found = self._run(self._heads, ordered)
            absent = {d for d, there in zip(ordered, found, strict=True) if not there}
            if absent:
                self._check_bucket()  # a HEAD says 404 for a missing bucket too
            return absent
        absent = set(wanted)
        for digest in self.iter_digests():  # one listing; fails clearly if the bucket is missing
            absent.discard(digest)
        return absent

    async def _heads(self, digests: list[str]) -> list[bool]:
        gate = asyncio.Semaphore(self.jobs)

        async def exists(digest: str) -> bool:
            async with gate:
                try:
                    await self._call("head_object", Key=self._key(digest))
                except Exception as exc:
                    if _code(exc)[0] in NOT_FOUND_CODES:
                        return False
                    raise
                return True

        tasks = [asyncio.ensure_future(exists(d)) for d in digests]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # on the first error, stop the rest rather than leak them
                task.cancel()

    def check_root(self) -> None:
        self._check_bucket()

    def _check_bucket(self) -> None:
        """Tell 'no such bucket' from 'no such key' once; a 403 (no ListBucket right) is left be."""
        if self._bucket_seen:
            return
        try:
            self._run(self._call, "head_bucket")
        except _NotFound:
            raise self._no_bucket() from None
        except _Refused:
            pass  # cannot tell (HeadBucket needs s3:ListBucket): the object calls will say
        self._bucket_seen = True

    def upload(self, digest: str, source: str | os.PathLike[str]) -> int:
        key = self._key(digest)
        with self.open_local_object(digest, source) as handle:
            if os.fstat(handle.fileno()).st_size < self.multipart_threshold:
                # Small: read once, hash, and only then one PUT (atomic: all or nothing).
                data = handle.readall()
                if hash_bytes(data) != digest:
                    raise self.corrupt_local(digest)
                self._run(self._call, "put_object", Key=key, Body=data)
                return len(data)
            return self._upload_multipart(digest, key, handle)

    def _upload_multipart(self, digest: str, key: str, handle: BinaryIO) -> int:
        """Large: parts are hashed as they are read and sent, but stay invisible until the
        upload is completed, which happens only when the whole stream matched ``digest``."""
        part_size = max(self.part_size, -(-os.fstat(handle.fileno()).st_size // MAX_PARTS))
        upload_id = self._run(self._call, "create_multipart_upload", Key=key)["UploadId"]
        completed = False
        try:
            hasher = xxhash.xxh3_128()
            parts: list[dict[str, Any]] = []
            size = 0
            while True:
                chunk = _read_full(handle, part_size)
                if not chunk and parts:
                    break
                hasher.update(chunk)
                size += len(chunk)
                number = len(parts) + 1
                answer = self._run(
                    self._call, "upload_part", Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                if len(chunk) < part_size:
                    break
            if hasher.hexdigest() != digest:
                raise self.corrupt_local(digest)
            self._run(
                self._call, "complete_multipart_upload", Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            completed = True
            return size
        finally:
            if not completed:  # best effort: leave no orphan parts (they are never visible anyway)
                with contextlib.suppress(Exception):
                    self._run(self._call, "abort_multipart_upload", Key=key, UploadId=upload_id, timeout=ABORT_TIMEOUT)

    def _get(self, key: str) -> dict[str, Any]:
        """GET ``key``: the answer's headers, with the body still unread (``_NotFound`` if absent)."""
        # bounded whole: retries included, so a server dribbling its headers cannot hold us
        deadline = ATTEMPTS * (CONNECT_TIMEOUT + self.timeout) + 1
        return self._run(self._call, "get_object", Key=key, timeout=deadline)  # type: ignore[no-any-return]

    def download(
        self,
        digest: str,
        batch: ObjectBatch,
        *,
        size: int | None = None,
        max_size: int | None = None,
        last: bool = False,
        label: str | None = None,
    ) -> int:
        try:
            answer = self._get(self._key(digest))
        except _NotFound:
            self._check_bucket()
            raise self.not_here(digest, self._where) from None
        length = answer.get("ContentLength")
        stream = _SyncBody(self, answer["Body"])
        return self.receive(batch, stream, length, digest, size=size, max_size=max_size, last=last, label=label)

    def iter_digests(self) -> Iterator[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self._pages(start):
            for item in page.get("Contents", ()):
                if digest := digest_of_key(item["Key"][len(start) :]):
                    yield digest

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The pages of the listing of ``prefix``, ``list_page_size`` keys each, one request at a time.

        botocore's paginator follows the continuation tokens (and refuses a server that sends the
        same one twice, which a hand-written loop would follow forever); each page is fetched on
        the IO loop through ``_run``, so its errors become one RemoteError line like any call's.
        s3fs's own retry loop is off for every call (``S3FS_ATTEMPTS``): botocore's retries apply
        to each page request as to any other.
        """
        pages = self._run(self._paginate, prefix)
        try:
            while (page := self._run(_next_page, pages)) is not None:
                self._bucket_seen = True
                yield page
        finally:  # a caller that stops early (an error, Ctrl-C) leaves no listing running on the loop
            with contextlib.suppress(Exception):
                self._run(pages.aclose, timeout=ABORT_TIMEOUT)

    async def _paginate(self, prefix: str) -> Any:
        await self._fs.set_session()
        client = await self._fs.get_s3(self.bucket)
        paginator = client.get_paginator("list_objects_v2")
        config = {"PageSize": self.list_page_size}
        return paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig=config).__aiter__()

    # --- refs --------------------------------------------------------------------------
    def put_ref(self, name: str, data: bytes) -> None:
        key = self._ref_key(check_ref_name(name))
        self._run(self._call, "put_object", Key=key, Body=bytes(data))  # one PUT: all or nothing

    def create_ref(self, name: str, data: bytes) -> bool:
        key = self._ref_key(check_ref_name(name))
        body = bytes(data)
        for attempt in range(CONFLICT_RETRIES):
            outcome = self._run(self._create, key, body)
            if outcome != "conflict":
                return bool(outcome)
            time.sleep(0.1 * 2**attempt)  # the racing write settles; then ours is refused or lands
        raise RemoteError(
            f"remote '{self.name}': ref {name} stayed in conflict with another write ({CONFLICT_RETRIES} attempts)",
            hint="try again",
            ref=name,
        )

    async def _create(self, key: str, body: bytes) -> bool | str:
        try:
            await self._call("put_object", Key=key, Body=body, IfNoneMatch="*")
        except Exception as exc:
            code = _code(exc)[0]
            if code in PRECONDITION_CODES:
                return False
            if code in CONFLICT_CODES:
                return "conflict"
            raise
        return True

    def delete_ref(self, name: str) -> None:
        self._run(self._call, "delete_object", Key=self._ref_key(check_ref_name(name)))

    def get_ref(self, name: str) -> bytes | None:
        key = self._ref_key(check_ref_name(name))
        try:
            answer = self._get(key)
        except _NotFound:
            self._check_bucket()  # a missing bucket says 404 too: tell it apart
            return None
        stream = _SyncBody(self, answer["Body"])
        try:
            length = answer.get("ContentLength")
            if isinstance(length, int) and length > MAX_REF_SIZE:
                raise self.ref_too_large(name)
            # one byte more than announced (or than allowed) tells a body longer than it said
            data = stream.read((length if isinstance(length, int) else MAX_REF_SIZE) + 1)
            if len(data) > MAX_REF_SIZE:
                raise self.ref_too_large(name)
            return data
        finally:
            stream.close()

    def list_refs(self, prefix: str = "") -> list[str]:
        start = self._ref_key("")
        query = start + check_ref_name(prefix, prefix=True)
        names: list[str] = []
        for page in self._pages(query):
            for item in page.get("Contents", ()):
                ref = item["Key"][len(start) :]
                if is_ref_name(ref):  # any other key was not written by mlops: skipped, never used
                    names.append(ref)
        return sorted(names)

    # --- errors ------------------------------------------------------------------------
    def _no_bucket(self) -> RemoteError:
        return self.no_root("bucket", self.bucket, self._endpoint)

    def _bad_bucket_name(self) -> ConfigError:
        return ConfigError(
            f"remote '{self.name}': '{self.bucket}' is not a valid bucket name", hint="fix the remote's URL"
        )

    def _error(self, exc: BaseException) -> MlopsError | None:
        """One clear line for what went wrong talking to the remote; None for a bug of ours."""
        import aiohttp
        import botocore.exceptions as bce
        from fsspec.exceptions import FSTimeoutError

        code, message = _code(exc)
        chain = list(error_chain(exc))
        name = self.name
        if code is not None:
            if code in NOT_FOUND_CODES:
                return _NotFound(f"remote '{name}' has no such key in {self._where}")
            if code == "NoSuchBucket":
                return self._no_bucket()
            if code in CREDENTIAL_CODES:
                return _Refused(
                    f"remote '{name}' refused the credentials ({code}) for {self._where} at {self._endpoint}",
                    hint=CREDENTIALS_HINT + "; the key also needs s3:ListBucket, s3:GetObject and s3:PutObject",
                )
            if code == "InvalidBucketName":
                return self._bad_bucket_name()
            if code in REGION_CODES:
                return RemoteError(
                    f"remote '{name}': bucket '{self.bucket}' is in another region than "
                    f"{self.region or 'the default one'}",
                    hint="set the remote's region in .mlops/config.yaml",
                )
            return RemoteError(f"remote '{name}' answered with an error: {code}: {one_line(message)}")

        def first(kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
            return first_in(chain, kinds)

        if first(bce.ProfileNotFound):
            return ConfigError(
                f"remote '{name}': AWS profile '{self.profile}' not found", hint="fix 'profile' or see ~/.aws/config"
            )
        if first((bce.NoCredentialsError, bce.PartialCredentialsError, bce.CredentialRetrievalError)):
            return RemoteError(
                f"remote '{name}' has no credentials: none in its config nor in the AWS environment",
                hint=CREDENTIALS_HINT,
            )
        if first((bce.ReadTimeoutError, bce.ResponseStreamingError, aiohttp.ClientPayloadError)) is None and (
            found := first(
                (bce.ConnectionError, aiohttp.ClientConnectorError, ConnectionRefusedError, ConnectionAbortedError)
            )
        ):  # could not open a connection (refused, no route, connect timeout, TLS); not one lost later
            return self.unreachable(self._endpoint, one_line(str(found)) if isinstance(found, bce.SSLError) else "")
        if first((bce.ReadTimeoutError, TimeoutError, FSTimeoutError)):
            return self.timed_out(self.timeout, self._endpoint)
        if found := first(bce.ParamValidationError):
            if "Invalid bucket name" in str(found):
                return self._bad_bucket_name()
            return ConfigError(f"remote '{name}': {one_line(str(found))}", hint="fix the remote's URL")
        if found := first((bce.ResponseStreamingError, bce.ConnectionClosedError, aiohttp.ClientPayloadError)):
            return self.broke_off(self._endpoint, one_line(str(found)))
        if found := first((bce.BotoCoreError, aiohttp.ClientError, OSError)):
            return RemoteError(
                f"remote '{name}' failed talking to {self._endpoint}: {type(found).__name__}: {one_line(str(found))}",
                hint="try again",
            )
        return None


def _import_s3fs() -> Any:
    """s3fs, loaded without aiobotocore's unused httpx backend.

    aiobotocore resolves httpx through one private shim module, ``aiobotocore._httpx``, which
    imports httpx (and with it anyio, rich, pygments) whenever it is installed, though s3fs only
    uses aiohttp. Before aiobotocore is first imported, a stand-in shim saying "no httpx" is put in
    ``sys.modules`` under that one name: nothing else is hidden, so another thread importing httpx
    meanwhile is not disturbed. Should a future aiobotocore need more of its shim than the stand-in
    gives, the stand-in is dropped and s3fs is imported as it comes."""
    if "aiobotocore" not in sys.modules and HTTPX_SHIM not in sys.modules:
        shim = types.ModuleType(HTTPX_SHIM)
        shim.httpx = None  # type: ignore[attr-defined]
        shim.HTTPX_IS_LEGACY = False  # type: ignore[attr-defined]
        sys.modules[HTTPX_SHIM] = shim
        try:
            import s3fs
        except ImportError:
            for name in [name for name in sys.modules if name == "s3fs" or name.startswith(("s3fs.", "aiobotocore"))]:
                del sys.modules[name]
        else:
            return s3fs
    import s3fs

    return s3fs


async def _next_page(pages: Any) -> dict[str, Any] | None:
    """The paginator's next page, or None after the last."""
    try:
        return await pages.__anext__()  # type: ignore[no-any-return]
    except StopAsyncIteration:
        return None


class _SyncBody(ExactReader):
    """A blocking ``read``/``readinto`` over an aiobotocore streaming body, for ``add_stream``.

    ``read(n)`` returns exactly ``n`` bytes unless the stream ends (``copy_and_hash`` relies on it).
    Each call must be done within the remote's ``timeout``: the socket's own read timeout
    only sees silence, not a server that keeps it quiet with a byte now and then.
    """

    def __init__(self, remote: S3Remote, body: Any) -> None:
        self.remote = remote
        self.body = body

    def readinto(self, buffer: bytearray | memoryview) -> int:
        remote = self.remote
        try:
            return int(remote._run(_fill, self.body, memoryview(buffer).cast("B"), remote.timeout))
        except _Deadline:
            raise RemoteError(
                f"remote '{remote.name}' sent less than {len(buffer)} bytes in {remote.timeout:g} s "
                f"({remote._endpoint}); stopped",
                hint="try again, or raise the remote's timeout in .mlops/config.yaml",
            ) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.remote._run(_close, self.body, timeout=ABORT_TIMEOUT)


class _Deadline(Exception):
    """A read of a body did not complete in time (raised on the IO loop, mapped by _SyncBody)."""


async def _fill(body: Any, view: memoryview, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    count = 0
    while count < len(view):
        try:
            chunk = await asyncio.wait_for(body.read(len(view) - count), max(deadline - loop.time(), 0.0))
        except asyncio.TimeoutError:
            raise _Deadline from None
        if not chunk:
            break
        view[count : count + len(chunk)] = chunk
        count += len(chunk)
    return count


async def _close(body: Any) -> None:
    body.close()


def _read_full(handle: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the file."""
    parts: list[bytes] = []
    left = size
    while left:
        chunk = handle.read(left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _code(exc: BaseException) -> tuple[str | None, str]:
    """The S3 error code and message of the first ClientError in ``exc``'s chain (s3fs wraps them)."""
    from botocore.exceptions import ClientError

    for e in error_chain(exc):
        if isinstance(e, ClientError):
            error = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return str(error.get("Code") or status or "unknown"), str(error.get("Message") or e)
    return None, ""
