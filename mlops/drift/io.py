"""Tables for drift checks and validation: CSV or Parquet files, or folders of them.

A ``Source`` is one side of a comparison (the reference or the current data): a list of
files, or an in-memory Arrow table. It never loads a column nobody asked for:

- Parquet is read one column at a time, straight from its column chunks, so a drift check
  holds one column per worker in memory, not the table.
- CSV is parsed once per file with only the wanted columns kept (``include_columns``). The
  dialect is sniffed per file (delimiter among , ; TAB |, a decimal comma, UTF-8 or Latin-1),
  so a folder that mixes dialects reads as one table. ``iter_batches`` streams record
  batches (validation), re-reading a file from its start only when pyarrow's type guess from
  the first block meets a later value that does not fit.
- Types are unified over the files of one side: integer + float -> float, an all-empty
  column (null type) takes the other files' type, dictionary -> its value type, any other
  mix -> string (with a warning). A column missing from some files is null there (warned).

Bad files raise ``DataError`` naming the file; an empty file (no bytes or no rows) is skipped
with a warning, and a side with no rows at all is a ``DataError``.
pyarrow is imported inside the functions that use it.
"""

from __future__ import annotations

import codecs
import csv
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet"}
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")  # data.csv.gz: pyarrow decompresses by the extension
SNIFF_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
BATCH_ROWS = 64 * 1024
CSV_BLOCK_BYTES = 1 << 22  # pyarrow guesses types from the first block of this size
INDEX_COLUMN = re.compile(r"^__index_level_\d+__$")  # pandas' saved index: not data
_CSV_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


@dataclass(frozen=True)
class DataFile:
    """A readable file: ``path`` on disk, ``name`` as the user knows it (picks the format)."""

    path: Path
    name: str
    format: str  # "csv" | "parquet"
    #: one of many logs a killed writer may have torn (request logs): an unreadable one is
    #: skipped with a warning, so that one file does not stop a check over a day of logs
    skip_unreadable: bool = False


def format_of(name: str) -> str | None:
    lower = name.lower()
    for ext in COMPRESSED:
        if lower.endswith(ext):
            lower = lower[: -len(ext)]
            break
    return SUFFIXES.get(Path(lower).suffix)


def data_file(path: str | Path, *, name: str | None = None, skip_unreadable: bool = False) -> DataFile:
    """A file whose reader is chosen by the suffix of ``name`` (default: the path)."""
    shown = name or str(path)
    fmt = format_of(shown)
    if fmt is None:
        raise DataError(
            f"{shown}: not a CSV or Parquet file (by its name)",
            hint="name it .csv, .tsv or .parquet (optionally .csv.gz)",
            file=shown,
        )
    return DataFile(Path(path), shown, fmt, skip_unreadable)


def expand(paths: Sequence[str | Path]) -> list[DataFile]:
    """Files and folders (searched recursively for CSV/Parquet, hidden entries skipped), in name order."""
    out: list[DataFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and format_of(p.name)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(f"{raw}: no CSV or Parquet files in this folder", file=str(raw))
            out += [data_file(p) for p in found]
        elif path.exists():
            out.append(data_file(path, name=str(raw)))
        else:
            raise DataError(f"{raw}: no such file or folder", file=str(raw))
    return out


# --- types --------------------------------------------------------------------------------


def family(t: pa.DataType) -> str:
    """integer, float, boolean, string, datetime, null, or other (lists, structs, binary)."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(t):
        return family(t.value_type)
    if pt.is_boolean(t):
        return "boolean"
    if pt.is_integer(t):
        return "integer"
    if pt.is_floating(t) or pt.is_decimal(t):
        return "float"
    if pt.is_string(t) or pt.is_large_string(t) or (hasattr(pt, "is_string_view") and pt.is_string_view(t)):
        return "string"
    if pt.is_timestamp(t) or pt.is_date(t):
        return "datetime"
    if t == pa.null():
        return "null"
    return "other"


def unify(a: pa.DataType, b: pa.DataType) -> tuple[pa.DataType, bool]:
    """The type both files' values fit in, and whether that lost meaning (a mix made string)."""
    import pyarrow as pa

    if a == b:
        return a, False
    fa, fb = family(a), family(b)
    if fa == "null":
        return plain(b), False
    if fb == "null":
        return plain(a), False
    if fa == fb == "integer":
        return pa.int64(), False
    if {fa, fb} <= {"integer", "float"}:
        return pa.float64(), False
    if fa == fb == "string":
        return pa.large_string(), False
    if fa == fb == "datetime":
        return pa.timestamp("us"), False
    if fa == fb:
        return plain(a), False
    return pa.large_string(), True


def plain(t: pa.DataType) -> pa.DataType:
    """Dictionary and decimal types as the plain type of their values."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(t):
        return plain(t.value_type)
    if pt.is_decimal(t):
        return pa.float64()
    return t


def cast(array: Any, to: pa.DataType) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if array.type == to:
        return array
    if family(to) == "string" and family(array.type) not in ("string", "null"):
        return pc.cast(array, pa.large_string())  # a mixed column: values as text
    if family(to) == "float" and family(array.type) == "integer":
        return pc.cast(array, to, safe=False)  # integers beyond 2**53 round rather than fail
    return pc.cast(array, to)


# --- CSV dialects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    delimiter: str = ","
    decimal_comma: bool = False
    encoding: str = "utf8"
    header: tuple[str, ...] = ()

    def describe(self) -> str:
        delim = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[self.delimiter]
        bits = [f"{delim}-separated"]
        if self.decimal_comma:
            bits.append("decimal comma")
        if self.encoding != "utf8":
            bits.append(self.encoding)
        return ", ".join(bits)


def sniff(file: DataFile) -> Dialect:
    """Delimiter, decimal comma, encoding and header of a CSV file, from its first 64 KiB."""
    import pyarrow as pa

    try:
        with _open_text(file) as stream:
            raw = stream.read(SNIFF_BYTES)
    except (OSError, pa.ArrowException) as exc:
        raise _read_error(file, exc) from None
    if b"\x00" in raw:
        raise DataError(f"{file.name}: not a text (CSV) file: it contains NUL bytes", file=file.name)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    truncated = len(raw) == SNIFF_BYTES
    try:
        text = (
            raw.decode("utf-8") if not truncated else codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
        )
        encoding = "utf8"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "latin1"
    lines = text.splitlines()
    if truncated and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    lines = [line for line in lines[:50] if line.strip()]
    if not lines:
        return Dialect(encoding=encoding)
    best, best_score = ",", (-1, -1)
    for delim in DELIMITERS:
        counts = [len(row) for row in csv.reader(lines, delimiter=delim)]
        width = counts[0]
        consistent = sum(1 for c in counts if c == width)
        score = (consistent if width > 1 else 0, width)
        if score > best_score:
            best, best_score = delim, score
    rows = list(csv.reader(lines, delimiter=best))
    header = tuple(rows[0])
    decimal_comma = False
    if best != ",":
        cells = [cell.strip() for row in rows[1:] for cell in row]
        with_comma = sum(1 for c in cells if re.fullmatch(r"[-+]?\d+,\d+", c))
        with_point = sum(1 for c in cells if re.fullmatch(r"[-+]?\d*\.\d+", c))
        decimal_comma = with_comma > 0 and with_point == 0
    return Dialect(best, decimal_comma, encoding, header)


def _csv_options(dialect: Dialect, columns: Sequence[str] | None, column_types: dict[str, Any]) -> tuple[Any, Any, Any]:
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(encoding=dialect.encoding, block_size=CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=dialect.delimiter, newlines_in_values=True)
    convert = pacsv.ConvertOptions(
        include_columns=list(columns) if columns is not None else None,
        include_missing_columns=True,
        column_types=column_types,
        decimal_point="," if dialect.decimal_comma else ".",
        strings_can_be_null=True,  # "", NA, null, N/A in a text column are missing, as pandas reads them
    )
    return read, parse, convert


def _retry_type(exc: Exception, names: Sequence[str], column_types: dict[str, Any]) -> bool:
    """pyarrow guesses a CSV column's type from its first block; when a later value does not fit,
    read that column again as float (an integer column with a decimal later) or as text."""
    import pyarrow as pa

    match = _CSV_CONVERSION.search(str(exc))
    if not match or int(match.group(1)) >= len(names):
        return False
    name = names[int(match.group(1))]
    before = column_types.get(name)
    if match.group(2).startswith("int") and before is None:
        column_types[name] = pa.float64()
    elif before != pa.large_string():
        column_types[name] = pa.large_string()
    else:
        return False
    return True


def _read_error(file: DataFile, exc: BaseException) -> DataError:
    if (
        isinstance(exc, OSError)
        and not str(exc).startswith(("Parquet", "Could not open Parquet"))
        and getattr(exc, "strerror", None)
    ):
        return DataError(f"{file.name}: cannot read: {exc.strerror}", file=file.name)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    kind = "Parquet" if file.format == "parquet" else "CSV"
    return DataError(
        f"{file.name}: not a readable {kind} file: {first}",
        hint="check the file's format; CSV and Parquet are read",
        file=file.name,
    )


# --- one side -----------------------------------------------------------------------------


@dataclass
class _Part:
    """One file of a source (or the in-memory table)."""

    file: DataFile | None
    names: list[str]
    rows: int | None = None  # CSV: known once parsed
    types: dict[str, Any] = field(default_factory=dict)  # known for Parquet at open, CSV once parsed
    dialect: Dialect | None = None
    table: Any = None  # CSV: the parsed wanted columns; in-memory sources: the table
    label: str = ""


class Source:
    """One side of a comparison: files (or a table) read as one table, only the wanted columns."""

    def __init__(self, parts: list[_Part], label: str, *, described: str) -> None:
        self.label = label
        self.described = described
        self._parts = parts
        self._lock = threading.Lock()
        self._wanted: list[str] | None = None
        self.warnings: list[str] = []
        self.columns: list[str] = list(dict.fromkeys(n for p in parts for n in p.names))
        for name in self.columns:
            lacking = [p.label for p in parts if name not in p.names]
            if lacking and len(parts) > 1:
                self.warnings.append(f"{label}: column '{name}' is missing from {_few(lacking)}: read as empty there")

    # --- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, files: Sequence[DataFile], label: str, *, described: str | None = None) -> Source:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts: list[_Part] = []
        skipped: list[str] = []
        unreadable: list[str] = []
        for file in files:
            try:
                size = file.path.stat().st_size
            except OSError as exc:
                raise _read_error(file, exc) from None
            if size == 0:
                skipped.append(file.name)
                continue
            if file.format == "parquet":
                try:
                    meta = pq.ParquetFile(str(file.path))
                    schema = meta.schema_arrow
                    rows = meta.metadata.num_rows
                except (OSError, pa.ArrowException) as exc:
                    if not file.skip_unreadable:
                        raise _read_error(file, exc) from None
                    unreadable.append(file.name)
                    continue
                if rows == 0:
                    skipped.append(file.name)
                    continue
                names = [n for n in schema.names if not INDEX_COLUMN.match(n)]
                parts.append(_Part(file, names, rows, {n: schema.field(n).type for n in names}, label=file.name))
            else:
                dialect = sniff(file)
                if not dialect.header:
                    skipped.append(file.name)
                    continue
                duplicate = [n for n in dialect.header if dialect.header.count(n) > 1]
                if duplicate:
                    raise DataError(f"{file.name}: column '{duplicate[0]}' appears twice in the header", file=file.name)
                parts.append(_Part(file, list(dialect.header), None, dialect=dialect, label=file.name))
        source = cls(parts, label, described=described or _few([f.name for f in files]))
        source.files = list(files)
        if skipped:
            source.warnings.insert(0, f"{label}: {_few(skipped)}: empty file(s), skipped")
        if unreadable:
            source.warnings.insert(
                0,
                f"{label}: skipped {len(unreadable)} of {len(files)} file(s) that are not readable Parquet "
                f"(torn or damaged): {_few(unreadable)}",
            )
        if not parts:
            raise DataError(
                f"{label} data has no rows: {_few([f.name for f in files])}",
                hint="check that the files were written completely",
                side=label,
            )
        return source

    @classmethod
    def from_table(cls, table: Any, label: str, *, name: str = "(table)") -> Source:
        """An in-memory pyarrow Table (or pandas DataFrame) as a source."""
        import pyarrow as pa

        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        names = [n for n in table.column_names if not INDEX_COLUMN.match(n)]
        part = _Part(
            None, names, table.num_rows, {n: table.schema.field(n).type for n in names}, table=table, label=name
        )
        source = cls([part], label, described=name)
        source.files = []
        if table.num_rows == 0:
            raise DataError(f"{label} data has no rows: {name}", side=label)
        return source

    files: list[DataFile]

    # --- reading --------------------------------------------------------------------------
    def want(self, names: Sequence[str]) -> None:
        """Declare the columns that will be read (CSV files parse only these)."""
        self._wanted = list(dict.fromkeys(names))

    def _parse_csv(self, part: _Part) -> None:
        """Parse one CSV file (wanted columns only) once; thread-safe."""
        with self._lock:
            if part.table is not None:
                return
            part.table, part.dialect = _read_csv_file(
                part.file, part.dialect, self._wanted if self._wanted is not None else part.names
            )
            part.rows = part.table.num_rows
            part.types = {n: part.table.schema.field(n).type for n in part.table.column_names}

    def load(self) -> None:
        """Parse what needs parsing now (CSV); Parquet is read column by column later."""
        for part in self._parts:
            if part.file is not None and part.file.format == "csv":
                self._parse_csv(part)
        empty = [p for p in self._parts if p.rows == 0]
        if empty:
            self._parts = [p for p in self._parts if p.rows != 0]
            self.warnings.insert(0, f"{self.label}: {_few([p.label for p in empty])}: no rows, skipped")
            if not self._parts:
                raise DataError(
                    f"{self.label} data has no rows: {self.described}",
                    hint="check that the files were written completely",
                    side=self.label,
                )

    @property
    def rows(self) -> int:
        self.load()
        return sum(p.rows or 0 for p in self._parts)

    def column_type(self, name: str) -> pa.DataType:
        """The unified type of a column over the files (CSV files are parsed first)."""
        import pyarrow as pa

        self.load()
        result: Any = pa.null()
        for part in self._parts:
            if name in part.types:
                result, _ = unify(result, part.types[name])
        return result

    def column(self, name: str) -> Any:
        """All values of one column as a pyarrow ChunkedArray of the unified type (nulls where a file lacks it)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.load()
        pieces: list[Any] = []
        for part in self._parts:
            if name not in part.names:
                pieces.append(None)
                continue
            if part.table is not None:
                pieces.append(part.table.column(name))
                continue
            try:
                table = pq.ParquetFile(str(part.file.path)).read(columns=[name], use_threads=False)
            except (OSError, pa.ArrowException) as exc:
                raise _read_error(part.file, exc) from None
            pieces.append(table.column(0))
        target: Any = pa.null()
        mixed = False
        for piece in pieces:
            if piece is not None:
                target, lost = unify(target, piece.type)
                mixed = mixed or lost
        if mixed:
            kinds = sorted({family(p.type) for p in pieces if p is not None})
            self.warnings.append(
                f"{self.label}: column '{name}' has different types in different files "
                f"({', '.join(kinds)}): read as text"
            )
        chunks: list[Any] = []
        for part, piece in zip(self._parts, pieces, strict=True):
            if piece is None:
                chunks.append(pa.nulls(part.rows or 0, type=target))
            else:
                try:
                    chunks += cast(piece, target).chunks
                except pa.ArrowException:
                    chunks += cast(piece, pa.large_string()).chunks
                    target = pa.large_string()
        chunks = [c if c.type == target else cast(c, target) for c in chunks]
        return pa.chunked_array(chunks, type=target)

    def release(self, name: str) -> None:
        """Drop a parsed CSV column that is no longer needed (frees its memory)."""
        with self._lock:
            for part in self._parts:
                if part.file is not None and part.table is not None and name in part.table.column_names:
                    part.table = part.table.drop_columns([name])

    def iter_batches(
        self, names: Sequence[str], *, batch_rows: int = BATCH_ROWS, csv_types: dict[str, Any] | None = None
    ) -> Iterator[tuple[str, int, Any]]:
        """(file name, first row's 0-based index in that file, record batch) over every file, streamed.

        Batches keep each file's own types (validation judges values, not files); a column
        missing from a file is all-null there. ``csv_types``: the types CSV columns are read as
        instead of pyarrow's guess (a schema's: zip codes ``02345`` stay text); a value that does
        not fit is read as text, for the caller to judge.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        for part in self._parts:
            if part.table is not None:
                table = part.table.select([n for n in names if n in part.table.column_names])
                table = _with_missing(table, names)
                offset = 0
                for batch in table.to_batches(max_chunksize=batch_rows):
                    yield part.label, offset, batch
                    offset += batch.num_rows
                continue
            present = [n for n in names if n in part.names]
            offset = 0
            try:
                if part.file.format == "parquet":
                    batches: Iterator[Any] = pq.ParquetFile(str(part.file.path)).iter_batches(
                        batch_size=batch_rows, columns=present, use_threads=False
                    )
                else:
                    batches = _stream_csv_file(part.file, part.dialect, present, csv_types)
                for batch in batches:
                    batch = (
                        _with_missing(pa.Table.from_batches([batch]), names).to_batches()[0]
                        if len(present) < len(names)
                        else batch
                    )
                    yield part.label, offset, batch
                    offset += batch.num_rows
            except (OSError, pa.ArrowException) as exc:
                raise _read_error(part.file, exc) from None

    def describe(self, *, rows: int | None = None) -> dict[str, Any]:
        """Source, files, rows and CSV dialects; ``rows`` when the caller counted them (a stream),
        else the known count (CSV files are parsed for it)."""
        files = [p.label for p in self._parts]
        out: dict[str, Any] = {"source": self.described, "files": files, "rows": self.rows if rows is None else rows}
        dialects = {p.label: p.dialect.describe() for p in self._parts if p.dialect is not None}
        if dialects:
            out["csv_dialects"] = dialects
        return out


def _with_missing(table: Any, names: Sequence[str]) -> Any:
    import pyarrow as pa

    for name in names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows))
    return table.select(list(names))


_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


def _open_text(file: DataFile) -> Any:
    """A CSV file's bytes, decompressed by the suffix of its *name* (a registry snapshot's local
    copy is a cache object without one)."""
    import pyarrow as pa

    suffix = Path(file.name).suffix.lower()
    return pa.input_stream(str(file.path), compression=_COMPRESSION.get(suffix))


def _has_binary(schema: Any) -> bool:
    """pyarrow types a text column with invalid UTF-8 as binary."""
    import pyarrow.types as pt

    return any(pt.is_binary(f.type) or pt.is_large_binary(f.type) for f in schema)


def _read_csv_file(file: DataFile, dialect: Dialect, columns: Sequence[str]) -> tuple[Any, Dialect]:
    """The wanted columns of a CSV file, and its dialect (Latin-1 when UTF-8 was sniffed from the
    first 64 KiB but a later byte is not UTF-8: pyarrow reads such a column as binary).

    Streamed block by block (``open_csv``), each block's arrays kept as chunks, so the peak is the
    wanted columns plus one block, not the whole-file parser's buffers. The streaming reader fixes
    a column's type from the first block and fails on a later value that does not fit, where the
    whole-file reader widens it; then that column's type is taken from a whole-file read of that
    one column (the same widening: int64 -> double, null -> date, ... -> string) and the file is
    streamed again with it fixed, so the result is the whole-file reader's, value for value.
    """
    import dataclasses

    import pyarrow as pa
    import pyarrow.csv as pacsv

    wanted = [c for c in columns if c in dialect.header]
    column_types: dict[str, Any] = {}
    for _ in range(2 * len(wanted) + 4):
        read, parse, convert = _csv_options(dialect, wanted, column_types)
        batches: list[Any] = []
        try:
            with _open_text(file) as stream:
                reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
                schema = reader.schema
                if dialect.encoding == "utf8" and _has_binary(schema):
                    dialect, column_types = dataclasses.replace(dialect, encoding="latin1"), {}
                    continue
                for batch in reader:
                    batches.append(batch)
            return pa.Table.from_batches(batches, schema=schema), dialect
        except pa.ArrowInvalid as exc:
            del batches[:]  # the restart reads every block again: free these first
            if dialect.encoding == "utf8" and "invalid UTF8" in str(exc):
                dialect, column_types = (
                    dataclasses.replace(dialect, encoding="latin1"),
                    {},
                )  # not UTF-8 after all: past the sniffed start
                continue
            match = _CSV_CONVERSION.search(str(exc))
            header = list(dialect.header)  # pyarrow numbers columns as in the file, not as included
            name = header[int(match.group(1))] if match and int(match.group(1)) < len(header) else None
            if name not in wanted or name in column_types:
                raise _read_error(file, exc) from None
            widened = _whole_file_type(file, dialect, name)
            if dialect.encoding == "utf8" and _has_binary([pa.field(name, widened)]):
                dialect, column_types = dataclasses.replace(dialect, encoding="latin1"), {}
                continue
            column_types[name] = widened
        except (OSError, pa.ArrowException) as exc:
            raise _read_error(file, exc) from None
    raise DataError(f"{file.name}: could not settle the column types", file=file.name)  # pragma: no cover


def _whole_file_type(file: DataFile, dialect: Dialect, name: str) -> Any:
    """The type pyarrow's whole-file reader gives one CSV column (it widens over every block)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read, parse, convert = _csv_options(dialect, [name], {})
    try:
        with _open_text(file) as stream:
            table = pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    except (OSError, pa.ArrowException) as exc:
        raise _read_error(file, exc) from None
    return table.schema.field(name).type


def _stream_csv_file(
    file: DataFile, dialect: Dialect, columns: Sequence[str], types: dict[str, Any] | None = None
) -> Iterator[Any]:
    """Record batches of a CSV file; restarted from the top (skipping what was yielded) when a
    later block's value does not fit the type guessed from the first block."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.csv as pacsv

    column_types: dict[str, Any] = {n: t for n, t in (types or {}).items() if n in columns}
    done = 0
    for _ in range(2 * len(columns) + 2):
        read, parse, convert = _csv_options(dialect, columns, column_types)
        seen = 0
        try:
            with _open_text(file) as stream:  # each restart opens the file anew: the last one is closed
                reader = pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
                for batch in reader:
                    if dialect.encoding == "utf8" and _has_binary(batch.schema):
                        # invalid UTF-8 past the sniffed start: Latin-1 from the top (rows yielded are skipped)
                        dialect = dataclasses.replace(dialect, encoding="latin1")
                        raise _Restart
                    if seen + batch.num_rows <= done:
                        seen += batch.num_rows
                        continue
                    if seen < done:
                        batch = batch.slice(done - seen)
                        seen = done
                    # once a type was widened the restart keeps yielding the new types: callers judge values
                    seen += batch.num_rows
                    done = seen
                    yield batch
            return
        except _Restart:
            continue
        except pa.ArrowInvalid as exc:
            if dialect.encoding == "utf8" and "invalid UTF8" in str(exc):
                dialect = dataclasses.replace(dialect, encoding="latin1")  # not UTF-8 after all: past the sniffed start
                continue
            if not _retry_type(exc, list(dialect.header), column_types):
                raise _read_error(file, exc) from None
    raise DataError(f"{file.name}: could not settle the column types", file=file.name)  # pragma: no cover


class _Restart(Exception):
    """Read a CSV stream again from its start, with a changed dialect."""


def _few(names: Sequence[str], limit: int = 3) -> str:
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
