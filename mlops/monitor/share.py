"""Share monitoring profiles through a remote, beside the runs: ``mlops push --runs`` / ``pull --runs``.

Each profile file travels as ONE ref on the remote, named by its place under ``.mlops/monitor/``:

```
monitor/<model>/reference-v<version>.json
monitor/<model>/logs/<basis id>/<log>.json            a request-log file's hourly profiles
monitor/<model>/logs/<basis id>/<log>.answers.parquet  its answers, for labels that come later
```

A profile is written once (``store.build``), so one already on the other side is left as it is.
Pulled files are received content: the ref name must match one of the shapes above with a valid
model name and plain path components (``paths`` rules); the bytes are bounded by the remote's ref
bound and ``MAX_FILE_BYTES``; a reference or log profile must pass its own ``from_dict``, and an
answers file must be Parquet with the answer columns. What is written goes through
``fsio.atomic_write`` under the model's monitor lock; a local file is never overwritten. The request
logs themselves never travel: a clone with the profiles can ``monitor check`` without them.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import DataError, FormatError, RemoteError, UsageError
from ..fsio import FileLock, atomic_write
from ..paths import model_name_problem
from ..remotes.base import Remote, check_ref_name
from ..repo.repo import Repo
from .store import ANSWER_COLUMNS, LogProfile, Reference, monitor_dir

REF_PREFIX = "monitor/"
MAX_FILE_BYTES = 8 << 20  # a log file's profile is a few kB, its answers a few MB at most
REFERENCE = re.compile(r"reference-v[0-9]{1,9}\.json")
LOG_PROFILE_SUFFIX = ".json"
ANSWERS_SUFFIX = ".answers.parquet"


@dataclass(frozen=True)
class ProfilesTransfer:
    """What ``push_profiles`` (sent, present) or ``pull_profiles`` (received, present) did."""

    remote: str
    direction: str  # push | pull
    sent: tuple[str, ...] = ()
    received: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        moved = len(self.sent) if self.direction == "push" else len(self.received)
        where = "there" if self.direction == "push" else "here"
        verb = "pushed" if self.direction == "push" else "pulled"
        return f"{verb} {moved} monitoring profile file(s) ({len(self.present)} already {where}) via {self.remote}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "direction": self.direction,
            "files": list(self.sent if self.direction == "push" else self.received),
            "present": len(self.present),
            "warnings": list(self.warnings),
        }


def relative_parts(ref: str) -> tuple[str, ...] | None:
    """The path under ``.mlops/monitor/`` a ref names (model first), or None when it names no profile file."""
    if not ref.startswith(REF_PREFIX):
        return None
    parts = tuple(ref[len(REF_PREFIX) :].split("/"))
    if any(paths.name_problem(p) for p in parts) or model_name_problem(parts[0]):
        return None
    if len(parts) == 2 and REFERENCE.fullmatch(parts[1]):
        return parts
    if len(parts) == 4 and parts[1] == "logs":
        name = parts[3]
        if name.endswith(ANSWERS_SUFFIX) and len(name) > len(ANSWERS_SUFFIX):
            return parts
        if name.endswith(LOG_PROFILE_SUFFIX) and not name.endswith(ANSWERS_SUFFIX) and len(name) > 5:
            return parts
    return None


def _local_files(repo: Repo) -> list[tuple[str, Path]]:
    """(ref name, path) of every profile file in this repo."""
    root = repo.dot / "monitor"
    found: list[tuple[str, Path]] = []
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        ref = REF_PREFIX + path.relative_to(root).as_posix()
        if relative_parts(ref) is not None:
            found.append((check_ref_name(ref), path))
    return found


def push_profiles(repo: Repo, remote: Remote) -> ProfilesTransfer:
    """Send every profile file the remote lacks."""
    existing = set(remote.list_refs(REF_PREFIX))
    sent: list[str] = []
    present: list[str] = []
    for ref, path in _local_files(repo):
        if ref in existing:
            present.append(ref)
            continue
        remote.put_ref(ref, path.read_bytes())
        sent.append(ref)
    return ProfilesTransfer(remote.name, "push", sent=tuple(sent), present=tuple(present))


def check_file(parts: tuple[str, ...], data: bytes) -> bytes:
    """``data`` received as the profile file ``parts``, checked; FormatError if it is not one."""
    where = "/".join(parts)
    if len(data) > MAX_FILE_BYTES:
        raise FormatError(f"larger than {MAX_FILE_BYTES >> 20} MiB")
    if parts[-1].endswith(ANSWERS_SUFFIX):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as exc:
            raise FormatError(f"{where}: not Parquet ({exc})") from None
        missing = [c for c in ANSWER_COLUMNS if c not in table.schema.names]
        if missing:
            raise FormatError(f"{where}: no column(s) {', '.join(missing)}")
        return data
    from ..formats import parse_json

    doc = parse_json(data, where)
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: not a JSON object")
    try:
        if len(parts) == 2:
            ref = Reference.from_dict(doc, where)
            if ref.model != parts[0] or parts[1] != f"reference-v{ref.version}.json":
                raise FormatError(f"{where}: holds the reference of {ref.model} v{ref.version}")
            return json.dumps(ref.to_dict(), separators=(",", ":")).encode("utf-8")
        log = LogProfile.from_dict(doc, where)
        if log.basis != parts[2]:
            raise FormatError(f"{where}: profiles basis {log.basis}, not {parts[2]}")
        return json.dumps(log.to_dict(), separators=(",", ":")).encode("utf-8")
    except (KeyError, ValueError, TypeError, AttributeError, DataError) as exc:
        raise FormatError(f"{where}: not a monitoring profile ({getattr(exc, 'message', exc)})") from None


def pull_profiles(repo: Repo, remote: Remote) -> ProfilesTransfer:
    """Take the remote's profile files this repo lacks; a local file is never overwritten."""
    received: list[str] = []
    present: list[str] = []
    warnings: list[str] = []
    for ref in remote.list_refs(REF_PREFIX):
        parts = relative_parts(ref)
        if parts is None:
            warnings.append(f"ref {ascii(ref[:120])} on remote '{remote.name}' names no monitoring profile; skipped")
            continue
        folder = monitor_dir(repo, parts[0])
        target = folder.joinpath(*parts[1:])
        if os.path.lexists(target):
            present.append(ref)
            continue
        try:
            data = remote.get_ref(ref)
        except RemoteError as exc:
            warnings.append(f"{exc.message}; skipped")
            continue
        if data is None:
            warnings.append(f"{ref} vanished from remote '{remote.name}' while pulling; skipped")
            continue
        try:
            checked = check_file(parts, data)
        except (FormatError, UsageError) as exc:
            warnings.append(f"{ref} on remote '{remote.name}' is not valid: {exc.message}; skipped")
            continue
        # a symlink planted inside .mlops/monitor would carry the file elsewhere: refused (exit 3)
        relative_folder = "/".join(("monitor", *parts[:-1]))
        destinations = paths.Destinations(repo.dot)
        destinations.check_folder(relative_folder, where="the monitor folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        destinations.check_folder(relative_folder, where="the monitor folder")
        with FileLock(folder / "lock", what=f"the monitor profiles of {parts[0]}"):
            if os.path.lexists(target):
                present.append(ref)
                continue
            atomic_write(target, checked)
        received.append(ref)
    return ProfilesTransfer(
        remote.name, "pull", received=tuple(sorted(received)), present=tuple(sorted(present)), warnings=tuple(warnings)
    )
