"""`mlops stage exec`: one stage of the pipeline at one commit, on any machine with a clone and the remote.

What an engine (Ray, Airflow, Argo) calls for each stage; the small JSON manifest it returns is
all that passes between tasks, the data itself goes through the remote by hash.

1. The commit is materialized in a private git worktree under ``.mlops/tmp/exec/`` (fetched
   from ``origin`` when the clone lacks it, or from the git bundle ``prepare_commit`` put on the
   mlops remote), sharing the clone's object cache through the worktree's own
   ``config.local.yaml``. The user's workspace, pipeline.lock and runs are never touched. The
   worktree is removed on every exit; one left by a killed process (its lock no longer held)
   is removed by the next ``stage exec`` in the clone.
2. The stage's key is computed exactly as ``mlops run`` computes it in a clean workspace at that
   commit (``StageInputs.run_key``): tracked data by its pointer's hash, git files hashed in the
   worktree, upstream stages' outputs from ``--upstream`` manifests or, when none is given, by
   the upstream stage's own key looked up in the local then the remote run cache (recursively).
   Nothing is fetched to compute a key unless a dependency overlaps tracked data or an output
   without being exactly it.
3. A hit (remote, or local with its objects, then published) is reported as "restored"; a miss
   fetches only the stage's own inputs, runs its command with `mlops run`'s machinery
   (``executor.run_stage_command``), snapshots the outputs, pushes their objects and then
   publishes the run-cache entry with a conditional create: "ran" when this machine's entry
   stands, "adopted" when another machine's entry for the key won the race.

Received content (``--upstream`` manifests) is bounded and checked: every output path is one the
named stage declares, every hash an object name; anything else is refused as a usage error.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import (
    CouldNotComplete,
    FormatError,
    GitError,
    Interrupted,
    MlopsError,
    UnknownRevisionError,
    UsageError,
)
from ..formats import parse_json, write_yaml
from ..fsio import TMP_PREFIX, FileLock, remove_dir
from ..paths import relpath_problem
from ..remotes.base import Remote
from ..repo.repo import DOT, Repo
from ..store.hashing import is_hash
from ..tracking.store import RUN_ID, new_run_id
from . import runcache
from .graph import Graph, build_graph
from .lock import LockedPath
from .params import ParamFiles
from .spec import Stage, load_pipeline
from .state import StageInputs, read_inputs, read_path

MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 1 << 20  # a manifest names a stage's outputs by hash: a few KiB; 1 MiB bounds a hostile one
RESTORED, RAN, ADOPTED = "restored", "ran", "adopted"
STATUSES = (RESTORED, RAN, ADOPTED)
EXEC_DIR = "exec"  # under .mlops/tmp/: one private worktree per running `stage exec`
BUNDLE_REF = "git/{sha}.bundle"  # the mlops remote's ref holding a snapshot commit (--allow-dirty)
SHA = re.compile(r"[0-9a-f]{40}")
GIT_TIMEOUT = 600.0  # seconds for one git command (a fetch of a large history)
# who removes a private worktree once its stage has answered (a Ray stage runner: after its answer is
# on its way, off the stage's path); given the removal, it must call it
RemoveLater = Callable[[Callable[[], None]], None]


@dataclass(frozen=True)
class StageManifest:
    """What one ``stage exec`` reports: the stage's key, inputs and outputs, by hash."""

    stage: str
    rev: str
    key: str
    status: str  # restored | ran | adopted
    run_id: str | None
    seconds: float
    deps: tuple[LockedPath, ...] = ()
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str | None] = field(default_factory=dict)
    outs: tuple[LockedPath, ...] = ()
    # what was taken as a miss, and why (a damaged remote entry): shown on stderr, not in the manifest
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "stage": self.stage,
            "rev": self.rev,
            "key": self.key,
            "status": self.status,
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
            "deps": [_path_doc(d) for d in self.deps],
            "params": self.params,
            "env": self.env,
            "outs": [_path_doc(o) for o in self.outs],
        }


def _path_doc(item: LockedPath) -> dict[str, Any]:
    return {"path": item.path, "hash": item.hash, "kind": item.kind, "size": item.size, "files": item.files}


# --- received manifests ------------------------------------------------------------------------


def parse_manifest(data: str | bytes | dict[str, Any], source: str) -> StageManifest:
    """A manifest another task produced (``--upstream``), checked field by field (UsageError, exit 2).

    Paths are checked as relative paths here; that each output is one the named stage declares
    is checked against the pipeline (``check_manifest_outputs``)."""
    if isinstance(data, dict):
        doc: Any = data
    else:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if len(raw) > MAX_MANIFEST_BYTES:
            raise _bad(source, f"larger than {MAX_MANIFEST_BYTES >> 10} KiB")
        try:
            doc = parse_json(raw, source)
        except FormatError as exc:
            raise _bad(source, exc.message) from None
    if not isinstance(doc, dict):
        raise _bad(source, "not a JSON object")
    if doc.get("format") != MANIFEST_FORMAT:
        raise _bad(source, f"format {doc.get('format')!r} is not {MANIFEST_FORMAT}")
    stage, rev, key, status = doc.get("stage"), doc.get("rev"), doc.get("key"), doc.get("status")
    if not isinstance(stage, str) or not stage or len(stage) > 256 or not stage.isprintable():
        raise _bad(source, "'stage' must be a stage name")
    if not isinstance(rev, str) or not SHA.fullmatch(rev):
        raise _bad(source, "'rev' must be a 40-hex commit")
    if not is_hash(key):
        raise _bad(source, "'key' must be a run key (32 hex digits)")
    if status not in STATUSES:
        raise _bad(source, f"'status' must be one of {', '.join(STATUSES)}")
    run_id = doc.get("run_id")
    if run_id is not None and not (isinstance(run_id, str) and RUN_ID.fullmatch(run_id)):
        raise _bad(source, "'run_id' must be a run id or null")
    seconds = doc.get("seconds", 0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise _bad(source, "'seconds' must be a number")
    outs = _received_paths(doc.get("outs"), source, "outs", need_hash=True)
    deps = _received_paths(doc.get("deps", []), source, "deps", need_hash=False)
    env = _received_env(doc.get("env", {}), source)
    return StageManifest(stage, rev, key, status, run_id, float(seconds), deps, {}, env, outs)


def _received_env(items: Any, source: str) -> dict[str, str | None]:
    """The stage's declared environment as the worker saw it: names to value hashes (None: unset)."""
    from .spec import ENV_NAME

    if not isinstance(items, dict) or len(items) > 1_000:
        raise _bad(source, "'env' must be an object of at most 1000 names")
    for name, value in items.items():
        if not ENV_NAME.fullmatch(name) or len(name) > 256:
            raise _bad(source, f"'env' name {_shown(name)} is not an environment variable's name")
        if value is not None and not is_hash(value):
            raise _bad(source, f"'env' {name}: {_shown(value)} is not a value's hash")
    return dict(items)


def _received_paths(items: Any, source: str, section: str, *, need_hash: bool) -> tuple[LockedPath, ...]:
    if not isinstance(items, list) or len(items) > 10_000:
        raise _bad(source, f"'{section}' must be a list")
    found = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad(source, f"each '{section}' entry must be an object")
        path, digest, kind = item.get("path"), item.get("hash"), item.get("kind", "file")
        size, files = item.get("size", 0), item.get("files", 1)
        problem = relpath_problem(path)
        if problem:
            raise _bad(source, f"'{section}' path {_shown(path)} refused: {problem}")
        if (digest is not None or need_hash) and not is_hash(digest):
            raise _bad(source, f"'{section}' {path}: hash {_shown(digest)} is not an object name")
        if kind not in ("file", "dir"):
            raise _bad(source, f"'{section}' {path}: kind must be file or dir")
        for value in (size, files):
            if type(value) is not int or value < 0:
                raise _bad(source, f"'{section}' {path}: size and files must be whole numbers >= 0")
        found.append(LockedPath(path, digest, kind, size, files))
    return tuple(found)


def _bad(source: str, problem: str) -> UsageError:
    return UsageError(
        f"{source}: not a stage manifest: {problem}",
        hint="pass the JSON that 'mlops stage exec --json' printed for the upstream stage",
        source=source,
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_manifest_outputs(graph: Graph, manifest: StageManifest, source: str) -> None:
    """The manifest names a stage of this pipeline and exactly the outputs that stage declares."""
    if manifest.stage not in graph.pipeline.stages:
        raise _bad(source, f"stage '{manifest.stage}' is not in the pipeline at {manifest.rev[:12]}")
    declared = {o.path for o in graph.stage(manifest.stage).outs}
    named = [o.path for o in manifest.outs]
    extra = [p for p in named if p not in declared]
    if extra:
        raise _bad(source, f"output {_shown(extra[0])} is not one stage '{manifest.stage}' declares")
    if len(set(named)) != len(named) or set(named) != declared:
        raise _bad(source, f"its outputs are not the ones stage '{manifest.stage}' declares")


# --- the commit and the private worktree ------------------------------------------------------


def _git(
    root: Path, *args: str, check: bool = True, input: bytes | None = None, index: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """A git command in ``root``, hooks off; ``index``: on that private index file (the user's
    index is never read or written)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(name, None)
    if index is not None:
        env["GIT_INDEX_FILE"] = index
    try:
        done = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", *args],
            cwd=root,
            capture_output=True,
            env=env,
            input=input,
            timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitError(f"git {args[0]} failed in {root}: {exc}") from None
    if check and done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed in {root}: {detail[-1] if detail else 'exit ' + str(done.returncode)}")
    return done


def commit_of(root: Path, rev: str) -> str | None:
    done = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
    sha = done.stdout.decode().strip()
    return sha if done.returncode == 0 and SHA.fullmatch(sha) else None


# (clone, sha) of commits this process found in a clone: a commit never changes, so a Ray stage runner
# checks the driver's sha with git once, not once per stage
_COMMITS_SEEN: set[tuple[str, str]] = set()


def resolve_commit(repo: Repo, rev: str, remote: Remote | None = None) -> str:
    """The full sha of ``rev``: here, else fetched from ``origin``, else from the bundle on ``remote``."""
    if not rev or len(rev) > 256 or rev.startswith("-") or not rev.isprintable():
        raise UsageError(f"not a revision: {_shown(rev)}", hint="pass a commit sha: --rev $(git rev-parse HEAD)")
    if (str(repo.root), rev) in _COMMITS_SEEN:
        return rev
    sha = _resolve_commit(repo, rev, remote)
    _COMMITS_SEEN.add((str(repo.root), sha))
    return sha


def _resolve_commit(repo: Repo, rev: str, remote: Remote | None) -> str:
    sha = commit_of(repo.root, rev)
    if sha:
        return sha
    has_origin = _git(repo.root, "remote", "get-url", "origin", check=False).returncode == 0
    if has_origin:
        if SHA.fullmatch(rev):
            _git(repo.root, "fetch", "--quiet", "--no-tags", "origin", rev, check=False)
        sha = commit_of(repo.root, rev)
        if not sha:
            _git(repo.root, "fetch", "--quiet", "origin", check=False)
            sha = commit_of(repo.root, rev) or commit_of(repo.root, f"origin/{rev}")
        if sha:
            return sha
    if remote is not None and SHA.fullmatch(rev):
        data = remote.get_ref(BUNDLE_REF.format(sha=rev))
        if data is not None:
            _unbundle(repo, data, rev)
            sha = commit_of(repo.root, rev)
            if sha:
                return sha
    where = "here" + (", on origin" if has_origin else "") + (f" or on remote '{remote.name}'" if remote else "")
    raise UnknownRevisionError(
        f"revision {rev} not found {where}",
        hint="push the commit to origin, or let the driver snapshot it with --allow-dirty",
        rev=rev,
    )


# files mlops itself writes as it records runs: a driver's own pipeline.lock never makes a tree "dirty"
STATE_PATHS = ("pipeline.lock", f"{DOT}/runs/")
MAX_LISTED = 10


def changed_files(repo: Repo) -> list[str]:
    """Tracked files that differ from HEAD (staged or not), but the state mlops writes itself."""
    out = _git(repo.root, "status", "--porcelain=v1", "-z", "--untracked-files=no", "--no-renames").stdout
    names = [entry[3:].decode("utf-8", "replace") for entry in out.split(b"\0") if len(entry) > 3]
    return [n for n in names if n not in STATE_PATHS and not n.startswith(STATE_PATHS[1])]


def dirty_tree_error(changed: list[str], why: str, *, hint: str) -> UsageError:
    """The refusal of a dirty tree: the first ``MAX_LISTED`` changed files, then how many more."""
    shown = ", ".join(changed[:MAX_LISTED])
    more = f" and {len(changed) - MAX_LISTED} more" if len(changed) > MAX_LISTED else ""
    message = f"uncommitted changes in {shown}{more}: {why}, and these would not be in it"
    return UsageError(message, hint=hint, files=changed)


def prepare_commit(repo: Repo, *, allow_dirty: bool, remote: str | Remote | None = None, send: bool = True) -> str:
    """The commit workers run: HEAD when the tracked files are clean, else (``allow_dirty``) a
    snapshot of the workspace as a commit, index and HEAD untouched, sent to the remote as a
    git bundle (ref ``git/<sha>.bundle``) for workers that cannot fetch it from origin.

    A dirty tree without ``allow_dirty`` is a UsageError naming the changed files. A clean HEAD
    that no remote-tracking branch contains is bundled too (a worker's origin lacks it).
    ``send=False``: the commit stays in this clone (an experiment runs it here), no bundle is sent."""
    head = commit_of(repo.root, "HEAD")
    if head is None:
        raise UsageError("the repository has no commit yet", hint="commit the project: workers run a commit")
    target = None if not send else remote if isinstance(remote, Remote) else open_remote_or_none(repo, remote)
    clean_stale_snapshot_refs(repo)  # a killed driver's bundle ref: one git call per run, none per stage
    changed = changed_files(repo)
    if not changed:
        if target is not None and not _on_a_remote_branch(repo, head):
            _send_bundle(repo, target, head)
        return head
    if not allow_dirty:
        raise dirty_tree_error(changed, "workers run a commit", hint="commit them, or pass --allow-dirty")
    with tempfile.TemporaryDirectory(prefix="mlops-snapshot-") as folder:
        index = str(Path(folder) / "index")
        _git(repo.root, "read-tree", head, index=index)
        _git(repo.root, "add", "-A", "--", ".", index=index)
        tree = _git(repo.root, "write-tree", index=index).stdout.decode().strip()
    sha = (
        _git(
            repo.root,
            "commit-tree",
            tree,
            "-p",
            head,
            "-m",
            "mlops: the workspace as it was for a remote run (--allow-dirty)",
        )
        .stdout.decode()
        .strip()
    )
    if target is not None:
        _send_bundle(repo, target, sha)
    return sha


def _on_a_remote_branch(repo: Repo, sha: str) -> bool:
    done = _git(repo.root, "branch", "-r", "--contains", sha, check=False)
    return done.returncode == 0 and bool(done.stdout.strip())


def _send_bundle(repo: Repo, remote: Remote, sha: str) -> None:
    """A bundle of ``sha`` (without what remote-tracking branches hold) as the remote's ref git/<sha>.bundle."""
    from ..remotes.base import MAX_REF_SIZE

    # a ref of this call's own: two drivers bundling one commit at once must not delete each other's;
    # its lock, held while the ref exists, tells a later run whether the ref is live (a killed driver's
    # lock is free: the kernel released it), see clean_stale_snapshot_refs
    token = secrets.token_hex(4)
    ref = f"{SNAPSHOT_REFS}{sha}-{token}"
    folder = repo.tmp / EXEC_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with _snapshot_lock(repo, token):
        _git(repo.root, "update-ref", ref, sha)
        try:
            data = _bundle(repo, folder, ref)
        finally:
            _git(repo.root, "update-ref", "-d", ref, check=False)
    if len(data) > MAX_REF_SIZE:
        raise UsageError(
            f"the snapshot of the workspace is {len(data) >> 20} MiB as a git bundle, over {MAX_REF_SIZE >> 20} MiB",
            hint="commit and push instead of --allow-dirty",
        )
    remote.put_ref(BUNDLE_REF.format(sha=sha), data)


def _bundle(repo: Repo, folder: Path, ref: str) -> bytes:
    with tempfile.NamedTemporaryFile(dir=folder, prefix=BUNDLE_TEMP, suffix=".bundle") as handle:
        has_remotes = bool(_git(repo.root, "branch", "-r", check=False).stdout.strip())
        _git(
            repo.root, "bundle", "create", "--quiet", handle.name, ref, *(["--not", "--remotes"] if has_remotes else [])
        )
        return Path(handle.name).read_bytes()


SNAPSHOT_REFS = "refs/mlops/snapshots/"  # a bundle's temporary ref: <sha>-<token>, live while <token>'s lock is held
SNAPSHOT_REF = re.compile(r"[0-9a-f]{40}-(?P<token>[0-9a-f]{8})")
SNAPSHOT_LOCK = "snapshot-{token}.lock"  # under .mlops/tmp/exec/


def _snapshot_lock(repo: Repo, token: str) -> FileLock:
    path = repo.tmp / EXEC_DIR / SNAPSHOT_LOCK.format(token=token)
    return FileLock(path, what=f"snapshot ref {token}", timeout=0)


def clean_stale_snapshot_refs(repo: Repo) -> int:
    """Delete the bundle refs (refs/mlops/snapshots/<sha>-<token>) of drivers killed while they bundled:
    a ref whose lock nobody holds. A live driver holds its lock from before it creates its ref until
    after it deletes it, so a live ref is never taken for a stale one, nor a stale one for a live one.
    Refs of another form are not this version's to judge and stay."""
    try:
        listed = _git(repo.root, "for-each-ref", "--format=%(refname)", SNAPSHOT_REFS, check=False)
    except GitError:  # no git to ask: nothing of ours to clean either
        return 0
    removed = 0
    for ref in listed.stdout.decode("utf-8", "replace").split():
        found = SNAPSHOT_REF.fullmatch(ref.removeprefix(SNAPSHOT_REFS))
        if found is None:
            continue
        # a held lock: its driver is bundling now
        if _while_free(
            _snapshot_lock(repo, found["token"]), lambda ref=ref: _git(repo.root, "update-ref", "-d", ref, check=False)
        ):
            removed += 1
    return removed


def _while_free(lock: FileLock, action: Callable[[], object]) -> bool:
    """Run ``action`` holding ``lock`` if nobody holds it (its owner ended), then remove the lock file;
    False (nothing done) while another process holds it."""
    try:
        lock.acquire()
    except MlopsError:
        return False
    try:
        action()
    finally:
        with contextlib.suppress(OSError):
            lock.path.unlink()
        lock.release()
    return True


def _unbundle(repo: Repo, data: bytes, sha: str) -> None:
    """Take a bundle's objects (no ref is changed); git checks the pack itself."""
    folder = repo.tmp / EXEC_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=BUNDLE_TEMP, suffix=".bundle") as handle:
        handle.write(data)
        handle.flush()
        if _git(repo.root, "bundle", "verify", handle.name, check=False).returncode != 0:
            # its prerequisites may be on origin: take them, then try once more
            _git(repo.root, "fetch", "--quiet", "origin", check=False)
        _git(repo.root, "bundle", "unbundle", handle.name)


BUNDLE_TEMP = "bundle-"  # a bundle on its way to or from the remote, under .mlops/tmp/exec/
# a bundle's temp file lives for at most a few git commands (each GIT_TIMEOUT at most): one this
# old belongs to a run that was killed, never to one still using it
STALE_BUNDLE_SECONDS = 4 * GIT_TIMEOUT
_GONE_PREFIX = TMP_PREFIX + "wt-"  # what remove_dir renames a worktree to before deleting it


def _lock_of(folder: Path) -> FileLock:
    return FileLock(folder.with_name(folder.name + ".lock"), what=f"stage exec worktree {folder.name}", timeout=0)


def clean_stale_worktrees(repo: Repo) -> int:
    """Remove the worktrees of `stage exec` runs that ended without removing theirs (killed)."""
    top = repo.tmp / EXEC_DIR
    removed = 0
    if not top.is_dir():
        return 0
    for entry in sorted(top.iterdir()):
        if entry.name.startswith("snapshot-") and entry.is_file() and _older_than(entry, STALE_BUNDLE_SECONDS):
            _remove_free_lock(entry)  # a driver killed before it made its bundle ref (or a lock left behind)
            continue
        if entry.is_symlink():
            # never one of ours (worktrees are real folders): followed, a removal would reach
            # wherever it points; the link alone goes
            with contextlib.suppress(OSError):
                entry.unlink()
            continue
        if entry.name.startswith(BUNDLE_TEMP) and entry.is_file() and _older_than(entry, STALE_BUNDLE_SECONDS):
            with contextlib.suppress(OSError):
                entry.unlink()  # a bundle's temp file of a run killed while it wrote or read it
            continue
        if entry.name.startswith(_GONE_PREFIX) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)  # a worktree set aside by a removal that was killed
            _git(repo.root, "worktree", "prune", check=False)
            continue
        if entry.name.startswith("wt-") and entry.name.endswith(".lock") and not entry.with_suffix("").exists():
            _remove_free_lock(entry)  # a run killed before its worktree existed
            continue
        if not entry.is_dir() or not entry.name.startswith("wt-"):
            continue
        if _while_free(_lock_of(entry), lambda entry=entry: _remove_worktree(repo, entry)):  # held: its run goes on
            removed += 1
    return removed


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def _remove_free_lock(path: Path) -> None:
    _while_free(FileLock(path, what=f"stage exec worktree {path.stem}", timeout=0), lambda: None)


def _remove_worktree(repo: Repo, folder: Path) -> None:
    removed = _git(repo.root, "worktree", "remove", "--force", "--force", str(folder), check=False).returncode == 0
    if folder.exists():
        remove_dir(folder)
    if not removed:  # git may still list it: prune (when remove worked, one git call fewer per stage)
        _git(repo.root, "worktree", "prune", check=False)


@contextlib.contextmanager
def private_worktree(repo: Repo, sha: str, *, remove_later: RemoveLater | None = None) -> Iterator[Repo]:
    """A worktree of ``sha`` under .mlops/tmp/exec/ using the clone's object cache; removed on exit,
    or handed to ``remove_later`` (its lock held until then, so no cleaner takes it for a killed run's)."""
    clean_stale_worktrees(repo)
    top = repo.tmp / EXEC_DIR
    top.mkdir(parents=True, exist_ok=True)
    folder = top / f"wt-{sha[:12]}-{secrets.token_hex(4)}"
    lock = _lock_of(folder)
    # another stage exec's clean_stale_worktrees takes a lock file that has no worktree yet (ours,
    # just created, looks like one a killed run left), then unlinks it: our flock may meet its
    # flock (held for a moment), or land on the unlinked file, which guards nothing
    for attempt in range(10):
        with contextlib.suppress(MlopsError):  # a cleaner holding the new file for a moment: try again
            lock.acquire()
        if lock.is_current():
            break
        lock.release()
        time.sleep(0.01 * (attempt + 1))
    else:
        raise CouldNotComplete(f"could not lock the worktree {folder.name} of stage exec", hint="try again")

    def remove() -> None:
        try:
            _remove_worktree(repo, folder)
        finally:
            lock.release()
            with contextlib.suppress(OSError):
                lock.path.unlink()

    try:
        _add_worktree(repo, folder, sha)
        try:
            yield _worktree_repo(repo, folder)
        except MlopsError as exc:
            raise _at_commit(exc, repo, folder, sha) from None
    finally:
        if remove_later is None:
            remove()
        else:
            remove_later(remove)


def _at_commit(exc: MlopsError, repo: Repo, folder: Path, sha: str) -> MlopsError:
    """The error with the worktree's paths (gone once it is removed) named as git names a file of a
    commit, ``<sha>:pipeline.yaml``."""
    prefixes = [str(folder) + os.sep, str(folder.relative_to(repo.root)) + os.sep]

    def named(text: str) -> str:
        for prefix in prefixes:
            text = text.replace(prefix, f"{sha[:12]}:")
        return text

    exc.message = named(exc.message)
    if exc.hint:
        exc.hint = named(exc.hint)
    exc.fields = {k: named(v) if isinstance(v, str) else v for k, v in exc.fields.items()}
    exc.args = (exc.message,)
    return exc


def _add_worktree(repo: Repo, folder: Path, sha: str) -> None:
    for attempt in range(3):  # two processes adding worktrees at once can meet on git's own lock files
        done = _git(repo.root, "worktree", "add", "--quiet", "--detach", str(folder), sha, check=False)
        if done.returncode == 0:
            return
        if folder.exists():
            _remove_worktree(repo, folder)
        time.sleep(0.2 * (attempt + 1))
    detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
    raise GitError(f"git worktree add failed for {sha[:12]}: {detail[-1] if detail else done.returncode}")


def _worktree_repo(clone: Repo, folder: Path) -> Repo:
    """The worktree as a Repo: objects in the clone's cache, the clone's remotes (paths made absolute).

    ``cache.dir`` in a worktree's ``config.local.yaml`` (which git does not track) is trusted."""
    dot = folder / DOT
    (dot / "tmp").mkdir(parents=True, exist_ok=True)
    remotes: dict[str, Any] = {}
    for name, settings in clone.config.remotes.items():
        settings = dict(settings)
        url = str(settings["url"])
        if "://" not in url or url.startswith("file://"):
            path = Path(url.removeprefix("file://"))
            settings["url"] = str(path if path.is_absolute() else (clone.root / path).resolve())
        remotes[name] = settings
    local: dict[str, Any] = {"format": 1, "cache": {"dir": str(clone.objects.root)}}
    if remotes:
        local["remotes"] = remotes
    if clone.config.default_remote:
        local["core"] = {"remote": clone.config.default_remote}
    write_yaml(dot / "config.local.yaml", local, header="# written by mlops stage exec for this private worktree\n")
    return Repo(folder)


# --- inputs: keys of upstream stages, and the data a stage needs --------------------------------


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


class InputResolver:
    """A stage's inputs at the commit, as `mlops run` would read them in a clean workspace."""

    def __init__(
        self,
        workspace: Repo,
        cache_owner: Repo,
        graph: Graph,
        remote: Remote | None,
        manifests: dict[str, StageManifest],
    ) -> None:
        from ..data.snapshot import workspace_pointers

        self.repo = workspace
        self.owner = cache_owner  # whose local run cache is read (the clone; a worktree has none)
        self.graph = graph
        self.remote = remote
        self.manifests = manifests
        self.params = ParamFiles(workspace.root)
        self.pointers = {p.target: p for p in workspace_pointers(workspace)}
        self.results: dict[str, tuple[tuple[LockedPath, ...], str | None]] = {}
        self.placed: set[str] = set()
        self.warnings: list[str] = []

    def read(self, stage: Stage) -> StageInputs:
        """The stage's inputs; its dependencies by hash, without fetching what has one already."""
        inputs = read_inputs(self.repo, stage, self.params)
        return replace(inputs, deps=tuple(self._dep(path) for path in stage.deps))

    def _dep(self, path: str) -> LockedPath:
        producer = self.graph.producers.get(path)
        if producer is not None:
            outs, _ = self.outputs(producer)
            return next(o for o in outs if o.path == path)
        pointer = self.pointers.get(path)
        if pointer is not None:
            return LockedPath(path, pointer.hash, pointer.kind, pointer.size, pointer.files)
        self.place(path)
        return read_path(self.repo, path)

    def outputs(self, name: str) -> tuple[tuple[LockedPath, ...], str | None]:
        """An upstream stage's outputs and the run that made them: its manifest, else its key's entry."""
        if name in self.results:
            return self.results[name]
        manifest = self.manifests.get(name)
        if manifest is not None:
            found = (manifest.outs, manifest.run_id)
        elif self.graph.stage(name).frozen:
            found = (frozen_outputs(self.repo, self.graph.stage(name)), None)
        else:
            stage = self.graph.stage(name)
            key = self.read(stage).run_key(stage)
            hit = lookup(self.owner, self.remote, stage, key, self.warnings)
            if hit is None:
                raise CouldNotComplete(
                    f"upstream stage '{name}' has no result in the run cache (key {key})",
                    hint=f"run 'mlops stage exec {name}' at this revision first, or pass its manifest with --upstream",
                    stage=name,
                    key=key,
                )
            found = (hit.outs, hit.run_id)
        self.results[name] = found
        return found

    def place(self, path: str) -> None:
        """Make ``path`` what a clean workspace at the commit has: tracked data pulled, upstream
        outputs restored (each only once)."""
        from ..data.checkout import checkout

        pointers = [p for target, p in self.pointers.items() if _overlaps(target, path) and target not in self.placed]
        if pointers:
            self._fetch([(p.hash, p.is_dir, p.target, p.size) for p in pointers])
            checkout(self.repo, [str(self.repo.abs(p.target)) for p in pointers], force=True)
            self.placed.update(p.target for p in pointers)
        for out_path, producer in self.graph.producers.items():
            if _overlaps(out_path, path) and out_path not in self.placed:
                outs, _ = self.outputs(producer)
                wanted = tuple(o for o in outs if o.path == out_path)
                self.restore(self.graph.stage(producer), wanted)

    def restore(self, stage: Stage, outs: tuple[LockedPath, ...]) -> None:
        from .executor import restore_outputs

        todo = tuple(o for o in outs if o.path not in self.placed)
        if not todo:
            return
        self._fetch([(o.hash, o.kind == "dir", o.path, o.size) for o in todo if o.hash])
        restore_outputs(self.repo, stage, todo)
        self.placed.update(o.path for o in todo)

    def _fetch(self, roots: list[tuple[Any, bool, str, int]]) -> None:
        from ..data.references import Root
        from ..data.transfer import fetch

        if self.remote is None:
            return  # no remote: what the local cache lacks is a MissingObjectError at checkout
        fetch(
            self.repo,
            remote=self.remote.name,
            only_roots=[Root(h, is_dir, label, None if is_dir else size) for h, is_dir, label, size in roots],
        )


def frozen_outputs(work: Repo, stage: Stage) -> tuple[LockedPath, ...]:
    """A frozen stage never runs: its outputs are what pipeline.lock at the commit records."""
    from .lock import read_lock

    entry = read_lock(work.root).get(stage.name)
    if entry is None or not entry.outs or any(o.hash is None for o in entry.outs):
        raise CouldNotComplete(
            f"stage '{stage.name}' is frozen, and pipeline.lock at this commit records no outputs for it",
            hint="unfreeze it, or run it once and commit pipeline.lock",
            stage=stage.name,
        )
    return entry.outs


def lookup(repo: Repo, remote: Remote | None, stage: Stage, key: str, warnings: list[str]) -> runcache.CacheHit | None:
    """The entry under ``key``: the local run cache (objects or not), then the remote's (which
    must name exactly the stage's outputs; a bad one is a miss, with a warning)."""
    hit = _declared(stage, runcache.lookup_entry(repo, key, need_objects=False))
    if hit is None and remote is not None:
        hit = runcache.remote_lookup(remote, key, outs=[o.path for o in stage.outs], warnings=warnings)
    return hit


# --- the verb ---------------------------------------------------------------------------------


def open_remote_or_none(repo: Repo, name: str | None) -> Remote | None:
    """The named remote, else the default one, else None (a clone with no remote works alone)."""
    from ..data.transfer import get_remote

    if name is None and not repo.config.default_remote:
        return None
    return get_remote(repo, name)


def exec_stage(
    repo: Repo,
    name: str,
    *,
    rev: str,
    remote: str | None = None,
    upstream: Sequence[StageManifest] = (),
    image_digest: str | None = None,
    events: Any = None,
    stop: threading.Event | None = None,
    stop_signals: tuple[int, ...] = (signal.SIGINT,),
    force: bool = False,
    remove_later: RemoveLater | None = None,
) -> StageManifest:
    """Restore stage ``name`` at ``rev`` from the shared run cache, or run it and publish it.

    ``force``: run the command even when the key is in a run cache; when publishing then finds an
    entry for the key standing, that entry is adopted (its outputs reported, status ``adopted``):
    a run-cache entry is never replaced.

    ``upstream``: manifests of upstream stages (parsed with ``parse_manifest``); ``image_digest``:
    the digest of the image this runs in, which must be the one the stage declares, if any;
    ``stop``: an event that stops the command as Ctrl-C does (``stop_signals`` do the same);
    ``remove_later``: who removes the private worktree after this returns (default: removed before)."""
    from .executor import RunEvents

    events = events or RunEvents()
    started = time.time()
    target = open_remote_or_none(repo, remote)
    sha = resolve_commit(repo, rev, target)
    for manifest in upstream:
        if manifest.rev != sha:
            raise UsageError(
                f"upstream manifest of stage '{manifest.stage}' is for revision {manifest.rev[:12]}, not {sha[:12]}",
                hint="pass the manifests of the same DAG run",
            )
    # the clone's objects stay while this runs: gc in the clone waits for the shared store lock
    with repo.store_lock(), private_worktree(repo, sha, remove_later=remove_later) as work:
        graph = build_graph(load_pipeline(work.root), work.root)
        if name not in graph.pipeline.stages:
            known = ", ".join(list(graph.pipeline.stages)[:10])
            raise UsageError(f"no stage '{name}' in the pipeline at {sha[:12]}", hint=f"stages: {known}")
        stage = graph.stage(name)
        _check_image(stage, image_digest)
        manifests = {}
        for manifest in upstream:
            check_manifest_outputs(graph, manifest, f"--upstream of stage '{manifest.stage}'")
            manifests[manifest.stage] = manifest
        inputs_of = InputResolver(work, repo, graph, target, manifests)
        inputs = inputs_of.read(stage)
        key = inputs.run_key(stage)
        cacheable = not stage.always_changed and not any(o.persist for o in stage.outs)

        def manifest(status: str, outs: tuple[LockedPath, ...], run_id: str | None) -> StageManifest:
            return StageManifest(
                name,
                sha,
                key,
                status,
                run_id,
                time.time() - started,
                inputs.deps,
                inputs.params,
                inputs.env,
                outs,
                tuple(inputs_of.warnings),
            )

        if stage.frozen:  # as `mlops run` leaves it: what pipeline.lock records, never run
            return manifest(RESTORED, frozen_outputs(work, stage), None)
        if cacheable and not force:
            hit = _restorable(repo, work, target, stage, key, inputs_of.warnings)
            if hit is not None:
                return manifest(RESTORED, hit.outs, hit.run_id)
        # a miss: this stage's inputs only, then its command
        for path in stage.deps:
            inputs_of.place(path)
        real = read_inputs(work, stage, inputs_of.params)
        if real.run_key(stage) != key:  # pragma: no cover - the two readings disagree: trust the workspace's
            inputs, key = real, real.run_key(stage)
        run_id = new_run_id()
        outs = _run_recorded(work, graph, stage, inputs, run_id, target, events, stop, stop_signals)
        if target is not None:
            _push_outputs(work, target, outs)
        if not cacheable:
            return manifest(RAN, outs, run_id)
        if target is None:
            runcache.record(repo, key, outs, run_id=run_id)
            return manifest(RAN, outs, run_id)
        published = runcache.publish(repo, target, key, outs, run_id=run_id)
        if published.created:
            runcache.record(repo, key, outs, run_id=run_id)  # this clone's run cache knows it too
            return manifest(RAN, outs, run_id)
        return manifest(ADOPTED, published.hit.outs, published.hit.run_id)


def _run_recorded(
    work: Repo,
    graph: Graph,
    stage: Stage,
    inputs: StageInputs,
    run_id: str,
    remote: Remote | None,
    events: Any,
    stop: threading.Event | None,
    stop_signals: tuple[int, ...],
) -> tuple[LockedPath, ...]:
    """The command, inside a run record as `mlops run` keeps one (the command logs into it through
    MLOPS_RUN_ID); the run, ended, goes to the remote, since the worktree holding it is removed.
    The manifest's run_id names it: a collect's run points to it as the producer of the outputs."""
    from .executor import FAILED, INTERRUPTED, RAN, RunTracker, StageResult, finished_stage

    tracker = RunTracker(work, run_id, graph, [stage.name])
    tracker.begin()
    began = time.time()
    try:
        outs = _run(work, stage, run_id, events, stop, stop_signals)
    except Interrupted:
        tracker.finish((StageResult(stage.name, INTERRUPTED, (), began, time.time()),), interrupted=True)
        raise
    except MlopsError as exc:
        tracker.finish((StageResult(stage.name, FAILED, (), began, time.time(), None, exc.message),), interrupted=False)
        _push_run(work, remote, run_id)
        raise
    done = finished_stage(stage.name, RAN, ("not in the run cache",), began, inputs, outs, returncode=0)
    tracker.finish((done,), interrupted=False)
    _push_run(work, remote, run_id)
    return outs


def _push_run(work: Repo, remote: Remote | None, run_id: str) -> None:
    """This one run to the remote, as `mlops push --runs` sends each (best effort: the data is what matters)."""
    from ..tracking import store as tracking
    from ..tracking.sync import bundle_run, ref_name

    if remote is None:
        return
    with contextlib.suppress(MlopsError, OSError, ValueError):
        folder = tracking.run_dir(work, run_id)
        info = tracking.read_run_json(folder)
        if info is not None:
            remote.put_ref(ref_name(run_id), bundle_run(work, run_id, info, tracking.effective_status(info)))


def _declared(stage: Stage, hit: runcache.CacheHit | None) -> runcache.CacheHit | None:
    """A local entry only when it names exactly the stage's outputs (as `mlops run` takes one): any
    other is a miss, never reported nor published under the stage's key."""
    if hit is None or {o.path for o in hit.outs} != {o.path for o in stage.outs}:
        return None
    return hit


def _check_image(stage: Stage, image_digest: str | None) -> None:
    if not image_digest:
        return
    declared = stage.image_digest
    if declared and declared != image_digest:
        raise UsageError(
            f"stage '{stage.name}' declares image {stage.image}, but this runs in {image_digest}",
            hint="run the stage in the image pipeline.yaml names (its digest is part of the stage's key)",
        )


def _restorable(
    repo: Repo, work: Repo, remote: Remote | None, stage: Stage, key: str, warnings: list[str]
) -> runcache.CacheHit | None:
    """A hit another task can use: on the remote; or here with its objects, then pushed and published."""
    if remote is not None:
        hit = runcache.remote_lookup(remote, key, outs=[o.path for o in stage.outs], warnings=warnings)
        if hit is not None:
            return hit
    hit = _declared(stage, runcache.lookup_entry(repo, key))
    if hit is None:
        return None
    if remote is None:
        return hit
    _push_outputs(work, remote, hit.outs)
    return runcache.publish(repo, remote, key, hit.outs, run_id=hit.run_id).hit


def _run(
    work: Repo,
    stage: Stage,
    run_id: str,
    events: Any,
    stop: threading.Event | None,
    stop_signals: tuple[int, ...],
) -> tuple[LockedPath, ...]:
    from .executor import check_outputs, clear_outputs, run_stage_command, snapshot_outputs
    from .executors.local import signal_name

    check_outputs(work, stage)
    clear_outputs(work, stage)
    events.stage_started(stage.name, ("not in the run cache",))
    code, stopped_by = run_stage_command(work, stage, run_id, events, stop=stop, stop_signals=stop_signals)
    if stopped_by is not None:
        how = "interrupted" if stopped_by == signal.SIGINT else f"stopped by {signal.Signals(stopped_by).name}"
        raise Interrupted(f"stage '{stage.name}' {how}; nothing recorded", stage=stage.name, signum=stopped_by)
    if code != 0:
        why = f"was killed by {signal_name(-code)}" if code < 0 else f"exited with code {code}"
        raise CouldNotComplete(
            f"stage '{stage.name}' failed: its command {why}; nothing recorded",
            hint="see the [stage] lines above",
            stage=stage.name,
            returncode=code,
        )
    missing = [o.path for o in stage.outs if not work.abs(o.path).exists()]
    if missing:
        raise CouldNotComplete(
            f"stage '{stage.name}' failed: the command did not produce {', '.join(missing)}", stage=stage.name
        )
    return snapshot_outputs(work, stage)


def _push_outputs(work: Repo, remote: Remote, outs: tuple[LockedPath, ...]) -> None:
    """The outputs' objects to the remote, children before parents (push's own order)."""
    from ..data.references import Root
    from ..data.transfer import push

    roots = [Root(o.hash, o.kind == "dir", o.path, None if o.kind == "dir" else o.size) for o in outs if o.hash]
    result = push(work, remote=remote.name, only_roots=roots)
    if result.missing_locally:
        raise CouldNotComplete(
            f"cannot push the outputs to remote '{remote.name}': {len(result.missing_locally)} objects are missing "
            "from the local cache",
            hint="run 'mlops verify' in the clone",
        )


def manifests_from_texts(texts: Sequence[str]) -> list[StageManifest]:
    """``--upstream`` values: JSON text, or ``@FILE`` (read bounded)."""
    found = []
    for text in texts:
        if text.startswith("@"):
            path = Path(text[1:])
            try:
                with open(path, "rb") as handle:
                    data = handle.read(MAX_MANIFEST_BYTES + 1)
            except OSError as exc:
                raise UsageError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
            found.append(parse_manifest(data, str(path)))
        else:
            found.append(parse_manifest(text, "--upstream"))
    return found


__all__ = [
    "ADOPTED",
    "RAN",
    "RESTORED",
    "StageManifest",
    "clean_stale_snapshot_refs",
    "clean_stale_worktrees",
    "exec_stage",
    "manifests_from_texts",
    "parse_manifest",
    "prepare_commit",
    "private_worktree",
    "resolve_commit",
]
