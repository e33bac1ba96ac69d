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
from pathlib import Path

from .. import paths
from ..errors import DataError, FormatError
from ..fsio import FileLock, atomic_write
from ..paths import model_name_problem
from ..remotes.base import Remote, check_ref_name
from ..repo.repo import Repo
from ..tracking.refsync import RefsTransfer, pull_missing, push_missing
from .store import ANSWER_COLUMNS, LogProfile, Reference, monitor_dir

REF_PREFIX = "monitor/"
MAX_FILE_BYTES = 8 << 20  # a log file's profile is a few kB, its answers a few MB at most
REFERENCE = re.compile(r"reference-v[0-9]{1,9}\.json")
LOG_PROFILE_SUFFIX = ".json"
ANSWERS_SUFFIX = ".answers.parquet"


class ProfilesTransfer(RefsTransfer):
    """What ``push_profiles`` (sent, present) or ``pull_profiles`` (received, present) did."""

    NOUN = "monitoring profile file(s)"
    NAMES_KEY = "files"


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
    files = dict(_local_files(repo))
    pushed = push_missing(remote, REF_PREFIX, [(ref, ref) for ref in files], lambda ref: files[ref].read_bytes())
    return ProfilesTransfer(remote.name, "push", sent=pushed.sent, present=pushed.present)


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


def _target(repo: Repo, parts: tuple[str, ...]) -> Path:
    return monitor_dir(repo, parts[0]).joinpath(*parts[1:])


def pull_profiles(repo: Repo, remote: Remote) -> ProfilesTransfer:
    """Take the remote's profile files this repo lacks; a local file is never overwritten."""

    def place(parts: tuple[str, ...], checked: bytes) -> bool:
        target = _target(repo, parts)
        # a symlink planted inside .mlops/monitor would carry the file elsewhere: refused (exit 3)
        relative_folder = "/".join(("monitor", *parts[:-1]))
        destinations = paths.Destinations(repo.dot)
        destinations.check_folder(relative_folder, where="the monitor folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        destinations.check_folder(relative_folder, where="the monitor folder")
        with FileLock(monitor_dir(repo, parts[0]) / "lock", what=f"the monitor profiles of {parts[0]}"):
            if os.path.lexists(target):
                return False
            atomic_write(target, checked)
        return True

    pulled = pull_missing(
        remote,
        REF_PREFIX,
        key_of=relative_parts,
        have=lambda parts: os.path.lexists(_target(repo, parts)),
        check=check_file,
        place=place,
        names="a monitoring profile",
        invalid="valid",
    )
    return ProfilesTransfer(
        remote.name,
        "pull",
        received=tuple(sorted(REF_PREFIX + "/".join(parts) for parts in pulled.received)),
        present=tuple(sorted(REF_PREFIX + "/".join(parts) for parts in pulled.present)),
        warnings=pulled.warnings,
    )
