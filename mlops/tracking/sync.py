"""Share experiment runs through a remote: ``mlops push --runs`` / ``pull --runs`` / ``fetch --runs``.

A run travels as ONE ref on the remote, ``runs/<run_id>.json`` (``Remote.put_ref``, atomic),
holding a JSON bundle::

    {"format": 1,
     "run": {...run.json...},
     "files": {"params.jsonl": "<text>", "metrics.jsonl": "<text>", "artifacts.jsonl": "<text>",
               "stages.jsonl": "<text>", "procs.jsonl": "<text>"}}      (only the files that exist)

- ``push_runs`` sends every run that has ended (finished, failed, interrupted: its
  *effective* status, so a run whose process died is sent as ``failed``; the bundle's
  run.json then says so, as the receiving machine cannot check the dead pid). A run still
  running is skipped, and so is one whose ref the remote already has (one listing): a run
  that ended does not change, so a second push sends nothing.
- ``pull_runs`` takes the remote's runs that this repo lacks. A run folder that exists
  here is never overwritten. A received run's files are written into a hidden temp folder
  inside ``.mlops/runs/`` (``.tmp-mlops-run-*``, which readers skip), fsynced, then renamed
  into place: a crash leaves no half run, only a temp folder that the next pull removes.
  Its summary is then appended to ``index.jsonl``. A bundle that does not check out (not
  JSON, unknown format, id not matching its name, not ended, unknown file) is skipped with
  a warning in the result.

Run artifacts are objects: they travel with the data (``store.artifact_roots`` is part of
the roots the CLI pushes and fetches). The CLI pushes objects before runs, and pulls runs
before computing what to fetch, so the new runs' artifacts come in the same command.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import FormatError, MlopsError, UsageError
from ..formats import parse_json
from ..fsio import TMP_PREFIX, FileLock, append_record, fsync_dir, storage_error
from ..progress import NO_PROGRESS, Progress
from ..remotes.base import Remote, check_ref_name
from ..repo.repo import Repo
from . import schema, store
from .refsync import name_in, pull_missing, push_missing

BUNDLE_FORMAT = 1
REF_PREFIX = "runs/"
REF_SUFFIX = ".json"
RUN_FILES = ("params.jsonl", "metrics.jsonl", "artifacts.jsonl", "stages.jsonl", "procs.jsonl")
TEMP_RUN_PREFIX = TMP_PREFIX + "run-"  # hidden (leading '.'), so run_ids() never lists it


@dataclass(frozen=True)
class RunsTransfer:
    """What ``push_runs`` (sent, skipped_present, skipped_running) or ``pull_runs`` (received, present) did."""

    remote: str
    direction: str  # push | pull
    sent: tuple[str, ...] = ()  # push: run ids sent
    skipped_present: tuple[str, ...] = ()  # push: already on the remote
    skipped_running: tuple[str, ...] = ()  # push: not ended yet
    received: tuple[str, ...] = ()  # pull: run ids written here
    present: tuple[str, ...] = ()  # pull: the remote's runs this repo already has (left as they are)
    warnings: tuple[str, ...] = ()  # runs skipped because something was wrong with them

    def summary(self) -> str:
        """One line for people (the CLI prints it; warnings are its own lines)."""
        if self.direction == "push":
            running = f", {len(self.skipped_running)} still running (not sent)" if self.skipped_running else ""
            return (
                f"pushed {len(self.sent)} run(s) ({len(self.skipped_present)} already there{running}) via {self.remote}"
            )
        return f"pulled {len(self.received)} run(s) ({len(self.present)} already here) via {self.remote}"

    def to_dict(self) -> dict[str, Any]:
        if self.direction == "push":
            counts: dict[str, Any] = {
                "sent": len(self.sent),
                "skipped_present": len(self.skipped_present),
                "skipped_running": len(self.skipped_running),
                "sent_ids": list(self.sent),
                "running_ids": list(self.skipped_running),
            }
        else:
            counts = {"received": len(self.received), "present": len(self.present), "received_ids": list(self.received)}
        return {"remote": self.remote, "direction": self.direction, **counts, "warnings": list(self.warnings)}


def ref_name(run_id: str) -> str:
    return check_ref_name(f"{REF_PREFIX}{store.check_run_id(run_id)}{REF_SUFFIX}")


def run_id_of(ref: str) -> str | None:
    """The run id a ref names (``runs/<id>.json``); None for anything else."""
    run_id = name_in(ref, REF_PREFIX, REF_SUFFIX, store.RUN_ID)
    if run_id is None:
        return None
    try:
        ref_name(run_id)
    except UsageError:
        return None
    return run_id


def _open(repo: Repo, remote: Remote | str | None) -> Remote:
    if isinstance(remote, Remote):
        return remote
    from ..data.transfer import get_remote

    return get_remote(repo, remote)


# --- push ------------------------------------------------------------------------------------


def bundle_run(repo: Repo, run_id: str, info: dict[str, Any], status: str) -> bytes:
    """The ref value for one run: run.json (with its effective status) and its record files."""
    folder = store.run_dir(repo, run_id)
    run = dict(info)
    run["id"] = run_id
    run["status"] = status
    files: dict[str, str] = {}
    for name in RUN_FILES:
        try:
            files[name] = (folder / name).read_bytes().decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError):
            continue
    bundle = {"format": BUNDLE_FORMAT, "run": run, "files": files}
    return json.dumps(bundle, separators=(",", ":"), default=str).encode("utf-8")


def push_runs(
    repo: Repo, remote: Remote | str | None = None, *, jobs: int | None = None, progress: Progress = NO_PROGRESS
) -> RunsTransfer:
    """Send every ended run the remote lacks, one ref each; running runs are skipped."""
    target = _open(repo, remote)
    todo: list[tuple[str, tuple[str, str]]] = []  # (ref name, (run id, effective status))
    running: list[str] = []
    warnings: list[str] = []
    for run_id in store.run_ids(repo):
        folder = store.run_dir(repo, run_id)
        try:
            info = store.read_run_json(folder)
        except MlopsError as exc:
            warnings.append(f"run {run_id}: {exc.message}; not pushed")
            continue
        if info is None:
            continue  # a folder without run.json: being created, or not a run
        procs = store.read_lines(folder / "procs.jsonl") if info.get("pid") is None else None
        status = store.effective_status(info, procs)
        if status not in store.ENDED:
            running.append(run_id)
            continue
        try:
            name = ref_name(run_id)
        except UsageError:
            warnings.append(f"run {run_id}: its id cannot name a ref on a remote; not pushed")
            continue
        todo.append((name, (run_id, status)))

    def send(item: tuple[str, str]) -> bytes:
        run_id, status = item
        info = store.read_run_json(store.run_dir(repo, run_id)) or {}
        return bundle_run(repo, run_id, info, status)

    pushed = push_missing(
        target,
        REF_PREFIX,
        todo,
        send,
        jobs=jobs,
        progress=progress,
        label=f"push runs to {target.name}",
    )
    return RunsTransfer(
        target.name,
        "push",
        sent=tuple(sorted(run_id for run_id, _ in pushed.sent)),
        skipped_present=tuple(run_id for run_id, _ in pushed.present),
        skipped_running=tuple(running),
        warnings=tuple(warnings),
    )


# --- pull ------------------------------------------------------------------------------------


MAX_BUNDLE_BYTES = 512 << 20  # a bundle larger than this is refused before it is parsed


def check_bundle(run_id: str, data: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    """(run.json content, {file name: text}) of a bundle, every field checked against the schema
    (``tracking.schema``); FormatError says what is wrong. The files come back re-written from
    the checked records, one JSON line each: what is placed is what was checked."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise FormatError(f"larger than {MAX_BUNDLE_BYTES >> 20} MiB")
    try:
        bundle = parse_json(data, "bundle")  # bounded: the bytes come from a remote
    except FormatError as exc:
        raise FormatError(exc.message) from None
    if not isinstance(bundle, dict):
        raise FormatError("not a JSON object")
    version = bundle.get("format")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatError("no bundle format")
    if version > BUNDLE_FORMAT:
        raise FormatError(f"written by a newer mlops (bundle format {version}); upgrade mlops")
    if version != BUNDLE_FORMAT:
        raise FormatError(f"unknown bundle format {version}")
    run = bundle.get("run")
    if not isinstance(run, dict):
        raise FormatError("no run.json in it")
    run_format = run.get("format")
    if isinstance(run_format, int) and not isinstance(run_format, bool) and run_format > store.RUN_FORMAT:
        raise FormatError(f"written by a newer mlops (run format {run_format}); upgrade mlops")
    run = schema.check_run_info(run, "run.json", run_id=run_id)
    if run.get("status") not in store.ENDED:
        raise FormatError(f"status {str(run.get('status'))[:40]!r} is not an ended run's")
    files = bundle.get("files", {})
    if not isinstance(files, dict):
        raise FormatError("'files' is not an object")
    checked: dict[str, str] = {}
    for name, text in files.items():
        if name not in RUN_FILES:
            raise FormatError(f"unknown file {str(name)[:80]!r} in it")
        if not isinstance(text, str):
            raise FormatError(f"{name} is not text")
        checked[name] = _check_records(name, text)
    return run, checked


def _check_records(name: str, text: str) -> str:
    """The file's records checked one by one and written back as JSON lines. A last line that is
    not JSON is a torn tail (the sender crashed mid-append) and is dropped, as readers do."""
    if len(text) > schema.MAX_FILE_CHARS:
        raise FormatError(f"{name} is larger than {schema.MAX_FILE_CHARS >> 20} MiB")
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) > schema.MAX_LINES:
        raise FormatError(f"{name} has more than {schema.MAX_LINES} records")
    out: list[str] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except RecursionError:
            raise FormatError(f"{name} line {number}: nested deeper than {schema.MAX_DEPTH} levels") from None
        except ValueError as exc:
            if number == len(lines):
                break
            raise FormatError(f"{name} line {number}: not valid JSON ({_first_line(exc)})") from None
        record = schema.check_record(name, record, f"{name} line {number}")
        out.append(json.dumps(record, sort_keys=True, separators=(",", ":")))
    return "".join(line + "\n" for line in out)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:  # x: never through a planted file or link
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o644)


def _place_run(repo: Repo, run_id: str, run: dict[str, Any], files: dict[str, str]) -> bool:
    """Write the run into a temp folder, then rename it into place; False if it exists here.

    Every name goes through ``paths``: the run id is one plain name, ``.mlops/runs`` must be a
    real folder (a symlink planted there would carry the run elsewhere), and each file name is
    a checked name inside the temp folder."""
    where = f"run bundle {run_id}"
    paths.check_name(run_id, where=where)
    runs = paths.Destinations(repo.dot).check_folder(store.RUNS, where=where)
    final = store.run_dir(repo, run_id)
    if os.path.lexists(final):
        return False
    try:
        temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_RUN_PREFIX}{run_id}.", dir=runs))
    except OSError as exc:
        raise storage_error(exc, runs) from exc
    inside = paths.Destinations(temp)
    try:
        for name, text in files.items():
            _write_file(inside.check(name, where=where), text.encode("utf-8"))
        run_json = (json.dumps(run, indent=2, default=str) + "\n").encode("utf-8")
        _write_file(inside.check(store.RUN_FILE, where=where), run_json)
        os.chmod(temp, 0o755)
        fsync_dir(temp)
        if os.path.lexists(final):
            return False  # another process took it meanwhile: a local run is never overwritten
        os.rename(temp, final)
        fsync_dir(runs)
        return True
    except OSError as exc:
        raise storage_error(exc, final) from exc
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _remove_stale_temps(runs: Path) -> None:
    """Temp folders left by a pull that crashed (the caller holds the sync lock)."""
    with contextlib.suppress(OSError), os.scandir(runs) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_RUN_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def copy_run(source: Repo, target: Repo, run_id: str) -> bool:
    """One ended run of ``source`` (a private worktree's) placed into ``target``'s runs, whole or
    not at all, as a pulled run is; False when ``target`` has it already."""
    info = store.read_run_json(store.run_dir(source, run_id))
    if info is None:
        return False
    data = bundle_run(source, run_id, info, store.effective_status(info))
    run, files = check_bundle(run_id, data)
    paths.Destinations(target.dot).check_folder(store.RUNS, where="the runs folder")
    runs = store._ensure_runs_dir(target)
    with FileLock(runs / ".sync.lock", what="runs being copied"):
        if not _place_run(target, run_id, run, files):
            return False
        append_record(runs / store.INDEX_FILE, store.summarize(target, run_id))
    return True


def pull_runs(
    repo: Repo, remote: Remote | str | None = None, *, jobs: int | None = None, progress: Progress = NO_PROGRESS
) -> RunsTransfer:
    """Take the remote's runs that this repo lacks; local runs are never overwritten."""
    source = _open(repo, remote)
    local = set(store.run_ids(repo))
    runs = store.runs_dir(repo)

    @contextlib.contextmanager
    def session() -> Iterator[None]:
        # a symlink planted at .mlops/runs would carry every pulled run elsewhere: refused whole (exit 3)
        paths.Destinations(repo.dot).check_folder(store.RUNS, where="the runs folder")
        store._ensure_runs_dir(repo)
        with FileLock(runs / ".sync.lock", what="runs being pulled"):
            _remove_stale_temps(runs)
            yield

    def place(run_id: str, bundle: tuple[dict[str, Any], dict[str, str]]) -> bool:
        if not _place_run(repo, run_id, *bundle):
            return False
        append_record(runs / store.INDEX_FILE, store.summarize(repo, run_id))
        return True

    pulled = pull_missing(
        source,
        REF_PREFIX,
        key_of=run_id_of,
        have=lambda run_id: run_id in local or store.run_dir(repo, run_id).exists(),
        check=check_bundle,
        place=place,
        names="a run",
        invalid="a valid run bundle",
        session=session,
        jobs=jobs,
        progress=progress,
        label=f"pull runs from {source.name}",
    )
    return RunsTransfer(
        source.name,
        "pull",
        received=tuple(sorted(pulled.received)),
        present=tuple(sorted(pulled.present)),
        warnings=pulled.warnings,
    )
