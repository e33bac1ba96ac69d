"""The run cache: (cmd, dependency hashes, parameter values, env) -> the outputs it produced.

When a stage's key was seen before, on any branch, its outputs are restored from the
object store and the command is not run. Entries live in `.mlops/runcache/` (not in
git; `mlops gc` keeps the objects they name), one small JSON file each, written
atomically: a torn or unreadable entry is simply a miss.

An entry also names the run that produced its outputs (``run_id``, when it was recorded by a
run): a later run that restores the stage from the cache, or skips it as up to date, names
that run in its stage record, so ``register --run`` finds the run that really made a model by
a lookup instead of a search through every run. Entries written before that field have none.

**The shared run cache.** A remote holds entries too, as refs ``runcache/<K[:2]>/<K[2:]>.json``
whose bytes are exactly the local entry document. An entry is created there only if absent
(``Remote.create_ref``: If-None-Match on S3, an exclusive link on a folder): two machines that
finish the same key leave one entry, the first, and both adopt it (``publish``). Its objects go
first, so an entry on the remote always names objects the remote has.

An entry read from a remote is received content (docs/security.md): at most ``MAX_ENTRY_SIZE``
bytes of JSON, every output path a safe relative path that a pipeline output may be
(``paths.check_tracked_path``), and exactly the outputs the stage declares when the caller
knows them, every hash an object name, every size and file count an int. Anything else is a
miss with a warning; it never becomes a path.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FormatError, MissingObjectError, RemoteError, UnsafeNameError
from ..formats import load_json
from ..fsio import atomic_write
from ..paths import check_tracked_path
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from ..store.hashing import is_hash
from ..tracking.store import RUN_ID
from .lock import LockedPath

if TYPE_CHECKING:
    from ..remotes.base import Remote

RUNCACHE_FORMAT = 1
REMOTE_PREFIX = "runcache/"  # the refs of the shared run cache on a remote
# An entry names a stage's outputs: a few hundred bytes each. 1 MiB holds thousands, far above
# any real stage, and bounds what a hostile remote can make a reader parse.
MAX_ENTRY_SIZE = 1 << 20
MAX_ENTRY_OUTS = 10_000
KINDS = ("file", "dir")


@dataclass(frozen=True)
class CacheHit:
    outs: tuple[LockedPath, ...]
    run_id: str | None  # the run whose stage produced the outputs; None for older entries


def _path(repo: Repo, key: str) -> Path:
    return repo.dot / "runcache" / key[:2] / f"{key[2:]}.json"


def lookup(repo: Repo, key: str) -> tuple[LockedPath, ...] | None:
    """The outputs recorded under ``key``, if every object they name is in the cache."""
    hit = lookup_entry(repo, key)
    return hit.outs if hit else None


def lookup_entry(repo: Repo, key: str, *, need_objects: bool = True) -> CacheHit | None:
    """The entry under ``key``: its outputs (every object in the cache, unless ``need_objects``
    is false) and the run that produced them."""
    try:
        doc = load_json(_path(repo, key))
        if doc.get("format") != RUNCACHE_FORMAT:
            return None
        outs = tuple(LockedPath(o["path"], o["hash"], o["kind"], o["size"], o.get("files", 1)) for o in doc["outs"])
    except (OSError, FormatError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a cache: a damaged entry is a miss
    if need_objects and any(o.hash is None or not repo.objects.exists(o.hash) for o in outs):
        return None
    run_id = doc.get("run_id")
    return CacheHit(outs, run_id if isinstance(run_id, str) and RUN_ID.fullmatch(run_id) else None)


def record(repo: Repo, key: str, outs: tuple[LockedPath, ...], *, run_id: str | None = None) -> None:
    path = _path(repo, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, entry_bytes(outs, run_id))


def all_outputs(repo: Repo) -> list[LockedPath]:
    """Every output any run-cache entry names (gc keeps their objects)."""
    found: list[LockedPath] = []
    folder = repo.dot / "runcache"
    if not folder.is_dir():
        return found
    for entry in folder.glob("*/*.json"):
        try:
            doc = load_json(entry)
            found.extend(LockedPath(o["path"], o["hash"], o["kind"], o["size"], o.get("files", 1)) for o in doc["outs"])
        except (OSError, FormatError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


# --- the shared run cache on a remote -------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """What ``publish`` did: the entry that stands on the remote, and whether this call created it."""

    hit: CacheHit
    created: bool


@dataclass(frozen=True)
class EntriesTransfer:
    """What ``push_entries`` or ``pull_entries`` did."""

    remote: str
    direction: str  # push | pull
    created: tuple[str, ...] = ()  # push: keys this call created on the remote; pull: keys written here
    present: tuple[str, ...] = ()  # already on the receiving side
    skipped: tuple[str, ...] = ()  # push: entries whose objects this cache lacks (not sent)
    warnings: tuple[str, ...] = ()
    objects: Any = None  # data.transfer.TransferResult of the entries' objects, when they were moved

    def summary(self) -> str:
        if self.direction == "push":
            lacking = f", {len(self.skipped)} lacking objects here (not sent)" if self.skipped else ""
            return (
                f"pushed {len(self.created)} run-cache entr{'y' if len(self.created) == 1 else 'ies'} "
                f"({len(self.present)} already there{lacking}) to {self.remote}"
            )
        return (
            f"pulled {len(self.created)} run-cache entr{'y' if len(self.created) == 1 else 'ies'} "
            f"({len(self.present)} already here) from {self.remote}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "remote": self.remote,
            "direction": self.direction,
            "created": len(self.created),
            "present": len(self.present),
            "skipped": len(self.skipped),
            "keys": list(self.created),
            "warnings": list(self.warnings),
        }


def ref_name(key: str) -> str:
    """The remote ref of the entry for ``key``: ``runcache/<K[:2]>/<K[2:]>.json``."""
    if not is_hash(key):
        raise ValueError(f"not a run key: {key!r}")
    return f"{REMOTE_PREFIX}{key[:2]}/{key[2:]}.json"


def key_of_ref(ref: str) -> str | None:
    """The run key a ref names, or None when the ref is not an entry's."""
    rest = ref.removeprefix(REMOTE_PREFIX)
    if rest == ref or not rest.endswith(".json"):
        return None
    shard, _, tail = rest[: -len(".json")].partition("/")
    key = shard + tail
    return key if len(shard) == 2 and is_hash(key) else None


def entry_bytes(outs: Iterable[LockedPath], run_id: str | None = None) -> bytes:
    """An entry's document: the same bytes locally (``record``) and on a remote."""
    doc: dict[str, object] = {"format": RUNCACHE_FORMAT, "outs": [o.to_doc() for o in outs]}
    if run_id:
        doc["run_id"] = run_id
    return json.dumps(doc, sort_keys=True).encode()


def _count(value: object, *, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value < 1 << 62


def parse_entry(data: bytes, *, where: str, outs: Collection[str] | None = None) -> CacheHit:
    """A received entry, checked whole (FormatError or UnsafeNameError otherwise): see the module's docstring.

    ``outs``: the output paths the stage declares; the entry must name exactly those."""
    if len(data) > MAX_ENTRY_SIZE:
        raise FormatError(f"{where}: larger than {MAX_ENTRY_SIZE >> 10} KiB")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{where}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != RUNCACHE_FORMAT:
        raise FormatError(f"{where}: not a run-cache entry of format {RUNCACHE_FORMAT}")
    items = doc.get("outs")
    if not isinstance(items, list) or len(items) > MAX_ENTRY_OUTS:
        raise FormatError(f"{where}: 'outs' must be a list of at most {MAX_ENTRY_OUTS} outputs")
    found: list[LockedPath] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise FormatError(f"{where}: output {index} is not an object")
        path = check_tracked_path(item.get("path"), where=where)
        digest, kind, size, files = item.get("hash"), item.get("kind"), item.get("size"), item.get("files", 1)
        if not is_hash(digest):
            raise FormatError(f"{where}: output {path}: hash {str(digest)[:40]!r} is not an object name")
        if kind not in KINDS or not _count(size, least=0) or not _count(files, least=0):
            raise FormatError(f"{where}: output {path}: kind, size or files is not valid")
        found.append(LockedPath(path, digest, kind, size, files))
    paths = [o.path for o in found]
    if len(set(paths)) != len(paths):
        raise UnsafeNameError(f"refused entry in {where}: it names one output twice", source=where)
    if outs is not None and set(paths) != set(outs):
        raise UnsafeNameError(
            f"refused entry in {where}: it names outputs {sorted(paths)[:5]} where the stage declares "
            f"{sorted(outs)[:5]}",
            source=where,
        )
    run_id = doc.get("run_id")
    return CacheHit(tuple(found), run_id if isinstance(run_id, str) and RUN_ID.fullmatch(run_id) else None)


def _refused_ref(exc: RemoteError) -> bool:
    """A ref that is there but refused as such (too large, not a regular file): a miss, not an outage."""
    return "ref" in exc.fields


def remote_lookup(
    remote: Remote, key: str, *, outs: Collection[str] | None = None, warnings: list[str] | None = None
) -> CacheHit | None:
    """The remote's entry for ``key`` (its objects are not needed here), or None.

    A damaged or hostile entry is a miss, with one line appended to ``warnings``; a remote that
    cannot be reached raises (RemoteError)."""
    name = ref_name(key)
    where = f"run-cache entry {key} on remote '{remote.name}'"
    try:
        data = remote.get_ref(name)
    except RemoteError as exc:
        if not _refused_ref(exc):
            raise
        if warnings is not None:
            warnings.append(f"{where}: {exc.message}; treated as a miss")
        return None
    if data is None:
        return None
    try:
        return parse_entry(data, where=where, outs=outs)
    except (FormatError, UnsafeNameError) as exc:
        if warnings is not None:
            warnings.append(f"{exc.message}; treated as a miss")
        return None


def _check_objects_there(remote: Remote, key: str, outs: Iterable[LockedPath]) -> None:
    """An entry may only name objects the remote has: its outputs' top objects (a manifest there
    means everything below is too: pushes publish children before parents)."""
    digests = {o.hash for o in outs if o.hash}
    lacking = remote.missing(digests) if digests else set()
    if lacking:
        first = sorted(lacking)[0]
        raise MissingObjectError(
            f"remote '{remote.name}' lacks object {first} of run-cache entry {key}; the entry was not published",
            hint="push the outputs' objects first ('mlops push --run-cache')",
            object=first,
        )


def publish(
    repo: Repo, remote: Remote, key: str, outs: tuple[LockedPath, ...], *, run_id: str | None = None
) -> Published:
    """Create the entry for ``key`` on ``remote`` unless one is there; the objects of ``outs`` must
    be on the remote already. When another machine's entry won, that one is read back, recorded
    in this repo's run cache too (both adopt it), and returned with ``created=False``."""
    _check_objects_there(remote, key, outs)
    if remote.create_ref(ref_name(key), entry_bytes(outs, run_id)):
        return Published(CacheHit(outs, run_id), True)
    warnings: list[str] = []
    winner = remote_lookup(remote, key, outs=[o.path for o in outs], warnings=warnings)
    if winner is None:
        raise RemoteError(
            f"remote '{remote.name}' has an entry for run key {key} that cannot be used"
            + (f" ({warnings[0]})" if warnings else ""),
            hint="the entry was not written by mlops: check who writes to the remote",
            key=key,
        )
    record(repo, key, winner.outs, run_id=winner.run_id)
    return Published(winner, False)


def _open(repo: Repo, remote: Remote | str | None) -> Remote:
    """``remote`` itself, or the remote of that name (None: the default one)."""
    from ..remotes.base import Remote

    if isinstance(remote, Remote):
        return remote
    from ..data.transfer import get_remote

    return get_remote(repo, remote)


def local_keys(repo: Repo) -> list[str]:
    """The keys of this repo's run-cache entries, sorted."""
    folder = repo.dot / "runcache"
    if not folder.is_dir():
        return []
    keys = (entry.parent.name + entry.name[: -len(".json")] for entry in folder.glob("*/*.json"))
    return sorted(k for k in keys if is_hash(k))


def push_entries(
    repo: Repo,
    remote: Remote | str | None = None,
    keys: Iterable[str] | None = None,
    *,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> EntriesTransfer:
    """Send this repo's run-cache entries (``keys``, or all) the remote lacks: their objects
    first, then each entry, created only if absent (an entry already there stays as it is)."""
    from ..data.references import Root
    from ..data.transfer import push as push_objects
    from ..parallel import run_parallel

    target = _open(repo, remote)
    wanted = list(dict.fromkeys(keys)) if keys is not None else local_keys(repo)
    existing = {k for k in map(key_of_ref, target.list_refs(REMOTE_PREFIX)) if k}
    present = [k for k in wanted if k in existing]
    todo: list[tuple[str, CacheHit]] = []
    skipped: list[str] = []
    for key in wanted:
        if key in existing:
            continue
        hit = lookup_entry(repo, key)  # every object here: an entry is never sent without them
        if hit is None:
            skipped.append(key)
        else:
            todo.append((key, hit))
    objects = None
    if todo:
        roots = [Root(o.hash, o.kind == "dir", f"runcache:{o.path}") for _, hit in todo for o in hit.outs if o.hash]
        objects = push_objects(repo, remote=target, only_roots=roots, jobs=jobs, progress=progress)
    created: list[str] = []
    if todo:
        with (
            progress.task(f"run cache to {target.name}", total=len(todo)) as task,
            run_parallel(
                lambda item: (item[0], target.create_ref(ref_name(item[0]), entry_bytes(item[1].outs, item[1].run_id))),
                todo,
                jobs=jobs,
            ) as results,
        ):
            for key, made in results:
                (created if made else present).append(key)
                task.advance()
    return EntriesTransfer(target.name, "push", tuple(created), tuple(present), tuple(skipped), (), objects)


def pull_entries(
    repo: Repo,
    remote: Remote | str | None = None,
    keys: Iterable[str] | None = None,
    *,
    objects: bool = True,
    deps_from_pointers: bool = False,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> EntriesTransfer:
    """Take the remote's entries for ``keys`` (None: those the current pipeline's stages would
    look up, stage after stage, as ``mlops run`` would, on the workspace as it is) into this
    repo's run cache, checked on arrival; then, with ``objects``, the objects they name, so that
    ``mlops run`` restores those stages with no network. ``deps_from_pointers``: see ``executor.plan``."""
    from ..data.references import Root
    from ..data.transfer import fetch as fetch_objects

    source = _open(repo, remote)
    warnings: list[str] = []
    if keys is None and not (repo.root / "pipeline.yaml").is_file():
        note = "no pipeline.yaml here: no shared run-cache entries to look up"
        return EntriesTransfer(source.name, "pull", warnings=(note,))
    source.check_root()  # an absent remote is an outage, not one with no entries
    if keys is None:
        hits = _pipeline_hits(repo, source, warnings, deps_from_pointers)
    else:
        hits = {}
        for key in dict.fromkeys(keys):
            hit = remote_lookup(source, key, warnings=warnings)
            if hit is not None:
                hits[key] = hit
    created: list[str] = []
    present: list[str] = []
    for key, hit in hits.items():
        if lookup_entry(repo, key, need_objects=False) is not None:
            present.append(key)  # a local entry is never replaced
            continue
        record(repo, key, hit.outs, run_id=hit.run_id)
        created.append(key)
    moved = None
    if objects and hits:
        roots = [
            Root(o.hash, o.kind == "dir", f"runcache:{o.path}") for hit in hits.values() for o in hit.outs if o.hash
        ]
        moved = fetch_objects(repo, remote=source, only_roots=roots, jobs=jobs, progress=progress)
    return EntriesTransfer(source.name, "pull", tuple(created), tuple(present), (), tuple(warnings), moved)


def _pipeline_hits(repo: Repo, source: Remote, warnings: list[str], deps_from_pointers: bool) -> dict[str, CacheHit]:
    """The remote entries the current pipeline would restore from (``executor.plan`` with the remote)."""
    from .executor import WOULD_RESTORE, plan
    from .graph import build_graph
    from .spec import load_pipeline

    graph = build_graph(load_pipeline(repo.root), repo.root)
    hits: dict[str, CacheHit] = {}
    for result in plan(repo, graph, list(graph.order), remote=source, deps_from_pointers=deps_from_pointers):
        warnings.extend(r for r in result.reasons if r.startswith("shared run cache: "))
        if result.status == WOULD_RESTORE and result.restore_from.startswith("remote") and result.run_key:
            hits[result.run_key] = CacheHit(result.outs, result.produced_by)
    return hits
