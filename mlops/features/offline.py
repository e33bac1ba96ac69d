"""Point-in-time correct training sets: an as-of join per view on sorted numpy arrays, sources read by pyarrow.

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

How (per view, views side by side in threads): the usable rows are sorted once by (key, event time)
packed in one int64 (ties then by created time and row), so a row's position is its rank. Rows written
at or before their event time are visible from it: for each entity row a binary search finds the last
such row at or before (K, T). Rows written later (backfills) are visible from their created time: in
(key, created) order a running maximum of their ranks is the best of them visible so far, found by a
second binary search. The higher rank of the two wins; the features are gathered from the Arrow
table by row number. No Python loop over rows. The sorts are the main cost: each is an ``np.sort`` of the
value packed with the row's index (``sorted_order``), skipped for rows already in order, and the source rows
no entity row can choose are left out before it (``_reachable``). DuckDB's ASOF JOIN did this before (with
window functions for backfills); on the same data it took 2 to 3 times as long (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError, UsageError
from ..fsio import output_writer
from ..repo.repo import Repo
from .definitions import Definitions, FeatureService
from .sources import SourceState, arrow_type, cast_key, read_pool, read_view_table, to_utc
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

    entity_columns = {"ts": _micros(times), **{f"k_{name}": column for name, column in keys.items()}}
    out = rows.set_column(rows.column_names.index(timestamp_column), timestamp_column, _utc(times))
    filled: dict[str, int] = {}
    views = list(service.views())
    # the views are joined side by side: reading Parquet, numpy's sorts and Arrow's gathers release the GIL
    workers = max(1, min(len(views), os.cpu_count() or 1))
    with _join_memory(read_pool()), ThreadPoolExecutor(max_workers=workers) as pool:
        joined = list(pool.map(lambda name: _join_view(entity_columns, defs, repo, service, name), views))
    for view_name, (columns, count) in zip(views, joined, strict=True):
        filled[view_name] = count
        for name, column in columns:
            if name in out.column_names:
                raise UsageError(
                    f"feature '{name}' of view '{view_name}' has the name of a column of the entity rows",
                    hint="rename the column in the entity rows",
                )
            out = out.append_column(name, column)
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


@contextmanager
def _join_memory(pool: Any) -> Iterator[None]:
    """Inside, Arrow's default memory pool is ``pool`` (the join's casts, coalesces and gathers allocate there
    too, see ``read_pool``) and numpy's new arrays are not advised to the kernel as transparent huge pages;
    both as before after, also on error. Process-wide while it lasts: an allocation made meanwhile elsewhere
    only comes from another allocator (each buffer is freed to the pool it came from).

    Huge pages: the join's large temporaries are each touched once; faulting them in as huge pages made the
    kernel compact memory first (with THP's usual ``defrag=madvise``), 0.9 to 2.1 s of system time per run
    at 1M x 10M against 0.9 to 1.05 s without (user time 5% more; docs/benchmarks.md).
    """
    import pyarrow as pa

    previous_pool = pa.default_memory_pool()
    hugepages = _numpy_hugepages(False)
    if pool is not None:
        pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous_pool)
        if hugepages is not None:
            _numpy_hugepages(hugepages)


def _numpy_hugepages(enabled: bool) -> bool | None:
    """Switch numpy's madvise(MADV_HUGEPAGE) of new arrays (what NUMPY_MADVISE_HUGEPAGE sets at start);
    the previous setting, or None where this numpy has no switch."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        return None
    return bool(_set_madvise_hugepage(enabled))


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


def _join_view(
    entities: dict[str, Any], defs: Definitions, repo: Repo, service: FeatureService, view_name: str
) -> tuple[list, int]:
    """The view's requested features for every entity row (in entity-row order), and how many rows got values."""
    import pyarrow as pa

    view = defs.views[view_name]
    table = read_view_table(repo, defs, view, row_numbers=False)  # the source order is the row's index
    source_row = best_rows(
        table.column("key"),
        _micros(table.column("event_ts")),
        _micros(table.column("created_ts")),
        entities[f"k_{view.entities[0]}"],
        entities["ts"],
        int(view.ttl_seconds * 1_000_000),
    )
    found = source_row >= 0
    indices = pa.array(source_row, mask=~found)
    columns = []
    for feature in service.features:
        if feature.view != view_name:
            continue
        kind = view.feature_type(feature.feature) or "string"
        columns.append((feature.feature, table.column(feature.feature).take(indices).cast(arrow_type(kind))))
    return columns, int(found.sum())


def _micros(column: Any) -> Any:
    """A timestamp[us] column as int64 microseconds (numpy), nulls as the smallest int64."""
    import numpy as np
    import pyarrow as pa

    column = column.cast(pa.int64())
    if column.null_count:
        column = column.fill_null(np.iinfo(np.int64).min)
    return column.to_numpy()


def best_rows(keys: Any, event: Any, created: Any, entity_keys: Any, entity_times: Any, ttl_micros: int) -> Any:
    """For each entity row, the index of the source row its features come from (the rules above), or -1.

    ``keys``/``entity_keys`` are pyarrow arrays (int64 or string, nulls never match); times are int64
    microseconds (numpy; the smallest int64 marks a null event time). One sort does it: the source
    rows in (key, event, created, row) order, so a row's position is its rank and a key's rows are
    one block. Rows written at or before their event time are visible from it: the last of them at
    or before T (a binary search) is their best. Rows written later are visible from their created
    time: in (key, created) order, a running maximum of their positions is the best of them visible
    so far. The greater of the two positions wins; then the TTL.
    """
    import numpy as np

    best = np.full(len(entity_keys), -1, dtype=np.int64)
    usable = event != np.iinfo(np.int64).min
    if keys.null_count:
        usable &= ~_null_mask(keys)
    probes = np.flatnonzero(~_null_mask(entity_keys))
    if not usable.any() or not len(probes):
        return best
    key_code, entity_code, code_bits = _key_codes(keys, entity_keys)
    rows = None if usable.all() else np.flatnonzero(usable)
    if rows is not None:
        key_code, event, created = key_code[rows], event[rows], created[rows]
    probe_times = entity_times[probes]
    low = min(int(event.min()), int(created.min()), int(probe_times.min()))
    span = max(int(event.max()), int(created.max()), int(probe_times.max())) - low
    if code_bits + span.bit_length() <= 62:
        shift = max(1, span.bit_length())

        def time_of(t: Any) -> Any:  # exact: microseconds since the earliest time
            return t - low
    else:
        # too wide for one int64 with the key: the times' ranks keep their order and fit
        distinct = np.unique(np.concatenate([event, created, probe_times]))
        shift = max(1, len(distinct).bit_length())

        def time_of(t: Any) -> Any:
            return np.searchsorted(distinct, t)

    probe = (entity_code[probes] << shift) | time_of(probe_times)
    probe_order = sorted_order(probe)  # sorted probes: the binary searches walk memory in order (10x faster)
    probe, probes, probe_times = probe[probe_order], probes[probe_order], probe_times[probe_order]
    probe_code = probe >> shift
    reachable = _reachable(key_code, event, probe_code, probe_times, code_bits, ttl_micros)
    if reachable is not None:
        if not len(reachable):
            return best
        key_code, event, created = key_code[reachable], event[reachable], created[reachable]
        rows = reachable if rows is None else rows[reachable]
    order_key = key_code << shift
    order_key |= time_of(event)
    order = sorted_order(order_key)
    order_key = order_key[order]
    _break_ties(order, order_key, created)
    late = (created > event)[order]
    if late.any():
        on_time = ~late
        timelines = [(order_key[on_time], np.flatnonzero(on_time))]
        timelines.append(_late_timeline(order_key, order, created, late, time_of, shift))
    else:
        timelines = [(order_key, None)]
    best_position = np.full(len(probes), -1, dtype=np.int64)
    for visible_key, positions in timelines:
        if not len(visible_key):
            continue
        at = np.searchsorted(visible_key, probe, side="right") - 1
        hit = at >= 0
        candidate = at if positions is None else positions[np.maximum(at, 0)]
        # the last visible row at or before (key, T) may be another (smaller) key's: no hit
        hit &= (order_key[np.maximum(candidate, 0)] >> shift) == probe_code
        best_position = np.maximum(best_position, np.where(hit, candidate, -1))
    chosen = best_position >= 0
    source = order[np.maximum(best_position, 0)]
    if ttl_micros:
        chosen &= probe_times - event[source] <= ttl_micros
    if rows is not None:
        source = rows[source]
    best[probes] = np.where(chosen, source, -1)
    return best


def _reachable(key_code: Any, event: Any, probe_code: Any, probe_times: Any, code_bits: int, ttl_micros: int) -> Any:
    """The source rows some entity row may choose (indices), or None for all of them (or when telling would
    cost more than it saves: keys coded too sparsely for a table per key).

    ``probe_code``/``probe_times`` are sorted by (key, time), so each key's first and last entity times are
    the ends of its run. A row of a key no entity row has, or with an event after the key's last entity
    time, is never a candidate; with a TTL, one older than the TTL before the key's first entity time is
    never within it, and neither is any older row of its key, so leaving it out leaves every answer as it is.
    """
    import numpy as np

    codes = 1 << code_bits
    if codes > 2 * (len(key_code) + len(probe_code)):
        return None
    run_end = np.flatnonzero(probe_code[1:] != probe_code[:-1])
    last = np.full(codes, np.iinfo(np.int64).min, dtype=np.int64)  # no entity row: nothing is reachable
    ends = np.append(run_end, len(probe_code) - 1)
    last[probe_code[ends]] = probe_times[ends]
    bound = last.take(key_code)  # (one buffer for both bounds: fresh pages cost as much as the arithmetic)
    reach = event <= bound
    if ttl_micros:
        first = np.zeros(codes, dtype=np.int64)
        starts = np.insert(run_end + 1, 0, 0)
        first[probe_code[starts]] = probe_times[starts]
        first.take(key_code, out=bound)
        bound -= event
        reach &= bound <= ttl_micros
    if reach.all():
        return None
    return np.flatnonzero(reach)


def _late_timeline(order_key: Any, order: Any, created: Any, late: Any, time_of: Any, shift: int) -> tuple:
    """The rows written after their event time, in (key, created) order: that order's key, and for each
    the best position (in the source order) among the rows visible by then (a running maximum)."""
    import numpy as np

    positions = np.flatnonzero(late)
    visible_key = ((order_key[positions] >> shift) << shift) | time_of(created[order[positions]])
    by_visible = sorted_order(visible_key)
    # a key's positions are one block above every smaller key's, so the running maximum over all keys
    # is, once one of the key's own rows is visible, the key's best (checked against the key by the caller)
    return visible_key[by_visible], np.maximum.accumulate(positions[by_visible])


def sorted_order(values: Any, budget: int = 63) -> Any:
    """The stable argsort of non-negative int64 ``values`` (ties in index order), cheaper than numpy's argsort.

    Already sorted values (a source written in key and time order, say) cost one comparison pass. Otherwise
    each value is packed with its index into one int64, ``value >> drop`` in the high bits and the index in
    the low ones, and sorted by value with ``np.sort`` (x86-simd-sort where the CPU has AVX-512/AVX2: two to
    three times as fast as ``argsort``). When value and index need more than ``budget`` bits, the value's
    lowest ``drop`` bits are left out of the packed sort; the rare runs of equal packed values are then put
    in exact (value, index) order by a lexsort of those rows alone.
    """
    import numpy as np

    count = len(values)
    if count < 2 or bool((values[1:] >= values[:-1]).all()):
        return np.arange(count, dtype=np.int64)
    index_bits = (count - 1).bit_length()
    value_bits = int(values.max()).bit_length()
    drop = max(0, value_bits + index_bits - budget)
    if index_bits >= budget:  # no bit left for the value: numpy's own stable sort
        return np.argsort(values, kind="stable")
    packed = values >> drop if drop else values.copy()
    packed <<= index_bits
    packed |= np.arange(count, dtype=np.int64)
    packed.sort()
    coarse = packed >> index_bits if drop else None
    order = packed
    order &= (1 << index_bits) - 1  # in place: the index in the low bits
    if coarse is not None:
        equal = coarse[1:] == coarse[:-1]
        if equal.any():
            tied = np.zeros(count, dtype=bool)
            tied[1:] |= equal
            tied[:-1] |= equal
            at = np.flatnonzero(tied)
            rows = order[at]
            # the runs are contiguous and the value orders them as the packed value does: one lexsort of all
            order[at] = rows[np.lexsort((rows, values[rows]))]
    return order


def _break_ties(order: Any, order_key: Any, created: Any) -> None:
    """Equal (key, event time): the later created time, then the later row, comes last (in place)."""
    import numpy as np

    equal = order_key[1:] == order_key[:-1]
    if not equal.any():
        return
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= equal
    tied[:-1] |= equal
    at = np.flatnonzero(tied)
    rows = order[at]
    order[at] = rows[np.lexsort((rows, created[rows], order_key[at]))]


def _null_mask(column: Any) -> Any:
    import numpy as np

    if not column.null_count:
        return np.zeros(len(column), dtype=bool)
    return column.is_null().to_numpy(zero_copy_only=False)


def _key_codes(keys: Any, entity_keys: Any) -> tuple[Any, Any, int]:
    """Small non-negative int64 codes for the source's and the entity rows' keys (equal keys, equal codes),
    and how many bits they take. Integers near each other are their own codes; others are numbered."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(keys.type) and pa.types.is_integer(entity_keys.type):
        low, high = pc.min_max(pa.chunked_array(_chunks(keys) + _chunks(entity_keys), pa.int64())).values()
        low, high = low.as_py(), high.as_py()
        if low is not None and (high - low).bit_length() <= 32:
            codes = [_offset_codes(k, low) for k in (keys, entity_keys)]
            return codes[0], codes[1], (high - low).bit_length()
    kind = pa.int64() if pa.types.is_integer(keys.type) and pa.types.is_integer(entity_keys.type) else pa.string()
    both = pa.chunked_array(_chunks(keys.cast(kind)) + _chunks(entity_keys.cast(kind)), kind)
    encoded = both.combine_chunks().dictionary_encode()
    codes = encoded.indices.cast(pa.int64()).fill_null(0).to_numpy()
    return codes[: len(keys)], codes[len(keys) :], max(1, len(encoded.dictionary)).bit_length()


def _offset_codes(column: Any, low: int) -> Any:
    """An integer key column minus ``low`` (numpy int64; nulls as 0), with one copy of the column, not three."""
    import pyarrow as pa

    column = column.cast(pa.int64())
    if column.null_count:
        column = column.fill_null(low)
    codes = column.to_numpy()
    if not codes.flags.writeable:  # a zero-copy view of Arrow's buffer
        return codes - low
    codes -= low
    return codes


def _chunks(column: Any) -> list:
    return list(column.chunks) if hasattr(column, "chunks") else [column]
