"""Model bundles: one registered version as a folder that serves without a repository.

``mlops export model churn@production -o bundle/`` writes (``exporters/bundle.py``)::

    bundle/
      mlops-bundle.json     the manifest: format, model, version, and every other file's SHA-256 and size
      model.json            version facts: flavor, signature, artifact hashes, metrics, params, lineage,
                            the environment it was registered in, the deployment as of export
      artifact/<filename>   the registered artifact, byte for byte
      card.md               the model card
      requirements.txt      pinned: the artifact's libraries as registered, mlops' serving runtime as exported

``mlops serve --model-dir bundle/`` opens it here: a bundle is received content (it travels
through object stores, image layers and KServe's storage initializer), so before a byte of the
artifact is unpickled every name in the manifest passes ``mlops.paths``, every file found is
one the manifest lists (no extra, no symlink, nothing missing), and every file's SHA-256 and size
match. Any difference is ``CorruptObjectError`` (exit 3) naming the file; a folder with no manifest
at all is not a bundle (``UsageError``, exit 2). The artifact is then
read once, checked against model.json's xxh3 and SHA-256, and loaded from those same bytes.

The manifest detects change in transit and on disk; it does not say who wrote the bundle (anyone
who can rewrite the files can rewrite the manifest): ``bundle_digest`` is the SHA-256 of the
manifest, printed at export, and ``serve --model-dir --expect-digest`` refuses any other bundle.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ConfigError, CorruptObjectError, CouldNotComplete, NewerFormatError, UsageError, one_line
from ..formats import parse_json
from ..store.hashing import hash_bytes
from .signature import Signature
from .source import ModelInfo, servable

MANIFEST = "mlops-bundle.json"
FACTS = "model.json"
CARD = "card.md"
REQUIREMENTS = "requirements.txt"
ARTIFACT_DIR = "artifact"
BUNDLE_FORMAT = 1
MAX_MANIFEST_BYTES = 4 << 20  # a bundle lists a handful of files; a larger manifest is not one mlops wrote
MAX_FILES = 10_000


@dataclass(frozen=True)
class Bundle:
    root: Path
    digest: str  # SHA-256 of the manifest's bytes: names this exact bundle
    files: dict[str, dict[str, Any]]  # rel -> {"sha256", "size"}
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.facts["name"])

    @property
    def version(self) -> int:
        return int(self.facts["version"])

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            version=self.version,
            stage=str(self.facts.get("stage", "none")),
            signature=Signature.from_dict(self.facts.get("signature")),
            flavor=str(self.facts.get("flavor", "file")),
            artifact=str(self.facts["artifact"]["hash"]),
        )


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _refuse(root: Path, rel: str, why: str) -> CorruptObjectError:
    return CorruptObjectError(
        f"bundle {root}: {rel} {why}; refusing to serve it",
        hint="export the bundle again (mlops export model), or copy it whole from where it was exported",
        bundle=str(root),
        file=rel,
    )


def _found_files(root: Path) -> dict[str, os.stat_result]:
    """Every entry below ``root`` that is not a folder, by relative posix path (symlinks not followed)."""
    found: dict[str, os.stat_result] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            full = os.path.join(folder, name)
            st = os.lstat(full)
            rel = Path(os.path.relpath(full, root)).as_posix()
            if stat.S_ISDIR(st.st_mode):
                continue
            found[rel] = st
            if len(found) > MAX_FILES:
                raise _refuse(root, rel, f"is past the {MAX_FILES} files a bundle may hold")
    return found


def open_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Verify the bundle at ``path`` and return it (see the module's docstring); nothing is loaded."""
    root = Path(os.path.abspath(path))
    if not root.is_dir():
        what = "is a file, not a bundle folder" if root.exists() else "no such folder"
        raise UsageError(f"--model-dir {path}: {what}", hint="export one with 'mlops export model REF -o DIR'")
    manifest_path = root / MANIFEST
    try:
        st = os.lstat(manifest_path)
    except FileNotFoundError:
        # bad input, not damage: nothing here claims to be a bundle (a tampered bundle, manifest present, is exit 3)
        raise UsageError(
            f"--model-dir {path}: not an mlops bundle (no {MANIFEST} in it)",
            hint="export one with 'mlops export model REF -o DIR', or copy the whole bundle folder",
            bundle=str(root),
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(root, MANIFEST, "is not a regular file")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise _refuse(root, MANIFEST, f"is larger than {MAX_MANIFEST_BYTES} bytes")
    data = manifest_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        manifest = parse_json(data, MANIFEST)
    except ConfigError as exc:
        raise _refuse(root, MANIFEST, f"does not parse ({exc.message})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "mlops-bundle":
        raise _refuse(root, MANIFEST, "is not an mlops bundle manifest")
    version = manifest.get("format")
    if not isinstance(version, int):
        raise _refuse(root, MANIFEST, "has no whole-number format")
    if version > BUNDLE_FORMAT:
        raise NewerFormatError(
            f"bundle {root}: written by a newer mlops (bundle format {version}; this one reads up to {BUNDLE_FORMAT})",
            hint="serve it with the mlops version its requirements.txt pins",
        )
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        raise _refuse(root, MANIFEST, "lists no files")
    where = f"{root / MANIFEST}"
    files: dict[str, dict[str, Any]] = {}
    for rel, entry in listed.items():
        paths.check_relpath(rel, where=where)
        if rel == MANIFEST:
            raise _refuse(root, MANIFEST, "lists itself")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("size"), int)
        ):
            raise _refuse(root, MANIFEST, f"has no sha256 and size for {rel}")
        files[rel] = entry
    paths.check_unique([rel.lower() for rel in files], where=where)  # one file per name on any disk
    found = _found_files(root)
    for rel in sorted(found):
        if rel == MANIFEST:
            continue
        if rel not in files:
            raise _refuse(root, rel, "is not in the bundle's manifest (an extra file)")
        if not stat.S_ISREG(found[rel].st_mode):
            raise _refuse(root, rel, "is not a regular file (a symlink or a device)")
    facts_bytes = b""
    for rel, entry in sorted(files.items()):
        if rel not in found:
            raise _refuse(root, rel, "is missing")
        if rel == FACTS and found[rel].st_size <= MAX_MANIFEST_BYTES:  # parsed from the very bytes hashed
            facts_bytes = (root / rel).read_bytes()
            digest_of_file = hashlib.sha256(facts_bytes).hexdigest()
        else:
            digest_of_file = sha256_file(root / rel)
        if found[rel].st_size != entry["size"] or digest_of_file != entry["sha256"]:
            raise _refuse(root, rel, "does not match its hash in the manifest (changed after export)")
    facts = _facts(root, files, facts_bytes)
    return Bundle(root=root, digest=digest, files=files, facts=facts)


def _facts(root: Path, files: dict[str, dict[str, Any]], data: bytes) -> dict[str, Any]:
    if FACTS not in files:
        raise _refuse(root, FACTS, "is missing from the manifest")
    if not data:
        raise _refuse(root, FACTS, f"is empty or larger than {MAX_MANIFEST_BYTES} bytes")
    facts = parse_json(data, f"{root / FACTS}")
    if not isinstance(facts, dict):
        raise _refuse(root, FACTS, "is not a mapping")
    art = facts.get("artifact")
    if (
        not isinstance(facts.get("name"), str)
        or paths.model_name_problem(facts["name"])
        or not isinstance(facts.get("version"), int)
        or not isinstance(art, dict)
        or not isinstance(art.get("path"), str)
        or not isinstance(art.get("hash"), str)
    ):
        raise _refuse(root, FACTS, "lacks the model's name, version or artifact")
    rel = paths.check_relpath(art["path"], where=f"{root / FACTS}")
    if art.get("kind", "file") == "dir":
        if not any(name.startswith(rel + "/") for name in files):
            raise _refuse(root, rel, "is the artifact folder model.json names, but the manifest lists nothing in it")
    elif rel not in files:
        raise _refuse(root, rel, "is the artifact model.json names, but the manifest does not list it")
    return facts


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def _read_listed(path: Path, size: int) -> bytes:
    """A listed file's bytes, the link itself never followed and at most one byte past its listed size read
    (a file swapped for a link or a larger one after open_bundle then fails its hash check, cheaply)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read(size + 1)


#: how a bundle's scikit-learn model is served: its ONNX form when the bundle has one and onnxruntime
#: is installed (auto), the pickle whatever the bundle holds, or the ONNX form or nothing
RUNTIMES = ("auto", "pickle", "onnx")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime {runtime}: not one of {', '.join(RUNTIMES)}")
    return runtime


class BundleSource:
    """A ModelSource over one verified bundle: the one version it holds answers every reference to
    its model; registry actions (promotion, audit) belong to the repository it was exported from."""

    def __init__(self, bundle: Bundle, *, runtime: str = "auto") -> None:
        self.bundle = bundle
        self.runtime = check_runtime(runtime)

    def resolve(self, ref: str) -> ModelInfo:
        info = self.bundle.info()
        name, _, rest = ref.partition(":") if ":" in ref else ref.partition("@")
        if name != info.name or (":" in ref and rest != str(info.version)):
            raise UsageError(
                f"{ref}: the bundle at {self.bundle.root} holds {info.ref()} only",
                hint="export the version you want with 'mlops export model'",
            )
        return info

    def load(self, info: ModelInfo) -> Any:
        from ..registry import flavors, pyfunc

        art = self.bundle.facts["artifact"]
        rel = art["path"]
        if art.get("kind", "file") == "dir" and info.flavor == pyfunc.PYTHON:
            # every file of the folder was hash-checked with the bundle (open_bundle); nothing else is read
            return servable(info, pyfunc.load_python_model(self.bundle.root / rel, f"bundle {info.ref()}"))
        compiled = self._compiled(info)
        if compiled is not None:
            return compiled
        if art.get("kind", "file") != "file":
            raise ConfigError(f"{info.ref()} is a folder artifact; mlops serves pickled and Python class models")
        # read once, checked against the manifest's SHA-256 (which model.json's must equal: both name the same
        # bytes) and the registry's xxh3, and loaded from these bytes: a file swapped after open_bundle is refused
        if art.get("sha256") not in (None, self.bundle.files[rel]["sha256"]):
            raise _refuse(self.bundle.root, FACTS, f"records another SHA-256 for {rel} than the manifest")
        data = self._listed_bytes(rel)
        if hash_bytes(data) != art["hash"]:
            raise _refuse(self.bundle.root, rel, "does not match the registry's hash in model.json")
        if flavors.serialization(data) is None:
            raise ConfigError(f"{info.ref()}: {rel} is not a pickle or joblib file; mlops serves pickled models")
        return servable(info, flavors.load_object(data, info.ref()))

    def _listed_bytes(self, rel: str) -> bytes:
        """A listed file's bytes, read once more (the link itself never followed, at most one byte past its
        listed size) and checked against the manifest's SHA-256: what is loaded is what open_bundle checked."""
        try:
            data = _read_listed(self.bundle.root / rel, self.bundle.files[rel]["size"])
        except OSError:
            raise _refuse(self.bundle.root, rel, "cannot be read as a regular file (changed after export)") from None
        if hashlib.sha256(data).hexdigest() != self.bundle.files[rel]["sha256"]:
            raise _refuse(self.bundle.root, rel, "does not match its hash in the manifest (changed after export)")
        return data

    def _compiled(self, info: ModelInfo) -> Any:
        """The bundle's ONNX form as the model (serve/onnx_model.py), or None to serve the pickle."""
        import logging

        from .onnx_model import CompiledFormError, OnnxModel, describe, load_session, runtime_too_old

        entry = self.bundle.facts.get("compiled")
        if self.runtime == "pickle" or (entry is None and self.runtime == "auto"):
            return None
        if entry is None:
            raise UsageError(
                f"--runtime onnx: the bundle at {self.bundle.root} has no ONNX form",
                hint="export it with 'mlops export model REF --onnx', or serve the pickle (--runtime auto)",
            )
        try:
            form = describe(entry)
        except CompiledFormError as exc:
            raise _refuse(self.bundle.root, FACTS, f"has a 'compiled' entry that {exc}") from None
        if form.path not in self.bundle.files:
            raise _refuse(self.bundle.root, form.path, "is the ONNX form model.json names, but not in the manifest")
        try:
            too_old = runtime_too_old()
        except ImportError:  # onnxruntime itself
            if self.runtime == "onnx":
                raise UsageError(
                    "--runtime onnx: onnxruntime is not installed", hint="pip install 'mlops[onnx]'"
                ) from None
            logging.getLogger("mlops.serve").warning(
                "%s has an ONNX form but onnxruntime is not installed: serving the pickle "
                "(pip install 'mlops[onnx]' for the lighter server)",
                info.ref(),
            )
            return None
        if too_old:
            raise UsageError(
                f"onnxruntime {too_old} predates the checks that keep a model's external data inside its folder",
                hint="pip install 'onnxruntime>=1.30' (or serve the pickle: --runtime pickle)",
            )
        names = set(info.signature.names) if info.signature is not None else None
        if names is not None and any(c not in names for item in form.inputs for c in item.columns):
            raise _refuse(self.bundle.root, FACTS, "has a 'compiled' entry that feeds columns the signature lacks")
        data = self._listed_bytes(form.path)
        try:
            return servable(info, OnnxModel(form, load_session(data)))
        except CompiledFormError as exc:
            raise _refuse(self.bundle.root, FACTS, f"has a 'compiled' entry that {exc}") from None
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own refusal of the bytes, in one line
            # the bytes are the ones listed: an opset newer than this onnxruntime, or a bundle made to fail
            raise CouldNotComplete(
                f"bundle {self.bundle.root}: onnxruntime {_onnxruntime_version()} cannot load {form.path} "
                f"({one_line(exc)})",
                hint="upgrade onnxruntime, or serve the pickle (--runtime pickle)",
            ) from None

    def promote(self, name: str, version: int, *, reason: str, actor: str, force: bool = False) -> None:
        raise UsageError(
            f"a bundle serves {self.bundle.info().ref()} only: promotions happen in the repository it came from",
            hint="promote there, export again, and roll the new bundle out",
        )

    def audit(self, event: str, **fields: Any) -> None:
        """No registry to append to: the server's own log carries the event."""
        import logging

        logging.getLogger("mlops.serve").info("bundle event %s: %s", event, fields)
