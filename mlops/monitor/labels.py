"""Ground truth that arrives later: `mlops labels add`, and realized quality per window.

``add`` reads a labels file (Parquet or CSV) with a key column (the request id the server
returned) and a target column, and keeps those two columns (plus ``request_row`` when the file
has it, for requests of several rows) as a Parquet file under
``.mlops/monitor/<model>/labels/``, named by the SHA-256 of its content: adding the same labels
twice keeps one copy. A label for a request id that appears in several files counts once (the
last added wins).

``realized`` joins the labels with the answers `monitor build` kept per request-log file
(request id, row, time, prediction) and gives per window the accuracy of the labelled rows and
how many rows were labelled (label coverage = labelled / rows). The window of a row is the time
of its prediction, not of its label.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError
from ..fsio import FileLock, atomic_writer
from ..repo.repo import Repo
from .store import PREDICTION, Reference, iter_batches, logs_dir, monitor_dir

KEY = "request_id"
ROW = "request_row"
TARGET = "target"
ADDED = "added"


@dataclass(frozen=True)
class LabelsAdded:
    model: str
    file: str
    rows: int
    stored: str
    new: bool
    matched: int  # labels whose request id is among the answers kept so far

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "file": self.file,
            "rows": self.rows,
            "stored": self.stored,
            "new": self.new,
            "matched_now": self.matched,
        }


def labels_dir(repo: Repo, model: str) -> Path:
    return monitor_dir(repo, model) / "labels"


def add(repo: Repo, model: str, path: str | Path, *, key: str = KEY, target: str) -> LabelsAdded:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .. import registry

    registry.resolve(repo, model)  # an unknown model is said before anything is written
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"{source}: no such file", hint="name a .parquet or .csv file of labels")
    batches = list(iter_batches(source))
    if not batches:
        raise DataError(f"{source}: no rows")
    table = pa.Table.from_batches(batches)
    for column, option in ((key, "--key"), (target, "--target")):
        if column not in table.schema.names:
            raise UsageError(
                f"{source}: no column '{column}' ({option})", hint=f"its columns: {', '.join(table.schema.names)}"
            )
    columns = {KEY: table.column(key).cast(pa.string()), TARGET: table.column(target).cast(pa.string())}
    if ROW in table.schema.names:
        columns[ROW] = table.column(ROW).cast(pa.int32())
    slim = pa.table(columns)
    if slim.column(KEY).null_count:
        raise DataError(f"{source}: {slim.column(KEY).null_count} label(s) without a {key}")
    sink = pa.BufferOutputStream()
    pq.write_table(slim, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    digest = hashlib.sha256(data).hexdigest()[:32]
    folder = labels_dir(repo, model)
    stored = folder / f"{digest}.parquet"
    new = not stored.exists()
    if new:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(monitor_dir(repo, model) / "lock", what=f"the monitor profiles of {model}"):
            with atomic_writer(stored, "wb") as handle:
                handle.write(data)
    matched = _joined(repo, model, None, slim).num_rows
    return LabelsAdded(model, str(source), slim.num_rows, str(stored.relative_to(repo.root)), new, matched)


def _all_labels(repo: Repo, model: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(labels_dir(repo, model).glob("*.parquet"), key=lambda p: (p.stat().st_mtime, p.name))
    tables = []
    for order, path in enumerate(files):
        t = pq.read_table(path)
        if ROW not in t.schema.names:
            t = t.append_column(ROW, pa.nulls(t.num_rows, pa.int32()))
        tables.append(t.select([KEY, ROW, TARGET]).append_column(ADDED, pa.array([order] * t.num_rows, pa.int32())))
    if not tables:
        return None
    return pa.concat_tables(tables)


def _answers(repo: Repo, model: str, basis_id: str | None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = monitor_dir(repo, model) / "logs"
    folders = [logs_dir(repo, model, basis_id)] if basis_id else sorted(p for p in root.glob("*") if p.is_dir())
    tables = [pq.read_table(p) for folder in folders for p in sorted(folder.glob("*.answers.parquet"))]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default")


def _joined(repo: Repo, model: str, basis_id: str | None, labels: Any = None) -> Any:
    """Labelled answers: request id, row, time, prediction, target (one per answered row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    labels = labels if labels is not None else _all_labels(repo, model)
    answers = _answers(repo, model, basis_id)
    if labels is None or answers is None:
        return pa.table({KEY: pa.array([], pa.string())})
    if ADDED in labels.schema.names:  # the last label added for a key (and row) wins
        labels = labels.sort_by([(ADDED, "descending")])
    with_row = labels.filter(pc.is_valid(labels.column(ROW))) if ROW in labels.schema.names else labels.slice(0, 0)
    without_row = labels.filter(pc.is_null(labels.column(ROW))) if ROW in labels.schema.names else labels
    parts = []
    if with_row.num_rows:
        dedup = _first_per(with_row, [KEY, ROW])
        parts.append(answers.join(dedup.select([KEY, ROW, TARGET]), keys=[KEY, ROW], join_type="inner"))
    if without_row.num_rows:
        dedup = _first_per(without_row, [KEY])
        parts.append(answers.join(dedup.select([KEY, TARGET]), keys=[KEY], join_type="inner"))
    if not parts:
        return pa.table({KEY: pa.array([], pa.string())})
    return pa.concat_tables([p.select([KEY, ROW, "time", PREDICTION, TARGET]) for p in parts])


def _first_per(table: Any, keys: list[str]) -> Any:
    import pyarrow as pa

    table = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    first = table.group_by(keys, use_threads=False).aggregate([("_i", "min")])
    return table.take(first.column("_i_min"))


def realized(
    repo: Repo, model: str, ref: Reference, window_seconds: float, first: float, now: float
) -> dict[float, tuple[float | None, int]]:
    """Window start -> (accuracy of the labelled rows, labelled rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    joined = _joined(repo, model, ref.basis.id)
    if joined.num_rows == 0 or "time" not in joined.schema.names:
        return {}
    seconds = pc.cast(joined.column("time"), pa.int64()).to_numpy(zero_copy_only=False) / 1e6
    correct = pc.equal(joined.column(PREDICTION), joined.column(TARGET)).to_numpy(zero_copy_only=False)
    starts = np.floor(seconds / window_seconds) * window_seconds
    out: dict[float, tuple[float | None, int]] = {}
    for start in np.unique(starts):
        if start + window_seconds <= first or start > now:
            continue
        mask = starts == start
        n = int(mask.sum())
        out[float(start)] = (float(correct[mask].sum()) / n if n else None, n)
    return out
