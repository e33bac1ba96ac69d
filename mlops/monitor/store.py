"""Profiles on disk: the model's reference, and one small file per request-log file.

```
.mlops/monitor/<model>/
  reference-v<version>.json          basis and profile of version <version>'s training data,
                                     with the model's own predictions on it (and its confidence)
  logs/<basis id>/<log file>.json    per request-log file: a profile per hour of its rows
  lock                               one build at a time
  checks.jsonl                       the verdicts of `mlops monitor check` (history.py)
```

``build`` profiles every finished request-log file that has no profile yet for the current
basis: incremental (a file is profiled once), idempotent (a second run writes nothing), each
file written atomically (fsio.atomic_write) under the model's lock. Request logs are deleted by
their retention; their profiles stay, so the history outlives the logs. Profiles of a log file
are a few kB; the basis id in the path keeps profiles of another basis (another model version's
training data) apart, never merged with these.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError
from ..fsio import FileLock, atomic_write
from ..registry.refs import check_name as check_model_name
from ..repo.repo import Repo
from .profile import NUMERIC, Basis, ColumnBasis, Profile, Profiler, _check_format, iter_batches, survey

STORE_FORMAT = 1
HOUR_US = 3_600_000_000
PREDICTION = "prediction"
CONFIDENCE = "confidence"  # the probability the model gave its own answer (classifiers)
CONFIDENCE_EDGES = tuple(i / 20 for i in range(21)) + (math.nextafter(1.0, 2.0),)


def monitor_dir(repo: Repo, model: str) -> Path:
    return repo.dot / "monitor" / check_model_name(model)


@dataclass(frozen=True)
class Reference:
    model: str
    version: int
    basis: Basis
    profile: Profile
    features: tuple[str, ...]
    classes: tuple[str, ...] = ()  # a classifier's classes (its probabilities are logged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "model": self.model,
            "version": self.version,
            "features": list(self.features),
            "classes": list(self.classes),
            "basis": self.basis.to_dict(),
            "profile": self.profile.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Reference:
        _check_format(data, where)
        return cls(
            str(data["model"]),
            int(data["version"]),
            Basis.from_dict(data["basis"], where),
            Profile.from_dict(data["profile"], where),
            tuple(str(f) for f in data.get("features", ())),
            tuple(str(c) for c in data.get("classes", ())),
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})", hint="remove it; `mlops monitor build` makes it again") from None


def model_version(repo: Repo, model: str, version: int | None = None) -> Any:
    """The version monitored: the one named, else production, else the latest."""
    from .. import registry

    if version is not None:
        return registry.get_version(repo, model, version)
    try:
        return registry.resolve(repo, f"{model}@production")
    except UsageError:
        return registry.resolve(repo, model)


def reference(repo: Repo, model: str, version: int | None = None) -> Reference:
    """The reference of a model version (made once from its training data, then read)."""
    mv = model_version(repo, model, version)
    path = monitor_dir(repo, model) / f"reference-v{int(mv.version)}.json"
    data = _read_json(path)
    if data is not None:
        return Reference.from_dict(data, str(path))
    ref = _make_reference(repo, mv)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(monitor_dir(repo, model) / "lock", what=f"the monitor profiles of {model}"):
        atomic_write(path, json.dumps(ref.to_dict(), separators=(",", ":")))
    return ref


def _make_reference(repo: Repo, mv: Any) -> Reference:
    from .. import registry
    from ..drift.io import data_file, format_of

    files = [data_file(local, name=str(original)) for original, local in registry.training_data(repo, mv)]
    files = [f for f in files if format_of(f.name)]
    if not files:
        raise DataError(
            f"{mv.ref()}: trained on no CSV or Parquet data: nothing to monitor against",
            hint="register the model with its training data (mlops register ... --data FILE)",
        )
    features = tuple(str(f["name"]) for f in ((mv.signature or {}).get("inputs") or []))
    model = registry.load_model(mv, repo=repo)
    if not features:
        features = tuple(str(n) for n in getattr(model, "feature_names_in_", []))
    found = getattr(model, "classes_", None)
    classes = tuple(_label(c) for c in found) if found is not None and hasattr(model, "predict_proba") else ()

    def batches() -> Iterator[Any]:
        for f in files:
            for batch in iter_batches(f, list(features) or None):
                yield _with_predictions(batch, model, features, classes)

    basis = survey(batches(), what=mv.ref())
    columns = [c for c in basis.columns if c.name != CONFIDENCE]
    if classes:
        columns.append(ColumnBasis(CONFIDENCE, NUMERIC, edges=CONFIDENCE_EDGES))
    basis = Basis(tuple(columns))
    profiler = Profiler(basis)
    for batch in batches():
        profiler.add(batch)
    return Reference(mv.name, int(mv.version), basis, profiler.profile(), features, classes)


def _label(value: Any) -> str:
    from .profile import _label as label

    return label(value.item() if hasattr(value, "item") else value)


def _with_predictions(batch: Any, model: Any, features: tuple[str, ...], classes: tuple[str, ...]) -> Any:
    import numpy as np
    import pyarrow as pa

    frame = batch.select(list(features)).to_pandas() if features else batch.to_pandas()
    predictions = model.predict(frame)
    table = pa.Table.from_batches([batch])
    if features:
        table = table.select(list(features))
    table = table.append_column(PREDICTION, pa.array(np.asarray(predictions)))
    if classes:
        probabilities = np.asarray(model.predict_proba(frame), dtype=np.float64)
        index = {c: i for i, c in enumerate(classes)}
        chosen = np.asarray([index.get(_label(p), -1) for p in predictions])
        confidence = np.where(chosen >= 0, probabilities[np.arange(len(chosen)), np.maximum(chosen, 0)], np.nan)
        table = table.append_column(CONFIDENCE, pa.array(confidence))
    return table.combine_chunks().to_batches()[0] if table.num_rows else batch


# --- request-log profiles ------------------------------------------------------------------------


@dataclass(frozen=True)
class LogProfile:
    """One request-log file's profiles, per hour (UTC) of its rows."""

    file: str
    basis: str
    hours: dict[str, Profile] = field(default_factory=dict)  # "2026-12-06T10" -> profile
    latency_ms: dict[str, float] = field(default_factory=dict)  # hour -> sum of latencies (rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "file": self.file,
            "basis": self.basis,
            "hours": {h: p.to_dict() for h, p in sorted(self.hours.items())},
            "latency_ms": dict(sorted(self.latency_ms.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> LogProfile:
        _check_format(data, where)
        return cls(
            str(data["file"]),
            str(data["basis"]),
            {str(h): Profile.from_dict(p, where) for h, p in data.get("hours", {}).items()},
            {str(h): float(v) for h, v in data.get("latency_ms", {}).items()},
        )


@dataclass(frozen=True)
class BuildResult:
    model: str
    version: int
    basis: str
    log_files: int
    built: int
    already: int
    unreadable: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "basis": self.basis,
            "log_files": self.log_files,
            "built": self.built,
            "already_built": self.already,
            "unreadable": list(self.unreadable),
            "seconds": round(self.seconds, 3),
        }


def logs_dir(repo: Repo, model: str, basis_id: str) -> Path:
    return monitor_dir(repo, model) / "logs" / basis_id


def build(repo: Repo, model: str, *, version: int | None = None) -> BuildResult:
    """Profile every finished request-log file of ``model`` that has no profile yet."""
    from ..serve.requestlog import log_files

    started = time.perf_counter()
    ref = reference(repo, model, version)
    folder = logs_dir(repo, model, ref.basis.id)
    files = log_files(repo, model)
    built = already = 0
    unreadable: list[str] = []
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(monitor_dir(repo, model) / "lock", what=f"the monitor profiles of {model}"):
        for log in files:
            target = folder / (log.name.removesuffix(".parquet") + ".json")
            if target.exists():
                already += 1
                continue
            try:
                profiled = profile_log(log, ref)
            except DataError:
                unreadable.append(log.name)  # a torn file of a killed server: skipped, said in the result
                continue
            except FileNotFoundError:  # removed by the server's retention meanwhile
                continue
            answers = folder / (log.name.removesuffix(".parquet") + ".answers.parquet")
            try:
                write_answers(log, answers)
            except DataError:
                pass  # an old log without request ids: profiled, but labels cannot join it
            atomic_write(target, json.dumps(profiled.to_dict(), separators=(",", ":")))  # last: marks the file done
            built += 1
    return BuildResult(
        model, ref.version, ref.basis.id, len(files), built, already, tuple(unreadable), time.perf_counter() - started
    )


def profile_log(path: Path, ref: Reference) -> LogProfile:
    """A request-log file's rows profiled per hour of their ``time``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = [c.name for c in ref.basis.profiled() if c.name != CONFIDENCE]
    extra = ["time", "latency_ms", *(["probabilities"] if ref.classes else [])]
    profilers: dict[int, Profiler] = {}
    latency: dict[int, float] = {}
    for batch in iter_batches(path, [*wanted, *extra]):
        names = batch.schema.names
        if "time" not in names:
            raise DataError(f"{path}: not a request log (no time column)")
        stamps = pc.cast(batch.column(names.index("time")), pa.int64()).to_numpy(zero_copy_only=False)
        hours = stamps // HOUR_US
        if ref.classes and "probabilities" in names and PREDICTION in names:
            batch = _with_confidence(batch)
        lat = (
            np.asarray(batch.column(names.index("latency_ms")).to_numpy(zero_copy_only=False), dtype=np.float64)
            if "latency_ms" in names
            else np.zeros(len(hours))
        )
        for hour in np.unique(hours):
            mask = hours == hour
            part = batch.filter(pa.array(mask))
            profilers.setdefault(int(hour), Profiler(ref.basis)).add(part)
            latency[int(hour)] = latency.get(int(hour), 0.0) + float(np.nansum(lat[mask]))
    return LogProfile(
        path.name,
        ref.basis.id,
        {hour_name(h): p.profile() for h, p in profilers.items()},
        {hour_name(h): v for h, v in latency.items()},
    )


ANSWER_COLUMNS = ("request_id", "request_row", "time", PREDICTION)


def write_answers(log: Path, target: Path) -> None:
    """The log's answers, slimmed to what labels join to (request id, row, time, prediction): kept
    after the server's retention removed the log, so labels that come a week later still join."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..fsio import atomic_writer

    batches = list(iter_batches(log, list(ANSWER_COLUMNS)))
    if not batches or "request_id" not in batches[0].schema.names:
        raise DataError(f"{log}: no request ids")
    table = pa.Table.from_batches(batches)
    table = table.set_column(
        table.schema.get_field_index(PREDICTION), PREDICTION, table.column(PREDICTION).cast(pa.string())
    )
    with atomic_writer(target, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")


def _with_confidence(batch: Any) -> Any:
    """The logged probability of the class the model answered, as a column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names
    probabilities = batch.column(names.index("probabilities"))
    predictions = pc.cast(batch.column(names.index(PREDICTION)), pa.string()).to_pylist()
    offsets = np.asarray(probabilities.offsets.to_numpy(zero_copy_only=False))
    keys = probabilities.keys.to_pylist()
    values = np.asarray(probabilities.items.to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = probabilities.is_valid().to_numpy(zero_copy_only=False)
    out = np.full(len(predictions), np.nan)
    for i, answer in enumerate(predictions):
        if not valid[i] or answer is None:
            continue
        for j in range(offsets[i], offsets[i + 1]):
            if keys[j] == answer:
                out[i] = values[j]
                break
    return pa.RecordBatch.from_arrays([*batch.columns, pa.array(out)], names=[*names, CONFIDENCE])


def hour_name(hour: int) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(hour * 3600))


def hour_number(name: str) -> int:
    import calendar

    return calendar.timegm(time.strptime(name, "%Y-%m-%dT%H")) // 3600


def read_log_profiles(repo: Repo, model: str, basis_id: str) -> list[LogProfile]:
    folder = logs_dir(repo, model, basis_id)
    out = []
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    for path in names:
        data = _read_json(path)
        if data is not None:
            out.append(LogProfile.from_dict(data, str(path)))
    return out
