"""The registry on disk: one JSON file per model, changed only inside a locked transaction.

```
.mlops/registry/            committed to git (nothing here is machine-local)
  models/<name>.json        the model: its versions, stages, aliases, approvals, drift checks
  audit.jsonl               the hash-chained audit log (audit.py)
  audit.head                the log's last seq and hash, an anchor against truncation
```

A model file (``format: 1``)::

    {"format": 1, "name": "churn", "created_at": "...", "next_version": 4,
     "aliases": {"champion": 3}, "production_history": [1, 2],
     "versions": [{"version": 1, "stage": "archived", "artifact": {...}, "flavor": "sklearn", ...,
                   "stage_history": [...], "approvals": [...], "drift_checks": [...]}, ...],
     "audit": {"seq": 12, "hash": "...", "state": "..."}}

``next_version`` only grows, so a version number is never given twice. Every change runs
in ``transaction``: the registry lock is taken, an interrupted earlier change is settled,
the model file is read again (inside the lock), changed in memory, and ``commit`` appends
the audit entries, then replaces the model file atomically, then moves the audit head.
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError, NewerFormatError, RegistryTampered, UnknownModelError
from ..formats import parse_json, read_bytes
from ..fsio import atomic_write, remove_stale_temps
from ..repo.repo import Repo
from . import audit
from .refs import ARCHIVED, LATEST, NONE, STAGES, Ref, check_name, parse_ref, parse_version

REGISTRY = "registry"
MODELS = "models"
MODEL_FORMAT = 1


def registry_dir(repo: Repo) -> Path:
    return repo.dot / REGISTRY


def models_dir(repo: Repo) -> Path:
    return registry_dir(repo) / MODELS


def model_path(repo: Repo, name: str) -> Path:
    return models_dir(repo) / f"{check_name(name)}.json"


def audit_path(repo: Repo) -> Path:
    return registry_dir(repo) / audit.AUDIT_FILE


def head_path(repo: Repo) -> Path:
    return registry_dir(repo) / audit.HEAD_FILE


def shown(repo: Repo, path: Path) -> str:
    try:
        return path.relative_to(repo.root).as_posix()
    except ValueError:
        return str(path)


def default_actor(root: Path | None = None) -> str:
    """Who acts: MLOPS_USER when set (CI jobs name themselves), else the git identity
    (``user.email``, as git config of the repository at ``root`` answers it), else the login name.
    Approvals, registrations and promotions are recorded under it: ``approver_not_author`` compares them."""
    user = os.environ.get("MLOPS_USER", "").strip()
    if user:
        return user
    email = git_email(root)
    if email:
        return email
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in a container is not an error
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def git_email(root: Path | None = None) -> str:
    """``git config user.email`` (empty when git or the setting is missing)."""
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "config", "--get", "user.email"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


# --- the public view of a version ----------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    stage: str  # "none" | "staging" | "production" | "archived"
    aliases: tuple[str, ...]
    artifact: str  # object hash in the store (the file's bytes, or a directory's top manifest)
    kind: str  # "file" | "dir"
    size: int
    filename: str  # the original base name, e.g. "model.pkl"
    flavor: str  # "sklearn" | "file" | "dir"
    signature: dict[str, Any] | None
    run_id: str | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    git_commit: str | None
    data: tuple[dict[str, Any], ...]  # data snapshots behind it: {"path", "hash", "kind", ...}
    registered_by: str
    registered_at: str
    description: str
    # beyond the shared interface
    sha256: str | None = None  # of a file artifact's bytes: checked before unpickling (xxh3 is not collision-proof)
    files: int = 1
    source: str = ""  # the path it was registered from
    lineage: dict[str, Any] = field(default_factory=dict)
    stage_history: tuple[dict[str, Any], ...] = ()
    approvals: tuple[dict[str, Any], ...] = ()
    drift_checks: tuple[dict[str, Any], ...] = ()
    declared: dict[str, Any] = field(default_factory=dict)  # pipeline.yaml's type, labels, meta of the artifact
    # the interpreter and the distributions the artifact imports, as registration found them installed
    environment: dict[str, Any] = field(default_factory=dict)

    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref(),
            "stage": self.stage,
            "aliases": list(self.aliases),
            "artifact": self.artifact,
            "kind": self.kind,
            "size": self.size,
            "files": self.files,
            "filename": self.filename,
            "sha256": self.sha256,
            "source": self.source,
            "flavor": self.flavor,
            "signature": self.signature,
            "run_id": self.run_id,
            "metrics": self.metrics,
            "params": self.params,
            "git_commit": self.git_commit,
            "data": list(self.data),
            "lineage": self.lineage,
            "registered_by": self.registered_by,
            "registered_at": self.registered_at,
            "description": self.description,
            "stage_history": list(self.stage_history),
            "approvals": list(self.approvals),
            "drift_checks": list(self.drift_checks),
            **({"declared": self.declared} if self.declared else {}),
            **({"environment": self.environment} if self.environment else {}),
        }


def version_view(doc: Mapping[str, Any], record: Mapping[str, Any]) -> ModelVersion:
    number = record["version"]
    aliases = tuple(sorted(a for a, v in (doc.get("aliases") or {}).items() if v == number))
    art = record.get("artifact") or {}
    return ModelVersion(
        name=doc["name"],
        version=number,
        stage=record.get("stage", NONE),
        aliases=aliases,
        artifact=art.get("hash", ""),
        kind=art.get("kind", "file"),
        size=int(art.get("size") or 0),
        filename=art.get("filename", ""),
        flavor=record.get("flavor", "file"),
        signature=record.get("signature"),
        run_id=record.get("run_id"),
        metrics=dict(record.get("metrics") or {}),
        params=dict(record.get("params") or {}),
        git_commit=record.get("git_commit"),
        data=tuple(dict(d) for d in record.get("data") or ()),
        registered_by=record.get("registered_by", ""),
        registered_at=record.get("registered_at", ""),
        description=record.get("description", ""),
        sha256=art.get("sha256"),
        files=int(art.get("files") or 1),
        source=art.get("source", ""),
        lineage=dict(record.get("lineage") or {}),
        stage_history=tuple(record.get("stage_history") or ()),
        approvals=tuple(record.get("approvals") or ()),
        drift_checks=tuple(record.get("drift_checks") or ()),
        declared=dict(record.get("declared") or {}),
        environment=dict(record.get("environment") or {}) if isinstance(record.get("environment"), dict) else {},
    )


# --- reading -------------------------------------------------------------------------------------


def parse_model(text: str | bytes, source: str) -> dict[str, Any]:
    try:
        doc = parse_json(text, source)
    except FormatError as exc:
        raise FormatError(exc.message, file=source, hint="restore it with 'git checkout -- FILE'") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{source}: expected a JSON object for a model", file=source)
    version = doc.get("format", 1)
    if not isinstance(version, int) or version > MODEL_FORMAT:
        raise NewerFormatError(f"{source}: written by a newer mlops (model format {version})", hint="upgrade mlops")
    for key, types in (("name", str), ("next_version", int), ("versions", list)):
        if not isinstance(doc.get(key), types):
            raise FormatError(
                f"{source}: field '{key}' missing or not a {types.__name__}",
                file=source,
                field=key,
                hint="restore it with 'git checkout -- FILE'",
            )
    for index, record in enumerate(doc["versions"]):
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("version"), int)
            or not isinstance(record.get("artifact"), dict)
        ):
            raise FormatError(f"{source}: versions[{index}] is not a version record", file=source)
    doc.setdefault("aliases", {})
    doc.setdefault("production_history", [])
    return doc


def load_model_doc(repo: Repo, name: str) -> dict[str, Any] | None:
    path = model_path(repo, name)
    try:
        data = read_bytes(path, source=shown(repo, path), what="model file")
    except FileNotFoundError:
        return None
    return parse_model(data, shown(repo, path))


def model_names(repo: Repo) -> list[str]:
    try:
        with os.scandir(models_dir(repo)) as entries:
            return sorted(e.name[:-5] for e in entries if e.name.endswith(".json") and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def require_model(repo: Repo, name: str) -> dict[str, Any]:
    doc = load_model_doc(repo, name)
    if doc is None:
        names = model_names(repo)
        raise UnknownModelError(
            f"no model '{name}' in the registry",
            hint=("models: " + ", ".join(names)) if names else "register one: mlops register NAME PATH",
            model=name,
            known=names,
        )
    return doc


def trusted_model(repo: Repo, name: str) -> dict[str, Any]:
    """The model's document for a reader about to use one of its artifacts: only when the file's
    content is what the audit log recorded for it (``audit.check_model_anchor``), else
    ``RegistryTampered`` (exit 3). A model file edited by hand, or received through git with a
    version pointed at another artifact, is refused before any artifact is opened.

    Lock-free, in the order ``verify_chain`` reads: the head, then the model file, then the log;
    so a change landing meanwhile is seen whole or as entries past the head, never as tampering.
    """
    try:
        head = audit.read_head(head_path(repo))
    except (FormatError, NewerFormatError) as exc:
        raise RegistryTampered(
            f"{exc.message}; refusing to use a model's artifact", hint="run 'mlops audit verify'", model=name
        ) from None
    landed = head.get("seq") if head is not None and isinstance(head.get("seq"), int) else None
    doc = require_model(repo, name)
    audit.check_model_anchor(
        audit_path(repo),
        name,
        doc,
        shown(repo, model_path(repo, name)),
        landed_up_to=landed,
        refusing="to use its artifacts",
    )
    return doc


def find_record(doc: Mapping[str, Any], version: int) -> dict[str, Any]:
    for record in doc["versions"]:
        if record["version"] == version:
            return record  # type: ignore[no-any-return]
    numbers = [r["version"] for r in doc["versions"]]
    raise UnknownModelError(
        f"model '{doc['name']}' has no version {version}",
        hint=f"versions: {_ranges(numbers)}" if numbers else "it has no versions yet",
        model=doc["name"],
        version=version,
        known=numbers,
    )


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    numbers = sorted(numbers)
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 3:
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(str(n) for n in numbers)


def in_stage(doc: Mapping[str, Any], stage: str) -> list[dict[str, Any]]:
    return [r for r in doc["versions"] if r.get("stage", NONE) == stage]


def pick(doc: Mapping[str, Any], ref: Ref) -> dict[str, Any]:
    """The version record a reference names in this model."""
    name = doc["name"]
    if ref.version is not None:
        return find_record(doc, ref.version)
    if ref.label is None or ref.label == LATEST:
        if not doc["versions"]:
            raise UnknownModelError(f"model '{name}' has no versions", model=name)
        return max(doc["versions"], key=lambda r: r["version"])
    label = ref.label
    if label in STAGES:
        holders = in_stage(doc, label)
        if not holders:
            occupied = {r.get("stage") for r in doc["versions"]} - {NONE}
            raise UnknownModelError(
                f"model '{name}' has no version in {label}",
                hint=(
                    "stages in use: "
                    + ", ".join(
                        f"{s} (v{in_stage(doc, s)[0]['version']})" for s in STAGES if s in occupied and s != ARCHIVED
                    )
                    if occupied - {ARCHIVED}
                    else f"promote one: mlops promote {name} VERSION --to {label}"
                ),
                model=name,
                stage=label,
            )
        if len(holders) > 1:
            raise UnknownModelError(
                (
                    f"model '{name}' has {len(holders)} versions in {label} "
                    f"({', '.join(str(r['version']) for r in holders)})"
                ),
                hint=f"name one: {name}:VERSION",
                model=name,
                stage=label,
            )
        return holders[0]
    aliases = doc.get("aliases") or {}
    if label not in aliases:
        raise UnknownModelError(
            f"model '{name}' has no stage or alias '{label}'",
            hint=(
                "aliases: "
                + ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items()))
                + "; stages: staging, production"
            )
            if aliases
            else "stages: staging, production; no aliases yet (mlops alias NAME VERSION ALIAS)",
            model=name,
            alias=label,
        )
    return find_record(doc, aliases[label])


# --- writing -------------------------------------------------------------------------------------


def new_doc(name: str) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "name": name,
        "created_at": audit.now_iso(),
        "next_version": 1,
        "aliases": {},
        "production_history": [],
        "versions": [],
    }


def _all_docs(repo: Repo) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for name in model_names(repo):
        try:
            out[name] = load_model_doc(repo, name)
        except (FormatError, NewerFormatError):
            out[name] = None
    return out


class Transaction:
    """One locked change of the registry: read models, change them, commit with audit entries."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._docs: dict[str, dict[str, Any]] = {}
        self._originals: dict[str, dict[str, Any] | None] = {}
        self._events: list[tuple[str, dict[str, Any]]] = []
        self.entries: list[dict[str, Any]] = []

    def model(self, name: str, *, create: bool = False) -> dict[str, Any]:
        """The model's document, read inside the lock; changes to it are written at commit.

        The file must be what the audit log says it is (``audit.check_model_anchor``), and a
        missing file must not be one the log says was written (``audit.check_absent_model``):
        otherwise ``RegistryTampered`` and nothing is written.
        """
        if name not in self._docs:
            path = model_path(self.repo, name)
            doc = load_model_doc(self.repo, name)
            if doc is None:
                audit.check_absent_model(audit_path(self.repo), name, shown(self.repo, path))
                if not create:
                    require_model(self.repo, name)  # raises, listing what exists
                doc = new_doc(name)
                self._originals[name] = None
            else:
                audit.check_model_anchor(audit_path(self.repo), name, doc, shown(self.repo, path))
                self._originals[name] = copy.deepcopy(doc)
            self._docs[name] = doc
        return self._docs[name]

    def is_new(self, name: str) -> bool:
        """True when the model had no file before this transaction."""
        return self._originals.get(name) is None

    def target(self, name_or_ref: str, version: int | str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model document, version record) for ``NAME, VERSION``, or for one reference
        (``churn@staging``, ``churn:3``, ``churn`` = latest) when ``version`` is None; resolved
        here, inside the lock, so the version is the one the stage or alias names at this moment."""
        if version is None:
            ref = parse_ref(name_or_ref)
            doc = self.model(ref.name)
            return doc, pick(doc, ref)
        doc = self.model(check_name(name_or_ref))
        return doc, find_record(doc, parse_version(version))

    def record(self, event: str, **fields: Any) -> None:
        """An audit entry to append at commit (``model=`` ties it to a model's file)."""
        self._events.append((event, fields))

    def commit(self) -> list[dict[str, Any]]:
        """Audit entries first (fsynced), then the model files, then the head."""
        if not self._events:
            return []
        states: dict[str, str] = {}
        changed = [n for n, d in self._docs.items() if d != self._originals.get(n)]
        for name in changed:
            states[name] = audit.state_hash(self._docs[name])
        appender = audit.Appender.open(audit_path(self.repo))
        last_for: dict[str, dict[str, Any]] = {}
        for event, fields in self._events:
            model = fields.get("model")
            extra = {"state": states[model]} if model in states else {}
            entry = appender.append(event, {**fields, **extra})
            self.entries.append(entry)
            if model in states:
                last_for[model] = entry
        for name in changed:
            entry = last_for.get(name)
            if entry is None:  # a change with no entry naming its model: record one, never a silent edit
                entry = appender.append("model_updated", {"model": name, "state": states[name]})
                self.entries.append(entry)
            doc = self._docs[name]
            doc["audit"] = {"seq": entry["seq"], "hash": entry["hash"], "state": states[name]}
            models_dir(self.repo).mkdir(parents=True, exist_ok=True)
            atomic_write(model_path(self.repo, name), json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        audit.write_head(head_path(self.repo), appender.seq, appender.last)
        self._events.clear()
        self._originals.update({n: copy.deepcopy(d) for n, d in self._docs.items()})
        return self.entries


def _drop_stale_temps(repo: Repo) -> None:
    """Temp files a killed writer left beside the model files or the head (the lock is held, so
    no writer is using one): removed, so that nothing half-written is ever committed to git."""
    for folder in (registry_dir(repo), models_dir(repo)):
        remove_stale_temps(folder)


def registry_lock(repo: Repo) -> Any:
    return repo.lock("registry", what="the model registry")


@contextlib.contextmanager
def transaction(repo: Repo) -> Iterator[Transaction]:
    """Hold the registry lock, settle an interrupted change, yield; commit when the block ends.

    An exception inside the block writes nothing (the model files and the log stay as
    they were); a refusal that must still be logged calls ``commit`` itself before raising.
    """
    registry_dir(repo).mkdir(parents=True, exist_ok=True)
    with registry_lock(repo):
        _drop_stale_temps(repo)
        audit.settle(audit_path(repo), head_path(repo), lambda: _all_docs(repo))
        txn = Transaction(repo)
        yield txn
        txn.commit()
