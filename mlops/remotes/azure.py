"""A remote in an Azure Blob Storage container (adlfs): ``azure://<container>/<prefix>``, laid out like the cache.

Atomic publish: an object under ``SMALL_OBJECT`` goes in one Put Blob; a larger one as staged
blocks that stay invisible until Put Block List commits them, which happens only once the whole
stream hashed right (otherwise the blocks are never committed, and Azure drops them). A blob
never shows a part. ``create_ref`` is the Put Blob with ``If-None-Match: *``: Azure answers 409
BlobAlreadyExists when the blob exists, so of two racing creators exactly one wins.

Credentials, in the ecosystem's usual places: the remote's ``connection_string``,
``account_key`` or ``sas_token`` (secrets: .mlops/config.local.yaml only) with its
``account_name``; else ``AZURE_STORAGE_CONNECTION_STRING`` / ``AZURE_STORAGE_ACCOUNT_NAME`` +
``AZURE_STORAGE_ACCOUNT_KEY`` / ``AZURE_STORAGE_SAS_TOKEN`` in the environment; else Azure's
default credential chain (managed identity, ``az login``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import MlopsError, RemoteError
from .base import error_chain, one_line
from .fsspec_remote import CONNECT_TIMEOUT, FsspecRemote, NotFound
from .settings import text_setting

CREDENTIALS_HINT = (
    "set the remote's connection_string (or account_name with account_key or sas_token) in "
    ".mlops/config.local.yaml, or AZURE_STORAGE_CONNECTION_STRING in the environment, or log in with 'az login'"
)
AZURE_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME")


class AzureRemote(FsspecRemote):
    scheme = "azure"
    extra = "azure"

    def __init__(self, name: str, url: str, settings: dict[str, Any]) -> None:
        self.container, root = self.bucket_root(name, url, "container")
        super().__init__(name, url, settings, root)
        self.account_name = text_setting(name, settings, "account_name")
        self.account_key = text_setting(name, settings, "account_key")
        self.connection_string = text_setting(name, settings, "connection_string")
        self.sas_token = text_setting(name, settings, "sas_token")
        self._container_seen = False

    @property
    def _endpoint(self) -> str:
        import os

        text = self.connection_string or os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or ""
        for part in text.split(";"):
            key, _, value = part.partition("=")
            if key.strip() == "BlobEndpoint" and value:
                return value
        account = self.account_name or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME") or "<account>"
        return f"{account}.blob.core.windows.net"

    def _make_filesystem(self) -> Any:
        adlfs = self.library("adlfs")
        kwargs: dict[str, Any] = {
            "skip_instance_cache": True,
            "use_listings_cache": False,
            "connection_timeout": int(CONNECT_TIMEOUT),
            "read_timeout": int(self.timeout),
            "max_concurrency": self.jobs,
        }
        for key in ("account_name", "account_key", "connection_string", "sas_token"):
            value = getattr(self, key)
            if value:
                kwargs[key] = value
        fs = adlfs.AzureBlobFileSystem(**kwargs)
        if fs.connection_string:
            # adlfs builds its client with the SDK's default retries (3, with back-off: over a minute
            # for a store that is down); this one tries each request twice and gives up on a silent host
            from azure.storage.blob.aio import BlobServiceClient

            fs.service_client = BlobServiceClient.from_connection_string(
                fs.connection_string,
                retry_total=1,
                retry_connect=0,  # a refused connection is not retried: the store is down
                connection_timeout=int(CONNECT_TIMEOUT),
                read_timeout=int(self.timeout),
            )
        return fs

    def _check_root(self) -> None:
        if self._container_seen:
            return
        if not self._call(self.fs.exists, self.container):
            raise self.no_root("container", self.container, self._endpoint)
        self._container_seen = True

    def _publish(self, key: str, chunks: Iterator[bytes], check: Callable[[], None], small: bytes | None) -> None:
        fs = self.fs
        if small is not None:
            fs.pipe_file(key, small)  # one Put Blob: all or nothing
            return
        handle = fs.open(key, "wb")
        try:
            for chunk in chunks:
                handle.write(chunk)
            check()
        except BaseException:
            # the staged blocks are never committed: no blob appears, and Azure drops them
            handle.closed = True
            raise
        handle.close()  # Put Block List: the blob appears whole, now

    def _create(self, key: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(key, data, mode="create")  # If-None-Match: *
        except FileExistsError:
            return False
        return True

    def _translate(self, exc: BaseException) -> MlopsError | None:
        from azure.core import exceptions as azure_errors

        name = self.name
        for error in error_chain(exc):
            if isinstance(error, azure_errors.ClientAuthenticationError):
                return RemoteError(
                    f"remote '{name}' refused the credentials for {self.url} at {self._endpoint}: {_first_line(error)}",
                    hint=CREDENTIALS_HINT,
                )
            if isinstance(error, azure_errors.ResourceNotFoundError):
                if "ContainerNotFound" in str(getattr(error, "error_code", "") or error):
                    return self.no_root("container", self.container, self._endpoint)
                return NotFound(f"remote '{name}': not found in {self.url}")
            if isinstance(error, azure_errors.ServiceRequestError):
                return self.unreachable(self._endpoint, _first_line(error))
            if isinstance(error, azure_errors.ServiceResponseError):
                return self.broke_off(self._endpoint, _first_line(error))
            if isinstance(error, azure_errors.HttpResponseError):
                status = getattr(error, "status_code", None)
                if status == 403:
                    return RemoteError(
                        f"remote '{name}' refused the credentials (403) for {self.url} at {self._endpoint}",
                        hint=CREDENTIALS_HINT,
                    )
                return RemoteError(f"remote '{name}' answered with an error: {status}: {_first_line(error)}")
            if type(error).__name__ in ("CredentialUnavailableError",) or (
                isinstance(error, ValueError) and "credential" in str(error).lower()
            ):
                return RemoteError(f"remote '{name}' has no Azure credentials", hint=CREDENTIALS_HINT)
        return None


def _first_line(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error)
    return one_line(str(message).splitlines()[0] if str(message) else type(error).__name__)
