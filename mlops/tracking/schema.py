"""The shape of a run's files, checked wherever they come from mlops did not write them itself.

A run bundle pulled from a shared remote (``sync.check_bundle``) and a run folder read by
``runs list`` (``store``) go through the same rules, so that a value of the wrong type, an
absurd time or a path out of the repository never reaches a reader, a table or the disk:

- ``run.json``: known fields of known types (``id`` the run's id, ``status`` one of the
  statuses, times as seconds since the epoch, text bounded in length); other fields only as
  bounded JSON;
- each line of ``params.jsonl``, ``metrics.jsonl``, ``artifacts.jsonl``, ``stages.jsonl``,
  ``procs.jsonl``: the fields the store writes, of the types it writes; artifact and stage
  paths are relative paths inside the repository (``paths.check_relpath``), hashes are
  object names;
- everywhere: nesting at most ``MAX_DEPTH`` deep, text at most ``MAX_TEXT`` characters,
  containers at most ``MAX_ITEMS`` entries, whole numbers within 64 bits, times between 1970
  and 9999 (a number, or ISO 8601 text with a time zone, turned into a number).

A problem is a ``FormatError`` whose message says which field of which file and why.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import FormatError, MlopsError
from ..paths import relpath_problem

MAX_DEPTH = 12
MAX_TEXT = 65_536  # characters of one text value
MAX_KEY = 1_024  # characters of a param or metric name
MAX_ITEMS = 100_000  # entries of one list or object
MAX_FILE_CHARS = 256 << 20  # one record file of a bundle
MAX_LINES = 2_000_000  # records in one file
MAX_INT = 2**63
MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z
STATUSES = ("running", "finished", "failed", "interrupted")
ENDED = ("finished", "failed", "interrupted")
_HASH = re.compile(r"[0-9a-f]{32}")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")  # store.RUN_ID (store imports this module)


def _fail(where: str, problem: str) -> FormatError:
    return FormatError(f"{where}: {problem}")


# --- values ----------------------------------------------------------------------------------


def check_bounded(value: Any, where: str, depth: int = 0) -> None:
    """Any JSON value, within the depth, length and size bounds."""
    if depth > MAX_DEPTH:
        raise _fail(where, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, float)):
        return
    if isinstance(value, int):
        if abs(value) >= MAX_INT:
            raise _fail(where, "a whole number beyond 64 bits")
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _fail(where, f"text longer than {MAX_TEXT} characters")
        return
    if isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise _fail(where, f"a list of more than {MAX_ITEMS} items")
        for item in value:
            check_bounded(item, where, depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise _fail(where, f"an object of more than {MAX_ITEMS} fields")
        for key, item in value.items():
            if len(key) > MAX_KEY:
                raise _fail(where, f"a field name longer than {MAX_KEY} characters")
            check_bounded(item, where, depth + 1)
        return
    raise _fail(where, f"not a JSON value ({type(value).__name__})")


def _text(value: Any, where: str, *, limit: int = MAX_TEXT, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(where, f"expected text, found {_kind(value)}")
    if len(value) > limit:
        raise _fail(where, f"text longer than {limit} characters")
    return value


def _whole(value: Any, where: str, *, optional: bool = False, low: int = -MAX_INT) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected a whole number, found {_kind(value)}")
    if not low <= value < MAX_INT:
        raise _fail(where, f"{value} is out of range")
    return value


def _number(value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a number, found {_kind(value)}")
    if isinstance(value, int) and abs(value) >= MAX_INT:
        raise _fail(where, "a whole number beyond 64 bits")
    return value


def check_time(value: Any, where: str, *, optional: bool = True) -> float | None:
    """Seconds since the epoch between 1970 and 9999: a number, or ISO 8601 text with a time zone."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        seconds = _iso_seconds(value, where)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a time, found {_kind(value)}")
    else:
        seconds = float(value) if abs(value) < MAX_INT else math.inf
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_TIME):
        raise _fail(where, f"{value!r} is not a time between 1970 and 9999")
    return seconds


def _iso_seconds(text: str, where: str) -> float:
    if len(text) > 64:
        raise _fail(where, "a time written as text longer than 64 characters")
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise _fail(where, f"{text[:64]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise _fail(where, f"{text!r} has no time zone")
    return moment.timestamp()


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _relpath(value: Any, where: str) -> str:
    problem = relpath_problem(value)
    if problem:
        raise _fail(where, f"path {str(value)[:120]!r} refused: {problem}")
    return value  # type: ignore[no-any-return]


def _hash(value: Any, where: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise _fail(where, f"{str(value)[:80]!r} is not an object hash")
    return value


# --- run.json --------------------------------------------------------------------------------


def check_run_info(info: Any, where: str, *, run_id: str | None = None) -> dict[str, Any]:
    """run.json's content, checked; times given as ISO text come back as numbers."""
    if not isinstance(info, dict):
        raise _fail(where, f"expected an object, found {_kind(info)}")
    check_bounded(info, where)
    out = dict(info)
    fmt = info.get("format", 1)
    _whole(fmt, f"{where}: 'format'", low=1)
    if run_id is not None and info.get("id") != run_id:
        raise _fail(where, f"it holds run {str(info.get('id'))[:80]!r}, not {run_id}")
    _text(info.get("id"), f"{where}: 'id'", limit=128, optional=run_id is None)
    status = info.get("status", "running")
    if status not in STATUSES:
        raise _fail(where, f"status {str(status)[:40]!r} is not one of {', '.join(STATUSES)}")
    for key in ("start_time", "end_time"):
        out[key] = check_time(info.get(key), f"{where}: '{key}'")
    for key, limit in (("name", 1_024), ("user", 256), ("host", 256), ("source", 64)):
        _text(info.get(key), f"{where}: '{key}'", limit=limit, optional=True)
    for key in ("pid", "pid_start"):
        _whole(info.get(key), f"{where}: '{key}'", optional=True, low=0)
    commit = info.get("git_commit")
    if commit is not None and (not isinstance(commit, str) or not _COMMIT.fullmatch(commit)):
        raise _fail(where, f"'git_commit' {str(commit)[:80]!r} is not a commit id")
    if info.get("git_dirty") is not None and not isinstance(info.get("git_dirty"), bool):
        raise _fail(where, "'git_dirty' is not true/false")
    parent = info.get("parent_id")
    if parent is not None and (not isinstance(parent, str) or not _RUN_ID.fullmatch(parent)):
        raise _fail(where, "'parent_id' is not a run id")
    tags = info.get("tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise _fail(where, "'tags' must map text to text")
    out["deleted"] = check_time(info.get("deleted"), f"{where}: 'deleted'")
    if out["deleted"] is None:
        out.pop("deleted")
    stages = info.get("stages", [])
    if not isinstance(stages, list):
        raise _fail(where, f"'stages' expected a list, found {_kind(stages)}")
    for stage in stages:
        _text(stage, f"{where}: 'stages'", limit=1_024)
    return out


# --- record lines ----------------------------------------------------------------------------


def _stage_field(record: Mapping[str, Any], where: str) -> None:
    _text(record.get("stage"), f"{where}: 'stage'", limit=1_024, optional=True)


def _param(record: dict[str, Any], where: str) -> None:
    _text(record.get("key"), f"{where}: 'key'", limit=MAX_KEY)
    value = record.get("value")
    if isinstance(value, dict):
        raise _fail(f"{where}: 'value'", "a param is a value or a list, not an object")


def _metric(record: dict[str, Any], where: str) -> None:
    _text(record.get("key"), f"{where}: 'key'", limit=MAX_KEY)
    _number(record.get("value"), f"{where}: 'value'")
    step = record.get("step")
    if step is not None:
        _number(step, f"{where}: 'step'")


def _artifact(record: dict[str, Any], where: str) -> None:
    _relpath(record.get("path"), f"{where}: 'path'")
    _hash(record.get("hash"), f"{where}: 'hash'")
    if record.get("kind", "file") not in ("file", "dir"):
        raise _fail(where, f"kind {str(record.get('kind'))[:40]!r} is not file or dir")
    for key in ("size", "files"):
        _whole(record.get(key), f"{where}: '{key}'", optional=True, low=0)


def _paths(items: Any, where: str) -> None:
    if items is None:
        return
    if not isinstance(items, list):
        raise _fail(where, f"expected a list, found {_kind(items)}")
    for item in items:
        if not isinstance(item, dict):
            raise _fail(where, f"expected an object per path, found {_kind(item)}")
        _relpath(item.get("path"), f"{where}: 'path'")
        _hash(item.get("hash"), f"{where}: 'hash'")
        _text(item.get("kind"), f"{where}: 'kind'", limit=16, optional=True)


def _stage(record: dict[str, Any], where: str) -> None:
    _text(record.get("stage"), f"{where}: 'stage'", limit=1_024)
    _text(record.get("status"), f"{where}: 'status'", limit=64)
    for key in ("started", "ended"):
        record[key] = check_time(record.get(key), f"{where}: '{key}'")
    for key in ("deps", "outs"):
        _paths(record.get(key), f"{where}: '{key}'")
    reasons = record.get("reasons")
    if reasons is not None and (not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons)):
        raise _fail(where, "'reasons' is not a list of text")
    _text(record.get("error"), f"{where}: 'error'", optional=True)


def _proc(record: dict[str, Any], where: str) -> None:
    if record.get("event") not in ("join", "leave"):
        raise _fail(where, f"event {str(record.get('event'))[:40]!r} is not join or leave")
    _whole(record.get("pid"), f"{where}: 'pid'", low=0)
    _text(record.get("host"), f"{where}: 'host'", limit=256)
    _whole(record.get("pid_start"), f"{where}: 'pid_start'", optional=True, low=0)
    status = record.get("status")
    if status is not None and status not in STATUSES:
        raise _fail(where, f"status {str(status)[:40]!r} is not one of {', '.join(STATUSES)}")


RECORD_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "params.jsonl": _param,
    "metrics.jsonl": _metric,
    "artifacts.jsonl": _artifact,
    "stages.jsonl": _stage,
    "procs.jsonl": _proc,
}


def check_record(file: str, record: Any, where: str) -> dict[str, Any]:
    """One line of one of the run's record files, checked; times come back as numbers."""
    if not isinstance(record, dict):
        raise _fail(where, f"expected an object, found {_kind(record)}")
    check_bounded(record, where)
    out = dict(record)
    RECORD_CHECKS[file](out, where)
    _stage_field(out, where)
    if "timestamp" in out:
        out["timestamp"] = check_time(out.get("timestamp"), f"{where}: 'timestamp'")
    return out


def record_problem(file: str, record: Any) -> str | None:
    """Why a record read from a local run file cannot be used, or None (readers skip such lines)."""
    try:
        check_record(file, record, file)
    except MlopsError as exc:
        return exc.message
    return None
