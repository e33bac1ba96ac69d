"""Batch prediction: a Parquet or CSV file scored in chunks, with bounded memory.

`mlops predict churn@production data/2026-11.parquet -o preds.parquet`: the input is read
``chunk_rows`` rows at a time (Parquet by record batches, CSV by a streaming reader whose column
types come from the signature, so every chunk reads alike), each chunk is checked against the
signature, scored with one ``predict`` call and appended to the output. At most one chunk is in
memory at a time.

The check refuses missing columns, columns of the wrong type and nulls where the model needs a
value, listing the first problems (SignatureError, exit 2). Columns the model does not take
(ids, say) are not a problem: they pass through to the output (``keep``) but not to the model.
The output (Parquet or CSV, by its suffix) is written to a temp file and renamed into place
only when every chunk succeeded: a refused or interrupted run leaves no partial output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CouldNotComplete, DataError, InvalidPathError, SignatureError, UsageError
from ..fsio import check_output, output_writer
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from .signature import ANY, BOOLEAN, DATETIME, INTEGER, NUMBER, STRING, Signature, arrow_type, limit_problems
from .source import ModelSource, servable

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
MAX_LISTED = 10


@dataclass(frozen=True)
class PredictResult:
    model: str
    version: int
    input: str
    output: str
    rows: int
    chunks: int
    seconds: float
    prediction_column: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "output": self.output,
            "rows": self.rows,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "prediction_column": self.prediction_column,
            "rows_per_second": round(self.rows / self.seconds) if self.seconds > 0 else None,
        }


def file_format(path: Path, what: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: the {what} must be .parquet or .csv (found '{path.suffix or 'no suffix'}')")
    return fmt


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _batches(path: Path, fmt: str, signature: Signature | None, chunk_rows: int) -> tuple[Iterator[Any], int | None]:
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None

        def read() -> Iterator[Any]:
            # a file broken partway shows only while it is read, inside the output's atomic
            # writer: said here as the input's fault, not as a failure to write the output
            try:
                yield from handle.iter_batches(batch_size=chunk_rows)
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataError(
                    f"{path}: not a readable Parquet file ({_first_line(exc)})", hint="nothing was written"
                ) from None

        return read(), handle.metadata.num_rows
    import pyarrow.csv as pacsv

    types = (
        {c.name: arrow_type(c.kind) for c in signature.inputs if arrow_type(c.kind) is not None and c.kind != DATETIME}
        if signature
        else {}
    )
    try:
        reader = pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: cannot read as the model's columns: {_first_line(exc)}") from None

    def rechunk() -> Iterator[Any]:
        pending: list[Any] = []
        count = 0
        try:
            for batch in reader:
                pending.append(batch)
                count += batch.num_rows
                while count >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield from table.slice(0, chunk_rows).to_batches(max_chunksize=chunk_rows)
                    rest = table.slice(chunk_rows)
                    pending = rest.to_batches()
                    count = rest.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise SignatureError(
                f"{path}: a value does not fit the model's column types: {_first_line(exc)}",
                hint="fix the file or check the model's signature (mlops serve's GET /metadata)",
            ) from None
        if count:
            yield from pa.Table.from_batches(pending).to_batches(max_chunksize=chunk_rows)

    return rechunk(), None


def _type_ok(kind: str, type_: Any) -> bool:
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(type_):
        type_ = type_.value_type
    if kind == INTEGER:
        return t.is_integer(type_)
    if kind == NUMBER:
        return t.is_integer(type_) or t.is_floating(type_) or t.is_decimal(type_)
    if kind == BOOLEAN:
        return t.is_boolean(type_)
    if kind == STRING:
        return t.is_string(type_) or t.is_large_string(type_)
    if kind == DATETIME:
        return t.is_timestamp(type_) or t.is_date(type_) or t.is_string(type_)
    return True


def _shown_type(type_: Any) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_large_string(type_) or pa.types.is_string(type_):
        return "string"
    return str(type_)


def check_batch(batch: Any, signature: Signature, offset: int) -> list[str]:
    problems = []
    names = batch.schema.names
    for column in signature.inputs:
        if column.name not in names:
            problems.append(f"missing column '{column.name}' ({column.dtype})")
            continue
        array = batch.column(names.index(column.name))
        if column.kind != ANY and not _type_ok(column.kind, array.type):
            problems.append(f"column '{column.name}' is {_shown_type(array.type)}, the model takes {column.dtype}")
            continue
        if array.null_count and not column.nullable:
            import pyarrow.compute as pc

            first = pc.index(pc.is_null(array), True).as_py()
            problems.append(
                f"column '{column.name}' ({column.dtype}): null at row {offset + first}"
                + (f" (and {array.null_count - 1} more in this chunk)" if array.null_count > 1 else "")
            )
    return problems


def predict_file(
    repo: Repo,
    source: ModelSource,
    ref: str,
    input_path: str | Path,
    output_path: str | Path,
    *,
    chunk_rows: int = 50_000,
    keep: Sequence[str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> PredictResult:
    import pyarrow as pa

    from .protocols import jsonable

    started = time.perf_counter()
    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        raise InvalidPathError(f"{src}: no such file", hint="name a .parquet or .csv file")
    in_fmt, out_fmt = file_format(src, "input"), file_format(dst, "output")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UsageError(f"{dst}: the output would overwrite the input", hint="choose another -o")
    check_output(dst)
    if chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1")
    info = source.resolve(ref)
    model = servable(info, source.load(info))
    signature = info.signature
    batches, total = _batches(src, in_fmt, signature, chunk_rows)
    rows = chunks = 0
    prediction_column = "prediction"
    writer: Any = None
    out_schema: Any = None
    task = progress.task(f"predict {info.ref()}", total=total)
    try:
        with output_writer(dst, "wb") as handle:
            try:
                for batch in batches:
                    if batch.num_rows == 0:
                        continue
                    if signature is not None and signature.inputs:
                        problems = check_batch(batch, signature, rows)
                        if problems:
                            raise SignatureError(
                                f"{src}: {len(problems)} problem(s) with the model's signature "
                                f"in rows {rows}-{rows + batch.num_rows - 1}: "
                                + "; ".join(limit_problems(problems, MAX_LISTED)),
                                hint="nothing was written; fix the input, or check the model version",
                                problems=problems[:MAX_LISTED],
                            )
                        features = batch.select(list(signature.names))
                    else:
                        features = batch
                    if chunks == 0 and keep is not None:  # before any scoring
                        unknown = [n for n in keep if n not in batch.schema.names]
                        if unknown:
                            raise UsageError(
                                f"--keep: {src} has no column {', '.join(repr(n) for n in unknown)}",
                                hint=f"its columns: {', '.join(batch.schema.names)}; nothing was written",
                            )
                    frame = features.to_pandas()
                    try:
                        predictions = model.predict(frame)
                    except Exception as exc:  # noqa: BLE001 - the model's own failure on these rows
                        raise CouldNotComplete(
                            f"{info.ref()}: the model failed on rows {rows}-{rows + batch.num_rows - 1} of {src}: "
                            f"{type(exc).__name__}: {_first_line(exc)}",
                            hint="nothing was written; check the input against the model (mlops serve's GET /metadata)",
                        ) from exc
                    values = getattr(predictions, "to_numpy", lambda predictions=predictions: predictions)()
                    kept_names = [n for n in batch.schema.names if keep is None or n in keep]
                    if chunks == 0:
                        while prediction_column in batch.schema.names:
                            prediction_column = "_" + prediction_column
                    try:
                        pred_array = pa.array(values) if getattr(values, "ndim", 1) == 1 else pa.array(jsonable(values))
                    except (pa.ArrowInvalid, pa.ArrowTypeError):
                        pred_array = pa.array([str(v) for v in jsonable(values)])
                    table = pa.table(
                        {
                            **{n: batch.column(batch.schema.names.index(n)) for n in kept_names},
                            prediction_column: pred_array,
                        }
                    )
                    if writer is None:
                        out_schema = table.schema
                        writer = _writer(handle, out_fmt, out_schema)
                    else:
                        table = table.cast(out_schema, safe=False) if not table.schema.equals(out_schema) else table
                    writer.write_table(table)
                    rows += batch.num_rows
                    chunks += 1
                    task.advance(batch.num_rows)
            finally:
                if writer is not None:
                    writer.close()
            if writer is None:
                raise UsageError(f"{src}: no rows to predict")
    finally:
        task.close()
    return PredictResult(
        info.name, info.version, str(src), str(dst), rows, chunks, time.perf_counter() - started, prediction_column
    )


def _writer(handle: Any, fmt: str, schema: Any) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(handle, schema, compression="zstd")
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(handle, schema)
