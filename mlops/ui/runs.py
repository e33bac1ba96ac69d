"""The runs behind the runs page: the summaries read once and kept while the run store is
unchanged, then filtered, sorted and paged with ``mlops runs list``'s query language.

The summaries come from ``tracking.store.list_summaries`` (without healing the index: the UI
writes nothing). They are read again when ``index.jsonl`` or the runs folder changes (size or
mtime: a run ended, a run folder appeared or went), and at most every ``RUNNING_REFRESH``
seconds while some run is still running (its metrics grow in its own folder, which touches
neither). A query's result (filter plus sort) is kept for the same summaries, so paging through
tens of thousands of runs sorts once.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..repo.repo import Repo
from ..tracking import query
from ..tracking.store import INDEX_FILE, RUNNING, list_summaries, runs_dir

RUNNING_REFRESH = 2.0  # seconds: how stale a running run's metrics may be on the runs page
QUERIES_KEPT = 16
PAGE_SIZES = (25, 50, 100, 250, 500, 1000)
DEFAULT_PAGE_SIZE = 100
#: the attribute columns a user can choose, in the order the chooser lists them
ATTRIBUTE_COLUMNS = ("name", "status", "start_time", "duration", "end_time", "user", "host", "git_commit", "source")
DEFAULT_ATTRIBUTES = ("name", "status", "start_time", "duration")


def _stamp(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class Snapshot:
    """One reading of the run store."""

    key: tuple[Any, ...]
    runs: tuple[dict[str, Any], ...]
    metric_keys: tuple[str, ...]
    param_keys: tuple[str, ...]
    warnings: tuple[str, ...]
    running: bool


class RunsCache:
    """The run summaries of one repository, read again only when the store changed."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._loaded_at = 0.0
        self._queries: OrderedDict[tuple[Any, ...], list[dict[str, Any]]] = OrderedDict()
        self.loads = 0  # how many times the store was read (tests and the benchmark look)

    def _key(self) -> tuple[Any, ...]:
        folder = str(runs_dir(self.repo))
        return (_stamp(os.path.join(folder, INDEX_FILE)), _stamp(folder))

    def snapshot(self) -> Snapshot:
        with self._lock:
            key = self._key()
            current = self._snapshot
            fresh = current is not None and current.key == key
            if fresh and current.running and time.monotonic() - self._loaded_at > RUNNING_REFRESH:
                fresh = False
            if fresh:
                assert current is not None
                return current
            warnings: list[str] = []
            runs = list_summaries(self.repo, heal=False, warnings=warnings)
            metric_keys = sorted({k for r in runs for k in (r.get("metrics") or {})})
            param_keys = sorted({k for r in runs for k in (r.get("params") or {})})
            snapshot = Snapshot(
                key=key,
                runs=tuple(runs),
                metric_keys=tuple(metric_keys),
                param_keys=tuple(param_keys),
                warnings=tuple(warnings),
                running=any(r.get("status") == RUNNING for r in runs),
            )
            self._snapshot = snapshot
            self._loaded_at = time.monotonic()
            self._queries.clear()
            self.loads += 1
            return snapshot

    def select(self, snapshot: Snapshot, filter_text: str, sort_text: str) -> list[dict[str, Any]]:
        """The runs a filter keeps, sorted (newest first without a sort); UsageError for a bad query."""
        qkey = (snapshot.key, id(snapshot), filter_text, sort_text)
        with self._lock:
            if qkey in self._queries:
                self._queries.move_to_end(qkey)
                return self._queries[qkey]
        chosen = query.select(snapshot.runs, filter=filter_text or None, sort=sort_text or None)
        with self._lock:
            self._queries[qkey] = chosen
            while len(self._queries) > QUERIES_KEPT:
                self._queries.popitem(last=False)
        return chosen


_PLAIN_KEY = re.compile(r"[\w\-/]+(?:\.[\w\-/]+)*")


def field_text(field: query.Field) -> str:
    """``field`` as the query language writes it, so that it parses back to itself: a key with
    other characters (a space, a quote) inside backticks; None-like empty for a key with a backtick."""
    if field.kind == "attributes" or _PLAIN_KEY.fullmatch(field.key):
        return f"{field.kind}.{field.key}"
    return f"{field.kind}.`{field.key}`" if "`" not in field.key else ""


@dataclass(frozen=True)
class Column:
    field: query.Field
    label: str
    text: str  # as a filter, a sort or the column chooser writes it


def columns_for(page: Sequence[dict[str, Any]], chosen: Sequence[query.Field] | None, *, differ: bool) -> list[Column]:
    """The columns of the table: those chosen, or the default attributes and every metric and
    param of the page's runs; ``differ`` keeps of the metrics and params only those whose value
    is not the same in every run on the page."""
    if chosen:
        fields = [f for f in chosen if (f.kind, f.key) != ("attributes", "id")]
    else:
        fields = [query.Field("attributes", a) for a in DEFAULT_ATTRIBUTES]
        for kind in ("metrics", "params"):
            fields += [query.Field(kind, k) for k in sorted({k for r in page for k in (r.get(kind) or {})})]
    if differ:
        varying = {kind: set(query.varying_keys(page, kind)) for kind in ("metrics", "params")}
        fields = [f for f in fields if f.kind == "attributes" or f.key in varying[f.kind]]
    return [Column(f, f.key if f.kind == "attributes" else str(f), field_text(f)) for f in fields]


def cell(run: dict[str, Any], field: query.Field) -> Any:
    """A column's raw value for a run (duration computed); None when the run lacks it."""
    value = query.field_value(run, field)
    return None if value is query._MISSING else value
