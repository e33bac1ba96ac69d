"""The run store: experiment runs on disk under ``.mlops/runs/``.

Layout (docs/tracking.md has the full description)::

    .mlops/runs/
      .gitignore          "*": runs are local to a checkout, like the cache
      index.jsonl         one summary line per ended run (the last line for an id wins)
      <run_id>/
        run.json          replaced atomically: id, name, status, times, user, host, pid, git
        params.jsonl      {"key", "value", "timestamp"[, "stage"]}, one line per param
        metrics.jsonl     {"key", "value", "step", "timestamp"[, "stage"]}, one line per value
        artifacts.jsonl   {"path", "hash", "kind", "size", "files", "timestamp"}
        stages.jsonl      {"stage", "status", ...} from the pipeline (record_stage)
        procs.jsonl       {"event": "join"|"leave", "pid", "host", ...}: processes that joined

Records are appended with ``fsio.append_record``: one O_APPEND write of one line, so
several processes (parallel stages) logging into one run lose no value, and a crash can
tear at most the last line, which readers skip.

Functions for the pipeline executor (and anyone else that owns a run):

- ``create_run(repo, run_id, name, *, stages=(), source="pipeline")``: write run.json with
  status ``running`` and this process as its owner (pid, host), plus git commit/dirty.
- ``record_stage(repo, run_id, stage, status, **fields)``: append one stage outcome.
- ``log_params(repo, run_id, {...})`` / ``log_metrics(repo, run_id, {...}, step=...)``:
  append values (e.g. the stage's params and its metrics files, flattened).
- ``finish_run(repo, run_id, status, *, stages=None, params=None, metrics=None, name=None)``: append
  the given params/metrics, mark run.json ended, and append the run's summary to the index.
- ``artifact_roots(repo)``: the objects run artifacts name; the CLI adds them to the roots of gc, push and fetch.

Readers (``list_summaries``, ``load_run``, ``summarize``) report a run whose run.json
says ``running`` as ``failed`` when its owner's host is this host and the owner's pid is no
longer alive (or now belongs to another process): the process was killed mid-run. A run
owned by a process on another host cannot be checked and stays ``running``.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError, NewerFormatError, UsageError
from ..formats import load_json, parse_json_lines
from ..fsio import FileLock, append_record, atomic_write, pid_alive, process_start
from ..repo.repo import Repo
from . import schema

RUNS = "runs"
RUN_FILE = "run.json"
INDEX_FILE = "index.jsonl"
RUN_FORMAT = 1
INDEX_FORMAT = 1

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
STATUSES = (RUNNING, FINISHED, FAILED, INTERRUPTED)
ENDED = (FINISHED, FAILED, INTERRUPTED)

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")  # used with fullmatch: "$" would admit a trailing newline


# --- ids and paths ---------------------------------------------------------------------------


def new_run_id() -> str:
    """Sortable by time, unique across machines: 20261126-083315-<8 hex>."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise UsageError(f"not a valid run id: {run_id!r}", hint="letters, digits, '.', '_' and '-' only")
    return run_id


def runs_dir(repo: Repo) -> Path:
    return repo.dot / RUNS


def run_dir(repo: Repo, run_id: str) -> Path:
    return runs_dir(repo) / check_run_id(run_id)


def _ensure_runs_dir(repo: Repo) -> Path:
    folder = runs_dir(repo)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        atomic_write(ignore, "# runs are local to this checkout (mlops runs list)\n*\n")
    return folder


def _run_lock(folder: Path) -> FileLock:
    return FileLock(folder / ".lock", what=f"run {folder.name}")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in a container is not an error
        return str(os.getuid()) if hasattr(os, "getuid") else ""


def git_facts(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, dirty) of the git checkout at ``root``; (None, None) without git."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return head.stdout.strip() or None, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


# --- tolerant reading ------------------------------------------------------------------------


def read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines; unparseable lines (a torn tail left by a crash) are skipped."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    text = data.decode("utf-8", "replace")
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return []
    return [r for r in parse_json_lines(lines, str(path)) if isinstance(r, dict)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_number(value: Any) -> bool:
    return value is None or _is_number(value)


def usable_params(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The param lines a reader can use: a text key (a line of another shape is skipped, like a torn one)."""
    return [r for r in records if isinstance(r.get("key"), str)]


def usable_metrics(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metric lines a reader can use: a text key, a number, a numeric step and time (or none)."""
    return [
        r
        for r in records
        if isinstance(r.get("key"), str)
        and _is_number(r.get("value"))
        and _optional_number(r.get("step"))
        and _optional_number(r.get("timestamp"))
    ]


def _checked_lines(folder: Path, name: str) -> list[dict[str, Any]]:
    """A short record file's lines that pass the schema (artifact paths inside the repo, object hashes)."""
    return [r for r in read_lines(folder / name) if schema.record_problem(name, r) is None]


def read_run_json(folder: Path) -> dict[str, Any] | None:
    path = folder / RUN_FILE
    try:
        data = load_json(path, what="run file")
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object", file=str(path))
    if isinstance(data.get("format"), int) and data["format"] > RUN_FORMAT:
        raise NewerFormatError(f"{path}: written by a newer mlops (run format {data['format']})", hint="upgrade mlops")
    # a run folder may have come from elsewhere (copied, pulled by an older mlops, edited):
    # a field of the wrong type is said here, not met later as a crash in a table or a sort
    return schema.check_run_info(data, str(path))


def _write_run_json(folder: Path, info: dict[str, Any]) -> None:
    atomic_write(folder / RUN_FILE, json.dumps(info, indent=2, sort_keys=False, default=str) + "\n")


# --- writing ---------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """Params keep their JSON type (numbers stay numbers for filters); anything else becomes text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    for kind in (int, float):  # numpy scalars and the like
        if type(value).__name__.startswith(kind.__name__):
            with contextlib.suppress(TypeError, ValueError):
                return kind(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return str(value)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def create_run(
    repo: Repo,
    run_id: str | None = None,
    name: str = "",
    *,
    stages: Iterable[str] = (),
    source: str = "pipeline",
    owned: bool = True,
    exist_ok: bool = False,
    parent_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write run.json with status ``running``; this process (pid, host) owns the run.

    ``owned=False`` writes no owner pid (a stage joining a run nobody created yet): such a
    run's status is derived from the processes that joined it. Returns the run.json content.
    """
    run_id = check_run_id(run_id or new_run_id())
    _ensure_runs_dir(repo)
    folder = run_dir(repo, run_id)
    folder.mkdir(exist_ok=True)
    with _run_lock(folder):
        existing = read_run_json(folder)
        if existing is not None:
            if exist_ok:
                return existing
            raise UsageError(f"run {run_id} already exists")
        commit, dirty = git_facts(repo.root)
        pid = os.getpid()
        info = {
            "format": RUN_FORMAT,
            "id": run_id,
            "name": name or "",
            "status": RUNNING,
            "start_time": time.time(),
            "end_time": None,
            "user": _user(),
            "host": socket.gethostname(),
            "pid": pid if owned else None,
            "pid_start": process_start(pid) if owned else None,
            "git_commit": commit,
            "git_dirty": dirty,
            "source": source,
            "stages": list(stages),
        }
        if parent_id:
            info["parent_id"] = check_run_id(parent_id)
        if tags:
            info["tags"] = check_tags(tags)
        _write_run_json(folder, info)
    return info


def log_params(repo: Repo, run_id: str, params: Mapping[str, Any], *, stage: str | None = None) -> None:
    """Append one line per param (nested mappings flattened with dots)."""
    path = run_dir(repo, run_id) / "params.jsonl"
    now = time.time()
    for key, value in flatten(dict(params)).items():
        record = {"key": key, "value": _json_value(value), "timestamp": now}
        if stage:
            record["stage"] = stage
        append_record(path, record)


def log_metrics(
    repo: Repo,
    run_id: str,
    metrics: Mapping[str, Any],
    *,
    step: int | None = None,
    stage: str | None = None,
    timestamp: float | None = None,
) -> None:
    """Append one line per metric value; values must be numbers."""
    path = run_dir(repo, run_id) / "metrics.jsonl"
    now = time.time() if timestamp is None else timestamp
    for key, value in flatten(dict(metrics)).items():
        record = {"key": key, "value": metric_value(key, value), "step": step, "timestamp": now}
        if stage:
            record["stage"] = stage
        append_record(path, record)


def metric_value(key: str, value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"metric '{key}': not a number: {value!r}", hint="log text values as params") from None


def log_artifact_record(repo: Repo, run_id: str, record: Mapping[str, Any]) -> None:
    append_record(
        run_dir(repo, run_id) / "artifacts.jsonl", {**record, "timestamp": record.get("timestamp", time.time())}
    )


def record_stage(repo: Repo, run_id: str, stage: str, status: str, **fields: Any) -> None:
    """Append one stage outcome (``ran``, ``failed``, ...; any extra fields kept as given)."""
    append_record(
        run_dir(repo, run_id) / "stages.jsonl", {"stage": stage, "status": status, "timestamp": time.time(), **fields}
    )


def record_process(repo: Repo, run_id: str, event: str, *, status: str | None = None, stage: str | None = None) -> None:
    """A process joins (``join``) or leaves (``leave``, with its status) a run it does not own."""
    pid = os.getpid()
    record: dict[str, Any] = {"event": event, "pid": pid, "host": socket.gethostname(), "timestamp": time.time()}
    if event == "join":
        record["pid_start"] = process_start(pid)
    if status:
        record["status"] = status
    if stage:
        record["stage"] = stage
    append_record(run_dir(repo, run_id) / "procs.jsonl", record)


def finish_run(
    repo: Repo,
    run_id: str,
    status: str = FINISHED,
    *,
    stages: Iterable[str] | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """End a run: append ``params``/``metrics``, mark run.json, append the summary to the index.
    ``name`` renames the run (a pipeline run is named after the stages that ran, known only at the end).

    Returns the summary line written to ``index.jsonl``.
    """
    if status not in ENDED:
        raise UsageError(f"a run ends as one of {', '.join(ENDED)}, not '{status}'")
    folder = run_dir(repo, run_id)
    if params:
        log_params(repo, run_id, params)
    if metrics:
        log_metrics(repo, run_id, metrics)
    with _run_lock(folder):
        info = read_run_json(folder)
        if info is None:
            raise UsageError(f"no run {run_id}", hint="create_run first")
        info["status"] = status
        info["end_time"] = time.time()
        if stages is not None:
            info["stages"] = list(dict.fromkeys([*info.get("stages", []), *stages]))
        if name is not None:
            info["name"] = name
        _write_run_json(folder, info)
    summary = summarize(repo, run_id, info=info)
    append_record(runs_dir(repo) / INDEX_FILE, summary)
    return summary


MAX_TAGS = 256
MAX_TAG_TEXT = 5_000


def check_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags are text to text (MLflow's habit); other values become their text."""
    if not isinstance(tags, Mapping):
        raise UsageError("tags must be a mapping of names to values")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > 250 or not key.isprintable():
            raise UsageError(f"not a tag name: {str(key)[:60]!r}", hint="printable text, at most 250 characters")
        text = value if isinstance(value, str) else json.dumps(_json_value(value))
        if len(text) > MAX_TAG_TEXT:
            raise UsageError(f"tag {key}: its value is longer than {MAX_TAG_TEXT} characters")
        out[key] = text
    if len(out) > MAX_TAGS:
        raise UsageError(f"more than {MAX_TAGS} tags on one run")
    return out


def _update_info(repo: Repo, run_id: str, change: Any) -> dict[str, Any]:
    """run.json changed under the run's lock; an ended run's new summary goes to the index."""
    folder = run_dir(repo, run_id)
    with _run_lock(folder):
        info = read_run_json(folder)
        if info is None:
            raise UsageError(f"no run {run_id}", hint="see 'mlops runs list'")
        change(info)
        _write_run_json(folder, info)
    if info.get("status") in ENDED:
        append_record(runs_dir(repo) / INDEX_FILE, summarize(repo, run_id, info=info))
    return info


def set_tags(repo: Repo, run_id: str, tags: Mapping[str, Any]) -> dict[str, str]:
    checked = check_tags(tags)

    def change(info: dict[str, Any]) -> None:
        info["tags"] = check_tags({**(info.get("tags") or {}), **checked})

    return _update_info(repo, run_id, change)["tags"]


def set_deleted(repo: Repo, run_id: str, deleted: bool) -> dict[str, Any]:
    """``runs delete`` marks a run deleted (hidden from listings, its artifacts no longer kept by
    gc); ``runs restore`` clears the mark. Its files stay until the folder is removed by hand."""

    def change(info: dict[str, Any]) -> None:
        if deleted:
            info["deleted"] = time.time()
        else:
            info.pop("deleted", None)

    return _update_info(repo, run_id, change)


# --- reading ---------------------------------------------------------------------------------


def effective_status(info: Mapping[str, Any], procs: list[dict[str, Any]] | None = None) -> str:
    """The status to report: a ``running`` run whose owner died on this host is ``failed``."""
    status = info.get("status", RUNNING)
    if status != RUNNING:
        return status
    here = socket.gethostname()
    if info.get("pid") is not None:
        if info.get("host") == here and not pid_alive(info.get("pid"), info.get("pid_start")):
            return FAILED
        return RUNNING
    # no owner (stages joined a run nobody created): derive it from the processes that joined
    if not procs:
        return RUNNING
    left: dict[tuple[Any, Any], str] = {}
    joined: dict[tuple[Any, Any], dict[str, Any]] = {}
    for record in procs:
        who = (record.get("host"), record.get("pid"))
        if record.get("event") == "join":
            joined[who] = record
            left.pop(who, None)
        elif record.get("event") == "leave":
            left[who] = record.get("status") or FINISHED
    outcome = FINISHED
    for who, record in joined.items():
        if who in left:
            if left[who] != FINISHED:
                outcome = FAILED if outcome == FINISHED else outcome
            continue
        if who[0] != here or pid_alive(who[1], record.get("pid_start")):
            return RUNNING
        outcome = FAILED
    return outcome


def latest_metrics(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One value per key: the one at the highest step (no step counts as 0); ties: the last logged."""
    best: dict[str, tuple[Any, ...]] = {}
    for index, record in enumerate(records):
        key = record.get("key")
        if not isinstance(key, str):
            continue
        step = record.get("step")
        rank = (step if isinstance(step, (int, float)) else 0, record.get("timestamp") or 0, index)
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, record.get("value"))
    return {key: value for key, (_, value) in best.items()}


def latest_params(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for record in records:
        if isinstance(record.get("key"), str):
            out[record["key"]] = record.get("value")
    return out


SUMMARY_FIELDS = (
    "parent_id",
    "tags",
    "deleted",
    "id",
    "name",
    "status",
    "start_time",
    "end_time",
    "user",
    "host",
    "git_commit",
    "git_dirty",
    "source",
    "stages",
)


def summarize(repo: Repo, run_id: str, *, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's one-line summary: attributes, last params, latest metrics, artifact count."""
    folder = run_dir(repo, run_id)
    info = info if info is not None else read_run_json(folder)
    if info is None:
        raise UsageError(f"no run {run_id}")
    procs = read_lines(folder / "procs.jsonl") if info.get("pid") is None else None
    summary: dict[str, Any] = {"format": INDEX_FORMAT}
    for key in SUMMARY_FIELDS:
        summary[key] = info.get(key)
    summary["id"] = run_id
    summary["status"] = effective_status(info, procs)
    summary["owned"] = info.get("pid") is not None
    summary["params"] = latest_params(usable_params(read_lines(folder / "params.jsonl")))
    summary["metrics"] = latest_metrics(usable_metrics(read_lines(folder / "metrics.jsonl")))
    summary["artifacts"] = len(_checked_lines(folder, "artifacts.jsonl"))
    return summary


def read_index(repo: Repo) -> dict[str, dict[str, Any]]:
    """The last summary line for each run id in index.jsonl."""
    out: dict[str, dict[str, Any]] = {}
    for record in read_lines(runs_dir(repo) / INDEX_FILE):
        run_id = record.get("id")
        if isinstance(run_id, str):
            out[run_id] = record
    return out


def run_ids(repo: Repo) -> list[str]:
    folder = runs_dir(repo)
    try:
        with os.scandir(folder) as entries:
            return sorted(
                e.name for e in entries if not e.name.startswith(".") and e.is_dir() and RUN_ID.fullmatch(e.name)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def summary_problem(summary: Mapping[str, Any]) -> str | None:
    """Why an index line cannot stand for its run (a field of the wrong type), or None."""
    if not isinstance(summary.get("id"), str) or summary.get("status") not in STATUSES:
        return "no id or status"
    for key in ("start_time", "end_time"):
        if not _optional_number(summary.get(key)):
            return f"'{key}' is not a number"
    for key in ("name", "user", "host", "git_commit", "source"):
        if summary.get(key) is not None and not isinstance(summary.get(key), str):
            return f"'{key}' is not text"
    params, metrics = summary.get("params", {}), summary.get("metrics", {})
    if not isinstance(params, dict) or not isinstance(metrics, dict):
        return "params or metrics are not objects"
    if not all(_is_number(v) for v in metrics.values()):
        return "a metric is not a number"
    if not isinstance(summary.get("stages", []), list):
        return "'stages' is not a list"
    return None


def list_summaries(repo: Repo, *, heal: bool = True, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """A summary per run folder: from the index when the run ended, else from its files.

    A run found ended that the index lacks (killed owner, or a crash between run.json and
    the index) is appended to the index (``heal``), so the next listing is cheap again.
    A run whose run.json cannot be read (wrong types, not JSON) is left out, and said in
    ``warnings`` when a list is given: one bad folder never stops a listing.
    """
    index = read_index(repo)
    out = []
    healed = []
    for run_id in run_ids(repo):
        summary = index.get(run_id)
        if summary is not None and summary_problem(summary) is not None:
            summary = None  # an index line of the wrong shape: read the run's own files instead
        if summary is None:
            try:
                summary = summarize(repo, run_id)
            except (FormatError, NewerFormatError) as exc:
                if warnings is not None:
                    warnings.append(f"run {run_id}: {exc.message}; skipped")
                continue
            except UsageError:
                continue  # a folder without run.json (being created, or not a run)
            if summary["status"] in ENDED and summary.get("owned"):
                healed.append(summary)
        out.append(summary)
    if heal and healed:
        with contextlib.suppress(Exception):  # a read-only repo still lists
            for summary in healed:
                append_record(runs_dir(repo) / INDEX_FILE, summary)
    return out


@dataclass(frozen=True)
class RunData:
    """Everything about one run, for show/compare/plots."""

    info: dict[str, Any]
    status: str
    params: dict[str, Any]
    metrics: dict[str, Any]  # latest value per key
    history: dict[str, list[dict[str, Any]]]  # key -> [{"value", "step", "timestamp"}, ...] in log order
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.info["id"]

    @property
    def name(self) -> str:
        return self.info.get("name") or ""

    def to_dict(self) -> dict[str, Any]:
        info = {k: v for k, v in self.info.items() if k not in ("format",)}
        return {
            **info,
            "status": self.status,
            "params": self.params,
            "metrics": self.metrics,
            "history": self.history,
            "artifacts": self.artifacts,
            "stage_records": self.stages,
        }


def load_run(repo: Repo, run_id: str) -> RunData:
    folder = run_dir(repo, run_id)
    info = read_run_json(folder)
    if info is None:
        raise UsageError(f"no run {run_id}", hint="see 'mlops runs list'")
    info["id"] = run_id
    procs = read_lines(folder / "procs.jsonl") if info.get("pid") is None else None
    metric_records = usable_metrics(read_lines(folder / "metrics.jsonl"))
    history: dict[str, list[dict[str, Any]]] = {}
    for record in metric_records:
        if isinstance(record.get("key"), str):
            history.setdefault(record["key"], []).append(
                {"value": record.get("value"), "step": record.get("step"), "timestamp": record.get("timestamp")}
            )
    return RunData(
        info=info,
        status=effective_status(info, procs),
        params=latest_params(usable_params(read_lines(folder / "params.jsonl"))),
        metrics=latest_metrics(metric_records),
        history=history,
        artifacts=_checked_lines(folder, "artifacts.jsonl"),
        stages=_checked_lines(folder, "stages.jsonl"),
    )


def resolve_run(repo: Repo, ref: str, *, summaries: list[dict[str, Any]] | None = None) -> str:
    """A run named by its id, a unique id prefix, or its name (the newest run with that name)."""
    ids = run_ids(repo)
    if ref in ids:
        return ref
    matches = [i for i in ids if i.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    summaries = summaries if summaries is not None else list_summaries(repo, heal=False)
    named = [s for s in summaries if s.get("name") == ref]
    if named:
        return max(named, key=lambda s: (s.get("start_time") or 0, s["id"]))["id"]
    if len(matches) > 1:
        raise UsageError(
            f"run '{ref}' is ambiguous: {', '.join(matches[:5])}{' ...' if len(matches) > 5 else ''}",
            hint="type more of the id",
        )
    raise UsageError(f"no run '{ref}'", hint="see 'mlops runs list'")


def artifact_roots(repo: Repo) -> list[Any]:
    """Every stored artifact of every run not deleted, as gc/push roots (``mlops.data.references.Root``);
    ``workflows.roots.keep_roots`` adds them to what gc, push, fetch and pull keep."""
    from ..data.references import Root

    roots = []
    for run_id in run_ids(repo):
        with contextlib.suppress(FormatError, NewerFormatError, OSError):
            info = read_run_json(run_dir(repo, run_id))
            if info is not None and info.get("deleted"):
                continue  # `runs delete`: gc may free what only this run kept
        for record in read_lines(run_dir(repo, run_id) / "artifacts.jsonl"):
            if isinstance(record.get("hash"), str):
                roots.append(Root(record["hash"], record.get("kind") == "dir", f"run {run_id}:{record.get('path')}"))
    return roots
