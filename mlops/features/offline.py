"""Point-in-time correct training sets: DuckDB's ASOF JOIN over the sources, read through pyarrow.

For an entity row with key K and time T, a feature view gives the values of ONE source row of key K:

1. candidates: rows whose event time <= T and whose created time <= T (a row backfilled
   after T did not exist at T: it never leaks; a null created time counts as the event time);
2. of those, the latest event time; ties by the latest created time; then by the last in source
   order (a folder's files by name, then row order): a duplicate row replaces the one before it;
3. within the TTL: T - event time <= ttl (inclusive); an older best row gives nulls (it does
   not fall back to an even older one). A TTL of 0 means no limit;
4. a null feature value in the chosen row stays null (no fill from older rows); rows with a null
   key or event time are never chosen; an entity row with a null key gets nulls.

All times are UTC: zone-aware columns are converted, naive ones read in the zone features.yaml
names (refused without one); precision is microseconds.

How (one query per view): each source row becomes visible at max(event, created). Per key, a
running maximum over visibility order of the rows' rank by (event, created, source order) says
which row is best once each row is visible; the ASOF JOIN finds, for each entity row, the last
visibility point at or before T.
When no row of a view was written after its event time, visibility is the event time and the
best row of each (key, event time) is enough: a hash aggregate instead of the two sorts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError, UsageError
from ..fsio import output_writer
from ..repo.repo import Repo
from .definitions import Definitions, FeatureService
from .sources import SourceState, arrow_type, cast_key, read_view_table, to_utc
from .validate import checked_definitions

METADATA_KEY = b"mlops.training_set"
ENTITY_TIMESTAMP = "event_timestamp"  # Feast's name for the entity rows' time column


@dataclass(frozen=True)
class TrainingSet:
    table: Any  # pyarrow.Table: the entity rows, in their order, then the service's features
    service: str
    features: tuple[str, ...]  # view:feature, in column order
    definitions_hash: str
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # source -> {path, hash}
    filled: dict[str, int] = field(default_factory=dict)  # view -> entity rows that got a row within TTL

    def lineage(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "features": list(self.features),
            "definitions_hash": self.definitions_hash,
            "sources": self.sources,
            "rows": self.table.num_rows,
        }


@dataclass(frozen=True)
class TrainingSetResult:
    output: str
    service: str
    rows: int
    features: tuple[str, ...]
    definitions_hash: str
    sources: dict[str, dict[str, str]]
    filled: dict[str, int]


def read_entity_rows(path: str | os.PathLike[str]) -> Any:
    """The entity rows (a Parquet or CSV file) as a pyarrow table; DataError naming the file."""
    import pyarrow as pa

    shown = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{shown}: no such file", hint="name a Parquet or CSV file of entity keys and times")
    try:
        if shown.lower().endswith((".csv", ".csv.gz")):
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{shown}: cannot be read as a table: {exc}") from None


def get_training_set(
    repo: Repo,
    entities: str | os.PathLike[str],
    *,
    service: str,
    output: str | os.PathLike[str],
    timestamp_column: str = ENTITY_TIMESTAMP,
) -> TrainingSetResult:
    """Build the service's training set for the entity rows in ``entities`` and write it to ``output``
    (Parquet; its schema metadata records the service, the definitions' hash and the sources' hashes)."""
    import pyarrow.parquet as pq

    defs, states = checked_definitions(repo, service)
    rows = read_entity_rows(entities)
    result = build_training_set(defs, repo, service, rows, timestamp_column=timestamp_column, states=states)
    table = result.table
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(result.lineage(), sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    with output_writer(output, "wb") as handle:
        pq.write_table(table, handle)
    return TrainingSetResult(
        os.fspath(output),
        service,
        table.num_rows,
        result.features,
        result.definitions_hash,
        result.sources,
        result.filled,
    )


def read_lineage(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a training set records of where it came from (None for a Parquet file mlops did not build)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return None
    from ..formats import parse_json

    return parse_json(raw, os.fspath(path))


def build_training_set(
    defs: Definitions,
    repo: Repo,
    service_name: str,
    rows: Any,
    *,
    timestamp_column: str = ENTITY_TIMESTAMP,
    states: dict[str, SourceState] | None = None,
) -> TrainingSet:
    """The point-in-time join of ``rows`` (a pyarrow table) with the service's views (rules above)."""
    import pyarrow as pa

    service = defs.service(service_name)
    if timestamp_column not in rows.column_names:
        raise DataError(
            f"the entity rows have no '{timestamp_column}' column",
            hint="name the time column with --timestamp-column",
        )
    times = to_utc(rows.column(timestamp_column), defs.timezone, f"entity rows: '{timestamp_column}'")
    if times.null_count:
        raise DataError(f"entity rows: '{timestamp_column}' has {times.null_count} null time(s); every row needs one")
    keys: dict[str, Any] = {}
    for view_name in service.views():
        entity = defs.entities[defs.views[view_name].entities[0]]
        if entity.join_key not in rows.column_names:
            raise DataError(
                f"the entity rows have no '{entity.join_key}' column (the join key of entity '{entity.name}')"
            )
        keys[entity.name] = cast_key(rows.column(entity.join_key), entity.value_type, "entity rows")
    import numpy as np

    base = {"entity_row": pa.array(np.arange(rows.num_rows, dtype=np.int64)), "ts": times}
    base.update({f"k_{name}": column for name, column in keys.items()})
    entity_table = pa.table(base)
    out = rows.set_column(rows.column_names.index(timestamp_column), timestamp_column, _utc(times))
    filled: dict[str, int] = {}
    con = connect()
    try:
        con.register("entity_rows", entity_table)
        for view_name in service.views():
            columns, count = _join_view(con, defs, repo, service, view_name)
            filled[view_name] = count
            for name, column in columns:
                if name in out.column_names:
                    raise UsageError(
                        f"feature '{name}' of view '{view_name}' has the name of a column of the entity rows",
                        hint="rename the column in the entity rows",
                    )
                out = out.append_column(name, column)
    finally:
        con.close()
    sources = {}
    for view_name in service.views():
        source = defs.sources[defs.views[view_name].source]
        state = (states or {}).get(source.name)
        sources[source.name] = {"path": source.path, "hash": state.hash if state else ""}
    return TrainingSet(
        out,
        service.name,
        tuple(str(ref) for ref in service.features),
        defs.hash,
        sources,
        filled,
    )


def engine() -> Any:
    """The duckdb module, or a UsageError saying how to install it."""
    try:
        import duckdb
    except ImportError:
        raise UsageError(
            "the feature store needs DuckDB, which is not installed", hint="pip install 'mlops[features]'"
        ) from None
    return duckdb


def connect() -> Any:
    """An in-memory DuckDB connection that prints nothing (its progress bar would land on stdout)."""
    con = engine().connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    return con


def _utc(column: Any) -> Any:
    import pyarrow as pa

    return column.cast(pa.timestamp("us", tz="UTC"))


def _join_view(con: Any, defs: Definitions, repo: Repo, service: FeatureService, view_name: str) -> tuple[list, int]:
    """The view's requested features for every entity row (in entity-row order), and how many rows got values."""
    import pyarrow as pa

    view = defs.views[view_name]
    table = read_view_table(repo, defs, view)
    # DuckDB holds naive UTC: timestamp features lose their zone here and get it back below
    for index, name in enumerate(table.column_names):
        if pa.types.is_timestamp(table.schema.field(name).type) and table.schema.field(name).type.tz is not None:
            table = table.set_column(index, name, table.column(name).cast(pa.timestamp("us")))
    con.register("view_rows", table)
    wanted = [ref.feature for ref in service.features if ref.view == view_name]
    ttl = view.ttl_seconds
    within = f"r.event_ts >= p.ts - INTERVAL '{int(ttl)} seconds'" if ttl else "TRUE"
    selected = ", ".join(f'CASE WHEN {within} THEN r."{f}" END AS "{f}"' for f in wanted)
    entity_key = f'e."k_{view.entities[0]}"'
    late = con.execute("SELECT count(*) FROM view_rows WHERE created_ts > event_ts").fetchall()[0][0]
    if late:
        # some rows became visible after their event time: the best row visible at each point
        # in time is a running maximum of the rows' rank, in visibility order
        timeline = """
            ranked AS MATERIALIZED (  -- read twice below: computed once
                SELECT *, greatest(event_ts, created_ts) AS visible,
                       row_number() OVER (PARTITION BY key ORDER BY event_ts, created_ts, "row") AS rank
                FROM view_rows WHERE key IS NOT NULL AND event_ts IS NOT NULL
            ),
            timeline AS (
                SELECT DISTINCT key, visible,
                       max(rank) OVER (PARTITION BY key ORDER BY visible
                                       RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS best
                FROM ranked
            )"""
        back = "ranked r ON p.key = r.key AND p.best = r.rank"
    else:
        # every row is visible at its event time: the best of each (key, event time) is enough,
        # found by a hash aggregate instead of two sorts
        timeline = """
            timeline AS (
                SELECT key, event_ts AS visible, arg_max("row", struct_pack(c := created_ts, r := "row")) AS best
                FROM view_rows WHERE key IS NOT NULL AND event_ts IS NOT NULL
                GROUP BY key, event_ts
            )"""
        back = 'view_rows r ON p.best = r."row"'
    query = f"""
        WITH {timeline},
        picked AS (
            SELECT e.entity_row, e.ts, t.key, t.best
            FROM entity_rows e ASOF LEFT JOIN timeline t ON {entity_key} = t.key AND e.ts >= t.visible
        )
        SELECT p.entity_row, ({within} AND r.key IS NOT NULL) AS found, {selected}
        FROM picked p LEFT JOIN {back}
        ORDER BY p.entity_row
    """
    relation = con.sql(query)
    # DuckDB 2 names it to_arrow_table; 1.x arrow()
    result = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
    con.unregister("view_rows")
    count = int(result.column("found").to_pylist().count(True))
    columns = []
    for feature in wanted:
        kind = view.feature_type(feature) or "string"
        column = result.column(feature)
        if kind == "timestamp":
            column = column.cast(pa.timestamp("us")).cast(arrow_type(kind))
        else:
            column = column.cast(arrow_type(kind))
        columns.append((feature, column))
    return columns, count
