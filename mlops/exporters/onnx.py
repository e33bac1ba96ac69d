"""`mlops export model REF --onnx`: a scikit-learn version compiled to ONNX, checked against its pickle.

A server of the pickle imports scikit-learn, SciPy and pandas before it answers: about a second
and 190 MiB before the first request, whatever the model's size. The ONNX form is served by
onnxruntime alone (``serve/onnx_model.py``): a tenth of that. The pickle stays in the bundle, byte
for byte, and remains the registered artifact; the compiled form is a second, derived file.

Compiling is trusted only once it is checked: skl2onnx converts the loaded pipeline (the
registered bytes, hash-checked and audit-checked by ``registry.load_model``), onnxruntime runs the
result on real rows (``--check-data FILE``, else the version's own training table from the
cache), and every answer must match the pickle's: the same label on every row, probabilities
and regression outputs within ``RTOL``/``ATOL`` (ONNX computes in float32). A model skl2onnx
cannot convert is a usage error (exit 2: export without ``--onnx``); a form that answers
differently is a failed check (exit 1) and no bundle is written. What was compared is kept in
model.json (``compiled.check``).

Input types come from the check rows: text as ``string``, whole numbers as ``int64`` (then, if
the converter or the check refuses that, as ``float``), other numbers as ``float``. A pipeline
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
from ..serve.onnx_model import COMPILED_PATH, ONNX, OnnxModel, describe

RTOL, ATOL = 1e-4, 1e-5  # float32 against float64: relative, and absolute near zero
CHECK_ROWS = 1000
INSTALL_HINT = "pip install 'mlops[onnx]'"


@dataclass(frozen=True)
class Compiled:
    data: bytes  # compiled/model.onnx
    facts: dict[str, Any]  # model.json's "compiled" entry
    requirements: tuple[str, ...]  # what serving the form needs beyond mlops: onnxruntime


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


def check_rows(repo: Repo, mv: Any, check_data: str | None, names: list[str]) -> tuple[Any, str]:
    """(up to CHECK_ROWS rows with the model's input columns, where they came from)."""
    from ..errors import MissingObjectError
    from ..registry import flavors
    from ..registry.artifacts import training_data

    if check_data is not None:
        tables = [(check_data, Path(check_data))]
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


def _named_columns(model: Any) -> bool:
    """Whether the model takes its columns by name (a pipeline that starts with a ColumnTransformer)."""
    steps = getattr(model, "steps", None)
    first = steps[0][1] if steps else model
    return type(first).__name__ == "ColumnTransformer"


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


def _strict_categories(model: Any) -> dict[str, list[str]]:
    """{column: the categories its encoder knows} for the encoders that raise on any other (handle_unknown="error")."""
    steps = getattr(model, "steps", None)
    first = steps[0][1] if steps else model
    found: dict[str, list[str]] = {}
    for _, step, columns in getattr(first, "transformers_", ()):
        encoder = step.steps[0][1] if getattr(step, "steps", None) else step
        if getattr(encoder, "handle_unknown", None) != "error" or not isinstance(columns, list):
            continue
        for column, categories in zip(columns, getattr(encoder, "categories_", ()), strict=False):
            found[str(column)] = [str(c) for c in categories]
    return found


def _probe(model: Any, frame: Any, layout: list[dict[str, Any]]) -> Any:
    """Where the pickle refuses an input the graph would encode (an unseen category, a missing number),
    mark the layout's input to refuse it too; rows the pickle does answer join the check. Returns the rows
    to check on."""
    import pandas as pd

    strict = _strict_categories(model)
    probes = []
    for item in layout:
        if item["element"] == "int64":
            continue  # the signature refuses nulls in whole-number columns before a model sees them
        row = frame.head(1).copy()
        for column in item["columns"]:
            if item["element"] == "string":
                row[column] = UNSEEN
            else:
                row[column] = row[column].astype("float64")
                row.loc[row.index[0], column] = float("nan")
        try:
            model.predict(row)
        except Exception:  # noqa: BLE001 - the pickle refuses the row (scikit-learn says ValueError), however it says so
            if item["element"] != "string":
                item["nulls"] = False
            elif item["columns"][0] in strict:
                item["categories"] = strict[item["columns"][0]]
            else:
                raise UsageError(
                    f"the pickle refuses values of {item['columns'][0]!r} it never saw, and mlops cannot read which "
                    "values it knows, so the ONNX form could not refuse the same ones",
                    hint="export without --onnx",
                ) from None
            continue
        probes.append(row)
    if not probes:
        return frame
    return pd.concat([frame, *probes], ignore_index=True)


def _convert(model: Any, layout: list[dict[str, Any]], skl2onnx: Any, data_types: Any) -> bytes:
    tensor = {
        "string": data_types.StringTensorType,
        "float": data_types.FloatTensorType,
        "int64": data_types.Int64TensorType,
    }
    types = [(i["name"], tensor[i["element"]]([None, len(i["columns"])])) for i in layout]
    final = model.steps[-1][1] if getattr(model, "steps", None) else model
    # probabilities as one [rows, classes] tensor, not the list of maps ("ZipMap") ONNX gives by default
    options = {id(final): {"zipmap": False}} if hasattr(final, "classes_") else None
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore")
        return skl2onnx.to_onnx(model, initial_types=types, options=options).SerializeToString()


def _form(model: Any, layout: list[dict[str, Any]], data: bytes) -> tuple[dict[str, Any], OnnxModel]:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    classes = getattr(model, "classes_", None)
    entry: dict[str, Any] = {
        "format": ONNX,
        "path": COMPILED_PATH,
        "inputs": layout,
        "label": outputs[0],
        "probabilities": outputs[1] if classes is not None and len(outputs) > 1 else None,
        "classes": [c.item() if hasattr(c, "item") else c for c in classes] if classes is not None else None,
    }
    return entry, OnnxModel(describe(entry), data)


def _difference(model: Any, compiled: OnnxModel, frame: Any) -> tuple[int, str, float]:
    """(rows answered differently, the first such row shown, the largest numeric difference)."""
    import numpy as np

    expected = np.asarray(model.predict(frame))
    got = np.asarray(compiled.predict(frame))
    classifier = compiled.form.probabilities is not None or compiled.form.classes is not None
    if classifier:
        if expected.dtype.kind in "OSU":
            got = got.astype(str)
            expected = expected.astype(str)
        differs = expected.reshape(-1) != got.reshape(-1)
        largest = 0.0
        if compiled.form.probabilities is not None and callable(getattr(model, "predict_proba", None)):
            gap = np.abs(np.asarray(model.predict_proba(frame), dtype=float) - compiled.predict_proba(frame))
            differs |= (gap > ATOL * 10).any(axis=1)  # 1e-4 of probability
            largest = float(gap.max(initial=0.0))
    else:
        expected = expected.astype(float).reshape(len(frame), -1)
        got = got.astype(float).reshape(len(frame), -1)
        close = np.isclose(got, expected, rtol=RTOL, atol=ATOL)
        differs = ~close.all(axis=1)
        largest = float(np.abs(got - expected).max(initial=0.0))
    rows = np.flatnonzero(differs)
    if not len(rows):
        return 0, "", largest
    first = int(rows[0])
    return (
        len(rows),
        f"row {first + 1}: {expected.reshape(len(frame), -1)[first].tolist()} from the pickle, "
        + (f"{got.reshape(len(frame), -1)[first].tolist()} from ONNX"),
        largest,
    )


def compile_version(repo: Repo, mv: Any, *, check_data: str | None = None) -> Compiled:
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
    frame, source = check_rows(repo, mv, check_data, names)
    failures: list[str] = []
    for layout in _layouts(model, frame):
        rows = _probe(model, frame, layout)
        try:
            data = _convert(model, layout, skl2onnx, data_types)
            entry, compiled = _form(model, layout, data)
            differing, shown, largest = _difference(model, compiled, rows)
        except Exception as exc:  # noqa: BLE001 - the converter's or the runtime's refusal, said in one line
            failures.append(one_line(exc))
            continue
        if differing:
            failures.append(f"answers differently on {differing} of {len(rows)} rows of {source} ({shown})")
            continue
        import onnx
        import onnxruntime

        entry["check"] = {"rows": len(rows), "source": source, "largest_difference": largest}
        entry["converted_with"] = {
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        }
        return Compiled(data, entry, ("onnxruntime",))
    differed = [f for f in failures if f.startswith("answers differently")]
    if differed:
        raise CheckFailed(
            f"{mv.ref()}: its ONNX form {differed[-1]}; no bundle was written",
            hint="export without --onnx to serve the pickle itself",
        )
    raise UsageError(
        f"{mv.ref()}: skl2onnx cannot compile {type(model).__name__}: {failures[0]}",
        hint="export without --onnx to serve the pickle itself",
    )
