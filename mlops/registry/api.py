"""The registry's verbs: register, resolve, load, promote, approve, rollback, alias, audit.

Every verb takes the repo first and returns a frozen dataclass; every change runs inside
``store.transaction`` (one lock, re-read inside it, audit entries appended in the same
step). Nothing here prints or exits.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import (
    CheckFailed,
    CorruptObjectError,
    InvalidPathError,
    MissingObjectError,
    PromotionRefused,
    RegistryTampered,
    UnknownModelError,
    UsageError,
)
from ..fsio import atomic_dir, remove_dir
from ..progress import NO_PROGRESS, Progress
from ..repo.repo import Repo, find_repo
from ..store.tree import walk_tree
from . import audit, flavors, policy
from .refs import (
    ARCHIVED,
    NONE,
    PRODUCTION,
    SINGLE_STAGES,
    STAGES,
    STAGING,
    check_alias,
    check_name,
    check_stage,
    parse_ref,
    parse_version,
)
from .store import (
    ModelVersion,
    audit_path,
    default_actor,
    find_record,
    head_path,
    in_stage,
    load_model_doc,
    model_names,
    model_path,
    pick,
    require_model,
    shown,
    transaction,
    trusted_model,
    version_view,
)

# --- resolving -----------------------------------------------------------------------------------


def resolve(repo: Repo, ref: str) -> ModelVersion:
    """``churn:3``, ``churn@production``, ``churn@champion``, ``churn`` (latest) -> the version.

    Unknown model, version, stage or alias: ``UnknownModelError`` (exit 2) naming it and
    listing what exists.
    """
    parsed = parse_ref(ref)
    doc = require_model(repo, parsed.name)
    return version_view(doc, pick(doc, parsed))


def get_version(repo: Repo, name: str, version: int | str) -> ModelVersion:
    doc = require_model(repo, check_name(name))
    return version_view(doc, find_record(doc, parse_version(version)))


def versions(repo: Repo, name: str) -> list[ModelVersion]:
    doc = require_model(repo, check_name(name))
    return [version_view(doc, r) for r in sorted(doc["versions"], key=lambda r: r["version"])]


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: int
    latest: int | None
    staging: int | None
    production: int | None
    aliases: dict[str, int]
    description: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_models(repo: Repo) -> list[ModelSummary]:
    out = []
    for name in model_names(repo):
        doc = load_model_doc(repo, name)
        if doc is None:
            continue
        records = sorted(doc["versions"], key=lambda r: r["version"])
        holder = lambda stage, records=records: next(  # noqa: E731
            (r["version"] for r in records if r.get("stage") == stage), None
        )
        latest = records[-1] if records else None
        times = [h.get("at", "") for r in records for h in r.get("stage_history") or []] + [
            r.get("registered_at", "") for r in records
        ]
        out.append(
            ModelSummary(
                name,
                len(records),
                latest["version"] if latest else None,
                holder(STAGING),
                holder(PRODUCTION),
                dict(sorted((doc.get("aliases") or {}).items())),
                (latest or {}).get("description", ""),
                max(times, default=""),
            )
        )
    return out


# --- reading artifacts -----------------------------------------------------------------------------


def _object_path(repo: Repo, digest: str) -> Path:
    return repo.objects.path(digest)


def _hashes(path: Path) -> tuple[str, str]:
    """(xxh3-128, SHA-256) of a file, in one read."""
    import xxhash

    xx, sha = xxhash.xxh3_128(), hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            xx.update(chunk)
            sha.update(chunk)
    return xx.hexdigest(), sha.hexdigest()


def _check_file(path: Path, digest: str, sha256: str | None, what: str) -> str:
    """Rehash a file (xxh3 and SHA-256 in one pass); raise on a mismatch. Returns the SHA-256."""
    try:
        got, sha = _hashes(path)
    except FileNotFoundError:
        raise MissingObjectError(
            f"{what}: its artifact {digest} is not in the cache",
            hint="run 'mlops pull' (or 'mlops fetch')",
            object=digest,
        ) from None
    if got != digest or (sha256 is not None and sha != sha256):
        raise CorruptObjectError(
            f"{what}: the artifact's bytes do not match the hash the registry recorded",
            hint="run 'mlops verify', then 'mlops pull' to fetch a good copy",
            object=digest,
        )
    return sha


_OBJECT_NAME = re.compile(r"[0-9a-f]{32}")


def check_trusted(repo: Repo, mv: ModelVersion) -> None:
    """Before a version's artifact is opened: its model file is what the audit log recorded
    (``store.trusted_model``), and ``mv`` names the artifact that file records for the version.
    Otherwise ``RegistryTampered`` (exit 3), and nothing of the artifact has been touched."""
    doc = trusted_model(repo, mv.name)
    record = find_record(doc, mv.version)
    art = record.get("artifact") or {}
    recorded = (art.get("hash"), art.get("kind", "file"), art.get("sha256"))
    if recorded != (mv.artifact, mv.kind, mv.sha256):
        raise RegistryTampered(
            f"{mv.ref()}: the version given names artifact {str(mv.artifact)[:40]}, not the one the registry "
            "recorded; refusing to use it",
            hint="resolve the version from the registry (mlops.registry.resolve)",
            model=mv.name,
            version=mv.version,
        )
    if not isinstance(mv.artifact, str) or not _OBJECT_NAME.fullmatch(mv.artifact):
        raise RegistryTampered(
            f"{mv.ref()}: its artifact {str(mv.artifact)[:40]!r} is not an object name; refusing to use it",
            hint="run 'mlops audit verify'",
            model=mv.name,
        )


def artifact_path(repo: Repo, mv: ModelVersion) -> Path:
    """A local path to the version's artifact, its bytes checked against the registry.

    The model file must first be what the audit log recorded (``check_trusted``), else
    ``RegistryTampered`` before the artifact is opened. A file: the object in the cache
    (read-only). A directory: a read-only copy under ``.mlops/tmp/models/<hash>/``, built from
    the cache (each file checked while copied, each name through ``paths``) and checked again
    on every call. Corrupt: ``CorruptObjectError``; absent: ``MissingObjectError``.
    """
    check_trusted(repo, mv)
    if mv.kind != "dir":
        path = _object_path(repo, mv.artifact)
        _check_file(path, mv.artifact, mv.sha256, mv.ref())
        return path
    return _materialize_dir(repo, mv)


def _dir_records(repo: Repo, mv: ModelVersion) -> dict[str, Any]:
    where = f"the folder artifact of {mv.ref()}"
    try:
        records = {
            paths.check_relpath(rel, where=where): entry
            for rel, entry in walk_tree(repo.objects.read_bytes, mv.artifact)
        }
    except MissingObjectError:
        raise MissingObjectError(
            f"{mv.ref()}: its directory manifest {mv.artifact} is not in the cache",
            hint="run 'mlops pull' (or 'mlops fetch')",
            object=mv.artifact,
        ) from None
    for rel, entry in records.items():
        if not _OBJECT_NAME.fullmatch(str(entry.hash)):
            raise CorruptObjectError(f"{where}: entry {rel} names {str(entry.hash)[:40]!r}, not an object")
    return records


def _materialize_dir(repo: Repo, mv: ModelVersion) -> Path:
    records = _dir_records(repo, mv)
    where = f"the folder artifact of {mv.ref()}"
    # .mlops/tmp/models must be a real folder: a symlink planted there would carry the copy elsewhere
    paths.Destinations(repo.dot).check_folder(f"{repo.tmp.name}/models", where=where)
    target = repo.tmp / "models" / mv.artifact
    if target.is_dir():
        if _dir_matches(target, records):
            return target
        remove_dir(target)  # someone changed the copy: rebuild it from the cache
    # built in a temp folder beside it, each file checked, fsynced, then renamed into place
    # in one step: a reader sees no copy or a whole one, and a crash leaves only a temp folder
    with atomic_dir(target) as building:
        inside = paths.Destinations(building)
        for rel, entry in records.items():
            dest = inside.check(rel, where=where)
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = _object_path(repo, entry.hash)
            _check_file(source, entry.hash, None, f"{mv.ref()}: {rel}")
            shutil.copyfile(source, dest)
            _check_file(dest, entry.hash, None, f"{mv.ref()}: {rel}")  # the copy, not only the source
            os.chmod(dest, 0o555 if entry.executable else 0o444)
    if not _dir_matches(target, records):  # another process placed a copy first: it must be whole too
        raise CorruptObjectError(
            f"{mv.ref()}: the checked copy at {shown(repo, target)} does not match the registry",
            hint=f"remove {shown(repo, target)} and try again",
            object=mv.artifact,
        )
    return target


def _dir_matches(folder: Path, records: dict[str, Any]) -> bool:
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    if found != set(records):
        return False
    try:
        for rel, entry in records.items():
            _check_file(folder / rel, entry.hash, None, rel)
    except (CorruptObjectError, MissingObjectError):
        return False
    return True


def load_model(ref_or_mv: str | ModelVersion, repo: Repo | None = None) -> Any:
    """The model object of a version: the registered bytes are read once, checked against the
    registry's hashes (xxh3 and SHA-256), and only then unpickled (a joblib file with joblib).

    Trust: this guarantees the bytes are the ones registered, not that they are safe. Loading
    a pickle runs whatever code it names, with the full unpickler: load only models whose
    registration you trust (``register`` itself never does; see ``flavors.safe_load``)."""
    repo = repo or find_repo()
    mv = resolve(repo, ref_or_mv) if isinstance(ref_or_mv, str) else ref_or_mv
    check_trusted(repo, mv)  # before the artifact is opened: the model file is what the audit log recorded
    if mv.kind == "dir":
        raise UsageError(
            f"{mv.ref()} is a directory artifact ({mv.filename}); load_model reads pickled models",
            hint="read its files through mlops.registry.artifact_path(repo, version)",
        )
    data = flavors.verified_bytes(_object_path(repo, mv.artifact), digest=mv.artifact, sha256=mv.sha256, what=mv.ref())
    if flavors.serialization(data) is None:
        raise UsageError(
            f"{mv.ref()} ({mv.filename}) is not a pickle or a joblib file, so load_model cannot load it",
            hint="read it through mlops.registry.artifact_path(repo, version)",
        )
    return flavors.load_object(data, mv.ref())


def training_data(repo: Repo, mv: ModelVersion) -> list[tuple[str, Path]]:
    """(original relative path, readable local path in the cache) of every file of the data
    snapshots behind the version. The local path has no suffix: pick a reader by the first."""
    return _snapshot_files(repo, mv.data, mv.ref())


def _snapshot_files(repo: Repo, snapshots: Sequence[dict[str, Any]], what: str) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for snap in snapshots:
        digest, rel = snap["hash"], snap["path"]
        if snap.get("kind") == "dir":
            try:
                for inner, entry in walk_tree(repo.objects.read_bytes, digest):
                    out.append((f"{rel}/{inner}", _present(repo, entry.hash, f"{rel}/{inner}")))
            except MissingObjectError:
                raise MissingObjectError(
                    f"{what}: the manifest of its data {rel} ({digest}) is not in the cache",
                    hint="run 'mlops pull' (or 'mlops fetch')",
                    object=digest,
                ) from None
        else:
            out.append((rel, _present(repo, digest, rel)))
    return out


def _present(repo: Repo, digest: str, label: str) -> Path:
    path = _object_path(repo, digest)
    if not path.exists():
        raise MissingObjectError(
            f"{label}: object {digest} is not in the cache", hint="run 'mlops pull' (or 'mlops fetch')", object=digest
        )
    return path


# --- register ------------------------------------------------------------------------------------


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
    sha = _check_file(_object_path(repo, digest), digest, None, str(source))
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
    progress: Progress = NO_PROGRESS,
) -> RegisterResult:
    """Store the artifact, gather its lineage, and add it as the model's next version."""
    check_name(name)
    actor = actor or default_actor(repo.root)
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
            progress=progress,
        )


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
    progress: Progress,
) -> RegisterResult:
    digest, kind, size, files, sha = _store_artifact(repo, source, progress=progress)
    warnings: list[str] = []
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
    flavor = flavors.detect_flavor(_object_path(repo, digest), kind) if kind == "file" else flavors.DIR
    signature = None
    if flavor == flavors.SKLEARN and infer_signature:
        signature, flavor = _sklearn_signature(repo, digest, sha, snapshots, signature_from, warnings)
    record: dict[str, Any] = {
        "version": 0,
        "stage": NONE,
        "artifact": {
            "hash": digest,
            "kind": kind,
            "size": size,
            "files": files,
            "filename": source.name,
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
        "stage_history": [],
        "approvals": [],
        "drift_checks": [],
    }
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
        )
    return RegisterResult(version_view(doc, record), new_model, tuple(warnings))


def _sklearn_signature(
    repo: Repo, digest: str, sha: str | None, snapshots: list[dict[str, Any]], signature_from: Any, warnings: list[str]
) -> tuple[dict[str, Any] | None, str]:
    """Load the stored (checked) bytes through the restricted loader and infer the signature.
    A global outside its allowlist, or scikit-learn missing: no signature, and a warning."""
    data = flavors.verified_bytes(_object_path(repo, digest), digest=digest, sha256=sha, what="the new version")
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
            tables = flavors.table_files(_snapshot_files(repo, snapshots, "the new version"))
        except MissingObjectError as exc:
            warnings.append(f"training data not in the cache ({exc.message}): input dtypes unknown")
            tables = []
    signature, notes = flavors.sklearn_signature(model, tables)
    warnings.extend(notes)
    return signature, flavors.SKLEARN


# --- stage transitions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PromoteResult:
    name: str
    version: int
    from_stage: str
    to_stage: str
    changed: bool
    forced: bool
    reason: str
    actor: str
    checks: tuple[policy.RuleResult, ...]
    overridden: tuple[policy.RuleResult, ...] = ()
    displaced: int | None = None  # the version that held the stage before
    displaced_to: str | None = None
    audit_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": self.version,
            "ref": f"{self.name}:{self.version}",
            "from_stage": self.from_stage,
            "to_stage": self.to_stage,
            "changed": self.changed,
            "forced": self.forced,
            "reason": self.reason,
            "actor": self.actor,
            "checks": [c.to_dict() for c in self.checks],
            "overridden": [c.to_dict() for c in self.overridden],
            "displaced": self.displaced,
            "displaced_to": self.displaced_to,
            "audit_seq": self.audit_seq,
        }


def _move(
    record: dict[str, Any], to_stage: str, *, actor: str, reason: str, forced: bool = False, via: str = "promote"
) -> None:
    record["stage_history"] = [
        *record.get("stage_history", []),
        {
            "stage": to_stage,
            "from": record.get("stage", NONE),
            "at": audit.now_iso(),
            "by": actor,
            "reason": reason,
            "forced": forced,
            "via": via,
        },
    ]
    record["stage"] = to_stage


def _check_target(name_or_ref: str, version: int | str | None) -> str:
    """Validate the shape of NAME + VERSION, or of one reference when VERSION is None; returns
    how to write it back in a hint. The version itself is resolved inside the transaction."""
    if version is None:
        return str(parse_ref(name_or_ref))
    return f"{check_name(name_or_ref)} {parse_version(version)}"


def promote(
    repo: Repo,
    name: str,
    version: int | str | None,
    to_stage: str,
    *,
    reason: str = "",
    actor: str | None = None,
    force: bool = False,
) -> PromoteResult:
    """Move a version to a stage if every policy gate for that stage holds (checked under the lock).

    ``version`` None: ``name`` is a reference (``churn@staging``), resolved inside the lock.
    Refused: one ``promotion_refused`` audit entry, nothing else changes, and ``PromotionRefused``
    (exit 1) lists every failed rule with the value seen. ``force`` (with a reason) overrides
    and is recorded as forced. Production archives the version it replaces; staging sends it
    back to ``none``.
    """
    shown_target = _check_target(name, version)
    check_stage(to_stage)
    actor = actor or default_actor(repo.root)
    reason = (reason or "").strip()
    if force and not reason:
        raise UsageError(
            "--force needs --reason: an override must say why",
            hint=f"mlops promote {shown_target} --to {to_stage} --force --reason TEXT",
        )
    refusal: PromotionRefused | None = None
    with transaction(repo) as txn:
        rules = policy.load_policy(repo.dot)  # read under the lock: the rules and the state are of one moment
        doc, record = txn.target(name, version)
        name, number = doc["name"], record["version"]
        from_stage = record.get("stage", NONE)
        gate = rules.rules_for(name, to_stage)
        signed = _signature_check(repo, name, number) if gate.signed_approvals else None
        checks = tuple(policy.evaluate(gate, record, signed=signed)) if to_stage != NONE else ()
        if from_stage == to_stage:
            return PromoteResult(name, number, from_stage, to_stage, False, False, reason, actor, checks)
        failed = tuple(c for c in checks if not c.ok)
        if failed and not force:
            txn.record(
                "promotion_refused",
                model=name,
                version=number,
                from_stage=from_stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                failed=[c.to_dict() for c in failed],
            )
            entries = txn.commit()
            listed = "; ".join(f"{c.rule} (seen: {_seen(c)})" for c in failed)
            refusal = PromotionRefused(
                f"{name}:{number} -> {to_stage} refused by {len(failed)} of {len(checks)} rule(s): {listed}",
                hint=(
                    f"meet the rules, or override: mlops promote {name} {number} --to {to_stage} --force --reason TEXT"
                ),
                model=name,
                version=number,
                to_stage=to_stage,
                failed=[c.to_dict() for c in failed],
                checks=[c.to_dict() for c in checks],
                audit_seq=entries[-1]["seq"] if entries else None,
            )
        else:
            displaced, displaced_to = None, None
            if to_stage in SINGLE_STAGES:
                for other in in_stage(doc, to_stage):
                    if other is record:
                        continue
                    displaced, displaced_to = other["version"], (ARCHIVED if to_stage == PRODUCTION else NONE)
            _move(record, to_stage, actor=actor, reason=reason, forced=bool(failed))
            if to_stage == PRODUCTION:
                doc["production_history"] = [*doc.get("production_history", []), number]
            txn.record(
                "stage_changed",
                model=name,
                version=number,
                from_stage=from_stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                forced=bool(failed),
                overridden=[c.to_dict() for c in failed],
                checks=[c.to_dict() for c in checks],
            )
            if displaced is not None:
                other = find_record(doc, displaced)
                why = f"replaced in {to_stage} by {name}:{number}"
                _move(other, displaced_to or NONE, actor=actor, reason=why, via="displaced")
                txn.record(
                    "stage_changed",
                    model=name,
                    version=displaced,
                    from_stage=to_stage,
                    to_stage=displaced_to,
                    actor=actor,
                    reason=why,
                )
            entries = txn.commit()
            result = PromoteResult(
                name,
                number,
                from_stage,
                to_stage,
                True,
                bool(failed),
                reason,
                actor,
                checks,
                failed,
                displaced,
                displaced_to,
                entries[0]["seq"] if entries else None,
            )
    if refusal is not None:
        raise refusal
    return result


def _seen(check: policy.RuleResult) -> str:
    return f"{check.seen}" + (f"; {check.detail}" if check.detail else "")


@dataclass(frozen=True)
class RollbackResult:
    name: str
    from_version: int
    to_version: int
    to_version_was: str  # the stage the restored version left
    reason: str
    actor: str
    audit_seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, model=self.name)


def rollback(repo: Repo, name: str, *, reason: str = "", actor: str | None = None) -> RollbackResult:
    """Put the previous production version back in production; the current one is archived.

    ``name``: a model name, or ``name@production`` (the only version a rollback acts on).
    "Previous" is the version that was in production before the current one (the model's
    production history is a stack: a rollback pops it, so a second rollback goes one further
    back). No gates: a rollback is the way out of a bad release. Recorded as ``rolled_back``.
    """
    ref = parse_ref(name)
    if ref.version is not None or ref.label not in (None, PRODUCTION) or ("@" in name and ref.label is None):
        raise UsageError(
            f"rollback acts on the production version: give a model name or {ref.name}@production, not {name}",
            hint=f"mlops rollback {ref.name}",
        )
    name = ref.name
    actor = actor or default_actor(repo.root)
    reason = (reason or "").strip()
    with transaction(repo) as txn:
        doc = txn.model(name)
        current = in_stage(doc, PRODUCTION)
        if not current:
            raise UsageError(
                f"model '{name}' has no version in production, so there is nothing to roll back",
                hint=f"promote one: mlops promote {name} VERSION --to production",
            )
        now = current[0]["version"]
        history = list(doc.get("production_history") or [])
        while history and history[-1] == now:
            history.pop()
        known = {r["version"] for r in doc["versions"]}
        while history and history[-1] not in known:
            history.pop()
        if not history:
            raise UsageError(
                f"model '{name}' has no earlier production version than v{now} to roll back to",
                hint=f"promote another version: mlops promote {name} VERSION --to production",
            )
        previous = find_record(doc, history[-1])
        was = previous.get("stage", NONE)
        why = reason or "rollback"
        _move(current[0], ARCHIVED, actor=actor, reason=why, via="rollback")
        _move(previous, PRODUCTION, actor=actor, reason=why, via="rollback")
        doc["production_history"] = history
        txn.record(
            "rolled_back",
            model=name,
            version=previous["version"],
            from_version=now,
            to_version=previous["version"],
            actor=actor,
            reason=reason,
            previous_stage_of_restored=was,
        )
        entries = txn.commit()
    return RollbackResult(name, now, previous["version"], was, reason, actor, entries[0]["seq"] if entries else None)


# --- approvals, aliases, drift checks ----------------------------------------------------------------


@dataclass(frozen=True)
class ApproveResult:
    name: str
    version: int
    stage: str
    by: str
    comment: str
    approvers: tuple[str, ...]  # distinct people who approved the version for this stage
    repeated: bool  # this person had approved it already: counted once
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "model": self.name, "approvers": list(self.approvers), "count": len(self.approvers)}


def approve(
    repo: Repo,
    name: str,
    version: int | str | None,
    stage: str,
    *,
    by: str | None = None,
    comment: str = "",
    sign_key: Path | None = None,
) -> ApproveResult:
    """Record an approval of a version for a stage (gates count distinct people).
    ``version`` None: ``name`` is a reference, resolved inside the lock.
    ``by``: default the git identity (user.email). ``sign_key``: an SSH private key signing the
    approval (``ssh-keygen -Y sign``), checked by gates with ``signed_approvals`` and by ``verify_audit``.
    Refused (CheckFailed) when the stage's policy says ``approver_not_author`` and ``by`` registered
    or promoted the version."""
    _check_target(name, version)
    check_stage(stage)
    if stage == NONE:
        raise UsageError("approvals are for a target stage: staging, production or archived")
    by = (by or default_actor(repo.root)).strip()
    if not by:
        raise UsageError("an approval needs a person (--by)")
    with transaction(repo) as txn:
        rules = policy.load_policy(repo.dot).rules_for(parse_ref(name).name, stage)
        doc, record = txn.target(name, version)
        name, number = doc["name"], record["version"]
        if rules.approver_not_author and by in policy.authors(record):
            raise CheckFailed(
                f"{name}:{number}: {by} registered or promoted it, so cannot approve it for {stage} "
                "(policy: approver_not_author)",
                hint="another person approves it",
                model=name,
                version=number,
            )
        repeated = by in policy.distinct_approvers(record, stage)
        approval: dict[str, Any] = {"stage": stage, "by": by, "at": audit.now_iso(), "comment": comment}
        if sign_key is not None:
            approval["signature"] = audit.sign_payload(audit.approval_payload(name, number, approval), sign_key)
        record["approvals"] = [*record.get("approvals", []), approval]
        signed = {"signature": approval["signature"], "signed_at": approval["at"]} if sign_key is not None else {}
        txn.record(
            "approved", model=name, version=number, stage=stage, actor=by, comment=comment, repeated=repeated, **signed
        )
    return ApproveResult(
        name,
        number,
        stage,
        by,
        comment,
        tuple(policy.distinct_approvers(record, stage)),
        repeated,
        sign_key is not None,
    )


def allowed_signers_path(repo: Repo) -> Path:
    return repo.dot / audit.ALLOWED_SIGNERS


def _signature_check(repo: Repo, name: str, number: int) -> Any:
    """Whether an approval of ``name:number`` carries a signature its approver made (allowed_signers)."""
    signers = allowed_signers_path(repo)

    def check(approval: Any) -> bool:
        signature = approval.get("signature")
        if not isinstance(signature, str) or not approval.get("by"):
            return False
        payload = audit.approval_payload(name, number, approval)
        return audit.verify_signature(payload, signature, str(approval["by"]), signers)[0]

    return check


@dataclass(frozen=True)
class AliasResult:
    name: str
    alias: str
    version: int | None  # None: removed
    previous: int | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "model": self.name}


def set_alias(repo: Repo, name: str, version: int | str | None, alias: str, *, actor: str | None = None) -> AliasResult:
    """Point an alias at a version (moving it from another version, as MLflow does).
    ``version`` None: ``name`` is a reference (``churn@production``), resolved inside the lock."""
    _check_target(name, version)
    check_alias(alias)
    actor = actor or default_actor(repo.root)
    with transaction(repo) as txn:
        doc, record = txn.target(name, version)
        name, number = doc["name"], record["version"]
        previous = (doc.get("aliases") or {}).get(alias)
        if previous == number:
            return AliasResult(name, alias, number, previous)
        doc["aliases"] = {**(doc.get("aliases") or {}), alias: number}
        txn.record("alias_set", model=name, version=number, alias=alias, previous=previous, actor=actor)
    return AliasResult(name, alias, number, previous)


def delete_alias(repo: Repo, name: str, alias: str, *, actor: str | None = None) -> AliasResult:
    check_name(name)
    actor = actor or default_actor(repo.root)
    with transaction(repo) as txn:
        doc = txn.model(name)
        aliases = dict(doc.get("aliases") or {})
        if alias not in aliases:
            raise UnknownModelError(
                f"model '{name}' has no alias '{alias}'",
                hint=("aliases: " + ", ".join(sorted(aliases))) if aliases else "it has no aliases",
                model=name,
                alias=alias,
            )
        previous = aliases.pop(alias)
        doc["aliases"] = aliases
        txn.record("alias_removed", model=name, version=previous, alias=alias, actor=actor)
    return AliasResult(name, alias, None, previous)


def record_drift_check(
    repo: Repo, name: str, version: int, *, drifted: bool, summary: dict[str, Any], actor: str | None = None
) -> None:
    """Record a drift check's verdict on a version (the gate ``no_failed_drift_check`` reads them)."""
    check_name(name)
    number = parse_version(version)
    actor = actor or default_actor(repo.root)
    summary = audit.json_safe(summary)  # numpy numbers and the like become JSON values (or text)
    with transaction(repo) as txn:
        doc = txn.model(name)
        record = find_record(doc, number)
        record["drift_checks"] = [
            *record.get("drift_checks", []),
            {"at": audit.now_iso(), "drifted": bool(drifted), "summary": summary, "by": actor},
        ]
        txn.record("drift_check", model=name, version=number, drifted=bool(drifted), summary=summary, actor=actor)


# --- audit ---------------------------------------------------------------------------------------------


def audit_append(repo: Repo, event: str, **fields: Any) -> None:
    """Append an event to the audit log (e.g. serve's automatic canary rollback), under the lock."""
    if "state" in fields:
        raise UsageError("audit field 'state' is reserved for model-file changes")
    fields.setdefault("actor", default_actor(repo.root))
    with transaction(repo) as txn:
        txn.record(event, **fields)


def history(repo: Repo, name: str) -> list[dict[str, Any]]:
    """Every audit entry about a model, oldest first. ``name`` may be a reference
    (``churn@production``): it must resolve, and the history is its model's."""
    ref = parse_ref(name)
    if ref.version is not None or ref.label is not None:
        resolve(repo, name)  # an unknown stage, alias or version is exit 2, listing what exists
    entries = [e for e in audit.read_entries(audit_path(repo)) if e.get("model") == ref.name]
    if not entries:
        require_model(repo, ref.name)
    return entries


def verify_audit(repo: Repo) -> audit.VerifyReport:
    """Check the audit chain, its head and every model file's anchor (read-only: no lock;
    ``verify_chain`` reads the files in the reverse of the order writers write them)."""

    def read_models() -> dict[str, tuple[str, dict[str, Any] | None]]:
        docs: dict[str, tuple[str, dict[str, Any] | None]] = {}
        for name in model_names(repo):
            path = model_path(repo, name)
            try:
                docs[name] = (shown(repo, path), load_model_doc(repo, name))
            except UsageError:
                docs[name] = (shown(repo, path), None)
        return docs

    report = audit.verify_chain(audit_path(repo), head_path(repo), read_models)
    return _verify_signatures(repo, report)


def _verify_signatures(repo: Repo, report: audit.VerifyReport) -> audit.VerifyReport:
    """Every signed approval of the log checked against .mlops/allowed_signers (ssh-keygen -Y verify)."""
    signers = allowed_signers_path(repo)
    problems: list[audit.Problem] = []
    for entry in audit.read_entries(audit_path(repo)):
        if entry.get("event") != "approved" or "signature" not in entry:
            continue
        approval = {
            "stage": entry.get("stage"),
            "by": entry.get("actor"),
            "at": entry.get("signed_at"),
            "comment": entry.get("comment"),
        }
        payload = audit.approval_payload(str(entry.get("model")), entry.get("version"), approval)
        ok, said = audit.verify_signature(payload, str(entry.get("signature")), str(entry.get("actor")), signers)
        if not ok:
            problems.append(
                audit.Problem(
                    "signature",
                    entry.get("seq"),
                    None,
                    f"seq {entry.get('seq')}: the approval of {entry.get('model')}:{entry.get('version')} by "
                    f"{entry.get('actor')} does not verify against {shown(repo, signers)}: {said}",
                )
            )
    if not problems:
        return report
    return replace(report, problems=(*report.problems, *problems))


# --- roots for push, fetch and gc -------------------------------------------------------------------


def _version_roots(doc: dict[str, Any], where: str) -> list[Any]:
    """The artifact and data snapshots of each version in one model file. A "hash" that is not
    one names no object: it is left out, never made into a path in the cache (a model file can
    come from anyone's commit)."""
    from ..data.references import Root
    from ..store.hashing import is_hash

    def named(item: Any) -> bool:
        return isinstance(item, dict) and isinstance(item.get("hash"), str) and is_hash(item["hash"])

    out = []
    for record in doc.get("versions") or []:
        art = record.get("artifact") or {}
        label = f"{where}{doc.get('name')}:{record.get('version')}"
        if named(art):
            out.append(Root(art["hash"], art.get("kind") == "dir", label))
        for snap in record.get("data") or []:
            if named(snap):
                out.append(Root(snap["hash"], snap.get("kind") == "dir", f"{label} data {snap.get('path')}"))
    return out


def registry_roots(repo: Repo, *, all_commits: bool = False) -> list[Any]:
    """Every artifact and data snapshot the registry names (``mlops.data.references.Root``):
    pushed, fetched and kept by gc like tracked data. ``all_commits``: also every committed
    version of the model files."""
    roots: list[Any] = []
    for name in model_names(repo):
        doc = load_model_doc(repo, name)
        if doc is not None:
            roots.extend(_version_roots(doc, "registry "))
    if all_commits:
        roots += commit_registry_roots(repo, ["--all"])
    return roots


def commit_registry_roots(repo: Repo, revs: list[str]) -> list[Any]:
    """What the model files that `git rev-list --objects REVS` lists name (``["--all"]``: any
    commit; ``["--no-walk", tip]``: the tip's own; ``[tip, "^old"]``: what the commits between
    added): pre-push sends these with the commits that reference them."""
    from ..repo.git import git_repo
    from .store import parse_model

    prefix = f"{repo.dot.name}/registry/models/"
    roots: list[Any] = []
    for path, blob in git_repo(repo.root).blobs_in(revs, lambda p: p.startswith(prefix) and p.endswith(".json")):
        try:
            roots.extend(_version_roots(parse_model(blob, f"git:{path}"), "git registry "))
        except UsageError:
            continue  # a broken old model file must not stop gc or a push
    return roots


__all__ = [
    "AliasResult",
    "ApproveResult",
    "ModelSummary",
    "PromoteResult",
    "RegisterResult",
    "RollbackResult",
    "STAGES",
    "approve",
    "artifact_path",
    "audit_append",
    "commit_registry_roots",
    "delete_alias",
    "get_version",
    "history",
    "list_models",
    "load_model",
    "promote",
    "record_drift_check",
    "register",
    "registry_roots",
    "resolve",
    "rollback",
    "set_alias",
    "training_data",
    "verify_audit",
    "versions",
]
