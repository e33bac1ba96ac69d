"""The online store: the latest value per entity within TTL, for lookups at serving time.

``materialize`` writes, for each view of a service and each entity, the best row visible as of
``end`` (the training set's rules: event and created time at or before ``end``, latest event,
then latest created, then last in source order) into an embedded SQLite file,
``.mlops/features/online.sqlite`` (WAL: readers never wait for the writer; one writer at a
time under a FileLock), or into Redis (``online_store: redis://HOST:PORT/DB``).

Each view keeps a watermark (the ``end`` it was materialized to), the source hash it read and
the hash of its definition. A later run with the same source and definition reads only rows that
became visible after the watermark; when the source changed (new content hash), the view is
rebuilt whole, so late rows are never missed, and so it is when its definition changed (a longer
TTL reaches older rows, a new feature has no stored values). An ``end`` in the future is
refused: values not yet visible would be served early. TTL is applied again
at read time: an expired value is missing, not stale.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, RemoteError, UsageError
from ..fsio import atomic_write
from ..repo.repo import Repo
from .definitions import Definitions, FeatureView, normalise_type, view_hash
from .offline import connect
from .sources import read_view_table
from .validate import checked_definitions

ONLINE_DIR = "features"
SQLITE_NAME = "online.sqlite"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def to_micros(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def from_micros(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def parse_time(text: str, *, zone: str = "", what: str = "--end") -> dt.datetime:
    """An ISO 8601 time as UTC; a naive one is read in ``zone`` (refused without one)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what}: not an ISO 8601 time: {text!r}", hint="e.g. 2026-12-01T00:00:00Z") from None
    if moment.tzinfo is None:
        if not zone:
            raise UsageError(f"{what}: {text!r} has no time zone", hint="add Z or +HH:MM, or set 'timezone:'")
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(dt.timezone.utc)


# --- stores --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Watermark:
    micros: int
    source_hash: str
    definition_hash: str = ""  # the view's definition (definitions.view_hash); "" from before it was recorded


class SqliteStore:
    """One SQLite file in WAL mode; every row is (view, key) -> event, created, JSON values."""

    def __init__(self, path: str | os.PathLike[str], *, writing: bool = False) -> None:
        import sqlite3

        self.path = os.fspath(path)
        if not writing and not os.path.isfile(self.path):
            raise UsageError(
                "the online store is empty (nothing materialized yet)",
                hint="run 'mlops features materialize --service NAME'",
            )
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout=30000")
            if not writing:
                return
            self.conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS feature_values (view TEXT, entity_key TEXT, event_us INTEGER, "
                "created_us INTEGER, payload TEXT, PRIMARY KEY (view, entity_key)) WITHOUT ROWID"
            )
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS watermarks (view TEXT PRIMARY KEY, watermark_us INTEGER, source_hash TEXT, "
                "definition_hash TEXT)"
            )
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(watermarks)")}
            if "definition_hash" not in columns:  # a store materialized before definitions were hashed
                self.conn.execute("ALTER TABLE watermarks ADD COLUMN definition_hash TEXT")
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: the online store cannot be opened: {exc}") from None

    def watermark(self, view: str) -> Watermark | None:
        import sqlite3

        try:
            row = self.conn.execute("SELECT * FROM watermarks WHERE view = ?", (view,)).fetchone()
        except sqlite3.Error as exc:  # a damaged store, or the empty file of a materialize killed at once
            raise ConfigError(
                f"{self.path}: the online store cannot be read: {exc}",
                hint="it is a cache of the sources: remove the file and run 'mlops features materialize' again",
            ) from None
        return Watermark(row[1], row[2], (row[3] if len(row) > 3 else "") or "") if row else None

    def write(self, view: str, rows: Iterable[tuple[str, int, int, str]], mark: Watermark, *, rebuild: bool) -> int:
        """Upsert rows (a newer or equal (event, created) wins) and move the watermark, in one transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if rebuild:
                self.conn.execute("DELETE FROM feature_values WHERE view = ?", (view,))
            counted = ((view, *row) for row in rows)
            cursor = self.conn.executemany(
                "INSERT INTO feature_values VALUES (?, ?, ?, ?, ?) ON CONFLICT (view, entity_key) DO UPDATE SET "
                "event_us = excluded.event_us, created_us = excluded.created_us, payload = excluded.payload "
                "WHERE excluded.event_us > event_us OR "
                "(excluded.event_us = event_us AND excluded.created_us >= created_us)",
                counted,
            )
            count = cursor.rowcount if cursor.rowcount >= 0 else 0
            self.conn.execute(
                "INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?, ?)",
                (view, mark.micros, mark.source_hash, mark.definition_hash),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return count

    def read(self, view: str, key: str) -> tuple[int, str] | None:
        import sqlite3

        try:
            row = self.conn.execute(
                "SELECT event_us, payload FROM feature_values WHERE view = ? AND entity_key = ?", (view, key)
            ).fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: the online store cannot be read: {exc}") from None
        return (row[0], row[1]) if row else None

    def close(self) -> None:
        self.conn.close()


_UPSERT = """
local cur = redis.call('HMGET', KEYS[1], 'e', 'c')
if cur[1] then
  local e, c = tonumber(cur[1]), tonumber(cur[2])
  local ne, nc = tonumber(ARGV[1]), tonumber(ARGV[2])
  if ne < e or (ne == e and nc < c) then return 0 end
end
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'c', ARGV[2], 'v', ARGV[3])
return 1
"""


class RedisStore:
    """A hash per (view, key): e (event us), c (created us), v (JSON values); a hash per watermark."""

    def __init__(self, url: str, project: str) -> None:
        try:
            import redis
        except ImportError:
            raise UsageError(
                "online_store: redis needs the redis client", hint="pip install 'mlops[features]'"
            ) from None
        self.redis_errors = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
        self.prefix = f"mlops:{project or 'default'}:"
        self.url = url
        self.upsert = self.client.register_script(_UPSERT)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.redis_errors as exc:
            raise RemoteError(f"online store {self.url}: {exc}", hint="is the Redis server up?") from None

    def watermark(self, view: str) -> Watermark | None:
        got = self._call(self.client.hmget, f"{self.prefix}watermark:{view}", "us", "hash", "definition")
        return Watermark(int(got[0]), got[1].decode(), (got[2] or b"").decode()) if got[0] is not None else None

    def write(self, view: str, rows: Iterable[tuple[str, int, int, str]], mark: Watermark, *, rebuild: bool) -> int:
        def run() -> int:
            if rebuild:
                for keys in _batches(self.client.scan_iter(match=f"{self.prefix}v:{view}:*", count=1000), 1000):
                    self.client.delete(*keys)
            count, queued = 0, 0  # count: values the script wrote (an older value than the stored one is not)
            pipe = self.client.pipeline(transaction=False)
            for key, event, created, payload in rows:
                self.upsert(keys=[f"{self.prefix}v:{view}:{key}"], args=[event, created, payload], client=pipe)
                queued += 1
                if queued % 1000 == 0:
                    count += sum(int(done) for done in pipe.execute())
            count += sum(int(done) for done in pipe.execute())
            self.client.hset(
                f"{self.prefix}watermark:{view}",
                mapping={"us": mark.micros, "hash": mark.source_hash, "definition": mark.definition_hash},
            )
            return count

        return self._call(run)

    def read(self, view: str, key: str) -> tuple[int, str] | None:
        got = self._call(self.client.hmget, f"{self.prefix}v:{view}:{key}", "e", "v")
        return (int(got[0]), got[1].decode()) if got[0] is not None else None

    def close(self) -> None:
        self.client.close()


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def open_store(repo: Repo, defs: Definitions, *, writing: bool = False) -> SqliteStore | RedisStore:
    if defs.redis_store:
        return RedisStore(defs.online_store, defs.project)
    folder = repo.dot / ONLINE_DIR
    if writing and not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(
            folder / ".gitignore", "# the online store: a cache that `mlops features materialize` rebuilds\n*\n"
        )
    return SqliteStore(folder / SQLITE_NAME, writing=writing)


def store_name(repo: Repo, defs: Definitions) -> str:
    return defs.online_store if defs.redis_store else f".mlops/{ONLINE_DIR}/{SQLITE_NAME}"


# --- materialize ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewMaterialized:
    view: str
    mode: str  # full | incremental | up to date
    entities: int  # entities whose value was written (a value older than the stored one is not)
    watermark_before: str  # ISO time, "" for none
    watermark: str
    #: why a view was rebuilt whole: first run | --full | source changed | definition changed ("": it was not)
    reason: str = ""


@dataclass(frozen=True)
class MaterializeResult:
    service: str
    end: str
    store: str
    views: tuple[ViewMaterialized, ...] = field(default_factory=tuple)


def materialize(
    repo: Repo,
    *,
    service: str,
    end: dt.datetime | None = None,
    now: dt.datetime | None = None,
    full: bool = False,
) -> MaterializeResult:
    """Write the service's views, as of ``end`` (default: now), into the online store."""
    defs, states = checked_definitions(repo, service)
    now = now or dt.datetime.now(dt.timezone.utc)
    end = end or now
    if end > now:
        raise UsageError(
            f"--end {end.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})",
            hint="values not yet visible would be served early; materialize up to now",
        )
    end_us = to_micros(end)
    done = []
    with repo.lock("features-online", what="the online store"):
        store = open_store(repo, defs, writing=True)
        try:
            for view_name in defs.service(service).views():
                view = defs.views[view_name]
                source_hash = states[view.source].hash
                done.append(_materialize_view(repo, defs, store, view, end_us, source_hash, full=full))
        finally:
            store.close()
    return MaterializeResult(service, end.isoformat(), store_name(repo, defs), tuple(done))


def _rebuild_reason(before: Watermark | None, mark: Watermark, *, full: bool) -> str:
    """Why the view is rebuilt whole ("" to continue from its watermark). A watermark written before
    definitions were hashed has none: counted as changed, so the view is rebuilt once."""
    if full:
        return "--full"
    if before is None:
        return "first run"
    if before.definition_hash != mark.definition_hash:
        return "definition changed"
    if before.source_hash != mark.source_hash:
        return "source changed"
    return ""


def _materialize_view(
    repo: Repo, defs: Definitions, store: Any, view: FeatureView, end_us: int, source_hash: str, *, full: bool
) -> ViewMaterialized:
    before = store.watermark(view.name)
    before_text = from_micros(before.micros).isoformat() if before else ""
    mark = Watermark(end_us, source_hash, view_hash(defs, view))
    reason = _rebuild_reason(before, mark, full=full)
    if not reason and end_us <= before.micros:
        return ViewMaterialized(view.name, "up to date", 0, before_text, before_text)
    start_us = None if reason else before.micros
    rows = _latest_rows(repo, defs, view, start_us, end_us)
    count = store.write(view.name, rows, mark, rebuild=bool(reason))
    mode = "full" if reason else "incremental"
    return ViewMaterialized(view.name, mode, count, before_text, from_micros(end_us).isoformat(), reason)


def _latest_rows(repo: Repo, defs: Definitions, view: FeatureView, start_us: int | None, end_us: int) -> list:
    """Per key, the best row that became visible in (start, end], within TTL as of end."""
    import pyarrow as pa

    table = read_view_table(repo, defs, view)
    for index, name in enumerate(table.column_names):
        kind = table.schema.field(name).type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            table = table.set_column(index, name, table.column(name).cast(pa.timestamp("us")))
    features = [f for f, _ in view.features]
    con = connect()
    try:
        con.register("view_rows", table)
        window = "greatest(event_ts, created_ts) <= make_timestamp($end)"
        if start_us is not None:
            window += " AND greatest(event_ts, created_ts) > make_timestamp($start)"
        if view.ttl_seconds:
            window += f" AND event_ts >= make_timestamp($end) - INTERVAL '{int(view.ttl_seconds)} seconds'"
        columns = ", ".join(f'"{f}"' for f in features)
        query = f"""
            SELECT CAST(key AS VARCHAR) AS key, epoch_us(event_ts) AS event_us, epoch_us(created_ts) AS created_us,
                   {columns}
            FROM view_rows
            WHERE key IS NOT NULL AND event_ts IS NOT NULL AND {window}
            QUALIFY row_number() OVER (PARTITION BY key ORDER BY event_ts DESC, created_ts DESC, "row" DESC) = 1
        """
        params = {"end": end_us} if start_us is None else {"end": end_us, "start": start_us}
        relation = con.execute(query, params)
        names = [d[0] for d in relation.description]
        records = relation.fetchall()
    finally:
        con.close()
    out = []
    for record in records:
        row = dict(zip(names, record, strict=True))
        values = {f: _jsonable(row[f]) for f in features}
        out.append((row["key"], int(row["event_us"]), int(row["created_us"]), json.dumps(values)))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()
    if isinstance(value, float) and value != value:  # NaN: no value
        return None
    return value


# --- read ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnlineFeatures:
    service: str
    entity: dict[str, int | str]  # join key -> its value, of the entity's type (an int64 key is an int)
    values: dict[str, Any]  # feature name -> value (None when missing)
    missing: tuple[str, ...]  # view:feature with no value within TTL
    event_times: dict[str, str] = field(default_factory=dict)  # view -> ISO time of the value used


def entity_key(value: Any, value_type: str) -> str:
    """An entity key as the store holds it: the decimal text of an integer, or the string."""
    kind = normalise_type(value_type) or "int64"
    if kind in ("int32", "int64"):
        if isinstance(value, float) and value.is_integer():  # JSON's 42.0
            value = int(value)
        if isinstance(value, bool) or isinstance(value, float):
            raise UsageError(f"entity key {value!r} is not a whole number")
        try:
            return str(int(str(value).strip()))
        except ValueError:
            raise UsageError(f"entity key {value!r} is not a whole number") from None
    return str(value)


def typed_key(value: Any, value_type: str) -> int | str:
    """An entity key as its entity's type: an int for int32 and int64 keys ('42' -> 42), else the text."""
    text = entity_key(value, value_type)
    return int(text) if (normalise_type(value_type) or "int64") in ("int32", "int64") else text


class OnlineReader:
    """Lookups for one service, the store opened once (a server keeps one per worker)."""

    def __init__(self, repo: Repo, defs: Definitions, service: str) -> None:
        self.defs = defs
        self.service = defs.service(service)
        self.store = open_store(repo, defs)

    def join_keys(self) -> dict[str, str]:
        """join key -> its type, for the service's entities."""
        out = {}
        for view_name in self.service.views():
            entity = self.defs.entities[self.defs.views[view_name].entities[0]]
            out[entity.join_key] = entity.value_type
        return out

    def lookup(self, entity: dict[str, Any], *, now: dt.datetime | None = None) -> OnlineFeatures:
        now_us = to_micros(now or dt.datetime.now(dt.timezone.utc))
        values: dict[str, Any] = {}
        missing: list[str] = []
        times: dict[str, str] = {}
        for view_name in self.service.views():
            view = self.defs.views[view_name]
            ent = self.defs.entities[view.entities[0]]
            if ent.join_key not in entity:
                raise UsageError(
                    f"no value for '{ent.join_key}' (the join key of entity '{ent.name}')",
                    hint=f"pass --entity {ent.join_key}=VALUE",
                )
            found = self.store.read(view_name, entity_key(entity[ent.join_key], ent.value_type))
            fresh = found is not None and (not view.ttl_seconds or now_us - found[0] <= view.ttl_seconds * 1_000_000)
            payload = json.loads(found[1]) if fresh and found else {}
            if fresh and found:
                times[view_name] = from_micros(found[0]).isoformat()
            for ref in self.service.features:
                if ref.view != view_name:
                    continue
                value = payload.get(ref.feature)
                values[ref.feature] = value
                if value is None:
                    missing.append(str(ref))
        kinds = self.join_keys()
        shown = {k: typed_key(v, kinds[k]) if k in kinds else str(v) for k, v in entity.items()}
        return OnlineFeatures(self.service.name, shown, values, tuple(missing), times)

    def close(self) -> None:
        self.store.close()


def get_online(repo: Repo, *, service: str, entity: dict[str, Any], now: dt.datetime | None = None) -> OnlineFeatures:
    """The service's feature values for one entity from the online store, TTL applied at read time."""
    from .definitions import load_definitions

    defs = load_definitions(repo.root)
    reader = OnlineReader(repo, defs, service)
    try:
        return reader.lookup(entity, now=now)
    finally:
        reader.close()
