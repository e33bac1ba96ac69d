"""DVC's objects where DVC keeps them, moved out with each file's md5 checked on the way.

Layouts (dvc-data's ``HashFileDB``): DVC 3 keeps an object whose md5 is ``abcdef...`` at
``files/md5/ab/cdef...`` in its cache and on its remotes; DVC 2 (entries without ``hash: md5``)
at ``ab/cdef...``. A folder is an object too, its md5 ending in ``.dir``: a JSON list of
``{"md5": ..., "relpath": ...}`` sorted by relpath, whose md5 is taken over
``json.dumps(list, sort_keys=True)`` (DVC may store it with size fields as well, so the
listing is checked in that canonical form). DVC 2 hashed text files after turning CRLF into
LF ("md5-dos2unix"), so for its entries that form is accepted too.

A listing's relpaths are received content: each one goes through ``paths.check_relpath``, and
a listing that names an entry twice, or a file and a folder by one name, is refused whole.
Nothing is placed in the workspace until every object of the import has arrived and matched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ...errors import ConfigError, CorruptObjectError, MissingObjectError, RemoteError, UnsafeNameError
from ...paths import Destinations, check_relpath, check_unique
from .project import DvcRemote

MD5 = re.compile(r"^[0-9a-f]{32}$")
CHUNK = 1 << 20
TEXT_PROBE = 8000  # bytes looked at to tell text from binary (a NUL means binary), as DVC 2 did


@dataclass(frozen=True)
class Wanted:
    """One DVC-tracked file or folder to bring in."""

    path: str  # repo-relative destination
    md5: str  # "<32 hex>" or "<32 hex>.dir"
    size: int | None
    nfiles: int | None
    legacy: bool  # a DVC 2 entry: DVC 2's layout first, and md5-dos2unix accepted
    where: str  # file:line of the entry that names it
    kind: str  # "data" (a .dvc file) or "out" (a stage output in dvc.lock)

    @property
    def is_dir(self) -> bool:
        return self.md5.endswith(".dir")


def is_md5(value: Any) -> bool:
    return isinstance(value, str) and bool(MD5.match(value.removesuffix(".dir")))


def object_keys(md5: str, legacy: bool) -> list[str]:
    short = f"{md5[:2]}/{md5[2:]}"
    return [short, f"files/md5/{short}"] if legacy else [f"files/md5/{short}", short]


class Source:
    """A place DVC objects may be: a local cache or remote folder, or an S3 prefix."""

    def describe(self) -> str:
        raise NotImplementedError

    def open(self, key: str) -> BinaryIO | None:
        """The object at ``key`` opened for reading, or None when it is not there."""
        raise NotImplementedError


class LocalSource(Source):
    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label

    def describe(self) -> str:
        return self.label

    def open(self, key: str) -> BinaryIO | None:
        try:
            return open(self.path / key, "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None


class S3Source(Source):
    """A DVC remote in S3 (or an S3-compatible store at ``endpointurl``), read with s3fs."""

    def __init__(self, remote: DvcRemote) -> None:
        bucket_path = remote.url[len("s3://") :].strip("/")
        if not bucket_path:
            raise ConfigError(f"{remote.where}: remote '{remote.name}' names no bucket")
        self.remote = remote
        self.root = bucket_path
        self._fs: Any = None

    def describe(self) -> str:
        return f"DVC remote '{self.remote.name}' ({self.remote.url})"

    def _filesystem(self) -> Any:
        if self._fs is None:
            import s3fs  # lazily: only S3 remotes pay for it

            options = self.remote.options
            kwargs: dict[str, Any] = {
                "skip_instance_cache": True,
                "use_listings_cache": False,
                "endpoint_url": self.remote.endpointurl,
                "config_kwargs": {"connect_timeout": 5, "retries": {"total_max_attempts": 2, "mode": "standard"}},
            }
            if options.get("access_key_id") and options.get("secret_access_key"):
                kwargs["key"] = options["access_key_id"]
                kwargs["secret"] = options["secret_access_key"]
            if options.get("region"):
                kwargs["client_kwargs"] = {"region_name": options["region"]}
            if options.get("profile"):
                kwargs["profile"] = options["profile"]
            self._fs = s3fs.S3FileSystem(**kwargs)
            self._fs.retries = 1
        return self._fs

    def open(self, key: str) -> BinaryIO | None:
        try:
            return self._filesystem().open(f"{self.root}/{key}", "rb")
        except FileNotFoundError:
            return None
        except Exception as exc:  # botocore/aiohttp/s3fs: one line, never a traceback
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RemoteError(
                f"{self.describe()}: could not read {key}: {text}",
                hint="check the remote's url and endpointurl in .dvc/config, and the AWS credentials",
            ) from None


class _Unreadable(Source):
    """A remote kind mlops does not read (https, gs, azure, ssh...): an error only if an object is not in the cache."""

    def __init__(self, remote: DvcRemote) -> None:
        self.remote = remote

    def describe(self) -> str:
        return f"DVC remote '{self.remote.name}' ({self.remote.url})"

    def open(self, key: str) -> BinaryIO | None:
        raise ConfigError(
            f"{self.remote.where}: DVC remote '{self.remote.name}' is {self.remote.url}: mlops reads DVC remotes "
            "in a local folder or S3; nothing was placed",
            hint="fill DVC's cache first ('dvc fetch'), or name another remote with --remote",
        )


def open_sources(repo_root: Path, cache_dir: str, remote: DvcRemote | None) -> list[Source]:
    """Where to look, in order: DVC's local cache, then the remote (if one is configured)."""
    cache = Path(cache_dir) if os.path.isabs(cache_dir) else repo_root / cache_dir
    sources: list[Source] = [LocalSource(cache, f"DVC cache {cache_dir}")]
    if remote is None:
        return sources
    url = remote.url
    if url.startswith("s3://"):
        sources.append(S3Source(remote))
    elif url.startswith("file://") or "://" not in url:
        path = url.removeprefix("file://")
        folder = Path(path) if os.path.isabs(path) else repo_root / remote.base / path
        sources.append(LocalSource(folder, f"DVC remote '{remote.name}' ({url})"))
    else:
        sources.append(_Unreadable(remote))
    return sources


class Fetcher:
    """Brings objects into a staging folder, each checked against its md5 as it arrives."""

    def __init__(self, sources: list[Source], staging: Path) -> None:
        self.sources = sources
        self.staging = staging
        self.missing: list[tuple[Wanted, str]] = []  # (item, the md5 not found)
        self.files = 0
        self.bytes = 0

    def fetch(self, item: Wanted, slot: str) -> Path | None:
        """The item staged under ``slot`` (a file, or a folder of files), or None if an object is missing."""
        target = self.staging / slot
        if not item.is_dir:
            return target if self._fetch_file(item, item.md5, target, item.where) else None
        listing = self._listing(item)
        if listing is None:
            return None
        target.mkdir(parents=True)
        complete = True
        total = 0
        for relpath, md5 in listing:
            dest = target / relpath
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not self._fetch_file(item, md5, dest, f"{relpath} of {item.where}"):
                complete = False
            else:
                total += dest.stat().st_size
        if complete and item.size is not None and total != item.size:
            raise CorruptObjectError(
                f"{item.where}: {item.path} holds {total} bytes, the entry says {item.size}; nothing was placed",
                hint="the DVC cache or remote does not hold what the project recorded",
            )
        return target if complete else None

    def _listing(self, item: Wanted) -> list[tuple[str, str]] | None:
        found = self._read_small(item.md5, item.legacy)
        if found is None:
            self.missing.append((item, item.md5))
            return None
        raw, origin = found
        where = f"the DVC listing {item.md5} ({origin})"
        try:
            entries = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptObjectError(f"{where}: not a JSON list; nothing was placed") from None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("relpath"), str) and is_md5(e.get("md5")) for e in entries
        ):
            raise CorruptObjectError(f"{where}: not a list of {{md5, relpath}} entries; nothing was placed")
        canonical = sorted(({"md5": e["md5"], "relpath": e["relpath"]} for e in entries), key=lambda e: e["relpath"])
        digest = hashlib.md5(json.dumps(canonical, sort_keys=True).encode("utf-8"), usedforsecurity=False).hexdigest()
        if digest != item.md5.removesuffix(".dir") and _md5_bytes(raw) != item.md5.removesuffix(".dir"):
            raise CorruptObjectError(
                f"{where}: its md5 is {digest}, {item.where} says {item.md5}; nothing was placed",
                hint="the DVC cache or remote holds a damaged or altered listing",
            )
        relpaths = [check_relpath(e["relpath"], where=where) for e in canonical]
        check_unique(relpaths, where=where)
        folders = {r.rsplit("/", n)[0] for r in relpaths for n in range(1, r.count("/") + 1)}
        for relpath in relpaths:
            if relpath in folders:
                raise UnsafeNameError(
                    f"refused '{relpath}' in {where}: it names a file and a folder at once",
                    hint="the content came from a DVC cache or remote; check where it came from",
                )
        if item.nfiles is not None and item.nfiles != len(canonical):
            raise CorruptObjectError(
                f"{where}: lists {len(canonical)} files, {item.where} says {item.nfiles}; nothing was placed"
            )
        return [(e["relpath"], e["md5"]) for e in canonical]

    def _read_small(self, md5: str, legacy: bool) -> tuple[bytes, str] | None:
        for source in self.sources:
            for key in object_keys(md5, legacy):
                handle = source.open(key)
                if handle is not None:
                    with handle:
                        return handle.read(), f"{source.describe()}: {key}"
        return None

    def _fetch_file(self, item: Wanted, md5: str, dest: Path, where: str) -> bool:
        for source in self.sources:
            for key in object_keys(md5, item.legacy):
                handle = source.open(key)
                if handle is None:
                    continue
                with handle:
                    raw, dos2unix, size = _copy_hashing(handle, dest)
                if md5 != raw and not (item.legacy and md5 == dos2unix):
                    dest.unlink(missing_ok=True)
                    raise CorruptObjectError(
                        f"{source.describe()}: {key}: its md5 is {raw}, {where} says {md5}; nothing was placed",
                        hint="the DVC cache or remote holds a damaged or altered object",
                        object=md5,
                    )
                self.files += 1
                self.bytes += size
                return True
        self.missing.append((item, md5))
        return False

    def raise_missing(self) -> None:
        if not self.missing:
            return
        item, md5 = self.missing[0]
        more = f" (and {len(self.missing) - 1} more)" if len(self.missing) > 1 else ""
        looked = ", ".join(s.describe() for s in self.sources)
        raise MissingObjectError(
            f"{item.path} ({item.where}, md5 {md5}) is in none of: {looked}{more}; nothing was placed",
            hint="push it from where it was made ('dvc push'), or name the remote that holds it with --remote",
            missing=[f"{i.path} ({m})" for i, m in self.missing],
        )


class _Md5s:
    """The md5 of a stream's bytes and of their CRLF->LF form (binary files: the same), fed chunk by chunk."""

    def __init__(self) -> None:
        self.raw = hashlib.md5(usedforsecurity=False)
        self.lf = hashlib.md5(usedforsecurity=False)
        self.text: bool | None = None
        self.carry = b""
        self.size = 0

    def update(self, chunk: bytes) -> None:
        if self.text is None:
            self.text = b"\x00" not in chunk[:TEXT_PROBE]
        self.raw.update(chunk)
        self.size += len(chunk)
        if self.text:
            chunk = self.carry + chunk
            self.carry = b"\r" if chunk.endswith(b"\r") else b""
            self.lf.update((chunk[:-1] if self.carry else chunk).replace(b"\r\n", b"\n"))

    def digests(self) -> tuple[str, str]:
        if not self.text:
            return self.raw.hexdigest(), self.raw.hexdigest()
        self.lf.update(self.carry)
        self.carry = b""
        return self.raw.hexdigest(), self.lf.hexdigest()


def _copy_hashing(src: BinaryIO, dest: Path) -> tuple[str, str, int]:
    """Copy ``src`` to ``dest``; return the md5 of the bytes, of their CRLF->LF form, and the size."""
    md5s = _Md5s()
    with open(dest, "wb") as out:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            out.write(chunk)
            md5s.update(chunk)
        out.flush()
        os.fsync(out.fileno())
    raw, lf = md5s.digests()
    return raw, lf, md5s.size


def _md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: str | os.PathLike[str], *, legacy: bool = False) -> str:
    """A file's md5 as DVC records it: of the bytes, or for DVC 2 entries (``legacy``) of a text file's LF form."""
    md5s = _Md5s()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            md5s.update(chunk)
    raw, lf = md5s.digests()
    return lf if legacy else raw


def md5_dir(path: Path, *, legacy: bool = False) -> tuple[str, int, int]:
    """The md5 DVC gives a folder (of its .dir listing), its size and file count."""
    entries = []
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        entries.append({"md5": md5_file(file, legacy=legacy), "relpath": file.relative_to(path).as_posix()})
        size += file.stat().st_size
    entries.sort(key=lambda e: e["relpath"])
    return _md5_bytes(json.dumps(entries, sort_keys=True).encode("utf-8")) + ".dir", size, len(entries)


def workspace_matches(path: Path, item: Wanted) -> bool:
    if item.is_dir:
        return path.is_dir() and md5_dir(path, legacy=item.legacy)[0] == item.md5
    return path.is_file() and md5_file(path, legacy=item.legacy) == item.md5


@contextmanager
def staging_folder(tmp: Path) -> Iterator[Path]:
    """A private folder for arriving objects, removed afterwards whatever happens (Ctrl-C included)."""
    tmp.mkdir(parents=True, exist_ok=True)
    folder = tmp / f"dvc-import-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def place(repo_root: Path, staged: Path, rel: str, where: str) -> None:
    """Move a staged file or folder to ``rel`` in the workspace, never through a symlink."""
    dest = Destinations(repo_root).check(rel, where=where)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, dest)
