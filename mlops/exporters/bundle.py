"""`mlops export model`: one registered version as a folder that serves anywhere (serve/bundle.py
describes the layout and how `mlops serve --model-dir` checks it).

``plan_bundle`` reads the registry (the artifact through ``artifact_path``: trusted and rehashed
first) and returns every file of the bundle; ``write_bundle`` places them in a new folder in one
rename, the manifest written last inside it. The requirements pin two sets:

- the artifact's libraries at the versions its registration recorded (``registry/environment.py``:
  the distributions its pickle imports, and what they require); a version registered before
  mlops recorded environments gets this environment's versions, and a warning says so;
- mlops' own serving runtime (its dependencies, recursively) at the versions installed where the
  export runs, since that is the mlops the bundle was checked with.

Where the two disagree, the artifact's pin wins (it is what the model was made with) and a
warning names the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from ..fsio import atomic_dir
from ..repo.repo import Repo
from ..serve.bundle import ARTIFACT_DIR, BUNDLE_FORMAT, CARD, FACTS, MANIFEST, REQUIREMENTS

MLOPS_DIST = "mlops"


@dataclass(frozen=True)
class BundlePlan:
    ref: str  # churn:3
    name: str
    version: int
    files: dict[str, bytes | Path]  # rel -> the bytes, or a checked file to copy
    requirements: dict[str, str]  # the pins of requirements.txt (mlops itself apart)
    python: str  # the interpreter version the artifact was registered with
    warnings: tuple[str, ...] = ()
    compiled: dict[str, Any] | None = None  # with --onnx: the form's path and what it was checked on


@dataclass(frozen=True)
class BundleResult:
    path: str
    ref: str
    digest: str  # SHA-256 of the manifest: `mlops serve --model-dir --expect-digest`
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    requirements: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    compiled: dict[str, Any] | None = None  # with --onnx: the form's path and what it was checked on

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref": self.ref,
            "digest": self.digest,
            "files": self.files,
            "requirements": self.requirements,
            "warnings": list(self.warnings),
            "compiled": self.compiled,
        }


def _pins(mv: Any, artifact: Path, warnings: list[str]) -> tuple[dict[str, str], str]:
    """(requirements.txt's pins, the python version the artifact was registered with)."""
    from ..registry import flavors
    from ..registry.environment import capture, check_packages, closure, normalized

    recorded = mv.environment or {}
    if not recorded:
        warnings.append(
            f"{mv.ref()} was registered before mlops recorded environments: its libraries are pinned "
            "to the versions installed here"
        )
        recorded = capture(flavors.imported_modules(artifact) if artifact.is_file() else set())
    try:
        model_pins = check_packages(recorded.get("packages", {}), where=f"{mv.ref()}'s environment")
    except ValueError as exc:
        raise UsageError(f"{exc}; the registry record is damaged", hint="run 'mlops audit verify'") from None
    pins = {k: v for k, v in closure([MLOPS_DIST]).items() if k != MLOPS_DIST}
    for name, version in model_pins.items():
        name = normalized(name)
        if name in pins and pins[name] != version:
            warnings.append(
                f"{name}: the model was registered with {version}, this mlops runs {pins[name]}; "
                f"requirements.txt pins {version}"
            )
        pins[name] = version
    return dict(sorted(pins.items())), str(recorded.get("python") or platform.python_version())


def requirements_text(pins: dict[str, str], *, ref: str, python: str) -> str:
    lines = [
        f"# {ref}: pinned by mlops export (the model's libraries as registered, python {python};",
        "# mlops' serving runtime as exported). Install mlops itself beside these:",
        f"#   pip install --no-deps mlops=={__version__}",
        *(f"{name}=={version}" for name, version in sorted(pins.items())),
    ]
    return "\n".join(lines) + "\n"


def plan_bundle(
    repo: Repo, ref: str, *, onnx: bool = False, check_data: str | None = None, tolerance: float | None = None
) -> BundlePlan:
    """Every file of the bundle of ``ref``; with ``onnx``, its scikit-learn pickle also compiled to
    ONNX and checked against the pickle on real rows (exporters/onnx.py)."""
    from .. import registry
    from ..paths import check_relpath
    from ..registry.card import render_card
    from ..registry.pyfunc import PYTHON
    from ..serve.deployment import load_deployment

    mv = registry.resolve(repo, ref)
    if mv.kind != "file" and mv.flavor != PYTHON:
        raise UsageError(
            f"{mv.ref()} is a folder artifact; bundles hold pickled models and Python class models",
            hint="register the model file itself, or the class (FILE.py:Class --artifacts DIR)",
        )
    artifact = registry.artifact_path(repo, mv)  # trusted (audit log) and rehashed before it is read
    warnings: list[str] = []
    pins, python = _pins(mv, artifact, warnings)
    events = [e for e in registry.history(repo, mv.name) if mv.version in (e.get("version"), e.get("to_version"))]
    dep = load_deployment(repo, mv.name)
    if mv.kind == "dir":  # a Python class model: its checked snapshot folder, file by file
        rel = ARTIFACT_DIR
        artifact_files: dict[str, bytes | Path] = {
            f"{ARTIFACT_DIR}/{check_relpath(p.relative_to(artifact).as_posix(), where=mv.ref())}": p
            for p in sorted(artifact.rglob("*"))
            if p.is_file()
        }
    else:
        rel = f"{ARTIFACT_DIR}/{mv.filename or 'model.pkl'}"
        check_relpath(rel, where=f"{mv.ref()}'s file name")
        artifact_files = {rel: artifact}
    facts = {
        "format": BUNDLE_FORMAT,
        "name": mv.name,
        "version": mv.version,
        "stage": mv.stage,
        "aliases": list(mv.aliases),
        "flavor": mv.flavor,
        "signature": mv.signature,
        "artifact": {
            "path": rel,
            "kind": mv.kind,
            "hash": mv.artifact,
            "sha256": mv.sha256,
            "size": mv.size,
            "filename": mv.filename,
        },
        "description": mv.description,
        "metrics": mv.metrics,
        "params": mv.params,
        "run_id": mv.run_id,
        "git_commit": mv.git_commit,
        "data": list(mv.data),
        "lineage": mv.lineage,
        "registered_by": mv.registered_by,
        "registered_at": mv.registered_at,
        "environment": {"python": python, "packages": pins},
        "deployment": dep.to_dict() if dep is not None else None,
        "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exported_with": {"mlops": __version__, "python": platform.python_version()},
    }
    checked = None  # with --onnx: the form's path and what it was checked on
    if onnx:
        from ..registry.environment import closure
        from .onnx import DEFAULT_TOLERANCE, compile_version

        compiled = compile_version(
            repo, mv, check_data=check_data, tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance
        )
        facts["compiled"] = compiled.facts
        checked = {"path": compiled.facts["path"], **compiled.facts["check"]}
        warnings.extend(compiled.warnings)
        artifact_files[compiled.facts["path"]] = compiled.data
        for name, version in closure(compiled.requirements).items():
            pins.setdefault(name, version)  # model.json's environment is this same mapping
    files: dict[str, bytes | Path] = {
        **artifact_files,
        **_feature_definitions(repo, mv),
        FACTS: (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode(),
        CARD: render_card(mv, events).encode(),
        REQUIREMENTS: requirements_text(pins, ref=mv.ref(), python=python).encode(),
    }
    return BundlePlan(mv.ref(), mv.name, mv.version, files, pins, python, tuple(warnings), checked)


def _feature_definitions(repo: Repo, mv: Any) -> dict[str, bytes]:
    """features.yaml for a model whose signature names a feature service: that service's definitions
    and the online store's settings, so the bundle's server looks features up where the repository's does.
    An embedded SQLite store is a file inside the repository, out of a bundle's reach: refused."""
    from ..features.definitions import FEATURES_FILE, load_definitions, service_document
    from ..formats import dump_yaml

    service = (mv.signature or {}).get("feature_service")
    if not service:
        return {}
    defs = load_definitions(repo.root)
    defs.service(service)  # a service no longer defined: one line naming the ones that are
    if not defs.redis_store:
        raise UsageError(
            f"{mv.ref()} looks its inputs up in feature service '{service}', whose online store is the SQLite "
            f"file inside this repository: a bundle cannot reach it",
            hint="set 'online_store: redis://HOST:PORT/DB' in features.yaml and materialize there, serve from the "
            "repository ('mlops serve REF'), or register the model with direct inputs",
        )
    header = f"# {mv.ref()}: feature service '{service}' as exported from {defs.file} ({defs.hash})\n"
    return {FEATURES_FILE: (header + dump_yaml(service_document(defs, service))).encode()}


def _sha256(data: bytes | Path) -> tuple[str, int]:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest(), len(data)
    from ..serve.bundle import sha256_file

    return sha256_file(data), data.stat().st_size


def check_new_folder(out: str | os.PathLike[str]) -> Path:
    """``out`` as a folder to create: absent, or empty (a bundle with anything else in it is refused when served)."""
    target = Path(os.path.abspath(out))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty folder", hint="choose a new folder, or remove this one")
    return target


def write_files(target: Path, files: dict[str, bytes | Path]) -> None:
    """Place ``files`` in the new folder ``target`` in one rename (a reader never sees half of it)."""
    import shutil

    if target.is_dir():
        target.rmdir()  # empty (check_new_folder): replaced by the complete folder
    with atomic_dir(target) as building:
        os.chmod(building, 0o755)
        for rel, data in files.items():
            dest = building / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                dest.write_bytes(data)
            else:
                shutil.copyfile(data, dest)
            os.chmod(dest, 0o644)


def write_bundle(plan: BundlePlan, out: str | os.PathLike[str]) -> BundleResult:
    target = check_new_folder(out)
    files = bundle_files(plan)
    write_files(target, files)
    manifest = files[MANIFEST]
    assert isinstance(manifest, bytes)
    listed = json.loads(manifest)["files"]
    return BundleResult(
        str(target),
        plan.ref,
        hashlib.sha256(manifest).hexdigest(),
        listed,
        plan.requirements,
        plan.warnings,
        plan.compiled,
    )


def bundle_files(plan: BundlePlan, under: str = "") -> dict[str, bytes | Path]:
    """The bundle's files with its manifest, each name under ``under`` (a build context's folder)."""
    listed = {rel: dict(zip(("sha256", "size"), _sha256(data), strict=True)) for rel, data in plan.files.items()}
    manifest = {
        "kind": "mlops-bundle",
        "format": BUNDLE_FORMAT,
        "model": plan.name,
        "version": plan.version,
        "files": dict(sorted(listed.items())),
    }
    files = {**plan.files, MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode()}
    prefix = f"{under}/" if under else ""
    return {prefix + rel: data for rel, data in files.items()}
