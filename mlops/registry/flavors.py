"""Flavours and signatures: what kind of model an artifact is, and what it takes and gives.

- ``sklearn``: a pickle (or a ``joblib.dump`` file) whose globals come from ``sklearn``. The
  globals are read with ``pickletools``, which executes nothing, following the pickle's stack:
  the arguments of ``GLOBAL``/``INST`` and the two strings ``STACK_GLOBAL`` actually consumes
  (a string that merely looks like a module name, e.g. a dict value ``"sklearn"``, counts for
  nothing). Its signature comes from loading it with ``safe_load`` (``feature_names_in_``)
  plus the training data's dtypes, outputs from ``predict`` on a few training rows.
- ``file``: any other file; ``dir``: any directory. Their signature is None.

Two loaders, two trust levels:

- ``safe_load`` (``register``'s signature inference, on bytes nobody has vouched for yet): a
  restricted unpickler whose ``find_class`` admits only scikit-learn classes, numpy's and
  scipy.sparse's array and scalar types, and a short list of reconstruction functions; any
  other global (``os.system``, ``builtins.eval``, a user's own class) stops the load before it
  is called: ``UnsafePickle``, and the version gets no signature. A guard, not a sandbox.
- ``load_object`` (``load_model``, which a user calls on purpose): the full unpickler (or
  joblib's), on bytes whose hashes were just checked against the registry. It guarantees the
  bytes are the registered ones; it does not make a malicious registered pickle safe.

The bytes in memory are the ones hashed, so nothing can swap them between the check and the
load. scikit-learn, numpy and joblib are imported only here, lazily.
"""

from __future__ import annotations

import builtins
import bz2
import hashlib
import importlib
import io
import lzma
import pickle
import pickletools
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CorruptObjectError, MissingObjectError, UsageError, one_line
from ..store.hashing import hash_bytes

SKLEARN, FILE, DIR = "sklearn", "file", "dir"
PICKLE, JOBLIB = "pickle", "joblib"
SAMPLE_ROWS = 5
MAX_SCAN = 64 << 20  # opcodes are read from at most this many bytes
JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")

_STRING_OPS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
)
_MARK, _OTHER = object(), object()


def pickle_globals(data: bytes) -> list[tuple[str, str]] | None:
    """The (module, name) pairs a pickle imports, in order, read without running anything;
    None when the bytes do not start like a pickle.

    A small symbolic run of the pickle machine: strings, the memo and marks are tracked, every
    other value is a placeholder, so ``STACK_GLOBAL`` yields exactly the two strings it pops
    (pushed just before, or fetched from the memo). A stream that stops parsing (joblib's raw
    array bytes, damage) yields the globals read up to there.
    """
    if data[:1] != b"\x80" and data[:1] not in (b"(", b"c", b"]", b"}"):
        return None
    found: list[tuple[str, str]] = []
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(data[:MAX_SCAN])):
            name = opcode.name
            if name == "STOP":
                break
            if name in _STRING_OPS:
                stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
            elif name in ("GLOBAL", "INST"):
                module, _, qualname = str(arg).partition(" ")
                found.append((module, qualname))
                _effect(opcode, stack)
            elif name == "STACK_GLOBAL":
                qualname, module = stack.pop(), stack.pop()
                if isinstance(module, str) and isinstance(qualname, str):
                    found.append((module, qualname))
                else:
                    found.append(("?", "?"))  # built at run time: unknown, never a sklearn proof
                stack.append(_OTHER)
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg, _OTHER))
            elif name == "DUP":
                stack.append(stack[-1])
            elif name == "MARK":
                stack.append(_MARK)
            else:
                _effect(opcode, stack)
    except Exception:  # noqa: BLE001 - bytes the machine cannot follow further: keep what was read
        return found
    return found


def _effect(opcode: Any, stack: list[Any]) -> None:
    """Apply an opcode's documented stack effect with placeholders (IndexError: malformed)."""
    before = opcode.stack_before
    if pickletools.markobject in before:
        while stack[-1] is not _MARK:
            stack.pop()
        stack.pop()
        for _ in range(before.index(pickletools.markobject)):
            stack.pop()
    else:
        for _ in before:
            stack.pop()
    stack.extend(_OTHER for _ in opcode.stack_after)


def pickle_modules(data: bytes) -> set[str] | None:
    """The modules a pickle imports (see ``pickle_globals``); None when it is not a pickle."""
    found = pickle_globals(data)
    return None if found is None else {module for module, _ in found}


# --- joblib --------------------------------------------------------------------------------------

# joblib.dump(compress=...) writes a plain compressed stream of the pickle: recognised by magic
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x78\x01", "zlib"),
    (b"\x78\x5e", "zlib"),
    (b"\x78\x9c", "zlib"),
    (b"\x78\xda", "zlib"),
)


def _decompressor(data: bytes) -> Any | None:
    for magic, kind in _COMPRESSED:
        if data.startswith(magic):
            if kind in ("gzip", "zlib"):
                return zlib.decompressobj(31 if kind == "gzip" else 15)
            if kind == "bz2":
                return bz2.BZ2Decompressor()
            return lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
    return None


def _inflate(data: bytes, limit: int | None) -> bytes | None:
    """The decompressed bytes (at most ``limit``) of a joblib-compressed file, else None."""
    engine = _decompressor(data)
    if engine is None:
        return None
    try:
        if limit is None:
            return engine.decompress(data)  # type: ignore[no-any-return]
        return engine.decompress(data, limit)  # type: ignore[no-any-return]
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
        return None


def _inflated_pickle(data: bytes, limit: int | None) -> bytes | None:
    """The decompressed bytes of a compressed pickle (joblib's ``compress=``), else None.
    Checked before the pickle sniff: an lzma header starts with ``]``, a pickle opcode too."""
    inner = _inflate(data, limit)
    return inner if inner is not None and pickle_globals(inner[:64]) is not None else None


def serialization(data: bytes) -> str | None:
    """``pickle`` for bytes ``pickle.loads`` reads, ``joblib`` for a ``joblib.dump`` file
    (numpy arrays written raw between the opcodes, or a compressed stream), else None."""
    if _inflated_pickle(data[:MAX_SCAN], 1 << 16) is not None:
        return JOBLIB
    found = pickle_globals(data[:MAX_SCAN])
    if found is None:
        return None
    return JOBLIB if JOBLIB_WRAPPER in found else PICKLE


def _plain(data: bytes) -> bytes:
    """A joblib file's pickle stream: decompressed if it was compressed."""
    inner = _inflated_pickle(data, None)
    return data if inner is None else inner


def _globals_of(data: bytes) -> list[tuple[str, str]] | None:
    inner = _inflated_pickle(data, MAX_SCAN)
    return pickle_globals(inner if inner is not None else data)


def imported_modules(path: Path) -> set[str]:
    """The modules a pickle or joblib file imports (read from its opcodes, nothing run); empty for other files."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_SCAN)
    found = _globals_of(data)
    if found is None:
        return set()
    modules = {module for module, _ in found}
    if serialization(data) == JOBLIB:
        modules.add("joblib")  # loading it needs joblib even when no global names it
    return modules


def detect_flavor(path: Path, kind: str) -> str:
    """``sklearn`` for a pickle or joblib file importing scikit-learn, else ``file`` or ``dir``."""
    if kind == "dir":
        return DIR
    with open(path, "rb") as handle:
        data = handle.read(MAX_SCAN)
    found = _globals_of(data)
    if found and any(m == "sklearn" or m.startswith("sklearn.") for m, _ in found):
        return SKLEARN
    return FILE


def verified_bytes(path: Path, *, digest: str, sha256: str | None, what: str) -> bytes:
    """The file's bytes, read once and checked against both recorded hashes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingObjectError(
            f"{what}: its artifact {digest} is not in the cache",
            hint="run 'mlops pull' (or 'mlops fetch')",
            object=digest,
        ) from None
    if hash_bytes(data) != digest or (sha256 is not None and hashlib.sha256(data).hexdigest() != sha256):
        raise CorruptObjectError(
            f"{what}: the artifact's bytes do not match the hash the registry recorded; refusing to load it",
            hint="run 'mlops verify', then 'mlops pull' to fetch a good copy",
            object=digest,
        )
    return data


def load_object(data: bytes, what: str) -> Any:
    """The full load (``load_model``): pickle, or joblib for a joblib file. Runs what the
    pickle names: only for bytes already checked against the registry, loaded on purpose."""
    try:
        if serialization(data) == JOBLIB:
            try:
                import joblib
            except ModuleNotFoundError:
                raise UsageError(
                    f"{what}: a joblib file; loading it needs the Python module 'joblib'", hint="pip install joblib"
                ) from None
            return joblib.load(io.BytesIO(data))
        return pickle.loads(data)  # noqa: S301 - the bytes were just checked against the registry
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"{what}: loading it needs the Python module '{exc.name}'", hint=f"pip install {exc.name}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a pickle that does not load is bad input, named
        raise UsageError(f"{what}: could not unpickle the artifact: {type(exc).__name__}: {exc}") from None


# --- the restricted loader -------------------------------------------------------------------------


class UnsafePickle(Exception):
    """``safe_load`` met a global outside its allowlist (nothing it names was called)."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


SAFE_BUILTINS = frozenset(
    {
        "object",
        "bool",
        "int",
        "float",
        "complex",
        "str",
        "bytes",
        "bytearray",
        "tuple",
        "list",
        "dict",
        "set",
        "frozenset",
        "slice",
        "range",
    }
)
SAFE_FUNCTIONS = frozenset(
    {
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__randomstate_ctor"),
    }
)


def _allowed(module: str, name: str) -> Any:
    """What ``find_class`` may return for (module, name), or raise ``UnsafePickle``.

    Nothing is imported before the module name passes (importing can run code). Then the
    object itself must be one of: a builtin type from a short list; a function from
    ``SAFE_FUNCTIONS``; a class defined in scikit-learn (its ``__module__``, not merely the
    module it was reached through, so ``sklearn.x.Popen`` re-exported from subprocess fails),
    or Cython's ``__pyx_unpickle_*``/``newObj`` helpers there; numpy's ``ndarray`` (not its
    subclasses: ``memmap`` opens files), dtypes, scalar types and random generators; a
    scipy.sparse class. Dotted names (attribute chains) are refused.
    """
    if "." in name or not name:
        raise UnsafePickle(module, name)
    if module in ("builtins", "__builtin__"):
        if name in SAFE_BUILTINS:
            return getattr(builtins, name)
        raise UnsafePickle(module, name)
    root = module.split(".")[0]
    if (module, name) not in SAFE_FUNCTIONS and not (
        root in ("sklearn", "numpy") or module == "scipy.sparse" or module.startswith("scipy.sparse.")
    ):
        raise UnsafePickle(module, name)
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise UnsafePickle(module, name) from None
    if (module, name) in SAFE_FUNCTIONS:
        return obj
    defined = str(getattr(obj, "__module__", "") or "")
    if root == "sklearn":
        if isinstance(obj, type) and defined.startswith("sklearn."):
            return obj
        if (
            callable(obj)
            and (name == "newObj" or name.startswith("__pyx_unpickle_"))
            and defined.startswith("sklearn.")
        ):
            return obj
    elif root == "numpy":
        import numpy as np

        if isinstance(obj, type) and (
            obj is np.ndarray or issubclass(obj, (np.dtype, np.generic)) or defined.startswith("numpy.random.")
        ):
            return obj
        if callable(obj) and name.startswith("__pyx_unpickle_") and defined.startswith("numpy.random."):
            return obj
    elif isinstance(obj, type) and defined.startswith("scipy.sparse."):
        return obj
    raise UnsafePickle(module, name)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _allowed(module, name)


def _joblib_safe_load(stream: bytes) -> Any:
    """joblib's own unpickler (it reads the raw array bytes), with the same allowlist; its
    array wrapper is replaced by one whose object arrays are read restricted too (older joblib
    read them with a plain ``pickle.load``)."""
    from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

    class SafeArrayWrapper(NumpyArrayWrapper):  # type: ignore[misc]
        def read_array(self, unpickler: Any, *args: Any, **kwargs: Any) -> Any:
            if self.dtype.hasobject:  # a nested pickle of Python objects
                return _RestrictedUnpickler(unpickler.file_handle).load()
            return super().read_array(unpickler, *args, **kwargs)

    class Restricted(NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == JOBLIB_WRAPPER:
                return SafeArrayWrapper
            return _allowed(module, name)

    handle = io.BytesIO(stream)
    try:
        unpickler = Restricted("", handle, ensure_native_byte_order=True)  # mmap_mode stays None: no file is mapped
    except TypeError:  # joblib before ensure_native_byte_order
        unpickler = Restricted("", handle)
    return unpickler.load()


def safe_load(data: bytes, what: str) -> Any:
    """Load a pickle or joblib file through the allowlist (``_allowed``): ``UnsafePickle`` names
    the first global outside it, before anything it names is called."""
    try:
        if serialization(data) == JOBLIB:
            try:
                return _joblib_safe_load(_plain(data))
            except ModuleNotFoundError as exc:
                if exc.name == "joblib":
                    raise UsageError(
                        f"{what}: a joblib file; reading it needs the Python module 'joblib'", hint="pip install joblib"
                    ) from None
                raise
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except (UnsafePickle, UsageError):
        raise
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"{what}: loading it needs the Python module '{exc.name}'", hint=f"pip install {exc.name}"
        ) from None
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
            return pd.read_csv(
                path, sep="\t" if suffix == ".tsv" else ",", nrows=rows, usecols=list(columns) if columns else None
            )
    except (ValueError, OSError) as exc:
        raise UsageError(f"{name}: cannot read it as a table: {exc}") from None
    raise UsageError(f"{name}: not a table mlops can read", hint="a .csv, .tsv or .parquet file")


def table_files(files: Sequence[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The CSV/Parquet files among (name, path), training files first."""
    tables = [(n, p) for n, p in files if Path(n).suffix.lower() in (".csv", ".tsv", ".parquet", ".pq")]
    return sorted(tables, key=lambda item: (0 if "train" in Path(item[0]).name.lower() else 1, item[0]))


def _columns(path: Path, name: str) -> list[str]:
    return [str(c) for c in read_frame(path, name, rows=1).columns]


def sample_prediction_dtype(model: Any, frame: Any, source: str, warnings: list[str]) -> str:
    """The dtype of ``model.predict`` on the sample's first rows. A model that cannot take nulls (most
    of scikit-learn's) is tried again on the first rows without any; a failure is one warning line
    (scikit-learn's messages span several) and the dtype ``unknown``."""
    import numpy as np

    head = frame.head(SAMPLE_ROWS)
    tries = [head]
    if head.isna().to_numpy().any():
        complete = frame.dropna().head(SAMPLE_ROWS)
        if len(complete):
            tries.append(complete)
    failure: Exception | None = None
    for rows in tries:
        try:
            return str(np.asarray(model.predict(rows)).dtype)
        except Exception as exc:  # noqa: BLE001 - a model that cannot predict on its data: say so, keep the inputs
            failure = failure or exc
    assert failure is not None
    skipped = " (also on its rows without nulls)" if len(tries) > 1 else ""
    warnings.append(
        f"predict on {source} failed{skipped} ({type(failure).__name__}: {one_line(failure, 200)}); "
        "output dtype unknown"
    )
    return "unknown"


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
        outputs = [{"name": "prediction", "dtype": sample_prediction_dtype(model, frame[names], str(source), warnings)}]
    else:
        classes = getattr(model, "classes_", None)
        outputs = [
            {"name": "prediction", "dtype": str(np.asarray(classes).dtype) if classes is not None else "unknown"}
        ]
        if not tables:
            warnings.append("no training data known (no --run with data, no --signature-from): input dtypes unknown")
    signature = {"inputs": inputs, "outputs": outputs}
    if source:
        signature["from"] = source
    return signature, warnings
