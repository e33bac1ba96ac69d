"""The Python class flavor: a model is a class in a file of the user's, with artifacts beside it.

``mlops register churn src/model.py:ChurnModel --artifacts models/`` stores one folder artifact::

    mlops-python-model.json   {"format": 1, "code": "code/model.py", "class": "ChurnModel", "artifacts": "artifacts"}
    code/model.py             the module, snapshotted: the bytes read once, stored, and the only ones ever run
    artifacts/...             the --artifacts folder, file by file

The class needs ``predict(frame)`` (a pandas DataFrame in, a sequence of predictions out) and may
have ``load(artifacts_dir)`` (called once, with the snapshot's artifacts folder) and
``predict_proba(frame)``. It may import any installed library; the environment record of the
version names the distributions its module imports at top level.

Code runs only from the registered snapshot: ``load_python_model`` takes the folder the
registry materialized (every file rehashed against the registry's manifest first,
``artifacts.artifact_path``), reads the spec's names through ``mlops.paths``, and executes the
module's bytes from there. Like a pickle, registering code means trusting it: mlops checks that
it is the registered code, not that it is safe. At registration the code runs only when a sample
is given for the signature (``--signature-from``), from the same bytes that were stored.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import CorruptObjectError, InvalidPathError, UsageError
from ..formats import display_path, parse_json

PYTHON = "python"
SPEC_FILE = "mlops-python-model.json"
SPEC_FORMAT = 1
CLASS_PATH = re.compile(r"(?P<file>.+\.py):(?P<cls>[A-Za-z_][A-Za-z0-9_]*)")
MAX_CODE_BYTES = 4 << 20


def parse_class_path(text: str) -> tuple[str, str] | None:
    """(file, class) of ``src/model.py:ChurnModel``; None for a plain artifact path."""
    match = CLASS_PATH.fullmatch(str(text))
    return (match["file"], match["cls"]) if match else None


def imported_modules(code: bytes, where: str) -> set[str]:
    """The top-level modules the code imports (read from its syntax tree, nothing run)."""
    try:
        tree = ast.parse(code, filename=where)
    except SyntaxError as exc:
        raise UsageError(f"{where}:{exc.lineno}: not valid Python: {exc.msg}") from None
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def snapshot_files(
    code_file: Path, class_name: str, artifacts: Path | None
) -> tuple[dict[str, bytes | Path], bytes, list[str]]:
    """The folder artifact's files ({rel: bytes or a file to copy}), the module's bytes, and warnings
    about the class (``check_model_class``)."""
    if not code_file.is_file():
        raise InvalidPathError(f"{code_file}: no such Python file")
    if code_file.stat().st_size > MAX_CODE_BYTES:
        raise UsageError(f"{code_file}: larger than {MAX_CODE_BYTES} bytes; a model class lives in a small module")
    code = code_file.read_bytes()
    notes = check_model_class(code, code_file, class_name)
    code_rel = paths.check_relpath(f"code/{code_file.name}", where="the model's code file name")
    files: dict[str, bytes | Path] = {code_rel: code}
    if artifacts is not None:
        if not artifacts.is_dir():
            raise InvalidPathError(f"--artifacts {artifacts}: not a folder")
        for path in sorted(artifacts.rglob("*")):
            if path.is_symlink():
                raise InvalidPathError(f"--artifacts: {path} is a symlink; copy the file itself into the folder")
            if path.is_file():
                rel = paths.check_relpath(path.relative_to(artifacts).as_posix(), where=f"--artifacts {artifacts}")
                files[f"artifacts/{rel}"] = path
    spec = {"format": SPEC_FORMAT, "code": code_rel, "class": class_name, "artifacts": "artifacts"}
    files[SPEC_FILE] = (json.dumps(spec, indent=2) + "\n").encode()
    return files, code, notes


def _method_names(node: ast.ClassDef) -> set[str]:
    """What the class body defines: its functions and the names it assigns (``predict = _score``)."""
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.Assign):
            names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
            names.add(item.target.id)
    return names


def check_model_class(code: bytes, code_file: Path, class_name: str) -> list[str]:
    """At registration, from the syntax tree alone (nothing imported or run): the file defines the
    class and the class has ``predict``, itself or through a base class defined in the same file.
    A base class from elsewhere cannot be read without running code: accepted, with a warning.
    UsageError (exit 2) naming file:line otherwise; returns the warnings."""
    try:
        tree = ast.parse(code, filename=str(code_file))
    except SyntaxError as exc:
        raise UsageError(f"{code_file}:{exc.lineno}: not valid Python: {exc.msg}") from None
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    node = classes.get(class_name)
    if node is None:
        raise UsageError(
            f"{code_file}: defines no class {class_name}", hint=f"classes there: {', '.join(sorted(classes)) or 'none'}"
        )
    found: set[str] = set()
    outside: list[str] = []
    pending, seen = [node], set()
    while pending:
        current = pending.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        found |= _method_names(current)
        for base in current.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                pending.append(classes[base.id])
            elif not (isinstance(base, ast.Name) and base.id == "object"):
                outside.append(ast.unparse(base))
    if "predict" in found:
        return []
    where = f"{display_path(code_file)}:{node.lineno}"
    if outside:
        return [
            f"{where}: class {class_name} defines no predict(frame) itself; accepted since it may come from "
            f"{', '.join(outside)} (not read: defined outside the file)"
        ]
    raise UsageError(
        f"{where}: class {class_name} has no predict(frame) method"
        + (" (nor has a base class in the file)" if len(seen) > 1 else ""),
        hint="a Python class model needs predict(frame) (and may have load(artifacts_dir)); docs/registry.md",
    )


class PythonModel:
    """The user's object behind the serving interface: predict (and predict_proba when it has one)."""

    def __init__(self, instance: Any, where: str) -> None:
        self.instance = instance
        self.where = where
        if callable(getattr(instance, "predict_proba", None)):
            self.predict_proba = instance.predict_proba
            self.classes_ = getattr(instance, "classes_", None)

    def predict(self, frame: Any) -> Any:
        return self.instance.predict(frame)


def instantiate(code: bytes, code_path: Path, class_name: str, artifacts_dir: Path, what: str) -> PythonModel:
    """Run the module's ``code`` (the bytes given, nothing read again) and build the model from its class."""
    import hashlib
    import types

    module_name = f"mlops_model_{hashlib.sha256(code).hexdigest()[:16]}"
    module = types.ModuleType(module_name)
    module.__file__ = str(code_path)
    sys.modules[module_name] = module  # dataclasses and pickle look classes up by their module
    try:
        exec(compile(code, str(code_path), "exec"), module.__dict__)  # noqa: S102 - the registered, checked snapshot
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise UsageError(f"{what}: {code_path.name} defines no class {class_name}")
        instance = cls()
        if callable(getattr(instance, "load", None)):
            instance.load(str(artifacts_dir))
    except UsageError:
        raise
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"{what}: its code imports '{exc.name}', which is not installed", hint=f"pip install {exc.name}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's code failed: one line, named
        raise UsageError(f"{what}: loading {class_name} failed: {type(exc).__name__}: {exc}") from None
    if not callable(getattr(instance, "predict", None)):
        raise UsageError(f"{what}: {class_name} has no predict(frame) method")
    return PythonModel(instance, what)


def load_python_model(folder: Path, what: str) -> PythonModel:
    """The model from a materialized, checked snapshot folder (``artifacts.artifact_path``)."""
    spec_path = folder / SPEC_FILE
    try:
        spec = parse_json(spec_path.read_bytes(), f"{what}: {SPEC_FILE}")
    except FileNotFoundError:
        raise CorruptObjectError(f"{what}: the snapshot has no {SPEC_FILE}") from None
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("class"), str)
        or not CLASS_PATH.fullmatch(f"x.py:{spec['class']}")
    ):
        raise CorruptObjectError(f"{what}: {SPEC_FILE} names no class")
    code_rel = paths.check_relpath(spec.get("code"), where=f"{what}: {SPEC_FILE}")
    artifacts_rel = paths.check_relpath(spec.get("artifacts", "artifacts"), where=f"{what}: {SPEC_FILE}")
    code_path = paths.check_readable(folder, code_rel, where=f"{what}: {SPEC_FILE}")
    code = code_path.read_bytes()
    return instantiate(code, code_path, spec["class"], folder / artifacts_rel, what)


def frame_signature(model: Any, frame: Any, source: str) -> tuple[dict[str, Any], list[str]]:
    """Inputs from a sample frame's columns and dtypes; the output's dtype from predict on its first rows."""
    from .flavors import sample_prediction_dtype

    warnings: list[str] = []
    inputs = [{"name": str(c), "dtype": str(frame[c].dtype)} for c in frame.columns]
    outputs = [{"name": "prediction", "dtype": sample_prediction_dtype(model, frame, source, warnings)}]
    return {"inputs": inputs, "outputs": outputs, "from": source}, warnings


def load_for_signature(code: bytes, code_file: Path, class_name: str, artifacts: Path | None) -> PythonModel:
    """At registration: the model from the bytes just stored, with the given artifacts folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as empty:
        return instantiate(code, code_file, class_name, artifacts or Path(empty), f"{code_file}:{class_name}")
