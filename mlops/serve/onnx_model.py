"""A scikit-learn version's ONNX form, served by onnxruntime: no scikit-learn, SciPy or pandas in
the server.

``mlops export model REF --onnx`` (``exporters/onnx.py``) compiles the registered pickle with
skl2onnx, checks that the compiled form answers like the pickle on real rows, and puts it in the
bundle as ``compiled/model.onnx`` beside the pickle, described in model.json's ``compiled``::

    {"format": "onnx", "path": "compiled/model.onnx",
     "inputs": [{"name": "plan", "element": "string", "columns": ["plan"]}, ...],
     "label": "label", "probabilities": "probabilities", "classes": [0, 1], ...}

Each ONNX input takes one or more request columns (a model fitted on a plain array takes every
column stacked in one ``[rows, n]`` tensor). ``OnnxModel`` answers the serving interface
(``predict``, ``predict_proba``, ``classes_``) from a mapping of column lists (what the server
has after the signature check, so no DataFrame is built) or from a DataFrame.

The description is received content (the manifest that covers it can be rewritten by whoever
rewrites the file): ``describe`` checks its shape before anything is built from it, and the ONNX
bytes are checked against the manifest's SHA-256 once more as they are read (``BundleSource``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ONNX = "onnx"
COMPILED_PATH = "compiled/model.onnx"
#: the tensor element types a compiled input may take: (the numpy dtype it is fed as, the graph's tensor type)
ELEMENTS = {
    "string": ("object", "tensor(string)"),
    "float": ("float32", "tensor(float)"),
    "double": ("float64", "tensor(double)"),
    "int64": ("int64", "tensor(int64)"),
}
MAX_INPUTS = 10_000


class CompiledFormError(ValueError):
    """model.json's ``compiled`` entry is not one mlops wrote (the message says what)."""


@dataclass(frozen=True)
class CompiledInput:
    name: str  # the ONNX graph's input
    element: str  # a key of ELEMENTS
    columns: tuple[str, ...]  # the request columns fed to it, in order
    # where the pickle refuses what the graph would quietly encode, the form refuses it too (ValueError,
    # a 500 like the pickle's): a text value outside these categories (an encoder with handle_unknown="error")
    categories: frozenset[str] | None = None
    nulls: bool = True  # False: the pickle raises on a missing number (NaN), so this input does too


@dataclass(frozen=True)
class CompiledForm:
    path: str
    inputs: tuple[CompiledInput, ...]
    label: str  # the output holding predict()'s answer
    probabilities: str | None  # the output holding predict_proba's, for a classifier
    classes: tuple[Any, ...] | None


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        raise CompiledFormError(f"{what} is not a list of names")
    if not all(isinstance(v, str) and 0 < len(v) <= 1000 for v in value):
        raise CompiledFormError(f"{what} holds something that is not a name")
    return tuple(value)


def describe(entry: Any) -> CompiledForm:
    """The compiled form model.json describes; CompiledFormError when the entry is malformed."""
    if not isinstance(entry, Mapping) or entry.get("format") != ONNX:
        raise CompiledFormError("is not an ONNX form mlops wrote")
    if entry.get("path") != COMPILED_PATH:
        raise CompiledFormError(f"names {str(entry.get('path'))[:80]!r} instead of {COMPILED_PATH}")
    raw_inputs = entry.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs or len(raw_inputs) > MAX_INPUTS:
        raise CompiledFormError("lists no inputs")
    inputs = []
    for item in raw_inputs:
        if not isinstance(item, Mapping) or item.get("element") not in ELEMENTS:
            raise CompiledFormError("has an input without a known element type")
        (name,) = _names([item.get("name")], "an input's name")
        categories = item.get("categories")
        if categories is not None:
            categories = frozenset(_names(categories, f"input {name}'s categories"))
        if not isinstance(item.get("nulls", True), bool):
            raise CompiledFormError(f"input {name} says neither true nor false of nulls")
        columns = _names(item.get("columns"), f"input {name}'s columns")
        inputs.append(CompiledInput(name, str(item["element"]), columns, categories, item.get("nulls", True)))
    (label,) = _names([entry.get("label")], "the label output")
    probabilities = entry.get("probabilities")
    if probabilities is not None:
        (probabilities,) = _names([probabilities], "the probabilities output")
    classes = entry.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or not classes
        or len(classes) > MAX_INPUTS
        or not all(isinstance(c, str | int | float | bool) for c in classes)
    ):
        raise CompiledFormError("lists classes that are not plain values")
    return CompiledForm(COMPILED_PATH, tuple(inputs), label, probabilities, tuple(classes) if classes else None)


#: the oldest onnxruntime that refuses a model's external-data references outside its folder when the model is
#: loaded from bytes (microsoft/onnxruntime#27430 and #28709): a bundle's form cannot read a file it does not list
MIN_ONNXRUNTIME = "1.30"


def session_options(threads: int = 1) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # one request batch at a time per model (the server's batcher): threads beyond one per
    # call only contend with the event loop and the other workers on a small pod
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # fatal only: a refused input is the server's to report in its own log, not onnxruntime's (coloured) lines
    options.log_severity_level = 4
    return options


def runtime_too_old() -> str:
    """The installed onnxruntime's version when it predates MIN_ONNXRUNTIME, else ""."""
    import onnxruntime
    from packaging.version import Version

    return onnxruntime.__version__ if Version(onnxruntime.__version__) < Version(MIN_ONNXRUNTIME) else ""


def load_session(data: bytes, threads: int = 1) -> Any:
    """An onnxruntime session of ONNX bytes (already checked against what lists them)."""
    import onnxruntime

    return onnxruntime.InferenceSession(data, session_options(threads), providers=["CPUExecutionProvider"])


def _width(shape: Any) -> int | None:
    """The second dimension of a graph tensor's shape when it is a fixed number."""
    return shape[1] if isinstance(shape, list | tuple) and len(shape) == 2 and isinstance(shape[1], int) else None


class OnnxModel:
    """A compiled form behind the serving interface (predict, predict_proba, classes_)."""

    #: the server hands this model the checked request columns, not a DataFrame (runtime.py)
    mlops_takes_columns = True
    #: what V2 model metadata answers as the platform: Triton's and KServe's name for an onnxruntime model
    mlops_platform = "onnxruntime_onnx"
    #: what /metadata answers as the runtime (a pickle or a class model: "python")
    mlops_runtime = "onnxruntime"

    def __init__(self, form: CompiledForm, session: Any) -> None:
        """``session``: an onnxruntime InferenceSession of the form's bytes (``load_session``)."""
        self.session = session
        self.form = form
        self._last: tuple[Any, list[Any]] | None = None  # the rows of the last run and its outputs
        self._check_against_graph()
        self.outputs = [form.label, *([form.probabilities] if form.probabilities else [])]
        # skl2onnx writes True/False classes as 1/0 and 0.0/1.0 as 0/1: the answer is in the pickle's type
        # (a JSON true, or 1.0), never the graph's
        self._label_type: Any = None
        if form.classes is not None and all(isinstance(c, bool) for c in form.classes):
            self._label_type = bool
        elif form.classes is not None and all(isinstance(c, float) for c in form.classes):
            self._label_type = float
        if form.classes is not None:
            import numpy as np

            self.classes_ = np.asarray(form.classes)
        if form.probabilities is None:
            self.predict_proba = None  # type: ignore[assignment]

    @property
    def mlops_numeric_columns(self) -> frozenset[str]:
        """The request columns the form takes as numbers (a signature without dtypes checks them as such)."""
        return frozenset(c for item in self.form.inputs if item.element != "string" for c in item.columns)

    def _check_against_graph(self) -> None:
        """The description must say what the graph is: each input's name, type and width, the outputs it
        names, and as many classes as the probabilities have columns (CompiledFormError otherwise)."""
        form = self.form
        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        graph_outputs = {o.name: o for o in self.session.get_outputs()}
        if {i.name for i in form.inputs} != set(graph_inputs):
            raise CompiledFormError("does not name the inputs of compiled/model.onnx")
        for item in form.inputs:
            found = graph_inputs[item.name]
            width = _width(found.shape)
            if found.type != ELEMENTS[item.element][1] or width not in (None, len(item.columns)):
                raise CompiledFormError(f"does not describe input {item.name} of compiled/model.onnx as it is")
        if form.label not in graph_outputs or (form.probabilities and form.probabilities not in graph_outputs):
            raise CompiledFormError("names outputs compiled/model.onnx does not have")
        if form.probabilities and form.classes is not None:
            width = _width(graph_outputs[form.probabilities].shape)
            if width is not None and width != len(form.classes):
                raise CompiledFormError("lists another number of classes than the probabilities have")

    def _feeds(self, rows: Any) -> dict[str, Any]:
        import numpy as np

        feeds: dict[str, Any] = {}
        for item in self.form.inputs:
            dtype = ELEMENTS[item.element][0]
            if not isinstance(rows, Mapping):  # a DataFrame (a Python caller): its columns as they are
                given = rows[list(item.columns)].to_numpy()
            elif item.element == "string":
                given = np.array([[str(v) for v in rows[c]] for c in item.columns], dtype=object).T
            else:  # a null reaches here only in a number column (the signature's rule): NaN, as pandas has it
                given = np.array([[np.nan if v is None else v for v in rows[c]] for c in item.columns]).T
            given = given.reshape(-1, len(item.columns))
            with np.errstate(over="ignore", invalid="ignore"):  # past float32: refused just below, by name
                feeds[item.name] = given.astype(dtype)
            _refuse_as_the_pickle_does(item, feeds[item.name], given)
        return feeds

    def _run(self, rows: Any) -> list[Any]:
        last = self._last
        if last is not None and last[0] is rows:
            return last[1]
        answers = self.session.run(self.outputs, self._feeds(rows))
        # one run gives both outputs: the server's request log asks for the probabilities of the rows it
        # just predicted (runtime.py), which then cost nothing. A tuple swap: another thread's rows miss it.
        self._last = (rows, answers)
        return answers

    def predict(self, rows: Any) -> Any:
        label = self._run(rows)[0]
        label = label.ravel() if label.ndim > 1 and label.shape[1] == 1 else label
        return label.astype(self._label_type) if self._label_type is not None else label

    def predict_proba(self, rows: Any) -> Any:
        import numpy as np

        # float32 sums of a forest's votes land a hair outside [0, 1] (-1.2e-07, 1.0000001): a probability is not
        return np.clip(self._run(rows)[1], 0.0, 1.0)


def _refuse_as_the_pickle_does(item: CompiledInput, feed: Any, given: Any) -> None:
    """Raise where the pickle raises on this input (scikit-learn's own words), or where the graph could not
    answer as the pickle does: a number past float32's range, which the cast to the form's input turned into
    infinity (``given``: the values before that cast)."""
    import numpy as np

    if item.categories is not None:
        unknown = sorted({str(v) for v in feed.ravel().tolist()} - item.categories)
        if unknown:
            raise ValueError(f"Found unknown categories {unknown[:5]} in column {item.columns[0]!r} during transform")
    if item.element == "string":
        return
    wide = np.asarray(given, dtype=np.float64).reshape(feed.shape)
    missing = np.isnan(wide)
    if not item.nulls and missing.any():
        raise ValueError(f"Input {item.columns[int(np.flatnonzero(missing.any(axis=0))[0])]!r} contains NaN")
    if item.element == "float":
        past = np.isinf(feed.astype(np.float64)) & np.isfinite(wide)
        if past.any():
            column = item.columns[int(np.flatnonzero(past.any(axis=0))[0])]
            raise ValueError(
                f"Input {column!r} holds a value past float32's range (about 3.4e38), which ONNX computes in"
            )
