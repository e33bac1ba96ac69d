"""A version's artifact and data as local files, their bytes checked against the registry first.

Trust comes before any byte is read: the model file must be what the audit log recorded
(``check_trusted``), and every file is rehashed (xxh3 and SHA-256) before it is handed out or
unpickled. A folder artifact is copied out of the cache into a read-only folder, each name
through ``mlops.paths``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import CorruptObjectError, MissingObjectError, RegistryTampered, UsageError
from ..fsio import atomic_dir, remove_dir
from ..repo.repo import Repo, find_repo
from ..store.tree import walk_tree
from . import flavors, pyfunc
from .read import resolve
from .store import ModelVersion, find_record, shown, trusted_model


def object_path(repo: Repo, digest: str) -> Path:
    return repo.objects.path(digest)


def _hashes(path: Path) -> tuple[str, str]:
    """(xxh3-128, SHA-256) of a file, in one read."""
    import xxhash

    xx, sha = xxhash.xxh3_128(), hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            xx.update(chunk)
            sha.update(chunk)
    return xx.hexdigest(), sha.hexdigest()


def check_file(path: Path, digest: str, sha256: str | None, what: str) -> str:
    """Rehash a file (xxh3 and SHA-256 in one pass); raise on a mismatch. Returns the SHA-256."""
    try:
        got, sha = _hashes(path)
    except FileNotFoundError:
        raise MissingObjectError(
            f"{what}: its artifact {digest} is not in the cache",
            hint="run 'mlops pull' (or 'mlops fetch')",
            object=digest,
        ) from None
    if got != digest or (sha256 is not None and sha != sha256):
        raise CorruptObjectError(
            f"{what}: the artifact's bytes do not match the hash the registry recorded",
            hint="run 'mlops verify', then 'mlops pull' to fetch a good copy",
            object=digest,
        )
    return sha


_OBJECT_NAME = re.compile(r"[0-9a-f]{32}")


def check_trusted(repo: Repo, mv: ModelVersion) -> None:
    """Before a version's artifact is opened: its model file is what the audit log recorded
    (``store.trusted_model``), and ``mv`` names the artifact that file records for the version.
    Otherwise ``RegistryTampered`` (exit 3), and nothing of the artifact has been touched."""
    doc = trusted_model(repo, mv.name)
    record = find_record(doc, mv.version)
    art = record.get("artifact") or {}
    recorded = (art.get("hash"), art.get("kind", "file"), art.get("sha256"))
    if recorded != (mv.artifact, mv.kind, mv.sha256):
        raise RegistryTampered(
            f"{mv.ref()}: the version given names artifact {str(mv.artifact)[:40]}, not the one the registry "
            "recorded; refusing to use it",
            hint="resolve the version from the registry (mlops.registry.resolve)",
            model=mv.name,
            version=mv.version,
        )
    if not isinstance(mv.artifact, str) or not _OBJECT_NAME.fullmatch(mv.artifact):
        raise RegistryTampered(
            f"{mv.ref()}: its artifact {str(mv.artifact)[:40]!r} is not an object name; refusing to use it",
            hint="run 'mlops audit verify'",
            model=mv.name,
        )


def artifact_path(repo: Repo, mv: ModelVersion) -> Path:
    """A local path to the version's artifact, its bytes checked against the registry.

    The model file must first be what the audit log recorded (``check_trusted``), else
    ``RegistryTampered`` before the artifact is opened. A file: the object in the cache
    (read-only). A directory: a read-only copy under ``.mlops/tmp/models/<hash>/``, built from
    the cache (each file checked while copied, each name through ``paths``) and checked again
    on every call. Corrupt: ``CorruptObjectError``; absent: ``MissingObjectError``.
    """
    check_trusted(repo, mv)
    if mv.kind != "dir":
        path = object_path(repo, mv.artifact)
        check_file(path, mv.artifact, mv.sha256, mv.ref())
        return path
    return _materialize_dir(repo, mv)


def _dir_records(repo: Repo, mv: ModelVersion) -> dict[str, Any]:
    where = f"the folder artifact of {mv.ref()}"
    try:
        records = {
            paths.check_relpath(rel, where=where): entry
            for rel, entry in walk_tree(repo.objects.read_bytes, mv.artifact)
        }
    except MissingObjectError:
        raise MissingObjectError(
            f"{mv.ref()}: its directory manifest {mv.artifact} is not in the cache",
            hint="run 'mlops pull' (or 'mlops fetch')",
            object=mv.artifact,
        ) from None
    for rel, entry in records.items():
        if not _OBJECT_NAME.fullmatch(str(entry.hash)):
            raise CorruptObjectError(f"{where}: entry {rel} names {str(entry.hash)[:40]!r}, not an object")
    return records


def _materialize_dir(repo: Repo, mv: ModelVersion) -> Path:
    records = _dir_records(repo, mv)
    where = f"the folder artifact of {mv.ref()}"
    # .mlops/tmp/models must be a real folder: a symlink planted there would carry the copy elsewhere
    paths.Destinations(repo.dot).check_folder(f"{repo.tmp.name}/models", where=where)
    target = repo.tmp / "models" / mv.artifact
    if target.is_dir():
        if _dir_matches(target, records):
            return target
        remove_dir(target)  # someone changed the copy: rebuild it from the cache
    # built in a temp folder beside it, each file checked, fsynced, then renamed into place
    # in one step: a reader sees no copy or a whole one, and a crash leaves only a temp folder
    with atomic_dir(target) as building:
        inside = paths.Destinations(building)
        for rel, entry in records.items():
            dest = inside.check(rel, where=where)
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = object_path(repo, entry.hash)
            check_file(source, entry.hash, None, f"{mv.ref()}: {rel}")
            shutil.copyfile(source, dest)
            check_file(dest, entry.hash, None, f"{mv.ref()}: {rel}")  # the copy, not only the source
            os.chmod(dest, 0o555 if entry.executable else 0o444)
    if not _dir_matches(target, records):  # another process placed a copy first: it must be whole too
        raise CorruptObjectError(
            f"{mv.ref()}: the checked copy at {shown(repo, target)} does not match the registry",
            hint=f"remove {shown(repo, target)} and try again",
            object=mv.artifact,
        )
    return target


def _dir_matches(folder: Path, records: dict[str, Any]) -> bool:
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    if found != set(records):
        return False
    try:
        for rel, entry in records.items():
            check_file(folder / rel, entry.hash, None, rel)
    except (CorruptObjectError, MissingObjectError):
        return False
    return True


def load_model(ref_or_mv: str | ModelVersion, repo: Repo | None = None) -> Any:
    """The model object of a version: the registered bytes are read once, checked against the
    registry's hashes (xxh3 and SHA-256), and only then unpickled (a joblib file with joblib).

    Trust: this guarantees the bytes are the ones registered, not that they are safe. Loading
    a pickle runs whatever code it names, with the full unpickler: load only models whose
    registration you trust (``register`` itself never does; see ``flavors.safe_load``)."""
    repo = repo or find_repo()
    mv = resolve(repo, ref_or_mv) if isinstance(ref_or_mv, str) else ref_or_mv
    check_trusted(repo, mv)  # before the artifact is opened: the model file is what the audit log recorded
    if mv.flavor == pyfunc.PYTHON:
        # the class's code runs only from the materialized snapshot, every file rehashed against the registry
        return pyfunc.load_python_model(artifact_path(repo, mv), mv.ref())
    if mv.kind == "dir":
        raise UsageError(
            f"{mv.ref()} is a directory artifact ({mv.filename}); load_model reads pickled models",
            hint="read its files through mlops.registry.artifact_path(repo, version)",
        )
    data = flavors.verified_bytes(object_path(repo, mv.artifact), digest=mv.artifact, sha256=mv.sha256, what=mv.ref())
    if flavors.serialization(data) is None:
        raise UsageError(
            f"{mv.ref()} ({mv.filename}) is not a pickle or a joblib file, so load_model cannot load it",
            hint="read it through mlops.registry.artifact_path(repo, version)",
        )
    return flavors.load_object(data, mv.ref())


def training_data(repo: Repo, mv: ModelVersion) -> list[tuple[str, Path]]:
    """(original relative path, readable local path in the cache) of every file of the data
    snapshots behind the version. The local path has no suffix: pick a reader by the first."""
    return snapshot_files(repo, mv.data, mv.ref())


def snapshot_files(repo: Repo, snapshots: Sequence[dict[str, Any]], what: str) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for snap in snapshots:
        digest, rel = snap["hash"], snap["path"]
        if snap.get("kind") == "dir":
            try:
                for inner, entry in walk_tree(repo.objects.read_bytes, digest):
                    out.append((f"{rel}/{inner}", _present(repo, entry.hash, f"{rel}/{inner}")))
            except MissingObjectError:
                raise MissingObjectError(
                    f"{what}: the manifest of its data {rel} ({digest}) is not in the cache",
                    hint="run 'mlops pull' (or 'mlops fetch')",
                    object=digest,
                ) from None
        else:
            out.append((rel, _present(repo, digest, rel)))
    return out


def _present(repo: Repo, digest: str, label: str) -> Path:
    path = object_path(repo, digest)
    if not path.exists():
        raise MissingObjectError(
            f"{label}: object {digest} is not in the cache", hint="run 'mlops pull' (or 'mlops fetch')", object=digest
        )
    return path
