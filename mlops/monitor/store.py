"""Profiles on disk: the model's reference, and one small file per request-log file.

```
.mlops/monitor/<model>/
  reference-v<version>.json          basis and profile of version <version>'s training data,
                                     with the model's own predictions on it (and its confidence)
  logs/<basis id>/<log file>.json    per request-log file: a profile per hour of its rows, and its
                                     requests per slot, status and latency bin (service.py)
  logs/<basis id>/shadow.<log>.json  per shadow-log and failure-log file: their requests only
  logs/<basis id>/failures.<log>.json
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
from .service import Slots, hourly_slots, merge_slots, slots_from_dict, slots_to_dict

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


SERVED_SLOTS = ("production", "canary", "shadow")  # the order a version the logs name is chosen in
OPEN_LOGS = "request-log file(s) still open (written by a running server; profiled once closed, within --log-rotate)"


@dataclass(frozen=True)
class MonitoredVersion:
    version: Any  # the registry's ModelVersion
    chosen_by: str  # "--version", "request logs (<slot>)" or "production stage"


def monitored_version(repo: Repo, model: str, version: int | None = None) -> MonitoredVersion:
    """The version monitored: the one named; else the one the newest request logs recorded as
    served (production's slot first, then the canary's, then the shadow's), since that is what the
    traffic was answered by; else the registry's production version. Never the latest by default:
    a version nobody served says nothing about the traffic."""
    from .. import registry

    if version is not None:
        return MonitoredVersion(registry.get_version(repo, model, version), "--version")
    known = registry.versions(repo, model)  # an unknown model: the registry's own error
    served = served_versions(repo, model)
    if served:
        slot, number = served[0]
        return MonitoredVersion(registry.get_version(repo, model, number), f"request logs ({slot})")
    production = next((mv for mv in known if mv.stage == "production"), None)
    if production is not None:
        return MonitoredVersion(production, "production stage")
    still_open = open_log_files(repo, model)
    raise UsageError(
        f"{model} has no production version and its request logs name none; pass --version N",
        hint=f"{len(still_open)} {OPEN_LOGS}" if still_open else None,
    )


SERVED_FILES_READ = 16  # newest request-log files read for a production version (one per worker and rotation)


def served_versions(repo: Repo, model: str) -> tuple[tuple[str, int], ...]:
    """(slot, version) pairs the newest request logs recorded, production's first, then the
    canary's and the shadow's, each slot's most recently served first. Request-log files are read
    newest first (their variant, version and time columns) until one names a production version,
    at most ``SERVED_FILES_READ``: with several workers the newest file may hold only canary rows.
    Of the shadow logs, the newest file that names a version."""
    from ..serve.requestlog import log_files, shadow_log_files

    found: list[tuple[int, float, str, int]] = []
    for path in reversed(log_files(repo, model)[-SERVED_FILES_READ:]):
        named = _logged_versions(path)
        found += named
        if any(slot == "production" for _, _, slot, _ in named):
            break
    for path in reversed(shadow_log_files(repo, model)):
        named = _logged_versions(path)
        if named:
            found += named
            break
    found.sort(key=lambda f: (f[0], -f[1]))
    out: list[tuple[str, int]] = []
    for _, _, slot, number in found:
        if (slot, number) not in out:
            out.append((slot, number))
    return tuple(out)


def _logged_versions(path: Path) -> list[tuple[int, float, str, int]]:
    """(slot rank, last time, slot, version) per served slot and version a log file recorded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        batches = list(iter_batches(path, ["variant", "version", "time"]))
    except (DataError, FileNotFoundError):  # torn by a killed server, or gone with the retention
        return []
    if not batches or not {"variant", "version", "time"} <= set(batches[0].schema.names):
        return []
    table = pa.Table.from_batches(batches).select(["variant", "version", "time"])
    table = table.set_column(2, "time", pc.cast(table.column("time"), pa.int64()))
    out = []
    for row in table.group_by(["variant", "version"]).aggregate([("time", "max")]).to_pylist():
        slot, number = row["variant"], row["version"]
        if slot in SERVED_SLOTS and isinstance(number, int) and number > 0:
            out.append((SERVED_SLOTS.index(slot), float(row["time_max"]), slot, number))
    return out


def open_log_files(repo: Repo, model: str) -> tuple[str, ...]:
    """Request-, shadow- and failure-log files a running server still writes: their rows are not
    readable (no Parquet footer yet) until it finishes them. Files left by a dead process on this
    host are not counted (the next server removes them: torn, never profiled)."""
    import os
    import socket

    from ..fsio import pid_alive
    from ..serve.requestlog import OPEN_PREFIX, model_state_dir

    host = socket.gethostname()
    out = []
    for kind in ("requests", "shadow", "failures"):
        try:
            entries = sorted(os.scandir(model_state_dir(repo, model) / kind), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if not entry.name.startswith(OPEN_PREFIX) or not entry.name.endswith(".parquet"):
                continue
            writer = entry.name.removesuffix(".parquet").rsplit("-", 2)  # <time>-<host>-<pid>-<seq>
            pid = writer[-2] if len(writer) == 3 else ""
            if f"-{host}-" in entry.name and pid.isdigit() and not pid_alive(int(pid)):
                continue
            out.append(f"{kind}/{entry.name}")
    return tuple(out)


def reference(repo: Repo, model: str, version: int | None = None) -> Reference:
    """The reference of a model version (made once from its training data, then read)."""
    mv = monitored_version(repo, model, version).version
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
    # hour -> requests per slot (service.py); None: a profile made before requests were counted
    service: dict[str, Slots] | None = None
    status_logged: bool = True  # False: a log of an older server, without statuses (all counted as 200)
    # hour -> answer -> [rows, sum of the probability given to that answer]: a classifier's expected
    # confusion counts (check.estimated_binary); None: a profile made before they were kept
    confidence_sums: dict[str, dict[str, list[float]]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": STORE_FORMAT,
            "file": self.file,
            "basis": self.basis,
            "hours": {h: p.to_dict() for h, p in sorted(self.hours.items())},
            "latency_ms": dict(sorted(self.latency_ms.items())),
            "status_logged": self.status_logged,
        }
        if self.service is not None:
            out["service"] = {h: slots_to_dict(s) for h, s in sorted(self.service.items())}
        if self.confidence_sums is not None:
            out["confidence_sums"] = dict(sorted(self.confidence_sums.items()))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> LogProfile:
        _check_format(data, where)
        service = data.get("service")
        if service is not None and (not isinstance(service, dict) or len(service) > MAX_HOURS):
            raise DataError(f"{where}: request statistics are not an object of at most {MAX_HOURS} hours")
        return cls(
            str(data["file"]),
            str(data["basis"]),
            {str(h): Profile.from_dict(p, where) for h, p in data.get("hours", {}).items()},
            {str(h): float(v) for h, v in data.get("latency_ms", {}).items()},
            None if service is None else {_hour(h, where): slots_from_dict(v, where) for h, v in service.items()},
            bool(data.get("status_logged", True)),
            _confidence_sums(data.get("confidence_sums"), where),
        )


MAX_CLASSES = 1000  # answers per hour in confidence sums: a parser bound


def _confidence_sums(data: Any, where: str) -> dict[str, dict[str, list[float]]] | None:
    if data is None:
        return None
    if not isinstance(data, dict) or len(data) > MAX_HOURS:
        raise DataError(f"{where}: confidence sums are not an object of at most {MAX_HOURS} hours")
    out: dict[str, dict[str, list[float]]] = {}
    for hour, answers in data.items():
        if not isinstance(answers, dict) or len(answers) > MAX_CLASSES:
            raise DataError(f"{where}: confidence sums of {str(hour)[:20]!r} are not an object of classes")
        sums: dict[str, list[float]] = {}
        for answer, pair in answers.items():
            ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, int | float) for x in pair)
            if not ok or not (0 <= pair[1] <= pair[0] * (1 + 1e-9)) or len(str(answer)) > 200:
                raise DataError(f"{where}: confidence sums of {str(hour)[:20]!r} are not [rows, sum] per answer")
            sums[str(answer)] = [int(pair[0]), float(pair[1])]
        out[_hour(hour, where)] = sums
    return out


MAX_HOURS = 24 * 400  # hours one log file's requests span: a parser bound (files rotate every minute)


def _hour(name: Any, where: str) -> str:
    try:
        hour_number(str(name))
    except ValueError:
        raise DataError(f"{where}: {str(name)[:20]!r} is not an hour (YYYY-MM-DDTHH)") from None
    return str(name)


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
    without_status: tuple[str, ...] = ()  # logs of an older server: every request counted as answered (200)
    chosen_by: str = "--version"  # why this version: monitored_version
    still_open: tuple[str, ...] = ()  # log files a running server still writes: not profiled yet

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "version_from": self.chosen_by,
            "basis": self.basis,
            "log_files": self.log_files,
            "built": self.built,
            "already_built": self.already,
            "unreadable": list(self.unreadable),
            "without_status": list(self.without_status),
            "still_open": len(self.still_open),
            "still_open_files": list(self.still_open),
            "seconds": round(self.seconds, 3),
        }


def logs_dir(repo: Repo, model: str, basis_id: str) -> Path:
    return monitor_dir(repo, model) / "logs" / basis_id


def build(repo: Repo, model: str, *, version: int | None = None) -> BuildResult:
    """Profile every finished request-log file of ``model`` that has no profile yet (and every
    shadow-log and failure-log file: their requests, statuses and latencies), against the training
    data of ``version`` (default: monitored_version's choice). Files a running server still writes
    are named in the result, not read."""
    from ..serve.requestlog import failure_log_files, log_files, shadow_log_files

    started = time.perf_counter()
    monitored = monitored_version(repo, model, version)
    ref = reference(repo, model, int(monitored.version.version))
    folder = logs_dir(repo, model, ref.basis.id)
    files = log_files(repo, model)
    others = [("shadow.", f) for f in shadow_log_files(repo, model)] + [
        ("failures.", f) for f in failure_log_files(repo, model)
    ]
    built = already = 0
    unreadable: list[str] = []
    without_status: list[str] = []
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(monitor_dir(repo, model) / "lock", what=f"the monitor profiles of {model}"):
        for prefix, log in [("", f) for f in files] + others:
            target = folder / (prefix + log.name.removesuffix(".parquet") + ".json")
            if target.exists():
                already += 1
                continue
            try:
                profiled = profile_log(log, ref) if not prefix else profile_requests(log, ref)
            except DataError:
                unreadable.append(prefix + log.name)  # a torn file of a killed server: skipped, said in the result
                continue
            except FileNotFoundError:  # removed by the server's retention meanwhile
                continue
            if not prefix:
                answers = folder / (log.name.removesuffix(".parquet") + ".answers.parquet")
                try:
                    write_answers(log, answers)
                except DataError:
                    pass  # an old log without request ids: profiled, but labels cannot join it
            if not profiled.status_logged:
                without_status.append(prefix + log.name)
            atomic_write(target, json.dumps(profiled.to_dict(), separators=(",", ":")))  # last: marks the file done
            built += 1
    return BuildResult(
        model,
        ref.version,
        ref.basis.id,
        len(files) + len(others),
        built,
        already,
        tuple(unreadable),
        time.perf_counter() - started,
        tuple(without_status),
        monitored.chosen_by,
        open_log_files(repo, model),
    )


def profile_log(path: Path, ref: Reference) -> LogProfile:
    """A request-log file's rows profiled per hour of their ``time``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = [c.name for c in ref.basis.profiled() if c.name != CONFIDENCE]
    extra = ["time", "latency_ms", *REQUEST_COLUMNS, *(["probabilities"] if ref.classes else [])]
    profilers: dict[int, Profiler] = {}
    latency: dict[int, float] = {}
    service: dict[int, Slots] = {}
    confidence: dict[int, dict[str, list[float]]] = {}
    status_logged = True
    for batch in iter_batches(path, [*wanted, *extra]):
        names = batch.schema.names
        if "time" not in names:
            raise DataError(f"{path}: not a request log (no time column)")
        stamps = pc.cast(batch.column(names.index("time")), pa.int64()).to_numpy(zero_copy_only=False)
        hours = stamps // HOUR_US
        if ref.classes and "probabilities" in names and PREDICTION in names:
            batch = _with_confidence(batch)
            _add_confidence(confidence, batch, hours)
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
        status_logged = _add_requests(service, batch, hours) and status_logged
    return LogProfile(
        path.name,
        ref.basis.id,
        {hour_name(h): p.profile() for h, p in profilers.items()},
        {hour_name(h): v for h, v in latency.items()},
        {hour_name(h): s for h, s in sorted(service.items())},
        status_logged,
        {hour_name(h): dict(sorted(c.items())) for h, c in sorted(confidence.items())} if ref.classes else None,
    )


def _add_confidence(sums: dict[int, dict[str, list[float]]], batch: Any, hours: Any) -> None:
    """Per hour and answer: rows and the sum of the probability the model gave its answer."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names
    confidence = np.asarray(batch.column(names.index(CONFIDENCE)).to_numpy(zero_copy_only=False), dtype=np.float64)
    encoded = pc.cast(batch.column(names.index(PREDICTION)), pa.string()).dictionary_encode()
    answers = [str(a) for a in encoded.dictionary.to_pylist()]
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    known = np.isfinite(confidence) & (codes >= 0)
    if not known.any() or not answers:
        return
    hours = np.asarray(hours, dtype=np.int64)[known]
    first = int(hours.min())
    keys = (hours - first) * len(answers) + codes[known]  # one integer per (hour, answer)
    size = int(keys.max()) + 1
    rows = np.bincount(keys, minlength=size)
    total = np.bincount(keys, weights=confidence[known], minlength=size)
    for key in np.flatnonzero(rows).tolist():
        hour, code = divmod(key, len(answers))
        into = sums.setdefault(hour + first, {})
        before = into.get(answers[code], [0, 0.0])
        into[answers[code]] = [before[0] + int(rows[key]), before[1] + float(total[key])]


REQUEST_COLUMNS = ("variant", "version", "status", "request_row")


def profile_requests(path: Path, ref: Reference) -> LogProfile:
    """A shadow-log or failure-log file's requests per hour: statuses and latencies, no data."""
    import pyarrow as pa
    import pyarrow.compute as pc

    service: dict[int, Slots] = {}
    status_logged = True
    for batch in iter_batches(path, ["time", "latency_ms", *REQUEST_COLUMNS]):
        names = batch.schema.names
        if "time" not in names:
            raise DataError(f"{path}: not a request log (no time column)")
        hours = pc.cast(batch.column(names.index("time")), pa.int64()).to_numpy(zero_copy_only=False) // HOUR_US
        status_logged = _add_requests(service, batch, hours) and status_logged
    return LogProfile(
        path.name, ref.basis.id, {}, {}, {hour_name(h): s for h, s in sorted(service.items())}, status_logged
    )


def _add_requests(service: dict[int, Slots], batch: Any, hours: Any) -> bool:
    """Count the batch's requests (its rows with ``request_row`` 0: a request's first row) per
    hour and slot into ``service``; False when the log has no status column (all counted 200)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names

    def column(name: str, fill: Any, type_: Any) -> Any:
        if name not in names:
            return np.full(batch.num_rows, fill)
        values = pc.cast(batch.column(names.index(name)), type_)
        return pc.fill_null(values, pa.scalar(fill, type_)).to_numpy(zero_copy_only=False)

    first = column("request_row", 0, pa.int64()) == 0  # no request_row column: every row is a request
    if "variant" in names:
        encoded = pc.fill_null(pc.cast(batch.column(names.index("variant")), pa.string()), "").dictionary_encode()
        variant_names = [str(v) for v in encoded.dictionary.to_pylist()]
        codes = encoded.indices.to_numpy(zero_copy_only=False)[first]
    else:
        variant_names, codes = [""], np.zeros(int(first.sum()), dtype=np.int64)
    found = hourly_slots(
        np.asarray(hours)[first],
        variant_names,
        codes,
        column("version", -1, pa.int64())[first],
        column("status", 200, pa.int64())[first],
        column("latency_ms", float("nan"), pa.float64())[first],
    )
    for hour, slots in found.items():
        service[hour] = merge_slots(service.get(hour, {}), slots)
    return "status" in names


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
