"""Flavours and signatures: what kind of model an artifact is, and what it takes and gives.

- ``sklearn``: a pickle whose opcodes import from ``sklearn`` (read with ``pickletools``,
  which executes nothing). Its signature comes from loading it (``feature_names_in_``)
  plus the training data's dtypes, outputs from ``predict`` on a few training rows.
- ``file``: any other file; ``dir``: any directory. Their signature is None.

Unpickling happens only on bytes whose hashes were just checked against the registry
(``verified_bytes``): the bytes in memory are the ones hashed, so nothing can swap them
between the check and the load. scikit-learn and pandas are imported only here, lazily.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CorruptObjectError, MissingObjectError, UsageError
from ..store.hashing import hash_bytes

SKLEARN, FILE, DIR = "sklearn", "file", "dir"
PICKLE_SUFFIXES = (".pkl", ".pickle")
SAMPLE_ROWS = 5
MAX_SCAN = 64 << 20  # opcodes are read from at most this many bytes


def pickle_modules(data: bytes) -> set[str] | None:
    """Modules a pickle names (GLOBAL/INST arguments, and the strings STACK_GLOBAL takes),
    read with pickletools without running anything; None when the bytes are not a pickle.

    Protocol 2+ pickles push a module name as a plain string before STACK_GLOBAL (later uses
    come from the memo), so every string that looks like a dotted module path is counted:
    a hint that the load then confirms, never proof on its own.
    """
    if data[:1] != b"\x80" and data[:1] not in (b"(", b"c", b"]", b"}"):
        return None
    modules: set[str] = set()
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(data[:MAX_SCAN])):
            if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                modules.add(arg.split(" ", 1)[0])
            elif isinstance(arg, str) and _MODULE.fullmatch(arg):
                modules.add(arg)
            if opcode.name == "STOP":
                break
    except Exception:  # noqa: BLE001 - bytes genops cannot read are not a pickle we recognise
        return modules or None
    return modules


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def detect_flavor(path: Path, kind: str) -> str:
    """``sklearn`` for a pickle importing scikit-learn, else ``file`` or ``dir``."""
    if kind == "dir":
        return DIR
    with open(path, "rb") as handle:
        data = handle.read(MAX_SCAN)
    modules = pickle_modules(data)
    if modules and any(m == "sklearn" or m.startswith("sklearn.") for m in modules):
        return SKLEARN
    return FILE


def is_pickle(data: bytes) -> bool:
    return pickle_modules(data[:MAX_SCAN]) is not None


def verified_bytes(path: Path, *, digest: str, sha256: str | None, what: str) -> bytes:
    """The file's bytes, read once and checked against both recorded hashes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingObjectError(
            f"{what}: its artifact {digest} is not in the cache", hint="run 'mlops pull' (or 'mlops fetch')", object=digest
        ) from None
    if hash_bytes(data) != digest or (sha256 is not None and hashlib.sha256(data).hexdigest() != sha256):
        raise CorruptObjectError(
            f"{what}: the artifact's bytes do not match the hash the registry recorded; refusing to load it",
            hint="run 'mlops verify', then 'mlops pull' to fetch a good copy",
            object=digest,
        )
    return data


def unpickle(data: bytes, what: str) -> Any:
    try:
        return pickle.loads(data)  # noqa: S301 - the bytes were just checked against the registry
    except ModuleNotFoundError as exc:
        raise UsageError(f"{what}: loading it needs the Python module '{exc.name}'", hint=f"pip install {exc.name}") from None
    except Exception as exc:  # noqa: BLE001 - a pickle that does not load is bad input, named
        raise UsageError(f"{what}: could not unpickle the artifact: {type(exc).__name__}: {exc}") from None


# --- signatures ------------------------------------------------------------------------------------


def read_frame(path: Path, name: str, columns: Sequence[str] | None = None, rows: int | None = 1000) -> Any:
    """A small table from a CSV or Parquet file (the reader picked by ``name``'s suffix)."""
    import pandas as pd

    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".parquet" or suffix == ".pq":
            frame = pd.read_parquet(path, columns=list(columns) if columns else None)
            return frame.head(rows) if rows else frame
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=rows, usecols=list(columns) if columns else None)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{name}: cannot read it as a table: {exc}") from None
    raise UsageError(f"{name}: not a table mlops can read", hint="a .csv, .tsv or .parquet file")


def table_files(files: Sequence[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The CSV/Parquet files among (name, path), training files first."""
    tables = [(n, p) for n, p in files if Path(n).suffix.lower() in (".csv", ".tsv", ".parquet", ".pq")]
    return sorted(tables, key=lambda item: (0 if "train" in Path(item[0]).name.lower() else 1, item[0]))


def _columns(path: Path, name: str) -> list[str]:
    return [str(c) for c in read_frame(path, name, rows=1).columns]


def sklearn_signature(model: Any, tables: Sequence[tuple[str, Path]]) -> tuple[dict[str, Any] | None, list[str]]:
    """Inputs from ``feature_names_in_`` and the first table that has those columns; outputs from predict.

    Returns (signature, warnings).
    """
    import numpy as np

    warnings: list[str] = []
    names = [str(n) for n in getattr(model, "feature_names_in_", [])]
    width = getattr(model, "n_features_in_", None)
    frame = None
    source = None
    for name, path in tables:
        try:
            columns = _columns(path, name)
        except UsageError as exc:
            warnings.append(exc.message)
            continue
        if names and set(names) <= set(columns):
            frame, source = read_frame(path, name, columns=names, rows=1000), name
            break
        if not names and isinstance(width, int) and len(columns) == width:
            frame, source = read_frame(path, name, rows=1000), name
            names = columns
            break
    if not names:
        if isinstance(width, int):
            names = [f"x{i}" for i in range(width)]
        else:
            warnings.append("the model names no input features (no feature_names_in_): signature left empty")
            return None, warnings
    inputs = [{"name": n, "dtype": str(frame[n].dtype) if frame is not None else "unknown"} for n in names]
    outputs: list[dict[str, Any]]
    if frame is not None and len(frame):
        try:
            predicted = np.asarray(model.predict(frame[names].head(SAMPLE_ROWS)))
            outputs = [{"name": "prediction", "dtype": str(predicted.dtype)}]
        except Exception as exc:  # noqa: BLE001 - a model that cannot predict on its data: say so, keep the inputs
            warnings.append(f"predict on {source} failed ({type(exc).__name__}: {exc}); output dtype unknown")
            outputs = [{"name": "prediction", "dtype": "unknown"}]
    else:
        classes = getattr(model, "classes_", None)
        outputs = [{"name": "prediction", "dtype": str(np.asarray(classes).dtype) if classes is not None else "unknown"}]
        if not tables:
            warnings.append("no training data known (no --run with data, no --signature-from): input dtypes unknown")
    signature = {"inputs": inputs, "outputs": outputs}
    if source:
        signature["from"] = source
    return signature, warnings
