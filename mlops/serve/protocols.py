"""The three wire protocols: parse a request into columns, format the answer and the errors.

- own: ``POST /predict`` with ``{"records": [{...}, ...]}`` or ``{"columns": {"name": [...]}}``;
  the answer names the model, version and variant.
- MLflow's scoring protocol: ``POST /invocations`` with JSON holding exactly one of
  ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` (and optionally
  ``params``), or ``text/csv``; answers ``{"predictions": [...]}``, errors
  ``{"error_code": "BAD_REQUEST", "message": ...}`` as MLflow's server does.
- Open Inference Protocol V2: ``POST /v2/models/{name}/infer`` with ``inputs`` tensors, either
  one per column (shape ``[N]`` or ``[N, 1]``) or one ``[N, K]`` tensor whose K columns follow the
  signature's order; answers an ``outputs`` tensor; errors ``{"error": ...}``. The binary tensor
  data extension (``Inference-Header-Content-Length``, as tritonclient sends by default) is read,
  and the output is answered in binary when the request asks for it.

Every parser returns ``Inputs`` (columns as lists) or raises ``BadRequest`` listing every problem.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .signature import V2_DATATYPE, Signature, convert_text, guess_text, limit_problems

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
V2_DATATYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
}
V2_KINDS = {  # which signature kinds a V2 datatype may carry
    "BOOL": {"boolean", "any"},
    **{
        t: {"integer", "number", "any"}
        for t in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
    },
    **{t: {"number", "any", "integer"} for t in ("FP16", "FP32", "FP64")},
    "BYTES": {"string", "datetime", "any"},
}


class BadRequest(Exception):
    """The request cannot be served as sent: ``problems`` lists every reason."""

    def __init__(self, problems: list[str] | str, status: int = 400) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.status = status
        super().__init__("; ".join(self.problems))


@dataclass
class Inputs:
    columns: dict[str, list[Any]]
    rows: int
    request_id: str | None = None  # V2's "id", echoed back
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_output: bool = False  # V2: the caller asked for the output as binary tensor data
    outputs: tuple[str, ...] = ()  # the outputs the caller named (empty: the prediction alone)

    def first(self, name: str) -> Any:
        values = self.columns.get(name)
        return values[0] if values else None


# --- JSON ---------------------------------------------------------------------------------------


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("empty body: send a JSON document")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:  # Python's parser recurses once per nesting level
        raise BadRequest("malformed JSON: nested too deeply") from None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def jsonable(predictions: Any) -> list[Any]:
    """Model output as JSON values: numpy -> Python, NaN/inf -> null."""
    to_numpy = getattr(predictions, "to_numpy", None)
    if to_numpy is not None:  # pandas Series/DataFrame
        predictions = to_numpy()
    tolist = getattr(predictions, "tolist", None)
    values = tolist() if tolist is not None else list(predictions)
    if values and isinstance(values[0], float):
        return [_clean(v) for v in values]
    if values and isinstance(values[0], list):
        return [[_clean(v) for v in row] for row in values]
    return values


# --- shapes common to all protocols -------------------------------------------------------------


def from_records(records: Any, where: str) -> Inputs:
    if not isinstance(records, list):
        raise BadRequest(f"'{where}' must be a list of objects (one per row), found {_kind(records)}")
    if not records:
        raise BadRequest(f"'{where}' is empty: send at least one row")
    names: dict[str, None] = {}
    problems = []
    for index, row in enumerate(records):
        if not isinstance(row, dict):
            problems.append(f"'{where}'[{index}] must be an object (column -> value), found {_kind(row)}")
            continue
        for key in row:
            names.setdefault(key, None)
    if problems:
        raise BadRequest(limit_problems(problems))
    columns: dict[str, list[Any]] = {name: [] for name in names}
    missing: dict[str, list[int]] = {}
    for index, row in enumerate(records):
        for name, values in columns.items():
            if name in row:
                values.append(row[name])
            else:
                values.append(None)
                missing.setdefault(name, []).append(index)
    for name, rows in missing.items():
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        problems.append(f"row {rows[0]}{more} lacks column '{name}' that other rows have")
    if problems:
        raise BadRequest(limit_problems(problems))
    return Inputs(columns, len(records))


def from_columns(data: Any, where: str) -> Inputs:
    if not isinstance(data, dict) or not data:
        raise BadRequest(f"'{where}' must be an object of column -> list of values, found {_kind(data)}")
    problems = []
    lengths = set()
    columns: dict[str, list[Any]] = {}
    for name, values in data.items():
        if not isinstance(values, list):
            values = [values]  # one row given as column -> scalar
        columns[name] = values
        lengths.add(len(values))
    if len(lengths) > 1:
        problems.append(
            f"'{where}' columns differ in length: " + ", ".join(f"{n}={len(v)}" for n, v in columns.items())
        )
    if problems:
        raise BadRequest(problems)
    rows = lengths.pop()
    if rows == 0:
        raise BadRequest(f"'{where}' has no rows")
    return Inputs(columns, rows)


def from_rows(rows: Any, names: Sequence[str] | None, where: str) -> Inputs:
    """Rows as lists of values in the signature's column order."""
    if not names:
        raise BadRequest(
            f"'{where}' gives rows without column names, and the model has no signature to name them; "
            "send records (objects) instead"
        )
    if not rows:
        raise BadRequest(f"'{where}' is empty: send at least one row")
    problems = []
    columns: dict[str, list[Any]] = {name: [] for name in names}
    if len(columns) != len(names):
        raise BadRequest(f"'{where}': a column name is given twice ({', '.join(names)})")
    for index, row in enumerate(rows):
        if not isinstance(row, list):
            row = [row]
        if len(row) != len(names):
            problems.append(
                f"'{where}'[{index}] has {len(row)} value(s); the model takes {len(names)}: {', '.join(names)}"
            )
            continue
        for name, value in zip(names, row, strict=True):
            columns[name].append(value)
    if problems:
        raise BadRequest(limit_problems(problems))
    return Inputs(columns, len(rows))


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


# --- own protocol: /predict ---------------------------------------------------------------------


def predict_inputs(doc: Any) -> Inputs:
    if not isinstance(doc, dict):
        raise BadRequest(f"the body must be a JSON object with 'records' or 'columns', found {_kind(doc)}")
    keys = [k for k in ("records", "columns") if k in doc]
    unknown = [k for k in doc if k not in ("records", "columns", "outputs")]
    if len(keys) != 1:
        raise BadRequest(
            "the body must hold exactly one of 'records' (a list of row objects) or 'columns' "
            f"(column -> list of values); found keys: {', '.join(doc) or 'none'}"
        )
    if unknown:
        raise BadRequest(f"unknown key(s) in the body: {', '.join(unknown)} (only 'records' or 'columns')")
    outputs = requested_outputs(doc.get("outputs"), "outputs")
    if keys[0] == "records":
        inputs = from_records(doc["records"], "records")
    else:
        inputs = from_columns(doc["columns"], "columns")
    inputs.outputs = outputs
    return inputs


PREDICTION, PROBABILITIES = "prediction", "probabilities"


def requested_outputs(value: Any, where: str) -> tuple[str, ...]:
    """The extra outputs an own or MLflow request names: ``["probabilities"]`` (the prediction always comes)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'{where}' must be a list of output names, found {_kind(value)}")
    unknown = [v for v in value if v not in (PREDICTION, PROBABILITIES)]
    if unknown:
        raise BadRequest(f"'{where}': unknown output '{unknown[0][:100]}' (one of {PREDICTION}, {PROBABILITIES})")
    return tuple(dict.fromkeys(value))


def predict_answer(
    model: str, version: int, variant: str, predictions: list[Any], request_id: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "version": version, "variant": variant, "predictions": predictions}
    if request_id:
        out["request_id"] = request_id
    return out


def predict_error(problems: list[str]) -> dict[str, Any]:
    return {
        "error": problems[0] if len(problems) == 1 else f"{len(problems)} problems with the request",
        "problems": limit_problems(problems),
    }


# --- MLflow scoring protocol --------------------------------------------------------------------


def mlflow_inputs(
    body: bytes, content_type: str | None, signature: Signature | None, *, max_bytes: int = 10 * 2**20
) -> Inputs:
    return mlflow_parse(mlflow_document(body, content_type, max_bytes=max_bytes), signature)


MLFLOW_CSV, MLFLOW_JSON, MLFLOW_PARQUET = "text/csv", "application/json", "application/vnd.apache.parquet"
MLFLOW_CONTENT_TYPES = (MLFLOW_CSV, MLFLOW_JSON, MLFLOW_PARQUET)


def mlflow_document(body: bytes, content_type: str | None, *, max_bytes: int) -> tuple[str, Any]:
    """The signature-free half of reading an MLflow request: ("csv", text), ("columns", Inputs read from
    Parquet) or ("json", the checked document). ``max_bytes``: the body limit (Parquet decompresses)."""
    mime, params = _content_type(content_type or MLFLOW_JSON)
    charset = params.pop("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise BadRequest("The scoring server only supports UTF-8", status=415)
    if params:  # MLflow 1's `format=pandas-split` and the like: MLflow 2 refuses them the same way
        raise BadRequest(f"Unrecognized content type parameters: {', '.join(sorted(params))}", status=415)
    if mime == MLFLOW_CSV:
        try:
            return "csv", body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if mime == MLFLOW_PARQUET:
        return "columns", parquet_inputs(body, max_bytes)
    if mime != MLFLOW_JSON:
        raise BadRequest(
            f"This predictor only supports the following content types: {', '.join(MLFLOW_CONTENT_TYPES)}. "
            f"Got '{(content_type or '')[:100]}'.",
            status=415,
        )
    doc = parse_json(body)
    if isinstance(doc, list):
        raise BadRequest(
            "the input must be a JSON object with exactly one of the input fields "
            f"{', '.join(MLFLOW_FORMATS)}; received a list"
        )
    if not isinstance(doc, dict):
        raise BadRequest(f"the input must be a JSON object, found {_kind(doc)}")
    keys = [k for k in MLFLOW_FORMATS if k in doc]
    others = [k for k in doc if k not in MLFLOW_FORMATS and k != "params"]
    if len(keys) != 1 or others:
        raise BadRequest(
            "the input must be a JSON object with exactly one of the input fields "
            f"{', '.join(MLFLOW_FORMATS)} (and optionally 'params'); received: {', '.join(doc) or 'nothing'}"
        )
    return "json", doc


def mlflow_parse(document: tuple[str, Any], signature: Signature | None) -> Inputs:
    """Columns from an MLflow request read by ``mlflow_document``, as ``signature`` names and types them;
    ``params: {"outputs": ["probabilities"]}`` asks for more than the prediction."""
    inputs = _mlflow_columns(document, signature)
    kind, doc = document
    params = doc.get("params") if kind == "json" else None
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f"'params' must be an object, found {_kind(params)}")
    if params:
        inputs.outputs = requested_outputs(params.get("outputs"), "params.outputs")
    return inputs


def _mlflow_columns(document: tuple[str, Any], signature: Signature | None) -> Inputs:
    kind, doc = document
    if kind == "csv":
        return csv_inputs(doc, signature)
    if kind == "columns":  # Parquet: names and types came with the file
        return Inputs(dict(doc.columns), doc.rows)
    key = [k for k in MLFLOW_FORMATS if k in doc][0]
    data = doc[key]
    names = signature.names if signature else None
    if key == "dataframe_split":
        if not isinstance(data, dict) or "data" not in data:
            raise BadRequest("'dataframe_split' must be an object with 'columns' and 'data' (pandas orient='split')")
        rows = data["data"]
        if not isinstance(rows, list):
            raise BadRequest("'dataframe_split.data' must be a list of rows")
        columns = data.get("columns", list(names) if names else None)
        if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
            raise BadRequest("'dataframe_split.columns' must be a list of column names")
        return from_rows(rows, columns, "dataframe_split.data")
    if key == "dataframe_records":
        return from_records(data, "dataframe_records")
    # instances / inputs: TF-serving style, read as the model's columns
    if isinstance(data, dict):
        return from_columns(data, key)
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return from_records(data, key)
    if isinstance(data, list):
        if names and len(names) == 1 and data and not isinstance(data[0], list):
            return Inputs({names[0]: list(data)}, len(data))
        return from_rows(data, names, key)
    raise BadRequest(f"'{key}' must be a list of rows, a list of objects or an object of columns, found {_kind(data)}")


def csv_inputs(text: str, signature: Signature | None) -> Inputs:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise BadRequest("empty CSV: send a header line and at least one row") from None
    except csv.Error as exc:
        raise BadRequest(f"malformed CSV: {exc}") from None
    wanted = {c.name: c for c in signature.inputs} if signature else {}
    # pandas' `df.to_csv()` writes the index first under an empty name (read back as "Unnamed: 0"):
    # MLflow's server ignores it as a column the signature does not name, and so does this one
    skip = 1 if header and header[0] == "" and "" not in wanted else 0
    width = len(header)
    header = header[skip:]
    columns: dict[str, list[Any]] = {name: [] for name in header}
    if len(columns) != len(header):
        raise BadRequest("the CSV header names a column twice")
    problems = []
    rows = 0
    try:
        for line, record in enumerate(reader, start=2):
            if not record:
                continue
            if len(record) != width:
                problems.append(f"CSV line {line} has {len(record)} field(s), the header {width}")
                continue
            rows += 1
            for name, cell in zip(header, record[skip:], strict=True):
                column = wanted.get(name)
                columns[name].append(convert_text(column, cell)[0] if column else guess_text(cell))
    except csv.Error as exc:
        problems.append(f"malformed CSV: {exc}")
    if problems:
        raise BadRequest(limit_problems(problems))
    if rows == 0:
        raise BadRequest("the CSV has a header but no rows")
    return Inputs(columns, rows)


PARQUET_EXPANSION = 8  # a Parquet body may decode to at most this many times the body limit


def parquet_inputs(body: bytes, max_bytes: int) -> Inputs:
    """Columns of a Parquet file (pandas' ``df.to_parquet()``), its index columns left out, as JSON would
    carry them: NaN as null, timestamps and dates as ISO 8601 strings.

    Parquet compresses and dictionary-encodes, so a body under the limit can decode to far more: it
    may hold no more cells than a JSON body of ``max_bytes`` could (two bytes a cell, as in ``1,``),
    and decode to at most ``PARQUET_EXPANSION`` times ``max_bytes``, checked before the values
    become Python objects."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def too_large(what: str) -> BadRequest:
        return BadRequest(
            f"the Parquet body {what}, more than a request may carry (mlops serve --max-body-mb); "
            "send fewer rows per request",
            status=413,
        )

    try:
        file = pq.ParquetFile(pa.BufferReader(body))
        meta = file.metadata
        cells = meta.num_rows * max(meta.num_columns, 1)
        if cells > max_bytes // 2:
            raise too_large(f"holds {cells} cells")
        size = sum(
            meta.row_group(g).column(c).total_uncompressed_size
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        )
        if size > max_bytes * PARQUET_EXPANSION:
            raise too_large(f"decompresses to {size} bytes")
        table = file.read()
        if table.nbytes > max_bytes * PARQUET_EXPANSION:
            raise too_large(f"decodes to {table.nbytes} bytes")
        pandas_meta = table.schema.pandas_metadata or {}
    except BadRequest:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:  # a truncated or forged file
        raise BadRequest(f"malformed Parquet: {str(exc)[:200]}") from None
    names = table.column_names
    if len(set(names)) != len(names):
        raise BadRequest("the Parquet file names a column twice")
    index = {c for c in pandas_meta.get("index_columns", ()) if isinstance(c, str)}
    columns = {name: [_plain(v) for v in table.column(name).to_pylist()] for name in names if name not in index}
    if not columns or table.num_rows == 0:
        raise BadRequest("the Parquet file has no rows")
    return Inputs(columns, table.num_rows)


def _plain(value: Any) -> Any:
    """An Arrow cell as the JSON value a caller would send."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    isoformat = getattr(value, "isoformat", None)  # datetime, date, time
    return isoformat() if isoformat is not None else value


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in value.split(";")]
    params = {}
    for part in parts[1:]:
        key, _, val = part.partition("=")
        if key:
            params[key.strip().lower()] = val.strip().strip('"')
    return parts[0].lower(), params


def mlflow_answer(predictions: list[Any]) -> dict[str, Any]:
    return {"predictions": predictions}


def mlflow_error(problems: list[str], *, code: str = "BAD_REQUEST") -> dict[str, Any]:
    problems = limit_problems(problems)
    return {"error_code": code, "message": "; ".join(problems), "problems": problems}


# --- Open Inference Protocol V2 -----------------------------------------------------------------


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


#: the binary tensor data extension: little-endian, row-major; BYTES elements are a 4-byte length, then the bytes
V2_BINARY_DTYPES = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
BINARY_HEADER = "inference-header-content-length"


def v2_document(body: bytes, header_length: str | None) -> Any:
    """A V2 request as JSON; with the binary tensor data extension (``Inference-Header-Content-Length``:
    the JSON is that many bytes, followed by the raw data of each input whose ``parameters`` give a
    ``binary_data_size``, in order), that data is decoded into the tensors' ``data``."""
    if header_length is None:
        return parse_json(body)
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(
            f"Inference-Header-Content-Length must be a number of bytes, found {header_length!r}"
        ) from None
    if not 0 < length <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes")
    doc = parse_json(body[:length])
    blob = memoryview(body)[length:]
    offset = 0
    tensors = doc.get("inputs") if isinstance(doc, dict) else None
    for index, tensor in enumerate(tensors if isinstance(tensors, list) else ()):
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(params, dict) or "binary_data_size" not in params:
            continue
        label = f"inputs[{index}] ('{tensor.get('name')}')"
        size = params["binary_data_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"{label}: 'binary_data_size' must be a number of bytes, found {size!r}")
        if "data" in tensor:
            raise BadRequest(f"{label}: has both 'data' and 'binary_data_size'")
        if offset + size > len(blob):
            raise BadRequest(
                f"{label}: 'binary_data_size' {size} runs past the end of the body "
                f"({len(blob) - offset} byte(s) of binary data left)"
            )
        tensor["data"] = _decode_binary(tensor.get("datatype"), blob[offset : offset + size], label)
        offset += size
    if offset != len(blob):
        raise BadRequest(
            f"{len(blob) - offset} byte(s) of binary data after the JSON that no input's 'binary_data_size' claims"
        )
    return doc


def _decode_binary(datatype: Any, data: memoryview, label: str) -> list[Any]:
    if datatype == "BYTES":
        out, at, raw = [], 0, bytes(data)
        while at < len(raw):
            if at + 4 > len(raw):
                raise BadRequest(f"{label}: BYTES data ends inside an element's 4-byte length")
            size = int.from_bytes(raw[at : at + 4], "little")
            at += 4
            if at + size > len(raw):
                raise BadRequest(f"{label}: a BYTES element of {size} byte(s) runs past its tensor's data")
            try:
                out.append(raw[at : at + size].decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest(f"{label}: a BYTES element is not UTF-8 text") from None
            at += size
        return out
    code = V2_BINARY_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if code is None:
        raise BadRequest(f"{label}: unknown datatype {datatype!r} for binary data")
    import numpy as np

    dtype = np.dtype(code)
    if len(data) % dtype.itemsize:
        raise BadRequest(f"{label}: {len(data)} byte(s) of binary data is not a whole number of {datatype} values")
    return np.frombuffer(data, dtype=dtype).tolist()


def v2_binary_answer(answer: dict[str, Any]) -> tuple[bytes, int]:
    """The answer with its output tensor's data as binary (``binary_data_size``): (body, JSON length)."""
    import numpy as np

    blobs = []
    for output in answer["outputs"]:
        values, datatype = output.pop("data"), output["datatype"]
        if datatype == "BYTES":
            raw = b"".join(
                len(b).to_bytes(4, "little") + b
                for b in (("" if v is None else str(v)).encode("utf-8") for v in values)
            )
        else:
            filled = [np.nan if v is None else v for v in values] if datatype == "FP64" else values
            raw = np.asarray(filled, dtype=V2_BINARY_DTYPES[datatype]).tobytes()
        output["parameters"] = {**output.get("parameters", {}), "binary_data_size": len(raw)}
        blobs.append(raw)
    head = dumps(answer)
    return head + b"".join(blobs), len(head)


def _wants_binary_output(doc: dict[str, Any]) -> bool:
    params = doc.get("parameters")
    if isinstance(params, dict) and params.get("binary_data_output") is True:
        return True
    outputs = doc.get("outputs")
    return isinstance(outputs, list) and any(
        isinstance(o, dict) and isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") is True
        for o in outputs
    )


_INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}


def _fits(datatype: str, value: Any) -> bool:
    if value is None:  # a missing value: the signature decides whether the column may have one
        return True
    bounds = _INT_RANGES.get(datatype)
    if bounds is not None:
        return isinstance(value, int) and not isinstance(value, bool) and bounds[0] <= value <= bounds[1]
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype in ("FP16", "FP32", "FP64"):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    # BYTES: text, or any scalar of a mixed-type [N, K] tensor (its cells are read per column)
    return isinstance(value, (str, int, float, bool))


def _datatype_mismatch(datatype: str, values: list[Any]) -> str | None:
    """What in ``values`` the tensor's declared datatype cannot hold (the first element, and how many)."""
    bad = [i for i, v in enumerate(values) if not _fits(datatype, v)]
    if not bad:
        return None
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    value = values[bad[0]]
    return f"datatype {datatype} cannot hold element {bad[0]}, {_kind(value)} {_short(value)}{more}"


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _v2_outputs(outputs: Any) -> tuple[str, ...]:
    """The names of the outputs a (checked) V2 request asks for, in its order."""
    if not isinstance(outputs, list):
        return ()
    return tuple(dict.fromkeys(o["name"] for o in outputs if isinstance(o, dict) and isinstance(o.get("name"), str)))


def _unknown_outputs(outputs: Any, answered: str) -> list[str]:
    """Requested outputs this server cannot answer: the signature's output and ``probabilities`` are known."""
    if outputs is None:
        return []
    if not isinstance(outputs, list):
        return [f"'outputs' must be a list of requested outputs, found {_kind(outputs)}"]
    problems = []
    for index, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if not isinstance(name, str):
            problems.append(f"outputs[{index}]: 'name' must be a string")
        elif name not in (answered, PROBABILITIES):
            problems.append(
                f"outputs[{index}]: unknown output '{name[:100]}' (the model answers '{answered}' or '{PROBABILITIES}')"
            )
    return problems


def _read_text_cells(inputs: Inputs, signature: Signature) -> None:
    """A BYTES [N, K] tensor carries mixed-type columns as text (tritonclient sends every cell of an object
    array as bytes): each text cell is read as its column's kind, as a CSV cell would be. A cell that does
    not read stays text, and the signature check names its column and row."""
    for column in signature.inputs:
        values = inputs.columns.get(column.name)
        if values is None or column.kind not in ("integer", "number", "boolean"):
            continue
        converted = []
        for value in values:
            if isinstance(value, str):
                read, ok = convert_text(column, value)
                converted.append(read if ok else value)
            else:
                converted.append(value)
        inputs.columns[column.name] = converted


def v2_inputs(doc: Any, signature: Signature | None) -> Inputs:
    if not isinstance(doc, dict):
        raise BadRequest(f"the inference request must be a JSON object with 'inputs', found {_kind(doc)}")
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadRequest("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    parameters = doc.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest(f"'parameters' must be an object, found {_kind(parameters)}")
    problems: list[str] = []
    parsed: list[tuple[str, list[int], str, list[Any]]] = []
    for index, tensor in enumerate(tensors):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            problems.append(f"{where} must be an object, found {_kind(tensor)}")
            continue
        name, shape, datatype, data = (
            tensor.get("name"),
            tensor.get("shape"),
            tensor.get("datatype"),
            tensor.get("data"),
        )
        label = f"{where} ('{name}')" if isinstance(name, str) else where
        bad = False
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: 'name' must be a non-empty string")
            bad = True
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            problems.append(f"{label}: 'shape' must be a list of non-negative integers, found {shape!r}")
            bad = True
        if not isinstance(datatype, str) or datatype not in V2_DATATYPES:
            problems.append(f"{label}: unknown datatype {datatype!r} (one of {', '.join(sorted(V2_DATATYPES))})")
            bad = True
        if data is None:
            problems.append(f"{label}: 'data' is missing")
            bad = True
        if bad:
            continue
        flat = _flatten(data)
        size = math.prod(shape)
        if len(flat) != size:
            problems.append(f"{label}: shape {shape} holds {size} value(s) but 'data' has {len(flat)}")
            continue
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1 and len(tensors) > 1):
            problems.append(f"{label}: shape {shape}: send one [N] tensor per column, or a single [N, K] tensor")
            continue
        mismatch = _datatype_mismatch(datatype, flat)
        if mismatch is not None:
            problems.append(f"{label}: {mismatch}")
            continue
        parsed.append((name, shape, datatype, flat))
    problems.extend(_unknown_outputs(doc.get("outputs"), signature.output_name if signature else "predict"))
    if problems:
        raise BadRequest(limit_problems(problems))
    names = signature.names if signature else ()
    columns: dict[str, list[Any]] = {}
    single = parsed[0] if len(parsed) == 1 else None
    # one tensor holding every column: a [N, K] matrix, or a tensor not named after a column
    if single is not None and ((len(single[1]) == 2 and single[1][1] != 1) or (names and single[0] not in names)):
        name, shape, datatype, flat = parsed[0]
        width = shape[1] if len(shape) == 2 else 1
        if not names:
            raise BadRequest(
                f"inputs[0] ('{name}') is a [N, K] tensor, and the model has no signature to name its columns; "
                "send one tensor per column"
            )
        if width != len(names):
            raise BadRequest(
                f"inputs[0] ('{name}'): shape {shape} has {width} column(s); "
                f"the model takes {len(names)}: {', '.join(names)}"
            )
        rows = [flat[i : i + width] for i in range(0, len(flat), width)]
        inputs = from_rows(rows, names, f"inputs[0] ('{name}')")
        if datatype == "BYTES" and signature is not None:
            _read_text_cells(inputs, signature)
        for column in signature.inputs if signature else ():
            if column.kind not in V2_KINDS[datatype] and datatype != "BYTES":
                problems.append(
                    f"inputs[0] ('{name}'): datatype {datatype} cannot carry column '{column.name}' ({column.dtype})"
                )
        if problems:
            raise BadRequest(limit_problems(problems))
        inputs.request_id = request_id
        inputs.binary_output = _wants_binary_output(doc)
        inputs.outputs = _v2_outputs(doc.get("outputs"))
        return inputs
    lengths = set()
    for name, shape, datatype, flat in parsed:
        if name in columns:
            problems.append(f"input '{name}' is given twice")
            continue
        column = signature.column(name) if signature else None
        if column is not None and column.kind not in V2_KINDS[datatype]:
            problems.append(
                f"input '{name}': datatype {datatype} does not fit column '{name}' ({column.dtype}, "
                f"send {V2_DATATYPE[column.kind]})"
            )
        columns[name] = flat
        lengths.add(shape[0])
    if len(lengths) > 1:
        problems.append(
            "inputs differ in their first dimension (rows): " + ", ".join(f"{n}={s[0]}" for n, s, _, _ in parsed)
        )
    if problems:
        raise BadRequest(limit_problems(problems))
    rows = lengths.pop()
    if rows == 0:
        raise BadRequest("the inputs have no rows")
    return Inputs(
        columns,
        rows,
        request_id=request_id,
        parameters=dict(parameters or {}),
        binary_output=_wants_binary_output(doc),
        outputs=_v2_outputs(doc.get("outputs")),
    )


def v2_datatype(predictions: list[Any]) -> str:
    sample = predictions[0] if predictions else None
    while isinstance(sample, list) and sample:
        sample = sample[0]
    if isinstance(sample, bool):
        return "BOOL"
    if isinstance(sample, int):
        return "INT64"
    if isinstance(sample, float):
        return "FP64"
    return "BYTES"


def v2_probabilities(probabilities: list[list[float]], classes: list[Any] | None) -> dict[str, Any]:
    """The ``probabilities`` tensor: [rows, classes] FP64, the class of each column in its parameters."""
    width = len(probabilities[0]) if probabilities else len(classes or ())
    return {
        "name": PROBABILITIES,
        "shape": [len(probabilities), width],
        "datatype": "FP64",
        "data": [v for row in probabilities for v in row],
        "parameters": {"classes": list(classes or ())},
    }


def v2_answer(
    model: str, version: int, variant: str, predictions: list[Any], request_id: str | None, output_name: str
) -> dict[str, Any]:
    if predictions and isinstance(predictions[0], list):
        shape = [len(predictions), len(predictions[0])]
        data = [v for row in predictions for v in row]
    else:
        shape, data = [len(predictions)], predictions
    out: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request_id is not None:
        out["id"] = request_id
    out["parameters"] = {"variant": variant}
    out["outputs"] = [{"name": output_name, "shape": shape, "datatype": v2_datatype(predictions), "data": data}]
    return out


def v2_error(problems: list[str]) -> dict[str, Any]:
    problems = limit_problems(problems)
    return {"error": "; ".join(problems), "problems": problems}


def v2_metadata(model: str, versions: Sequence[int], signature: Signature | None, platform: str) -> dict[str, Any]:
    def tensor(column: Any) -> dict[str, Any]:
        return {"name": column.name, "datatype": V2_DATATYPE[column.kind], "shape": [-1]}

    out: dict[str, Any] = {"name": model, "versions": [str(v) for v in versions], "platform": platform}
    out["inputs"] = [tensor(c) for c in signature.inputs] if signature else []
    out["outputs"] = (
        [tensor(c) for c in signature.outputs]
        if signature and signature.outputs
        else [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
    )
    return out


#: the V2 extensions this server implements (binary tensor data: v2_document and v2_binary_answer)
V2_EXTENSIONS = ("binary_tensor_data",)


def v2_server_metadata(version: str) -> dict[str, Any]:
    return {"name": "mlops", "version": version, "extensions": list(V2_EXTENSIONS)}
