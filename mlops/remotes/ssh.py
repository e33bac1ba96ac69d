"""A remote in a folder of an SSH server, over SFTP (sshfs, on asyncssh): ``ssh://[user@]host[:port]/path``.

Atomic publish: an object or ref is written to a temp file beside its final name
(``.tmp-mlops-<random>``, which listings skip) and renamed into place (``posix-rename@openssh.com``:
replaces atomically) only once the whole stream hashed right; a failed write removes the temp
file. ``create_ref`` hard-links the complete temp file to the final name
(``hardlink@openssh.com``), which the server refuses when the name exists: an exclusive
create that never shows a partial file, and of two racing creators exactly one wins.

Credentials, in the ecosystem's usual places: ssh-agent, ``~/.ssh/id_*`` and ``~/.ssh/config``
(asyncssh reads them), or the remote's ``key_file``; a ``password`` only in
.mlops/config.local.yaml. The server's host key must be known: ``~/.ssh/known_hosts`` or the
remote's ``known_hosts`` file (never skipped: an unknown host is refused with one line).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, MlopsError, RemoteError
from ..fsio import TMP_PREFIX
from .base import error_chain, one_line
from .fsspec_remote import CONNECT_TIMEOUT, FsspecRemote
from .settings import text_setting

CREDENTIALS_HINT = (
    "load the key into ssh-agent, or set the remote's key_file ('mlops remote modify NAME key_file PATH'); "
    "check the user in the URL"
)


class SSHRemote(FsspecRemote):
    scheme = "ssh"
    extra = "ssh"

    def __init__(self, name: str, url: str, settings: dict[str, Any]) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"remote '{name}': bad port in {url}", hint="use ssh://USER@HOST:PORT/PATH") from None
        if parts.password:
            raise ConfigError(
                f"remote '{name}': a password in the URL would be written to the committed config",
                hint="drop it from the URL; use ssh-agent or a key, or 'mlops remote modify NAME password PW --local'",
            )
        if not parts.hostname or not parts.path or parts.path == "/":
            raise ConfigError(f"remote '{name}': {url} needs a host and a folder", hint="use ssh://USER@HOST/PATH")
        super().__init__(name, url, settings, unquote(parts.path))
        self.host = parts.hostname
        self.port = port
        self.user = unquote(parts.username) if parts.username else None
        self.key_file = text_setting(name, settings, "key_file")
        self.known_hosts = text_setting(name, settings, "known_hosts")
        self.password = text_setting(name, settings, "password")
        self._root_seen = False  # check_root found the remote's folder

    def check_root(self) -> None:
        """The remote's folder on the server: a push creates it, a read from one that is not there is an outage."""
        if not self._root_seen:
            if not self._call(self.fs.isdir, self.root):
                raise self.absent(self.url)
            self._root_seen = True

    @property
    def _endpoint(self) -> str:
        return f"{self.host}:{self.port or 22}"

    def _make_filesystem(self) -> Any:
        SSHFileSystem = self.library("sshfs").SSHFileSystem  # noqa: N806 - a class
        kwargs: dict[str, Any] = {
            "skip_instance_cache": True,
            "connect_timeout": CONNECT_TIMEOUT,
            "login_timeout": self.timeout,
            "timeout": CONNECT_TIMEOUT + self.timeout,  # the whole connection set-up
            # sshfs turns host-key checking off unless told: () is asyncssh's default, ~/.ssh/known_hosts
            "known_hosts": os.path.expanduser(self.known_hosts) if self.known_hosts else (),
        }
        if self.port:
            kwargs["port"] = self.port
        if self.user:
            kwargs["username"] = self.user
        if self.key_file:
            kwargs["client_keys"] = [os.path.expanduser(self.key_file)]
        if self.password:
            kwargs["password"] = self.password
        return SSHFileSystem(self.host, **kwargs)

    def _open_read(self, key: str) -> Any:
        return _TimedFile(self.fs.open(key, "rb"), self.timeout)

    def _temp_beside(self, key: str) -> str:
        folder, _, base = key.rpartition("/")
        return f"{folder}/{TMP_PREFIX}{base}.{secrets.token_hex(6)}"

    def _write_temp(self, key: str, chunks: Iterator[bytes], check: Callable[[], None], small: bytes | None) -> str:
        fs = self.fs
        fs.makedirs(key.rpartition("/")[0], exist_ok=True)
        temp = self._temp_beside(key)
        try:
            with fs.open(temp, "wb") as handle:
                if small is not None:
                    handle.write(small)
                for chunk in chunks:
                    handle.write(chunk)
            check()
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm_file(temp)
            raise
        return temp

    def _publish(self, key: str, chunks: Iterator[bytes], check: Callable[[], None], small: bytes | None) -> None:
        temp = self._write_temp(key, chunks, check, small)
        try:
            self.fs.mv(temp, key)  # posix-rename: atomic, replacing
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(temp)
            raise

    def _create(self, key: str, data: bytes) -> bool:
        import asyncssh
        from fsspec.asyn import sync

        fs = self.fs
        temp = self._write_temp(key, iter(()), lambda: None, data)

        async def link() -> bool:
            async with fs._pool.get() as channel:
                try:
                    await channel.link(temp, key)  # hardlink@openssh.com: fails when the name exists
                except asyncssh.SFTPOpUnsupported:
                    raise RemoteError(
                        f"remote '{self.name}': the SSH server at {self._endpoint} does not offer hard links "
                        "(hardlink@openssh.com), so a ref cannot be created exclusively",
                        hint="use an OpenSSH server",
                    ) from None
                except asyncssh.SFTPError:
                    with contextlib.suppress(asyncssh.SFTPError):
                        await channel.stat(key)
                        return False  # the name exists: another creator won
                    raise
                return True

        try:
            return bool(sync(fs.loop, link))
        finally:
            with contextlib.suppress(Exception):
                fs.rm_file(temp)

    def _translate(self, exc: BaseException) -> MlopsError | None:
        import socket

        import asyncssh

        name = self.name
        for error in error_chain(exc):
            if isinstance(error, asyncssh.HostKeyNotVerifiable):
                return RemoteError(
                    f"remote '{name}': the host key of {self._endpoint} is not known; not connected",
                    hint="add it to ~/.ssh/known_hosts (ssh-keyscan, after checking it), "
                    "or set the remote's known_hosts file",
                )
            if isinstance(error, asyncssh.PermissionDenied):
                who = f"user '{self.user}'" if self.user else "the login"
                return RemoteError(
                    f"remote '{name}': {self._endpoint} refused {who} (no accepted key or password)",
                    hint=CREDENTIALS_HINT,
                )
            if isinstance(error, asyncssh.DisconnectError):
                return self.unreachable(self._endpoint, one_line(str(error)))
            if isinstance(error, socket.gaierror | ConnectionRefusedError | ConnectionResetError):
                return self.unreachable(self._endpoint, one_line(str(error)) or type(error).__name__)
            if isinstance(error, asyncssh.SFTPPermissionDenied | PermissionError):
                return RemoteError(
                    f"remote '{name}': the server refused access to {self.root} ({one_line(str(error))})",
                    hint="check the folder's owner and rights on the server",
                )
            if isinstance(error, asyncssh.SFTPError):
                return RemoteError(f"remote '{name}': the SFTP server answered: {one_line(str(error))}")
        return None


class _TimedFile:
    """An SFTP file whose every read must complete within ``seconds`` (SFTP has no read timeout of its own:
    a server that stops answering would hold the command forever)."""

    def __init__(self, handle: Any, seconds: float) -> None:
        self.handle = handle
        self.seconds = seconds

    def read(self, size: int) -> bytes:
        return self.handle.read(size, timeout=self.seconds)  # type: ignore[no-any-return]  # fsspec's sync() deadline

    def close(self) -> None:
        self.handle.close()
