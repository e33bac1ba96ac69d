"""Request logs: inputs, prediction, variant, version, latency and time, in Parquet files.

```
.mlops/serve/<model>/requests/          every answered request (production and canary)
  20261126T110203Z-<host>-<pid>-0001.parquet
  .open-20261126T110503Z-<host>-<pid>-0002.parquet   (being written: skipped by readers)
.mlops/serve/<model>/shadow/            the shadow's predictions, same columns plus
                                        production_prediction (what the caller got)
.mlops/serve/<model>/failures/          every request refused (4xx) or failed (5xx), the shadow's too:
                                        one row each of variant, version, status, latency_ms, time,
                                        request_id, request_row (0) and reason (at most REASON_MAX
                                        characters of the answer's problems); no input is kept
```

Columns: the model's input columns, with the names and dtypes of the request records (the
signature's: int64, float64, string, bool, timestamp), then ``prediction``, ``variant``,
``version`` (int64), ``status`` (int16: the HTTP status, 200 here; older servers' logs lack
the column), ``latency_ms`` (float64: the whole request's, repeated on each of its rows),
``time`` (timestamp, UTC), ``request_id`` (string: the caller's ``X-Request-ID``, or the one the
server made and returned in that header),
``request_row`` (int32: the row's place in its request, so labels can be joined later) and, for a
classifier, ``probabilities`` (map<string, float64>: class name to ``predict_proba``'s value; the
class names ride in every row, so canary and production versions with other classes share a file
and Parquet's dictionary encoding makes the repetition cost next to nothing). One row per input
row. Shadow predictions live in their own folder so that the main log holds each request once
(drift reading it counts each input once).

Each worker process writes its own file: rows collect in memory and a writer thread appends
them as one row group every ``flush_seconds`` (or ``flush_rows`` rows). A file is finished
(renamed from ``.open-...``, so readers see only complete Parquet files) when it passes
``max_file_bytes`` or ``rotate_seconds``, when the schema changes (another model version) and
when the server stops. After each rotation the oldest finished files go while the folder holds
more than ``max_total_bytes`` or they are older than ``max_age_seconds``.

A killed worker (SIGKILL) leaves an ``.open-`` file without its footer: unreadable, so the next
writer in that folder removes those of dead processes; at most the rows of one rotation period
are lost. Past ``max_pending_rows`` waiting to be written, new rows are dropped and counted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsio import pid_alive
from ..registry.refs import check_name as check_model_name
from ..repo.repo import Repo
from .signature import Signature, arrow_type

META_COLUMNS = (
    "prediction",
    "variant",
    "version",
    "status",
    "latency_ms",
    "time",
    "request_id",
    "request_row",
    "probabilities",
)
REASON_MAX = 200  # the first characters of what the server answered a failed request: never its body
REQUEST_ID_MAX = 128  # a caller's X-Request-ID longer than this (or not visible ASCII) is replaced by our own
OPEN_PREFIX = ".open-"
MiB = 1024 * 1024


@dataclass(frozen=True)
class LogSettings:
    max_file_bytes: int = 64 * MiB
    rotate_seconds: float = 60.0
    max_total_bytes: int = 1024 * MiB
    max_age_seconds: float = 7 * 86400.0
    flush_seconds: float = 5.0
    flush_rows: int = 5000
    max_pending_rows: int = 200_000


def model_state_dir(repo: Repo, model: str) -> Path:
    """Where serving keeps one model's machine-local state (stats, request logs); the name is
    checked as the registry's, so a name cannot lead out of the folder. Creates nothing."""
    return repo.dot / "serve" / check_model_name(model)


def requests_dir(repo: Repo, model: str) -> Path:
    return model_state_dir(repo, model) / "requests"


def log_files(repo: Repo, model: str, since_seconds: float | None = None) -> list[Path]:
    """Finished request-log files of ``model``, oldest first; with ``since_seconds``, only files
    written to within that many seconds (filter the ``time`` column for the exact range)."""
    return _finished(requests_dir(repo, model), since_seconds)


def shadow_log_files(repo: Repo, model: str, since_seconds: float | None = None) -> list[Path]:
    return _finished(model_state_dir(repo, model) / "shadow", since_seconds)


def failure_log_files(repo: Repo, model: str, since_seconds: float | None = None) -> list[Path]:
    return _finished(model_state_dir(repo, model) / "failures", since_seconds)


def failure_reason(problems: Sequence[str]) -> str:
    """What a failure row keeps of the answer: its problems, cut to ``REASON_MAX`` characters."""
    text = "; ".join(problems)
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


def _finished(folder: Path, since_seconds: float | None) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    cutoff = time.time() - since_seconds if since_seconds is not None else None
    out = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".parquet"):
            continue
        if cutoff is not None:
            try:
                if entry.stat().st_mtime < cutoff:
                    continue
            except FileNotFoundError:  # removed by retention meanwhile
                continue
        out.append(Path(entry.path))
    return out


def request_id_from(headers: Any) -> str:
    """The caller's ``X-Request-ID`` when it is 1-128 visible ASCII characters, else a new one
    (32 hex digits). An id that is not kept is not echoed either: a header is untrusted input."""
    given = headers.get("x-request-id")
    if given and len(given) <= REQUEST_ID_MAX and all(33 <= ord(ch) <= 126 for ch in given):
        return str(given)
    import uuid

    return uuid.uuid4().hex


def canonical(signature: Signature | None, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The columns in one order whatever order the caller's JSON keys came in: the signature's,
    then any others sorted by name (all sorted without a signature). Consecutive requests then
    share one schema, and a file is finished only when the columns really change."""
    order = [n for n in signature.names if n in columns] if signature is not None else []
    if len(order) != len(columns):
        known = set(order)
        order += sorted(n for n in columns if n not in known)
    if list(columns) == order:
        return columns
    return {name: columns[name] for name in order}


class RequestLog:
    """One worker's writer for one folder; ``append`` is called from the event loop."""

    def __init__(self, folder: Path, *, settings: LogSettings = LogSettings(), extra: Sequence[str] = ()) -> None:
        self.folder = folder
        self.settings = settings
        self.extra = tuple(extra)  # columns beyond the meta ones (shadow: production_prediction)
        self.dropped = 0
        self.written_rows = 0
        self.files_finished = 0
        self.error: str | None = None
        self._pending: list[tuple[Signature | None, dict[str, list[Any]], int, dict[str, Any]]] = []
        self._pending_rows = 0
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._writer: Any = None
        self._schema: Any = None
        self._open_path: Path | None = None
        self._opened_at = 0.0
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name=f"requestlog-{folder.name}", daemon=True)
        self._started = False

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_orphans()
        self._thread.start()
        self._started = True

    def append(
        self, signature: Signature | None, columns: dict[str, list[Any]], rows: int, meta: dict[str, Any]
    ) -> None:
        """Queue one request's rows. ``meta``: prediction (list; none for a failure), variant, version,
        status (default 200), latency_ms, time, request_id, optionally probabilities ((classes, rows
        of floats)) (+ extra lists)."""
        columns = canonical(signature, columns)
        with self._mutex:
            if self._pending_rows + rows > self.settings.max_pending_rows:
                self.dropped += rows
                return
            self._pending.append((signature, columns, rows, meta))
            self._pending_rows += rows
            wake = self._pending_rows >= self.settings.flush_rows
        if wake:
            self._wake.set()

    def close(self) -> None:
        if not self._started:
            return
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)

    # --- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(min(self.settings.flush_seconds, self.settings.rotate_seconds))
            self._wake.clear()
            stopping = self._stop
            try:
                self._flush()
                if self._writer is not None and time.time() - self._opened_at >= self.settings.rotate_seconds:
                    self._finish()
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop serving; it shows in /health
                self.error = f"{type(exc).__name__}: {exc}"
            if stopping:
                with contextlib.suppress(Exception):
                    self._flush()
                    self._finish()
                return

    def _flush(self) -> None:
        with self._mutex:
            pending, self._pending, self._pending_rows = self._pending, [], 0
        if not pending:
            return
        import pyarrow as pa

        # consecutive requests with the same columns go into one table
        groups: list[list[Any]] = []
        for item in pending:
            if groups and groups[-1][0][0] is item[0] and list(groups[-1][0][1]) == list(item[1]):
                groups[-1].append(item)
            else:
                groups.append([item])
        for group in groups:
            table = self._table(pa, group)
            if self._writer is not None and not table.schema.equals(self._schema):
                self._finish()
            if self._writer is None:
                self._open(table.schema)
            self._writer.write_table(table)
            self.written_rows += table.num_rows
            if self._open_path is not None and self._open_path.stat().st_size >= self.settings.max_file_bytes:
                self._finish()

    def _table(self, pa: Any, group: list[Any]) -> Any:
        signature = group[0][0]
        names = list(group[0][1])
        arrays = {}
        for name in names:
            values = [v for item in group for v in item[1][name]]
            column = signature.column(name) if signature else None
            kind_type = arrow_type(column.kind) if column else None
            arrays[name] = _array(pa, values, kind_type)
        repeat = [item[2] for item in group]

        def per_row(key: str, default: Any = None) -> list[Any]:
            """A per-request value (item[3]) repeated for each of the request's rows."""
            return [item[3].get(key, default) for item, n in zip(group, repeat, strict=True) for _ in range(n)]

        if "prediction" in group[0][3]:  # a failure has none
            predictions = [v for item in group for v in item[3]["prediction"]]
            arrays["prediction"] = _array(pa, predictions, None)
        arrays["variant"] = pa.array(per_row("variant"), pa.string())
        arrays["version"] = pa.array(per_row("version"), pa.int64())
        arrays["status"] = pa.array(per_row("status", 200), pa.int16())
        arrays["latency_ms"] = pa.array(per_row("latency_ms"), pa.float64())
        arrays["time"] = pa.array([int(t * 1_000_000) for t in per_row("time")], pa.timestamp("us", tz="UTC"))
        arrays["request_id"] = pa.array(per_row("request_id"), pa.string())
        arrays["request_row"] = pa.array([i for n in repeat for i in range(n)], pa.int32())
        if any(item[3].get("probabilities") is not None for item in group):
            arrays["probabilities"] = _probabilities(pa, group)
        for name in self.extra:
            arrays[name] = _array(pa, [v for item in group for v in item[3][name]], None)
        return pa.table(arrays)

    def _open(self, schema: Any) -> None:
        import pyarrow.parquet as pq

        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{stamp}-{socket.gethostname()}-{os.getpid()}-{self._seq:04d}.parquet"
        self._open_path = self.folder / (OPEN_PREFIX + name)
        self._writer = pq.ParquetWriter(str(self._open_path), schema, compression="zstd")
        self._schema = schema
        self._opened_at = time.time()

    def _finish(self) -> None:
        if self._writer is None or self._open_path is None:
            return
        self._writer.close()
        with open(self._open_path, "rb") as handle:
            os.fsync(handle.fileno())
        final = self.folder / self._open_path.name[len(OPEN_PREFIX) :]
        os.replace(self._open_path, final)
        from ..fsio import fsync_dir

        fsync_dir(self.folder)
        self._writer = None
        self._open_path = None
        self.files_finished += 1
        self._retain()

    def _retain(self) -> None:
        files = []
        for path in _finished(self.folder, None):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            files.append((path, st.st_size, st.st_mtime))
        total = sum(size for _, size, _ in files)
        now = time.time()
        for path, size, mtime in files:  # oldest first (names start with the time)
            if total <= self.settings.max_total_bytes and now - mtime <= self.settings.max_age_seconds:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size

    def _remove_orphans(self) -> None:
        host = socket.gethostname()
        for entry in os.scandir(self.folder):
            if not entry.name.startswith(OPEN_PREFIX):
                continue
            parts = entry.name[len(OPEN_PREFIX) :].rsplit("-", 2)
            try:
                pid = int(parts[-2])
            except (ValueError, IndexError):
                continue
            if f"-{host}-" in entry.name and not pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _probabilities(pa: Any, group: list[Any]) -> Any:
    """Rows of ``map<string, float64>``: class name to probability (null for a request without them)."""
    rows: list[Any] = []
    for item in group:
        given = item[3].get("probabilities")
        if given is None:
            rows.extend([None] * item[2])
            continue
        classes, values = given
        names = [str(c) for c in classes]
        rows.extend(list(zip(names, (float(p) for p in row), strict=True)) for row in values)
    return pa.array(rows, pa.map_(pa.string(), pa.float64()))


def _array(pa: Any, values: list[Any], type_: Any) -> Any:
    if type_ is not None:
        if pa.types.is_timestamp(type_):
            import pandas as pd

            return pa.array(pd.to_datetime(values, utc=True, format="ISO8601"), type_)
        try:
            return pa.array(values, type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
