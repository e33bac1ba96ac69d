"""The sources of feature views: their tracked content hashes, real schemas and tables (pyarrow).

A source is a Parquet or CSV file, or a folder of them, tracked with ``mlops add``: the pointer
file's hash names the exact content a training set or a materialization read. Every table
comes out with its timestamps as naive UTC microseconds (``timestamp[us]``): zone-aware
columns are converted, naive ones are read in the zone ``features.yaml`` names, or refused.
pyarrow is imported inside the functions: start-up stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.pointer import POINTER_SUFFIX, read_pointer
from ..data.snapshot import read_workspace
from ..errors import DataError
from ..paths import check_readable
from ..repo.repo import Repo
from .definitions import Definitions, FeatureView, Source, normalise_type


@dataclass(frozen=True)
class SourceState:
    name: str
    path: str
    state: str  # unchanged | modified | untracked | missing
    hash: str  # the pointer's hash ("" when untracked)

    @property
    def problem(self) -> str | None:
        if self.state == "unchanged":
            return None
        if self.state == "untracked":
            return f"source '{self.name}': {self.path} is not tracked; run 'mlops add {self.path}'"
        if self.state == "missing":
            return f"source '{self.name}': {self.path} is not here (run 'mlops pull' or 'mlops checkout')"
        return f"source '{self.name}': {self.path} changed since 'mlops add'; run 'mlops add {self.path}'"


def source_state(repo: Repo, source: Source) -> SourceState:
    """Whether the source's workspace content is what its pointer file records."""
    absolute = check_readable(repo.root, source.path, where=f"source '{source.name}'")
    if not absolute.exists():
        pointer_here = (repo.root / (source.path + POINTER_SUFFIX)).is_file()
        return SourceState(source.name, source.path, "missing" if pointer_here else "untracked", "")
    if not (repo.root / (source.path + POINTER_SUFFIX)).is_file():
        return SourceState(source.name, source.path, "untracked", "")
    pointer = read_pointer(repo.root, source.path + POINTER_SUFFIX)
    current = read_workspace(repo, source.path, need_records=False)
    state = "unchanged" if current.hash == pointer.hash else "modified"
    return SourceState(source.name, source.path, state, pointer.hash)


def _files(repo: Repo, source: Source) -> list[str]:
    absolute = repo.root / source.path
    if absolute.is_dir():
        suffixes = (".csv", ".csv.gz") if source.file_format == "csv" else (".parquet", ".pq")
        files = sorted(str(p) for p in absolute.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
        if not files:
            raise DataError(f"source '{source.name}': {source.path}/ holds no {source.file_format} files")
        return files
    return [str(absolute)]


def read_schema(repo: Repo, source: Source) -> Any:
    """The source's real schema (pyarrow); CSV columns as pyarrow infers them."""
    import pyarrow as pa

    files = _files(repo, source)
    try:
        if source.file_format == "parquet":
            import pyarrow.parquet as pq

            return pa.unify_schemas([pq.read_schema(f) for f in files])
        return _read_csv(files).schema
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"source '{source.name}': {source.path} cannot be read: {exc}") from None


def read_pool() -> Any:
    """The Arrow memory pool for reading sources: jemalloc where pyarrow has it (None: the default pool).

    pyarrow's default pool (mimalloc) gives fresh pages to each large read, and faulting them in cost
    more kernel time than the join itself (1M entity rows x 10M source rows: 3.3 to 3.7 s of system time
    against 0.9 to 1.4 s with jemalloc, user time alike, peak memory 18% lower; docs/benchmarks.md).
    """
    import pyarrow as pa

    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a build without jemalloc (Windows)
        return None


def _read_parquet(path: str, columns: list[str]) -> Any:
    """The columns of one Parquet file: memory-mapped (decoded from the page cache without a copy into a read
    buffer), into ``read_pool()`` (``pq.read_table`` is this same dataset scan, without the choice of pool)."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    dataset = ds.dataset(path, format="parquet", filesystem=pafs.LocalFileSystem(use_mmap=True))
    return dataset.to_table(columns=columns, memory_pool=read_pool())


def _read_csv(files: list[str], columns: list[str] | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = pcsv.ConvertOptions(include_columns=columns) if columns else None
    tables = [pcsv.read_csv(f, convert_options=options, memory_pool=read_pool()) for f in files]
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def type_problem(declared: str, actual: Any) -> str | None:
    """Why a column of pyarrow type ``actual`` cannot hold ``declared`` values, or None."""
    import pyarrow as pa

    if pa.types.is_null(actual):
        return None
    ok = {
        "int32": pa.types.is_integer,
        "int64": pa.types.is_integer,
        "float32": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "float64": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "bool": pa.types.is_boolean,
        "timestamp": pa.types.is_timestamp,
    }[declared](actual)
    return None if ok else f"declared {declared}, the source has {actual}"


def schema_problems(repo: Repo, defs: Definitions) -> list[str]:
    """Each view checked against its source's real columns and types, 'file:line:col: message'."""
    problems: list[str] = []
    schemas: dict[str, Any] = {}
    for source in defs.sources.values():
        try:
            schemas[source.name] = read_schema(repo, source)
        except DataError as exc:
            problems.append(f"{source.place('path')}: {exc.message}")
            continue
        schema = schemas[source.name]
        times = ((source.timestamp_field, "timestamp_field"), (source.created_timestamp_column, "created"))
        for column, what in times:
            if not column:
                continue
            at = source.place("timestamp_field" if what == "timestamp_field" else "created_timestamp_column")
            if column not in schema.names:
                problems.append(f"{at}: {what} '{column}' is not a column of {source.path}")
                continue
            kind = schema.field(column).type
            import pyarrow as pa

            if not pa.types.is_timestamp(kind):
                problems.append(f"{at}: '{column}' in {source.path} is {kind}, not a timestamp")
            elif kind.tz is None and not defs.zone_of(source):
                problems.append(
                    f"{at}: '{column}' in {source.path} has no time zone; name one with 'timezone:' "
                    "(in the source or at the top of features.yaml)"
                )
    for view in defs.views.values():
        schema = schemas.get(view.source)
        if schema is None:
            continue
        source = defs.sources[view.source]
        entity = defs.entities[view.entities[0]]
        key_place = entity.places.get("join_key", entity.where)
        columns = [(entity.join_key, entity.value_type, "join key", key_place)]
        columns += [(f, t, "feature", view.place(f)) for f, t in view.features]
        for column, declared, what, at in columns:
            if not declared:
                continue
            if column not in schema.names:
                problems.append(f"{at}: {what} '{column}' is not a column of {source.path}")
                continue
            problem = type_problem(declared, schema.field(column).type)
            if problem:
                problems.append(f"{at}: {what} '{column}': {problem}")
    return problems


def to_utc(column: Any, zone: str, what: str) -> Any:
    """A timestamp column as naive UTC microseconds; a naive one is read in ``zone`` (refused without one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if not pa.types.is_timestamp(kind):
        raise DataError(f"{what} is {kind}, not a timestamp")
    if kind.tz is None:
        if not zone:
            raise DataError(
                f"{what} has no time zone", hint="write UTC times (with a zone), or name one with 'timezone:'"
            )
        column = pc.assume_timezone(column, timezone=zone, ambiguous="earliest", nonexistent="earliest")
    column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
    return column.cast(pa.timestamp("us", tz="UTC"), safe=False).cast(pa.timestamp("us"))


def read_view_table(repo: Repo, defs: Definitions, view: FeatureView, *, row_numbers: bool = True) -> Any:
    """The view's rows: key, event_ts, created_ts, row (source order; left out without ``row_numbers``), then
    the features cast to their types.

    ``created_ts`` is the event time where the source has no created column or the value is null.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    source = defs.sources[view.source]
    entity = defs.entities[view.entities[0]]
    wanted = [entity.join_key, source.timestamp_field]
    if source.created_timestamp_column:
        wanted.append(source.created_timestamp_column)
    wanted += [f for f, _ in view.features if f not in wanted]
    files = _files(repo, source)
    try:
        if source.file_format == "parquet":
            tables = [_read_parquet(f, wanted) for f in files]
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        else:
            table = _read_csv(files, wanted)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"source '{source.name}': {source.path} cannot be read: {exc}") from None
    zone = defs.zone_of(source)
    where = f"source '{source.name}' ({source.path})"
    event = to_utc(table.column(source.timestamp_field), zone, f"{where}: '{source.timestamp_field}'")
    if source.created_timestamp_column:
        created = to_utc(
            table.column(source.created_timestamp_column), zone, f"{where}: '{source.created_timestamp_column}'"
        )
        if created.null_count:  # (coalesce copies the column even when there is nothing to fill)
            created = pc.coalesce(created, event)
    else:
        created = event
    columns = {
        "key": cast_key(table.column(entity.join_key), entity.value_type, where),
        "event_ts": event,
        "created_ts": created,
    }
    if row_numbers:
        columns["row"] = pa.array(np.arange(table.num_rows, dtype=np.int64))
    for feature, kind in view.features:
        columns[feature] = cast_feature(table.column(feature), kind, f"{where}: '{feature}'")
    return pa.table(columns)


ARROW_TYPES = {
    "int32": "int32",
    "int64": "int64",
    "float32": "float32",
    "float64": "float64",
    "string": "string",
    "bool": "bool_",
}


def arrow_type(kind: str) -> Any:
    import pyarrow as pa

    if kind == "timestamp":
        return pa.timestamp("us", tz="UTC")
    return getattr(pa, ARROW_TYPES[kind])()


def cast_feature(column: Any, kind: str, what: str) -> Any:
    import pyarrow as pa

    if kind == "timestamp" and pa.types.is_timestamp(column.type):
        return to_utc(column, "UTC", what).cast(pa.timestamp("us", tz="UTC"))
    try:
        return column.cast(arrow_type(kind))
    except pa.ArrowException as exc:
        raise DataError(f"{what}: cannot be read as {kind}: {exc}") from None


def cast_key(column: Any, kind: str, what: str) -> Any:
    kind = normalise_type(kind) or "int64"
    return cast_feature(column, "int64" if kind in ("int32", "int64", "bool") else "string", f"{what}: join key")
