"""A remote in a Google Cloud Storage bucket (gcsfs): ``gs://<bucket>/<prefix>``, laid out like the cache.

Atomic publish: an object under ``SMALL_OBJECT`` goes in one upload request; a larger one as a
resumable upload whose chunks stay invisible until the last one finalises it, sent only once
the whole stream hashed right (otherwise the upload session is cancelled). A GCS object never
shows a part. ``create_ref`` is the same upload with ``ifGenerationMatch=0``: GCS answers 412
when the object exists, so of two racing creators exactly one wins.

Credentials, in the ecosystem's usual places: the remote's ``token`` (a service-account JSON
file, kept in .mlops/config.local.yaml or given by path), else Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's login, the metadata server). ``endpoint_url`` (or
``STORAGE_EMULATOR_HOST``) points at an emulator or a GCS-compatible store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import MlopsError, RemoteError
from .base import error_chain, one_line
from .fsspec_remote import CONNECT_TIMEOUT, FsspecRemote, NotFound
from .settings import text_setting

ATTEMPTS = 2  # gcsfs retries a request 6 times with back-off (~30 s for a closed port): here, once


def _fail_fast(base: type) -> type:
    """``base`` whose requests are tried ``ATTEMPTS`` times instead of gcsfs' six (a fixed class setting)."""
    from gcsfs.retry import retry_request

    return type(
        "FailFastGCSFileSystem", (base,), {"_request": retry_request(retries=ATTEMPTS)(base._request.__wrapped__)}
    )


CREDENTIALS_HINT = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run 'gcloud auth application-default login', "
    "or set the remote's token in .mlops/config.local.yaml"
)


class GCSRemote(FsspecRemote):
    scheme = "gs"
    extra = "gcs"

    def __init__(self, name: str, url: str, settings: dict[str, Any]) -> None:
        self.bucket, root = self.bucket_root(name, url, "bucket")
        super().__init__(name, url, settings, root)
        self.endpoint_url = text_setting(name, settings, "endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST")
        self.project = text_setting(name, settings, "project")
        self.token = text_setting(name, settings, "token")
        self._bucket_seen = False

    @property
    def _endpoint(self) -> str:
        return self.endpoint_url or "storage.googleapis.com"

    def _make_filesystem(self) -> Any:
        aiohttp = self.library("aiohttp")
        # the plain client: gcsfs' default one first asks each bucket over gRPC whether it is
        # zonal, which an emulator or a firewall answers only with a minute-long time-out
        GCSFileSystem = self.library("gcsfs.core").GCSFileSystem  # noqa: N806 - a class
        # gcsfs logs each failed request's traceback; the error reaches the user as one line instead
        logging.getLogger("gcsfs").addHandler(logging.NullHandler())
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=self.timeout)
        kwargs: dict[str, Any] = {
            "skip_instance_cache": True,
            "use_listings_cache": False,
            "session_kwargs": {"timeout": timeout},
        }
        if self.project:
            kwargs["project"] = self.project
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
            kwargs.setdefault("token", "anon")  # an emulator takes no credentials
        if self.token:
            kwargs["token"] = self.token
        return _fail_fast(GCSFileSystem)(**kwargs)

    def _check_root(self) -> None:
        if self._bucket_seen:
            return
        try:
            self._call(self.fs.info, self.bucket)
        except NotFound:
            raise self.no_root("bucket", self.bucket, self._endpoint) from None
        self._bucket_seen = True

    def _publish(self, key: str, chunks: Iterator[bytes], check: Callable[[], None], small: bytes | None) -> None:
        fs = self.fs
        if small is not None:
            fs.pipe_file(key, small)  # one request: all or nothing
            return
        handle = fs.open(key, "wb")
        try:
            for chunk in chunks:
                handle.write(chunk)
            check()
            handle.close()  # sends the last chunk, which finalises the object: only now is it visible
        except BaseException:
            if not handle.closed:
                handle.discard()  # cancels the resumable upload: nothing becomes visible
            raise

    def _create(self, key: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(key, data, mode="create")  # ifGenerationMatch=0
        except FileExistsError:  # 412: the object exists
            return False
        return True

    def _translate(self, exc: BaseException) -> MlopsError | None:
        import aiohttp

        chain = list(error_chain(exc))
        name = self.name
        for error in chain:
            module = type(error).__module__
            if module.startswith("google.auth"):
                return RemoteError(
                    f"remote '{name}' has no usable Google credentials: {one_line(str(error))}", hint=CREDENTIALS_HINT
                )
            code = getattr(error, "code", None)
            if type(error).__name__ == "HttpError" and code in (401, 403):
                return RemoteError(
                    f"remote '{name}' refused the credentials ({code}) for {self.url} at {self._endpoint}",
                    hint=CREDENTIALS_HINT + "; the account needs storage.objects.get/create/list on the bucket",
                )
            if isinstance(error, OSError) and str(error).startswith("Forbidden"):
                return RemoteError(
                    f"remote '{name}' refused the credentials (403) for {self.url} at {self._endpoint}",
                    hint=CREDENTIALS_HINT + "; the account needs storage.objects.get/create/list on the bucket",
                )
            if isinstance(error, aiohttp.ClientConnectorError | ConnectionRefusedError):
                return self.unreachable(self._endpoint, one_line(str(error)))
            if type(error).__name__ == "HttpError":
                return RemoteError(f"remote '{name}' answered with an error: {code}: {one_line(str(error))}")
        return None
