"""`mlops export model REF --onnx`: a scikit-learn version compiled to ONNX, checked against its pickle.

A server of the pickle imports scikit-learn, SciPy and pandas before it answers: about a second
and 190 MiB before the first request, whatever the model's size. The ONNX form is served by
onnxruntime alone (``serve/onnx_model.py``): a tenth of that. The pickle stays in the bundle, byte
for byte, and remains the registered artifact; the compiled form is a second, derived file.

Compiling is trusted only once it is checked: skl2onnx converts the loaded pipeline (the
registered bytes, hash-checked and audit-checked by ``registry.load_model``), onnxruntime runs the
result on real rows (``--check-data FILE``, else the version's own training table from the
cache), and every answer must match the pickle's: the same label (value and type) on every row,
probabilities and predicted numbers within ``--tolerance`` (ONNX computes in float32). A model skl2onnx
cannot convert is a usage error (exit 2: export without ``--onnx``); a form that answers
differently is a failed check (exit 1) and no bundle is written. What was compared is kept in
model.json (``compiled.check``).

Where the pickle refuses an input the graph would quietly encode (a category no training row had,
with an encoder's handle_unknown="error"; a missing number a step refuses), the form refuses it
too; where the pickle answers such an input and the form would answer it otherwise (a tree's
missing-value branch), the form refuses it and a warning says so. A probe row of each finds out.

Input types come from the signature (the check rows are cast to them first), else from the rows:
text as ``string``, whole numbers as ``int64`` (then, if the converter or the check refuses that,
as ``float``), other numbers and booleans as ``float``. A pipeline
whose first step is a ColumnTransformer gets one ONNX input per column; any other model one
``[rows, n]`` float input of its columns in signature order.
"""

from __future__ import annotations

import warnings as pywarnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckFailed, UsageError, one_line
from ..repo.repo import Repo
from ..serve.onnx_model import COMPILED_PATH, ONNX, OnnxModel, describe, load_session

# how far a probability or a predicted number of the form may be from the pickle's (relative past 1):
# ONNX computes in float32, scikit-learn mostly in float64; a label must always be the same
DEFAULT_TOLERANCE = 1e-4
CHECK_ROWS = 1000
INSTALL_HINT = "pip install 'mlops[onnx]'"


@dataclass(frozen=True)
class Compiled:
    data: bytes  # compiled/model.onnx
    facts: dict[str, Any]  # model.json's "compiled" entry
    requirements: tuple[str, ...]  # what serving the form needs beyond mlops: onnxruntime
    warnings: tuple[str, ...] = ()  # inputs the form refuses where the pickle answers


def _require() -> tuple[Any, Any]:
    try:
        import onnxruntime  # noqa: F401 - the check runs the form
        import skl2onnx
        from skl2onnx.common import data_types
    except ImportError as exc:
        raise UsageError(
            f"--onnx needs skl2onnx and onnxruntime, which are not installed ({exc.name})", hint=INSTALL_HINT
        ) from None
    return skl2onnx, data_types


def _check_rows(repo: Repo, mv: Any, check_data: str | None, names: list[str]) -> tuple[Any, str]:
    """(up to CHECK_ROWS rows with the model's input columns, where they came from)."""
    from ..errors import MissingObjectError
    from ..registry import flavors
    from ..registry.artifacts import training_data

    if check_data is not None:
        # named by the file's name: the bundle records it, and the exporter's folders are nobody else's business
        tables = [(Path(check_data).name, Path(check_data))]
        if not Path(check_data).is_file():
            raise UsageError(f"--check-data {check_data}: no such file", hint="a .csv or .parquet file of input rows")
    else:
        try:
            tables = flavors.table_files(training_data(repo, mv))
        except MissingObjectError as exc:
            raise UsageError(
                f"{mv.ref()}: its training data is not in the cache ({exc.message}), so the ONNX form has no rows "
                "to be checked on",
                hint="run 'mlops pull', or give rows with --check-data FILE",
            ) from None
    for name, path in tables:
        frame = flavors.read_frame(path, name, rows=CHECK_ROWS)
        missing = [n for n in names if n not in frame.columns]
        if not missing and len(frame):
            return frame[names], name
        if check_data is not None:
            raise UsageError(
                f"--check-data {check_data}: " + (f"no column {missing[0]!r}" if missing else "no rows"),
                hint=f"the model takes {', '.join(names)}",
            )
    raise UsageError(
        f"{mv.ref()}: no training table with its input columns is recorded, so the ONNX form has no rows to be "
        "checked on",
        hint="give rows with --check-data FILE (.csv or .parquet)",
    )


def _input_names(model: Any, mv: Any) -> list[str]:
    names = [str(n) for n in getattr(model, "feature_names_in_", [])]
    if not names:
        names = [c["name"] for c in (mv.signature or {}).get("inputs", []) if isinstance(c, dict)]
    if not names:
        raise UsageError(
            f"{mv.ref()} records no input columns, so mlops cannot tell the ONNX form what it takes",
            hint="register it again with a signature (--signature-from FILE)",
        )
    return names


def _first_refused(model: Any, frame: Any) -> str:
    """ ", row N" for the first check row the pickle refuses alone (1 = the first row of data), else ""."""
    for position in range(len(frame)):
        try:
            model.predict(frame.iloc[position : position + 1])
        except Exception:  # noqa: BLE001 - this row is the one: named, the refusal said by the caller
            return f", row {position + 1}"
    return ""


def _step(model: Any, index: int) -> Any:
    """A pipeline's step at ``index`` (0: the first, -1: the estimator); any other model is its own step."""
    steps = getattr(model, "steps", None)
    return steps[index][1] if steps else model


def _named_columns(model: Any) -> bool:
    """Whether the model takes its columns by name (a pipeline that starts with a ColumnTransformer)."""
    return type(_step(model, 0)).__name__ == "ColumnTransformer"


def _typed(frame: Any, signature: Any, source: str) -> Any:
    """The check rows in the types the server hands the model: the signature's, where it records them (a CSV
    reads 20.0 as a whole number; the form's input must still take 20.9 as a number)."""
    from ..serve.signature import BOOLEAN, DATETIME, INTEGER, NUMBER, STRING, Signature

    recorded = Signature.from_dict(signature)
    typed = frame.copy()
    for column in recorded.inputs if recorded is not None else ():
        if column.name not in typed.columns:
            continue
        values = typed[column.name]
        if column.kind == NUMBER:
            typed[column.name] = values.astype("float64")
        elif column.kind == INTEGER:
            numbers = values.astype("float64")
            if numbers.isna().any() or (numbers % 1 != 0).any():
                raise UsageError(
                    f"{source}: column {column.name!r} holds missing or fractional values, but the model takes "
                    "whole numbers",
                    hint="give rows as the model takes them with --check-data FILE",
                )
            typed[column.name] = numbers.astype("int64")
        elif column.kind == BOOLEAN:
            typed[column.name] = values.astype(bool)
        elif column.kind == STRING:
            typed[column.name] = values.astype(object)
        elif column.kind == DATETIME:
            raise UsageError(
                f"column {column.name!r} is a date and time: the ONNX form takes text and numbers only",
                hint="export without --onnx (the pickle serves every column type)",
            )
    return typed


def _layouts(model: Any, frame: Any) -> list[list[dict[str, Any]]]:
    """The input layouts to try, in order: whole numbers as int64 first, then as float."""
    kinds = {}
    for column in frame.columns:
        dtype = frame[column].dtype
        if dtype.kind in "OSUT" or str(dtype) in ("category", "string", "str"):
            kinds[column] = "string"
        elif dtype.kind in "iu":
            kinds[column] = "int64"
        elif dtype.kind in "fb":
            kinds[column] = "float"
        else:
            raise UsageError(
                f"column {column!r} is {dtype}: the ONNX form takes text and numbers only",
                hint="export without --onnx (the pickle serves every column type)",
            )
    if not _named_columns(model):
        text = [c for c, k in kinds.items() if k == "string"]
        if text:
            raise UsageError(
                f"the model takes text column {text[0]!r} without a ColumnTransformer: "
                "its ONNX form takes numbers only",
                hint="export without --onnx",
            )
        return [[{"name": "X", "element": "float", "columns": list(frame.columns)}]]
    layouts = [[{"name": c, "element": k, "columns": [c]} for c, k in kinds.items()]]
    if "int64" in kinds.values():
        layouts.append(
            [{"name": c, "element": "float" if k == "int64" else k, "columns": [c]} for c, k in kinds.items()]
        )
    return layouts


UNSEEN = "\x00mlops: a value no training row had"


def _encoder_categories(model: Any, *, strict_only: bool) -> dict[str, list[str]]:
    """{column: the categories its encoder knows}; ``strict_only``: only encoders that raise on any other
    (handle_unknown="error")."""
    found: dict[str, list[str]] = {}
    for _, step, columns in getattr(_step(model, 0), "transformers_", ()):
        encoder = step.steps[0][1] if getattr(step, "steps", None) else step
        if not hasattr(encoder, "categories_") or not isinstance(columns, list):
            continue
        if strict_only and getattr(encoder, "handle_unknown", None) != "error":
            continue
        for column, categories in zip(columns, encoder.categories_, strict=False):
            found[str(column)] = [str(c) for c in categories]
    return found


def _refuse_input(item: dict[str, Any], known: dict[str, list[str]]) -> None:
    """Make the form refuse what this input's probe held (scikit-learn's ValueError, a 500)."""
    if item["element"] != "string":
        item["nulls"] = False
        return
    column = item["columns"][0]
    if column not in known:
        raise UsageError(
            f"mlops cannot read which values of {column!r} the model knows, so the ONNX form could not refuse "
            "the ones the pickle refuses or answers otherwise",
            hint="export without --onnx",
        )
    item["categories"] = known[column]


def _probes(model: Any, frame: Any, layout: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, Any]]:
    """Inputs the graph would encode where the pickle may not: a text value no row had, a missing number,
    each column in turn, on every check row. Where the pickle refuses it the layout's input is marked to
    refuse it too; the probes the pickle answers are returned, (input, column, rows), to be compared with
    the form's answers. An encoder that raises on an unknown category gives its input those categories."""
    strict = _encoder_categories(model, strict_only=True)
    probes = []
    for item in layout:
        if len(item["columns"]) == 1 and item["columns"][0] in strict:
            item["categories"] = strict[item["columns"][0]]  # text or whole numbers: refused by name, as sklearn does
        for column in item["columns"]:
            # whole numbers: the signature refuses nulls there before a model sees them; known categories:
            # any other value is refused by name already
            if frame[column].dtype.kind in "iu" or "categories" in item:
                continue
            rows = frame.copy()
            if item["element"] == "string":
                rows[column] = UNSEEN
            else:
                rows[column] = float("nan")
            try:
                model.predict(rows)
            except Exception:  # noqa: BLE001 - the pickle refuses it (scikit-learn says ValueError), however it says so
                _refuse_input(item, strict)
                break
            probes.append((item, column, rows))
    return probes


def _answered_otherwise(
    model: Any, compiled: OnnxModel, probes: list[tuple[dict[str, Any], str, Any]], tolerance: float
) -> list[str]:
    """Where the pickle answers a probe and the form would answer any of its rows otherwise (a tree's
    missing-value branch, an encoder's unseen category), the form refuses that input instead: a warning each."""
    warnings = []
    for item, column, rows in probes:
        difference = _difference(model, compiled, rows, tolerance)
        if not difference.rows:
            continue
        _refuse_input(item, _encoder_categories(model, strict_only=False))
        what = "a value no training row had" if item["element"] == "string" else "a missing value"
        warnings.append(
            f"{column}: the pickle answers {what} and the ONNX form would answer it otherwise on {difference.rows} "
            f"of {len(rows)} rows ({difference.shown}); the form refuses it instead (a 500), the pickle "
            "(--runtime pickle) answers it"
        )
    return warnings


def _convert(model: Any, layout: list[dict[str, Any]], skl2onnx: Any, data_types: Any) -> bytes:
    tensor = {
        "string": data_types.StringTensorType,
        "float": data_types.FloatTensorType,
        "int64": data_types.Int64TensorType,
    }
    types = [(i["name"], tensor[i["element"]]([None, len(i["columns"])])) for i in layout]
    final = _step(model, -1)
    # probabilities as one [rows, classes] tensor, not the list of maps ("ZipMap") ONNX gives by default;
    # a classifier without predict_proba (LinearSVC) takes no such option, but inside a Pipeline skl2onnx
    # still asks for one unless the estimator's options are given, empty
    options = {id(final): {"zipmap": False} if hasattr(final, "predict_proba") else {}}
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        return skl2onnx.to_onnx(model, initial_types=types, options=options).SerializeToString()


def _form(model: Any, layout: list[dict[str, Any]], data: bytes) -> tuple[dict[str, Any], OnnxModel]:
    """The form's model.json entry (its outputs read from the graph) and the form, on one session."""
    session = load_session(data)
    outputs = [o.name for o in session.get_outputs()]
    classes = getattr(model, "classes_", None)
    # the second output is probabilities only where the pickle has them (RidgeClassifier's are decision scores)
    probabilities = classes is not None and len(outputs) > 1 and callable(getattr(model, "predict_proba", None))
    entry: dict[str, Any] = {
        "format": ONNX,
        "path": COMPILED_PATH,
        "inputs": layout,
        "label": outputs[0],
        "probabilities": outputs[1] if probabilities else None,
        "classes": [c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else None,
    }
    return entry, OnnxModel(describe(entry), session)


@dataclass(frozen=True)
class Difference:
    rows: int  # rows answered differently: another label, or a number past the tolerance
    labels: int  # of which with another label
    shown: str  # the first such row, in words
    largest: float  # the largest difference of a probability or a predicted number, over every row


def _within(got: Any, expected: Any, tolerance: float) -> Any:
    """Per row: every number within ``tolerance`` of the pickle's, relative past 1 (absolute for probabilities)."""
    import numpy as np

    return (np.abs(got - expected) <= tolerance * np.maximum(1.0, np.abs(expected))).all(axis=1)


def _difference(model: Any, compiled: OnnxModel, frame: Any, tolerance: float) -> Difference:
    import numpy as np

    count = len(frame)
    # the form is fed as the server feeds it: the checked columns as lists, not a DataFrame
    columns = {c: [None if v != v else v for v in frame[c].tolist()] for c in frame.columns}
    want_labels = np.asarray(model.predict(frame)).reshape(count, -1)
    got_labels = np.asarray(compiled.predict(columns)).reshape(count, -1)
    if compiled.form.classes is None:  # a regressor: its predictions are the numbers compared
        other_label = np.zeros(count, dtype=bool)
        want, got = want_labels.astype(float), got_labels.astype(float)
    else:
        # value and type: a label 1 where the pickle says True is another answer (JSON true, not 1)
        other_label = np.array(
            [
                any(type(a) is not type(b) or a != b for a, b in zip(w, g, strict=True))
                for w, g in zip(want_labels.tolist(), got_labels.tolist(), strict=True)
            ],
            dtype=bool,
        )
        if compiled.form.probabilities is not None:  # probabilities (absolute: they lie in [0, 1])
            want = np.asarray(model.predict_proba(frame), dtype=float)
            got = np.asarray(compiled.predict_proba(columns), dtype=float)
        else:
            want = got = np.zeros((count, 0))
    differs = other_label | ~_within(got, want, tolerance)
    largest = float(np.abs(got - want).max(initial=0.0))
    rows = np.flatnonzero(differs)
    if not len(rows):
        return Difference(0, 0, "", largest)
    first = int(rows[0])
    # a row whose label differs is shown by its labels (its probabilities may be equal: a tie)
    sides = (want_labels, got_labels) if other_label[first] else (want, got)
    values = [[round(v, 6) if isinstance(v, float) else v for v in side[first].tolist()] for side in sides]
    what = "label " if other_label[first] else ""
    shown = f"row {first + 1}: {what}{values[0]} from the pickle, {what}{values[1]} from ONNX"
    return Difference(len(rows), int(other_label.sum()), shown, largest)


def compile_version(
    repo: Repo, mv: Any, *, check_data: str | None = None, tolerance: float = DEFAULT_TOLERANCE
) -> Compiled:
    """The version's ONNX form and its model.json entry, checked against the pickle (see the module)."""
    from .. import registry
    from ..registry import flavors

    if mv.flavor != flavors.SKLEARN:
        raise UsageError(
            f"{mv.ref()} is a {mv.flavor} model: --onnx compiles scikit-learn models",
            hint="export it without --onnx",
        )
    skl2onnx, data_types = _require()
    model = registry.load_model(mv, repo=repo)
    names = _input_names(model, mv)
    frame, source = _check_rows(repo, mv, check_data, names)
    frame = _typed(frame, mv.signature, source)
    try:
        model.predict(frame)
    except Exception as exc:  # noqa: BLE001 - the pickle's own refusal: no form can be checked on these rows
        raise UsageError(
            f"{source}{_first_refused(model, frame)}: the pickle itself refuses it ({one_line(exc)})",
            hint="give rows the model answers with --check-data FILE",
        ) from None
    failures: list[str] = []
    differed: Difference | None = None
    runtime_refusals = _runtime_errors()
    with pywarnings.catch_warnings():
        # scikit-learn's and numpy's warnings about the check rows and probes (an unknown category ignored, a
        # log of a negative number) are not the export's to print: the comparison says what matters
        pywarnings.simplefilter("ignore")
        for layout in _layouts(model, frame):
            probes = _probes(model, frame, layout)
            try:
                data = _convert(model, layout, skl2onnx, data_types)
            except Exception as exc:  # noqa: BLE001 - the converter refuses the model: its innermost words
                failures.append(one_line(_innermost(exc)))
                continue
            try:
                entry, compiled = _form(model, layout, data)
                difference = _difference(model, compiled, frame, tolerance)
                warnings = _answered_otherwise(model, compiled, probes, tolerance) if not difference.rows else []
            except runtime_refusals as exc:  # onnxruntime refuses what skl2onnx wrote: the pair does not fit
                failures.append(f"onnxruntime cannot run what skl2onnx wrote ({one_line(exc)})")
                continue
            except ValueError as exc:  # the form refuses a check row (a number past float32): no check on it
                raise UsageError(
                    f"{source}: the ONNX form refuses a row the pickle answers ({one_line(exc)})",
                    hint="give rows within what the form takes with --check-data FILE, or export without --onnx",
                ) from None
            if difference.rows:
                differed = difference
                continue
            import onnx
            import onnxruntime

            entry["check"] = {
                "rows": len(frame),
                "source": source,
                "tolerance": tolerance,
                "largest_difference": difference.largest,
            }
            entry["converted_with"] = {
                "skl2onnx": skl2onnx.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
            }
            return Compiled(data, entry, ("onnxruntime",), tuple(warnings))
    if differed is not None:
        failed = CheckFailed(
            f"{mv.ref()}: its ONNX form answers differently on {differed.rows} of {len(frame)} rows of {source} "
            f"({differed.shown}; largest difference {differed.largest:.3g}, tolerance {tolerance:g}); "
            "no bundle was written",
            hint=_accepting(differed),
            rows=differed.rows,
            largest_difference=differed.largest,
        )
        failed.report_printed = False  # no report before it: with --json the error is the document
        raise failed
    raise UsageError(
        f"{mv.ref()}: skl2onnx cannot compile {type(model).__name__}: {failures[0]}",
        hint="export without --onnx to serve the pickle itself",
    )


def _runtime_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception classes (Fail, InvalidGraph, ...): its refusals, apart from mlops' bugs."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    found = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return found or (RuntimeError,)


def _innermost(exc: BaseException) -> BaseException:
    """The exception at the bottom of a chain: skl2onnx wraps onnx's reason in a message of the whole node."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _accepting(difference: Difference) -> str:
    """What the user may do: export the pickle, or (only numbers differ) accept the difference knowingly."""
    import math

    pickle_itself = "export without --onnx to serve the pickle itself"
    if difference.labels or not 0 < difference.largest < 1:
        return pickle_itself
    exponent = math.floor(math.log10(difference.largest))
    ceiling = round(math.ceil(difference.largest / 10**exponent) * 10**exponent, -exponent)  # 0.0153 -> 0.02
    return (
        f"no label differs, only numbers: accept that knowingly with --tolerance {ceiling:g} (ONNX computes in "
        "float32; a tree ensemble's probability moves by one tree's vote where float32 takes the other branch of a "
        f"split), or {pickle_itself}"
    )
