"""Registering a model: its artifact stored, its lineage gathered, its signature inferred
(through the restricted unpickler), and the next version added in one transaction."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidPathError, MissingObjectError, UsageError
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo
from . import audit, environment, flavors, pyfunc
from .artifacts import check_file, object_path, snapshot_files
from .refs import NONE, check_name
from .store import ModelVersion, default_actor, transaction, version_view


@dataclass(frozen=True)
class RegisterResult:
    version: ModelVersion
    new_model: bool
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.version.to_dict(), "new_model": self.new_model, "warnings": list(self.warnings)}


def _store_artifact(repo: Repo, source: Path, *, progress: Progress) -> tuple[str, str, int, int, str | None]:
    """Copy the artifact into the object store: (hash, kind, size, files, sha256 of a file).
    The caller holds the store lock (shared) until the registry names the object."""
    if source.is_dir():
        from ..data.add import snapshot_path

        rel = repo.check_user_path(source)
        with repo.path_lock(rel):
            snap = snapshot_path(repo, rel, link_workspace=False, progress=progress)
        return snap.pointer.hash, "dir", snap.pointer.size, snap.pointer.files, None
    with repo.objects.batch() as batch:
        digest, size = batch.add_file(source)
    # the SHA-256 is taken of the stored object, in the same read that checks its name
    sha = check_file(object_path(repo, digest), digest, None, str(source))
    return digest, "file", size, 1, sha


def register(
    repo: Repo,
    name: str,
    path: str | os.PathLike[str],
    *,
    run: str | None = None,
    description: str = "",
    actor: str | None = None,
    data: Sequence[str] = (),
    signature_from: str | os.PathLike[str] | None = None,
    infer_signature: bool = True,
    declared: Mapping[str, Any] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> RegisterResult:
    """Store the artifact, gather its lineage, and add it as the model's next version.
    ``declared``: what pipeline.yaml's ``artifacts:`` says of it (type, labels, meta), kept on the version.
    ``path`` may be ``FILE.py:Class`` (the Python class flavor, ``pyfunc.py``), with ``artifacts`` its folder."""
    check_name(name)
    actor = actor or default_actor(repo.root)
    class_path = pyfunc.parse_class_path(os.fspath(path))
    if artifacts is not None and class_path is None:
        raise UsageError("--artifacts goes with a Python class model (FILE.py:Class)")
    python = None
    if class_path is not None:
        python = (Path(os.path.abspath(class_path[0])), class_path[1], Path(artifacts) if artifacts else None)
        path = class_path[0]
    source = Path(os.path.abspath(path))
    if not source.exists():
        raise InvalidPathError(
            f"{path}: no such file or folder", hint="train the model first ('mlops run'), or check the path"
        )
    if not (source.is_file() or source.is_dir()):
        raise InvalidPathError(f"{path}: not a regular file or folder")
    if signature_from is not None and not Path(signature_from).is_file():
        raise InvalidPathError(f"{signature_from}: no such file (--signature-from)")
    try:
        rel: str | None = source.relative_to(repo.root).as_posix()
    except ValueError:
        rel = None
    if rel is not None and (rel.split("/")[0] in (".mlops", ".git")):
        raise InvalidPathError(f"{path}: inside {rel.split('/')[0]}/, which mlops and git manage themselves")
    # The store lock is held (shared) from storing the object until the registry names it, as
    # `mlops add` holds it through the pointer write: gc (exclusive) cannot delete the new,
    # still unreferenced object in between.
    with repo.store_lock():
        return _register_locked(
            repo,
            name,
            source,
            rel,
            run=run,
            description=description,
            actor=actor,
            data=data,
            signature_from=signature_from,
            infer_signature=infer_signature,
            declared=dict(declared or {}),
            progress=progress,
            python=python,
        )


def _store_python(
    repo: Repo, python: tuple[Path, str, Path | None]
) -> tuple[str, str, int, int, None, bytes, list[str]]:
    """The class's module and artifacts as one folder artifact (objects and manifests): its
    (hash, kind, size, files, None), the module's bytes as stored, and warnings about the class."""
    from ..store.tree import FileRecord, build_tree

    files, code, notes = pyfunc.snapshot_files(*python)
    records: dict[str, FileRecord] = {}
    with repo.objects.batch() as batch:
        for rel, data in files.items():
            if isinstance(data, bytes):
                records[rel] = FileRecord(batch.add_bytes(data), len(data))
            else:
                digest, size = batch.add_file(data)
                records[rel] = FileRecord(digest, size)
        tree = build_tree(records)
        for manifest in tree.manifests.values():
            batch.add_bytes(manifest)
    return tree.hash, "dir", tree.size, tree.files, None, code, notes


def _register_locked(
    repo: Repo,
    name: str,
    source: Path,
    rel: str | None,
    *,
    run: str | None,
    description: str,
    actor: str,
    data: Sequence[str],
    signature_from: str | os.PathLike[str] | None,
    infer_signature: bool,
    declared: dict[str, Any],
    progress: Progress,
    python: tuple[Path, str, Path | None] | None = None,
) -> RegisterResult:
    code = b""
    warnings: list[str] = []
    if python is not None:
        digest, kind, size, files, sha, code, class_notes = _store_python(repo, python)
        warnings.extend(class_notes)
    else:
        digest, kind, size, files, sha = _store_artifact(repo, source, progress=progress)
    from .lineage import link_artifact

    # --run, or the run that made a pipeline output (lineage.py, rules 4-5)
    link = link_artifact(repo, run, artifact_rel=rel, artifact_hash=digest)
    if link is not None:
        warnings.extend(link.warnings)
    snapshots = list(link.data) if link else []
    if data:
        from .lineage import data_from_paths

        for snap in data_from_paths(repo, list(data)):
            if all(s["path"] != snap["path"] or s["hash"] != snap["hash"] for s in snapshots):
                snapshots.append(snap)
    flavor = flavors.detect_flavor(object_path(repo, digest), kind) if kind == "file" else flavors.DIR
    signature = None
    if flavor == flavors.SKLEARN and infer_signature:
        signature, flavor = _sklearn_signature(repo, digest, sha, snapshots, signature_from, warnings)
    # the versions the artifact was made with, as this environment has them: an export pins them
    modules = flavors.imported_modules(object_path(repo, digest)) if kind == "file" else set()
    if python is not None:
        flavor, modules = pyfunc.PYTHON, pyfunc.imported_modules(code, str(python[0]))
        if signature_from is not None and infer_signature:
            model = pyfunc.load_for_signature(code, *python)
            frame = flavors.read_frame(Path(signature_from), str(signature_from), rows=1000)
            signature, notes = pyfunc.frame_signature(model, frame, str(signature_from))
            warnings.extend(notes)
        elif infer_signature:
            warnings.append("no signature: give sample data with --signature-from to infer one")
    training_set = training_set_lineage([p for p in (signature_from, *data) if p is not None])
    if training_set is not None and signature:
        signature["feature_service"] = training_set["service"]  # serve then takes entity keys
    record: dict[str, Any] = {
        "version": 0,
        "stage": NONE,
        "artifact": {
            "hash": digest,
            "kind": kind,
            "size": size,
            "files": files,
            "filename": source.name if python is None else f"{source.name}:{python[1]}",
            "sha256": sha,
            "source": rel or str(source),
        },
        "flavor": flavor,
        "signature": signature,
        "run_id": link.run_id if link else None,
        "metrics": link.metrics if link else {},
        "params": link.params if link else {},
        "git_commit": link.git_commit if link else None,
        "data": snapshots,
        "lineage": link.lineage if link else {},
        "registered_by": actor,
        "registered_at": audit.now_iso(),
        "description": description,
        "environment": environment.capture(modules),
        "stage_history": [],
        "approvals": [],
        "drift_checks": [],
    }
    if declared:
        record["declared"] = declared
    if training_set is not None:  # a feature-store training set: its service and hashes join the lineage
        record["lineage"] = {**record["lineage"], "training_set": training_set}
    with transaction(repo) as txn:
        doc = txn.model(name, create=True)
        new_model = txn.is_new(name)
        number = doc["next_version"]
        doc["next_version"] = number + 1
        record["version"] = number
        doc["versions"].append(record)
        txn.record(
            "registered",
            model=name,
            version=number,
            actor=actor,
            artifact=digest,
            kind=kind,
            size=size,
            flavor=flavor,
            run_id=record["run_id"],
            git_commit=record["git_commit"],
            description=description,
            **({"declared": declared} if declared else {}),
        )
    return RegisterResult(version_view(doc, record), new_model, tuple(warnings))


def training_set_lineage(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any] | None:
    """What the first feature-store training set among ``paths`` records of where it came from
    (its Parquet metadata ``mlops.training_set``: service, features, definitions' and sources'
    hashes), or None. Read here, not through mlops.features, which stands above the registry."""
    for path in paths:
        if not str(path).lower().endswith((".parquet", ".pq")) or not Path(path).is_file():
            continue
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            raw = (pq.read_schema(path).metadata or {}).get(b"mlops.training_set")
        except (OSError, pa.ArrowException):
            continue
        if raw is None:
            continue
        from ..formats import parse_json

        value = parse_json(raw, str(path))
        if isinstance(value, dict) and isinstance(value.get("service"), str):
            return value
    return None


def _sklearn_signature(
    repo: Repo, digest: str, sha: str | None, snapshots: list[dict[str, Any]], signature_from: Any, warnings: list[str]
) -> tuple[dict[str, Any] | None, str]:
    """Load the stored (checked) bytes through the restricted loader and infer the signature.
    A global outside its allowlist, or scikit-learn missing: no signature, and a warning."""
    data = flavors.verified_bytes(object_path(repo, digest), digest=digest, sha256=sha, what="the new version")
    try:
        model = flavors.safe_load(data, "the new version")
    except flavors.UnsafePickle as unsafe:
        warnings.append(
            f"no signature: the pickle imports {unsafe}, which mlops does not load at registration "
            "(only scikit-learn, numpy and scipy.sparse types); load_model would run it: load it only if you trust it"
        )
        return None, flavors.SKLEARN
    except UsageError as exc:
        warnings.append(f"no signature: {exc.message}")
        return None, flavors.SKLEARN
    if not type(model).__module__.startswith("sklearn"):
        return None, flavors.FILE  # the scan saw sklearn names, but the object is something else
    if signature_from is not None:
        tables = [(str(signature_from), Path(signature_from))]
    else:
        try:
            tables = flavors.table_files(snapshot_files(repo, snapshots, "the new version"))
        except MissingObjectError as exc:
            warnings.append(f"training data not in the cache ({exc.message}): input dtypes unknown")
            tables = []
    signature, notes = flavors.sklearn_signature(model, tables)
    warnings.extend(notes)
    return signature, flavors.SKLEARN
