"""Deterministic, mergeable profiles of tables: what monitoring keeps instead of the rows.

A profile is made against a ``Basis``: per column its kind and the fixed places values are
counted in, taken once from the reference data (the model's training data):

- numeric: bin edges at the reference's quantiles (its exact minimum, the 1/50 ... 49/50
  quantiles and finer ones in the tails, of a deterministic sample of at most ``SAMPLE_MAX``
  values, and just above its exact maximum, plus ``TAIL_EDGES`` edges beyond each end at 1, 2, 4 ... 32 fiftieths of the
  reference's range, so a current that spreads past the range is counted near where it lands;
  a column of at most ``NUMERIC_BINS`` distinct values gets one bin per value instead), so bin
  0 counts values below the lowest edge (underflow) and the last bin values above the highest
  (overflow);
- categorical: the reference's ``CATEGORY_CAP`` most frequent categories (ties by name), every
  other value counted in ``other``.

Per column a profile holds exact integer counts (rows, missing, NaN, +inf, -inf, per bin or
category), the minimum and maximum, and the exact sum and sum of squares of the finite values.
Every float64 is an integer multiple of 2**-1126 (and its square of 2**-2252), so the sums are
kept as integers in those units (split by binary exponent and added in int64 lanes that cannot
overflow, then in Python integers): merging two profiles adds integers, takes a min and a max.
That is associative and commutative bit for bit, so ``merge(profile(A), profile(B)) ==
profile(A + B)`` holds exactly, on every field, for any split of the rows (tests hold it with
hypothesis). Mean and variance are derived from the exact sums when asked for (one correctly
rounded division): the same as Chan's parallel formulas would give in exact arithmetic, without
their rounding, which depends on the split.

Reading is streamed: Parquet one row group at a time (in record batches), CSV by pyarrow's
streaming reader with the basis's column types, so memory depends on the columns, bins,
categories and the largest row group, not on rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import DataError, NewerFormatError

PROFILE_FORMAT = 1
NUMERIC_BINS = 50  # inner bins of a numeric column (quantile bins of the reference)
TAIL_EDGES = 6  # edges beyond the reference's range on each side
CATEGORY_CAP = 1000  # categories counted one by one; the rest are "other"
DISTINCT_LIMIT = 100_000  # a string column with more distinct reference values is text (not profiled)
SAMPLE_MAX = 200_000  # reference values per numeric column kept for its quantiles
BATCH_ROWS = 64 * 1024
SUM_UNIT = 1126  # every finite float64 is an integer multiple of 2**-1126
_LANE = 1 << 16  # values binned at once (the work arrays' length)
_SUM_LANE = 1 << 24  # rows per exact int64 reduction (sums of < 2**38 terms stay below 2**63)

NUMERIC = "numeric"
CATEGORICAL = "categorical"
SKIPPED = "skipped"


# --- the basis: where values are counted ---------------------------------------------------------


@dataclass(frozen=True)
class ColumnBasis:
    name: str
    kind: str  # numeric | categorical | skipped
    edges: tuple[float, ...] = ()  # numeric: ascending; bins: (<e0), [e0,e1), ..., [e_{k-1}, e_k), (>= e_k)
    categories: tuple[str, ...] = ()  # categorical: counted one by one
    why: str | None = None  # skipped: why
    values: bool = False  # numeric: the inner edges are the reference's values (one value per bin)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == NUMERIC:
            out["edges"] = [float.hex(e) for e in self.edges]  # hex: exact round trip
            out["values"] = self.values
        elif self.kind == CATEGORICAL:
            out["categories"] = list(self.categories)
        if self.why:
            out["why"] = self.why
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnBasis:
        return cls(
            str(data["name"]),
            str(data["kind"]),
            tuple(float.fromhex(e) for e in data.get("edges", ())),
            tuple(str(c) for c in data.get("categories", ())),
            data.get("why"),
            bool(data.get("values", False)),
        )


@dataclass(frozen=True)
class Basis:
    columns: tuple[ColumnBasis, ...]

    @property
    def id(self) -> str:
        """A digest of the basis: profiles made against different bases do not merge."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def column(self, name: str) -> ColumnBasis | None:
        return next((c for c in self.columns if c.name == name), None)

    def profiled(self) -> list[ColumnBasis]:
        return [c for c in self.columns if c.kind != SKIPPED]

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "basis") -> Basis:
        _check_format(data, where)
        return cls(tuple(ColumnBasis.from_dict(c) for c in data.get("columns", ())))


# --- profiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericProfile:
    missing: int = 0  # null
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    bins: tuple[int, ...] = ()  # len(edges) + 1 counts of finite values
    min: float | None = None
    max: float | None = None
    sum: int = 0  # exact, in units of 2**-1126
    sumsq: int = 0  # exact, in units of 2**-2252

    @property
    def count(self) -> int:
        """Finite values."""
        return sum(self.bins)

    @property
    def rows(self) -> int:
        return self.count + self.missing + self.nan + self.posinf + self.neginf

    def mean(self) -> float | None:
        n = self.count
        return float(Fraction(self.sum, n << SUM_UNIT)) if n else None

    def _variance_fraction(self) -> tuple[int, int] | None:
        n = self.count
        if not n:
            return None
        return n * self.sumsq - self.sum * self.sum, (n * n) << (2 * SUM_UNIT)

    def variance(self) -> float | None:
        """Population variance of the finite values (numpy's default, as drift's reference std);
        inf when it is beyond float64 (values near 1e154 and above)."""
        parts = self._variance_fraction()
        if parts is None:
            return None
        try:
            return float(Fraction(*parts))
        except OverflowError:
            return math.inf

    def std(self) -> float | None:
        """sqrt(variance), scaled by a power of 4 first, so that it is finite whenever it fits."""
        parts = self._variance_fraction()
        if parts is None:
            return None
        num, den = parts
        if num == 0:
            return 0.0
        half = (num.bit_length() - den.bit_length()) // 2
        scaled = Fraction(num, den << (2 * half)) if half >= 0 else Fraction(num << (-2 * half), den)
        try:
            return math.ldexp(math.sqrt(float(scaled)), half)
        except OverflowError:
            return math.inf

    def merge(self, other: NumericProfile) -> NumericProfile:
        if len(self.bins) != len(other.bins):
            raise DataError("profiles with different bins do not merge (made against different bases)")
        return NumericProfile(
            self.missing + other.missing,
            self.nan + other.nan,
            self.posinf + other.posinf,
            self.neginf + other.neginf,
            tuple(a + b for a, b in zip(self.bins, other.bins, strict=True)),
            _pick(min, self.min, other.min),
            _pick(max, self.max, other.max),
            self.sum + other.sum,
            self.sumsq + other.sumsq,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "nan": self.nan,
            "posinf": self.posinf,
            "neginf": self.neginf,
            "bins": list(self.bins),
            "min": None if self.min is None else float.hex(self.min),
            "max": None if self.max is None else float.hex(self.max),
            "sum": hex(self.sum),
            "sumsq": hex(self.sumsq),
            # derived, for people reading the file (not read back)
            "mean": self.mean(),
            "std": self.std(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericProfile:
        return cls(
            int(data["missing"]),
            int(data["nan"]),
            int(data["posinf"]),
            int(data["neginf"]),
            tuple(int(b) for b in data["bins"]),
            None if data.get("min") is None else float.fromhex(data["min"]),
            None if data.get("max") is None else float.fromhex(data["max"]),
            int(data["sum"], 16),
            int(data["sumsq"], 16),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    missing: int = 0
    counts: tuple[int, ...] = ()  # per basis category
    other: int = 0  # values that are not among the basis's categories

    @property
    def count(self) -> int:
        return sum(self.counts) + self.other

    @property
    def rows(self) -> int:
        return self.count + self.missing

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        if len(self.counts) != len(other.counts):
            raise DataError("profiles with different categories do not merge (made against different bases)")
        return CategoricalProfile(
            self.missing + other.missing,
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            self.other + other.other,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"missing": self.missing, "counts": list(self.counts), "other": self.other}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalProfile:
        return cls(int(data["missing"]), tuple(int(c) for c in data["counts"]), int(data["other"]))


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Profile:
    basis: str  # the basis id
    rows: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def merge(self, other: Profile) -> Profile:
        if self.basis != other.basis:
            raise DataError(f"profiles of bases {self.basis} and {other.basis} do not merge")
        merged = dict(self.columns)
        for name, column in other.columns.items():
            mine = merged.get(name)
            merged[name] = column if mine is None else mine.merge(column)  # type: ignore[arg-type]
        return Profile(self.basis, self.rows + other.rows, {k: merged[k] for k in sorted(merged)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "basis": self.basis,
            "rows": self.rows,
            "columns": {
                name: {"kind": NUMERIC if isinstance(c, NumericProfile) else CATEGORICAL, **c.to_dict()}
                for name, c in self.columns.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "profile") -> Profile:
        _check_format(data, where)
        columns: dict[str, ColumnProfile] = {}
        for name, c in data.get("columns", {}).items():
            columns[str(name)] = (
                NumericProfile.from_dict(c) if c["kind"] == NUMERIC else CategoricalProfile.from_dict(c)
            )
        return cls(str(data["basis"]), int(data["rows"]), columns)


def empty_profile(basis: Basis) -> Profile:
    columns: dict[str, ColumnProfile] = {}
    for c in basis.profiled():
        if c.kind == NUMERIC:
            columns[c.name] = NumericProfile(bins=(0,) * (len(c.edges) + 1))
        else:
            columns[c.name] = CategoricalProfile(counts=(0,) * len(c.categories))
    return Profile(basis.id, 0, dict(sorted(columns.items())))


def merge_all(profiles: Iterable[Profile], basis: Basis) -> Profile:
    total = empty_profile(basis)
    for p in profiles:
        total = total.merge(p)
    return total


def _pick(fn: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def _check_format(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise DataError(f"{where}: not a profile file")
    version = data.get("format")
    if not isinstance(version, int):
        raise DataError(f"{where}: no format version")
    if version > PROFILE_FORMAT:
        raise NewerFormatError(
            f"{where}: written by a newer mlops (profile format {version}, this one reads {PROFILE_FORMAT})",
            hint="upgrade mlops",
        )


# --- exact sums ----------------------------------------------------------------------------------


class _Scratch:
    """Work arrays of one lane for the bins, reused batch after batch (fresh half-megabyte arrays
    cost page faults); one thread uses one scratch."""

    def __init__(self) -> None:
        import numpy as np

        self.f = [np.empty(_LANE, dtype=np.float64) for _ in range(2)]
        self.i = [np.empty(_LANE, dtype=np.intp) for _ in range(2)]
        self.b = np.empty(_LANE, dtype=bool)


def exact_sums(values: Any) -> tuple[int, int]:
    """(sum, sum of squares) of finite float64 values, exactly, in units of 2**-1126 and 2**-2252.

    x = M * 2**(k - 1126) with M an integer of at most 53 bits (frexp) and 0 <= k < 2100. Values
    are grouped by k (a radix sort of a 16-bit key), M is split into parts small enough that
    their sums (and the cross terms of M**2) add up in int64 without overflow, and the groups'
    totals are shifted into place as Python integers."""
    import numpy as np

    total = total_sq = 0
    for start in range(0, len(values), _SUM_LANE):
        x = values[start : start + _SUM_LANE]
        mantissa, exponent = np.frexp(x)
        m = np.ldexp(mantissa, 53).astype(np.int64)  # exact: |m| < 2**53
        k = (exponent + (SUM_UNIT - 53)).astype(np.int16)  # >= 0 for every float64
        order = np.argsort(k, kind="stable")
        k = k[order]
        m = m[order]
        starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
        shifts = [int(s) for s in k[starts]]
        low = np.add.reduceat(m & ((1 << 26) - 1), starts)
        high = np.add.reduceat(m >> 26, starts)
        a = np.abs(m)
        c = a & ((1 << 18) - 1)
        b = (a >> 18) & ((1 << 18) - 1)
        a >>= 36
        t72 = np.add.reduceat(a * a, starts)
        t54 = np.add.reduceat(2 * a * b, starts)
        t36 = np.add.reduceat(b * b + 2 * a * c, starts)
        t18 = np.add.reduceat(2 * b * c, starts)
        t0 = np.add.reduceat(c * c, starts)
        for i, shift in enumerate(shifts):
            total += ((int(high[i]) << 26) + int(low[i])) << shift
            square = (int(t72[i]) << 72) + (int(t54[i]) << 54) + (int(t36[i]) << 36) + (int(t18[i]) << 18) + int(t0[i])
            total_sq += square << (2 * shift)
    return total, total_sq


# --- bins ----------------------------------------------------------------------------------------


class _Bins:
    """Which bin each value falls in: ``searchsorted(edges, x, side="right")``, by a lookup table.

    numpy's searchsorted takes about 40 ns a value here (a branchy binary search); this takes a few.
    cell(x) = clip(trunc((x - lo) * scale), 0, cells - 1), computed in float64, never decreases as x
    grows (each step is monotone under round-to-nearest). So an edge whose cell is below x's cell is
    <= x, and one whose cell is above is > x: the table holds, per cell, the edges of lower cells,
    and only the few edges in x's own cell are compared with x, one step each (``steps``). The
    result is searchsorted's, exactly, for every finite x (tests compare them)."""

    def __init__(self, edges: Any) -> None:
        import numpy as np

        self.edges = np.asarray(edges, dtype=np.float64)
        self.bins = len(self.edges) + 1
        self.table: Any = None
        self.steps = 0
        if len(self.edges) < 8:
            return
        self.lo = float(self.edges[0])
        span = float(self.edges[-1]) - self.lo
        if not (math.isfinite(span) and span > 0):
            return
        self.after = np.concatenate((self.edges, [np.inf]))
        for cells in (1024, 4096, 16384, 65536):
            self.cells = cells
            self.scale = cells / span
            if not math.isfinite(self.scale):
                return
            cell_of_edges = self._cells(self.edges, np.empty(len(self.edges)), np.empty(len(self.edges), np.intp))
            steps = int(np.bincount(cell_of_edges, minlength=cells).max())
            if steps <= 2 or cells == 65536:
                break
        if steps > 8:  # edges bunched closer than a 65536th of their range: searchsorted
            return
        self.steps = steps
        self.table = np.searchsorted(cell_of_edges, np.arange(cells), side="left")

    def _cells(self, x: Any, work: Any, out: Any) -> Any:
        import numpy as np

        with np.errstate(over="ignore"):  # far beyond the edges: inf, clipped to the last cell
            np.subtract(x, self.lo, out=work)
            work *= self.scale
        np.clip(work, 0, self.cells - 1, out=work)
        out[...] = work  # truncation toward zero: a floor, as work >= 0
        return out

    def counts(self, x: Any, scratch: _Scratch) -> Any:
        import numpy as np

        if self.table is None:
            return np.bincount(np.searchsorted(self.edges, x, side="right"), minlength=self.bins)
        n = len(x)
        work, edge = scratch.f[0][:n], scratch.f[1][:n]
        cell, where = scratch.i[0][:n], scratch.i[1][:n]
        above = scratch.b[:n]
        self._cells(x, work, cell)
        np.take(self.table, cell, out=where, mode="clip")  # clip: no bounds check (the cells are in range)
        for _ in range(self.steps):
            np.take(self.after, where, out=edge, mode="clip")
            np.greater_equal(x, edge, out=above)
            where += above
        return np.bincount(where, minlength=self.bins)


# --- reading -------------------------------------------------------------------------------------


def _path_format(item: Any) -> tuple[Path, str]:
    """A path (its name picks the reader) or a file with ``.path`` and ``.format`` (mlops.drift.io.DataFile:
    a training-data object in the cache has no suffix)."""
    if hasattr(item, "format") and hasattr(item, "path"):
        return Path(item.path), str(item.format)
    from ..drift.io import format_of

    path = Path(item)
    fmt = format_of(path.name)
    if fmt is None:
        raise DataError(f"{path}: not a CSV or Parquet file (by its name)", file=str(path))
    return path, fmt


@dataclass(frozen=True)
class _Part:
    """A piece of input read on its own: one row group of a Parquet file, or a whole CSV file."""

    path: Path
    format: str
    group: int | None = None  # Parquet: the row group
    metadata: Any = None  # Parquet: the file's parsed footer, shared by its parts
    strings: tuple[str, ...] = ()  # Parquet: string columns, read dictionary-encoded


def _parts(items: Iterable[Any]) -> list[_Part]:
    """The parts of files, in order: each Parquet file's footer is read once, here."""
    import pyarrow as pa

    parts: list[_Part] = []
    for item in items:
        path, fmt = _path_format(item)
        if fmt != "parquet":
            parts.append(_Part(path, fmt))
            continue
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(str(path)) as handle:
                metadata = handle.metadata
                schema = handle.schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            raise _unreadable(path, exc) from None
        strings = tuple(f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
        parts += [_Part(path, fmt, g, metadata, strings) for g in range(metadata.num_row_groups)]
    return parts


def _unreadable(path: Path, exc: BaseException) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{path}: cannot read: {first}", file=str(path))


def _read_part(
    part: _Part,
    columns: Sequence[str] | None,
    types: dict[str, Any] | None,
    *,
    dictionary: bool = False,
    threads: bool = True,
) -> Iterator[Any]:
    """Record batches of one part (only ``columns`` when given; CSV columns read as ``types``). With
    ``dictionary``, Parquet string columns come dictionary-encoded: their values are not copied out
    one by one (a tenth of the time of reading them as strings, measured)."""
    import pyarrow as pa

    path = part.path
    try:
        if part.format == "parquet":
            import pyarrow.parquet as pq

            handle = pq.ParquetFile(
                str(path), metadata=part.metadata, read_dictionary=list(part.strings) if dictionary else None
            )
            try:
                names = [n for n in handle.schema_arrow.names if columns is None or n in columns]
                # one row group at a time: iter_batches reads ahead across row groups (the whole of a
                # 1M-row file's columns at once, measured); memory is bounded by the largest row group
                table = handle.read_row_group(part.group, columns=names, use_threads=threads)
            finally:
                handle.close()
            yield from table.to_batches(max_chunksize=BATCH_ROWS)
            return
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(
            column_types=types or {}, include_columns=list(columns) if columns is not None else None
        )
        if columns is not None:
            with open(path, "rb") as handle_:
                header = handle_.readline().decode("utf-8", "replace").rstrip("\r\n").split(",")
            convert.include_columns = [n for n in columns if n in header]
        reader = pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(block_size=1 << 22, use_threads=threads),
            convert_options=convert,
        )
        yield from reader
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc) from None


def iter_batches(item: Any, columns: Sequence[str] | None = None, types: dict[str, Any] | None = None) -> Iterator[Any]:
    """Record batches of a Parquet or CSV file (only ``columns`` when given; CSV columns read as ``types``)."""
    for part in _parts([item]):
        yield from _read_part(part, columns, types)


def _prefetched(batches: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """``batches``, read by a thread up to ``depth`` ahead of their use: reading (which releases the
    GIL) overlaps the work on the batch before. Errors come out where the batch would have."""
    import queue
    import threading

    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put((False, batch)):
                    return
            put((True, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((True, exc))

    reader = threading.Thread(target=read, name="profile-read", daemon=True)
    reader.start()
    try:
        while True:
            done, item = ready.get()
            if done:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        reader.join()


def _plain(array: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        return array.dictionary_decode()
    return array


def _coded(array: Any) -> bool:
    """A dictionary-encoded array whose dictionary has no nulls: counted by its codes."""
    import pyarrow as pa

    return pa.types.is_dictionary(array.type) and array.dictionary.null_count == 0


def _value_counts(array: Any) -> tuple[Any, Any]:
    """(distinct non-null values, their counts as int64 numpy); a dictionary-encoded array is
    counted by its codes (a value may then appear twice: callers add counts up)."""
    import numpy as np
    import pyarrow.compute as pc

    if _coded(array):
        codes = array.indices
        codes = pc.drop_null(codes) if codes.null_count else codes
        counts = np.bincount(codes.to_numpy(zero_copy_only=False), minlength=len(array.dictionary))
        used = np.flatnonzero(counts)
        return array.dictionary.take(used), counts[used]
    valid = pc.drop_null(array) if array.null_count else array
    found = pc.value_counts(valid)
    return found.field(0), np.asarray(found.field(1).to_numpy(zero_copy_only=False), dtype=np.int64)


class _Survey:
    """Pass one over the reference, per column: type family, counts, distinct values, a sample."""

    def __init__(self) -> None:
        self.family: str | None = None
        self.values = 0
        self.distinct: dict[Any, int] | None = {}
        self.sample: list[Any] = []
        self.sample_rows = 0
        self.stride = 1
        self.seen = 0
        self.lo: float | None = None
        self.hi: float | None = None

    def add(self, array: Any) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from ..drift.io import family

        fam = family(array.type)
        if fam != "string":  # strings stay dictionary-encoded when they come so (counted by their codes)
            array = _plain(array)
        if fam == "null":
            return
        if self.family is None:
            self.family = fam
        elif self.family != fam:
            if {self.family, fam} <= {"integer", "float"}:
                self.family = "float"
            else:
                self.family = "string"
        self.values += len(array) - array.null_count
        if self.distinct is not None:
            # numbers: only whether there are few values matters (categories, one bin per value)
            limit = NUMERIC_BINS if fam in ("integer", "float") else DISTINCT_LIMIT
            if _coded(array):
                values, counts = _value_counts(array)
            else:
                valid = pc.drop_null(array) if array.null_count else array
                if fam == "float":
                    valid = pc.cast(valid, pa.float64())
                values = pc.unique(valid)
                if len(values) <= limit:
                    values, counts = _value_counts(valid)
            if len(values) > limit:
                self.distinct = None
            else:
                for key, count in zip(values.to_pylist(), counts.tolist(), strict=True):
                    self.distinct[key] = self.distinct.get(key, 0) + count
                if len(self.distinct) > limit:
                    self.distinct = None
        if fam in ("integer", "float"):
            valid = pc.drop_null(array) if array.null_count else array
            x = np.asarray(pc.cast(valid, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            finite = np.isfinite(x)
            if not finite.all():
                x = x[finite]
            if len(x):
                self.lo = float(x.min()) if self.lo is None else min(self.lo, float(x.min()))
                self.hi = float(x.max()) if self.hi is None else max(self.hi, float(x.max()))
            # every stride-th finite value, the stride doubling when the sample is full: deterministic, bounded
            first = (-self.seen) % self.stride
            self.sample.append(x[first :: self.stride].copy())  # a copy: a view would keep the whole batch alive
            self.seen += len(x)
            kept = sum(len(s) for s in self.sample)
            if kept > SAMPLE_MAX:
                whole = np.concatenate(self.sample)
                self.sample = [whole[::2]]
                self.stride *= 2

    def basis(self, name: str) -> ColumnBasis:
        import numpy as np

        from ..drift.columns import TEXT, detect_kind

        if self.family is None or self.values == 0:
            return ColumnBasis(name, SKIPPED, why="no values in the reference")
        distinct = len(self.distinct) if self.distinct is not None else DISTINCT_LIMIT + 1
        if self.distinct is None and self.family in ("integer", "float"):
            distinct = NUMERIC_BINS + 1  # more than a handful: numeric, in quantile bins
        elif self.distinct is None:
            return ColumnBasis(name, SKIPPED, why=f"more than {DISTINCT_LIMIT} distinct values (identifiers?)")
        kind = detect_kind(self.family, distinct, self.values)
        if kind == NUMERIC:
            if self.lo is None or self.hi is None:
                return ColumnBasis(name, SKIPPED, why="no finite values in the reference")
            top = float(np.nextafter(self.hi, np.inf))
            by_values = self.distinct is not None and distinct <= NUMERIC_BINS
            if by_values:
                assert self.distinct is not None
                inner = sorted(float(v) for v in self.distinct if v is not None and math.isfinite(float(v)))
            else:
                sample = np.sort(np.concatenate(self.sample))
                qs = np.quantile(sample, quantile_levels(), method="lower")
                inner = [self.lo, *(float(q) for q in qs)]
                # tail edges beyond the reference's range, at 1, 2, 4 ... 32 steps of (range / bins):
                # a current that spreads past the range is still counted near where it lands
                step = (self.hi - self.lo) / NUMERIC_BINS
                if step > 0 and math.isfinite(step):
                    tails = [step * 2**i for i in range(TAIL_EDGES)]
                    inner += [self.lo - t for t in tails] + [top + t for t in tails]
            edges = tuple(sorted(e for e in set(inner) | {top} if math.isfinite(e)))
            return ColumnBasis(name, NUMERIC, edges=edges, values=by_values)
        if kind == CATEGORICAL:
            assert self.distinct is not None
            ranked = sorted(self.distinct.items(), key=lambda kv: (-kv[1], _label(kv[0])))
            return ColumnBasis(name, CATEGORICAL, categories=tuple(_label(k) for k, _ in ranked[:CATEGORY_CAP]))
        why = {TEXT: "text or identifiers (most values distinct)"}.get(kind, f"{self.family} values are not profiled")
        return ColumnBasis(name, SKIPPED, why=why)


def quantile_levels() -> list[float]:
    """1/50 ... 49/50, and finer in the tails (0.1%, 0.25%, 0.5%, 1% and 1.5% from each end),
    where a shift or a wider spread moves the most mass per unit of the reference's quantiles."""
    tails = [0.001, 0.0025, 0.005, 0.01, 0.015]
    middle = [i / NUMERIC_BINS for i in range(1, NUMERIC_BINS)]
    return sorted({*tails, *middle, *(1 - t for t in tails)})


def _label(value: Any) -> str:
    """A category's name as pyarrow's cast to string writes it (so CSV and Parquet agree)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 2**53 else repr(value)
    return str(value)


def make_basis(paths: Sequence[Any], *, exclude: Sequence[str] = (), columns: Sequence[str] | None = None) -> Basis:
    """The basis of reference files: one streamed pass (bounded memory), read a row group ahead."""
    parts = _parts(paths)
    batches = (batch for part in parts for batch in _read_part(part, columns, None, dictionary=True))
    return survey(_prefetched(batches), exclude=exclude, what=", ".join(str(getattr(p, "name", p)) for p in paths[:3]))


def survey(batches: Iterable[Any], *, exclude: Sequence[str] = (), what: str = "the reference") -> Basis:
    """The basis of a stream of record batches."""
    surveys: dict[str, _Survey] = {}
    order: list[str] = []
    for batch in batches:
        for name, array in zip(batch.schema.names, batch.columns, strict=True):
            if name in exclude:
                continue
            if name not in surveys:
                surveys[name] = _Survey()
                order.append(name)
            surveys[name].add(array)
    if not surveys:
        raise DataError(f"{what}: no columns to profile")
    return Basis(tuple(surveys[n].basis(n) for n in order))


def csv_types(basis: Basis) -> dict[str, Any]:
    import pyarrow as pa

    return {c.name: (pa.float64() if c.kind == NUMERIC else pa.string()) for c in basis.profiled()}


class Profiler:
    """Adds record batches into per-column profiles of one basis. One thread uses one profiler (it
    keeps work arrays); threads that share the work each keep their own and their profiles merge."""

    def __init__(self, basis: Basis) -> None:
        import numpy as np
        import pyarrow as pa

        self.basis = basis
        self.rows = 0
        self._columns = basis.profiled()
        self._bins = {c.name: _Bins(c.edges) for c in self._columns if c.kind == NUMERIC}
        self._categories = {c.name: pa.array(c.categories, pa.string()) for c in self._columns if c.kind == CATEGORICAL}
        self._scratch = _Scratch()
        self._numeric: dict[str, list[Any]] = {}
        self._categorical: dict[str, list[Any]] = {}
        for c in self._columns:
            if c.kind == NUMERIC:
                # missing, nan, posinf, neginf, bins, min, max, sum, sumsq
                self._numeric[c.name] = [0, 0, 0, 0, np.zeros(len(c.edges) + 1, dtype=np.int64), None, None, 0, 0]
            else:
                self._categorical[c.name] = [0, np.zeros(len(c.categories), dtype=np.int64), 0]

    def add(self, batch: Any) -> None:
        """Add a record batch."""
        names = batch.schema.names
        n = batch.num_rows
        self.rows += n
        for c in self._columns:
            array = batch.column(names.index(c.name)) if c.name in names else None
            if c.kind == NUMERIC:
                self._add_numeric(c.name, array, n)
            else:
                self._add_categorical(c.name, array, n)

    def _add_numeric(self, name: str, array: Any, n: int) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        acc = self._numeric[name]
        if array is None:
            acc[0] += n
            return
        array = _plain(array)
        if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type)):
            try:
                array = pc.cast(array, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                acc[0] += n  # not numbers here: counted as missing
                return
        acc[0] += array.null_count
        if array.null_count:
            array = pc.drop_null(array)
        if array.type != pa.float64():
            array = pc.cast(array, pa.float64())
        x = np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)
        if not np.isfinite(x).all():
            acc[1] += int(np.isnan(x).sum())
            acc[2] += int(np.isposinf(x).sum())
            acc[3] += int(np.isneginf(x).sum())
            x = x[np.isfinite(x)]
        if not len(x):
            return
        bins = self._bins[name]
        for start in range(0, len(x), _LANE):
            acc[4] += bins.counts(x[start : start + _LANE], self._scratch)
        # + 0.0: -0.0 and 0.0 compare equal, and which one min() keeps would depend on the order of the rows
        lo, hi = float(x.min()) + 0.0, float(x.max()) + 0.0
        acc[5] = lo if acc[5] is None else min(acc[5], lo)
        acc[6] = hi if acc[6] is None else max(acc[6], hi)
        s, q = exact_sums(x)
        acc[7] += s
        acc[8] += q

    def _add_categorical(self, name: str, array: Any, n: int) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        acc = self._categorical[name]
        if array is None:
            acc[0] += n
            return
        if not _coded(array):
            array = _plain(array)
        acc[0] += array.null_count
        values, counts = _value_counts(array)
        if pa.types.is_floating(values.type):  # 3.0 counts as the reference's 3
            labels = pa.array([_label(v) for v in values.to_pylist()], pa.string())
        elif pa.types.is_string(values.type):
            labels = values
        else:
            labels = pc.cast(values, pa.string())
        where = pc.index_in(labels, value_set=self._categories[name]).fill_null(-1).to_numpy(zero_copy_only=False)
        known = where >= 0
        np.add.at(acc[1], where[known], counts[known])  # add.at: a label may come twice (3 and 3.0)
        acc[2] += int(counts[~known].sum())

    def profile(self) -> Profile:
        columns: dict[str, ColumnProfile] = {}
        for name, a in self._numeric.items():
            columns[name] = NumericProfile(a[0], a[1], a[2], a[3], tuple(int(v) for v in a[4]), a[5], a[6], a[7], a[8])
        for name, a in self._categorical.items():
            columns[name] = CategoricalProfile(a[0], tuple(int(v) for v in a[1]), a[2])
        return Profile(self.basis.id, self.rows, dict(sorted(columns.items())))


def profile_table(table: Any, basis: Basis) -> Profile:
    """The profile of an in-memory pyarrow table (or record batch)."""
    profiler = Profiler(basis)
    for batch in table.to_batches(max_chunksize=BATCH_ROWS) if hasattr(table, "to_batches") else [table]:
        profiler.add(batch)
    return profiler.profile()


def profile_files(paths: Sequence[Any], basis: Basis, *, jobs: int | None = None) -> Profile:
    """The profile of files, streamed: ``jobs`` threads (default: the CPUs) each read and count
    parts of their own (Parquet row groups, CSV files), and their profiles merge. The result does
    not depend on ``jobs`` or on which thread took which part: merging is exact."""
    wanted = [c.name for c in basis.profiled()]
    types = csv_types(basis)
    parts = _parts(paths)
    workers = min(_jobs(jobs), len(parts))
    if workers <= 1:
        return profile_batches(
            (b for part in parts for b in _read_part(part, wanted, types, dictionary=True)), basis, jobs=1
        )

    def batches_of(part: _Part) -> Iterator[Any]:
        return _read_part(part, wanted, types, dictionary=True, threads=False)

    return _shared(parts, batches_of, basis, workers)


def profile_batches(batches: Iterable[Any], basis: Basis, *, jobs: int | None = None) -> Profile:
    """The profile of a stream of batches; ``jobs`` threads (default: the CPUs) take batches from it
    in turn, and their profiles merge (exactly: the result does not depend on ``jobs``)."""
    workers = _jobs(jobs)
    if workers <= 1:
        profiler = Profiler(basis)
        for batch in batches:
            profiler.add(batch)
        return profiler.profile()
    return _shared(batches, lambda batch: [batch], basis, workers)


def _jobs(jobs: int | None) -> int:
    from ..drift.report import cpu_jobs

    return max(1, jobs or cpu_jobs())


def _shared(items: Iterable[Any], batches_of: Any, basis: Basis, workers: int) -> Profile:
    """``workers`` threads take items in turn (reading and counting release the GIL), each into a
    profiler of its own; the profiles merge. The first error stops the others and is raised."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    source = iter(items)
    lock = threading.Lock()
    failed = threading.Event()

    def work() -> Profile:
        profiler = Profiler(basis)
        try:
            while not failed.is_set():
                with lock:
                    item = next(source, _END)
                if item is _END:
                    break
                for batch in batches_of(item):
                    profiler.add(batch)
        except BaseException:
            failed.set()
            raise
        return profiler.profile()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="profile") as pool:
        futures = [pool.submit(work) for _ in range(workers)]
    return merge_all((f.result() for f in futures), basis)


_END = object()


def with_rows(profile: Profile, rows: int) -> Profile:
    return replace(profile, rows=rows)
