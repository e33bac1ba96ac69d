"""Share experiment records through a remote, beside the runs: ``mlops push --runs`` / ``pull --runs``.

A record travels as ONE ref on the remote, ``experiments/<name>.json``, holding the record as
``.mlops/experiments/<name>.json`` has it. The objects a record names (outputs, the files
``exp apply`` writes) are data roots (``keep.experiment_roots``): the CLI pushes them before the
records, and pulls the records before it computes what to fetch, so a teammate's clone gets the
records and their objects in one command and can ``exp show`` and ``exp apply`` them.

- ``push_records`` sends every record the remote lacks (one listing); a record is written once,
  when its experiment ends, so one already there is left as it is.
- ``pull_records`` takes the remote's records this repo lacks. Each is received content: the ref
  name must be ``experiments/<experiment name>.json`` with a plain name (``paths`` rules), the
  bytes are bounded (``store.MAX_RECORD_BYTES``) and parsed bounded, and the record must pass
  ``store.parse`` (its name matches, its paths are safe relative paths, its hashes object names).
  What is written is the checked record, re-serialized, by ``fsio.atomic_write`` under the
  records' lock; a local record of the same name is never overwritten.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .. import paths
from ..errors import FormatError, RemoteError, UsageError
from ..formats import parse_json
from ..fsio import atomic_write
from ..remotes.base import Remote, check_ref_name
from ..repo.repo import Repo
from . import store

REF_PREFIX = "experiments/"
REF_SUFFIX = ".json"


@dataclass(frozen=True)
class RecordsTransfer:
    """What ``push_records`` (sent, present) or ``pull_records`` (received, present) did."""

    remote: str
    direction: str  # push | pull
    sent: tuple[str, ...] = ()
    received: tuple[str, ...] = ()
    present: tuple[str, ...] = ()  # already on the other side: left as they are
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        moved = len(self.sent) if self.direction == "push" else len(self.received)
        where = "there" if self.direction == "push" else "here"
        verb = "pushed" if self.direction == "push" else "pulled"
        return f"{verb} {moved} experiment(s) ({len(self.present)} already {where}) via {self.remote}"

    def to_dict(self) -> dict[str, Any]:
        names = list(self.sent if self.direction == "push" else self.received)
        return {
            "remote": self.remote,
            "direction": self.direction,
            "names": names,
            "present": len(self.present),
            "warnings": list(self.warnings),
        }


def ref_name(name: str) -> str:
    return check_ref_name(f"{REF_PREFIX}{store.check_name(name)}{REF_SUFFIX}")


def name_of(ref: str) -> str | None:
    """The experiment name a ref names (``experiments/<name>.json``); None for anything else."""
    if not (ref.startswith(REF_PREFIX) and ref.endswith(REF_SUFFIX)):
        return None
    name = ref[len(REF_PREFIX) : -len(REF_SUFFIX)]
    if not store.NAME.fullmatch(name) or paths.name_problem(name):
        return None
    return name


def _shown(text: str) -> str:
    return ascii(text[:120] + ("..." if len(text) > 120 else ""))


def push_records(repo: Repo, remote: Remote) -> RecordsTransfer:
    """Send every readable record the remote lacks (the objects they name went first)."""
    existing = set(remote.list_refs(REF_PREFIX))
    sent: list[str] = []
    present: list[str] = []
    warnings: list[str] = []
    for experiment in store.read_all(repo, warnings):
        name = ref_name(experiment.name)
        if name in existing:
            present.append(experiment.name)
            continue
        data = json.dumps(experiment.to_doc(), indent=1, default=str) + "\n"
        remote.put_ref(name, data.encode("utf-8"))
        sent.append(experiment.name)
    return RecordsTransfer(remote.name, "push", sent=tuple(sent), present=tuple(present), warnings=tuple(warnings))


def check_record(name: str, data: bytes) -> store.Experiment:
    """The record in ``data`` (received from a remote as ``name``), checked; FormatError if not one."""
    if len(data) > store.MAX_RECORD_BYTES:
        raise FormatError(f"larger than {store.MAX_RECORD_BYTES >> 20} MiB")
    doc = parse_json(data, f"{name}.json")
    return store.parse(doc, f"{name}.json")


def pull_records(repo: Repo, remote: Remote) -> RecordsTransfer:
    """Take the remote's records this repo lacks; a local record is never overwritten."""
    received: list[str] = []
    present: list[str] = []
    warnings: list[str] = []
    wanted: list[str] = []
    for ref in remote.list_refs(REF_PREFIX):
        name = name_of(ref)
        if name is None:
            warnings.append(f"ref {_shown(ref)} on remote '{remote.name}' does not name an experiment; skipped")
        elif store.exists(repo, name):
            present.append(name)
        else:
            wanted.append(name)
    if wanted:
        # a symlink planted at .mlops/experiments would carry the records elsewhere: refused (exit 3)
        paths.Destinations(repo.dot).check_folder(store.FOLDER, where="the experiments folder")
        store.ensure_folder(repo)
        with store.lock(repo):
            for name in wanted:
                try:
                    data = remote.get_ref(ref_name(name))
                except RemoteError as exc:  # e.g. a ref past the remote's size bound: that one is skipped
                    warnings.append(f"{exc.message}; skipped")
                    continue
                if data is None:
                    warnings.append(f"experiment {name} vanished from remote '{remote.name}' while pulling; skipped")
                    continue
                try:
                    experiment = check_record(name, data)
                except (FormatError, UsageError, ValueError, TypeError) as exc:
                    warnings.append(
                        f"{ref_name(name)} on remote '{remote.name}' is not a valid experiment record: "
                        f"{getattr(exc, 'message', exc)}; skipped"
                    )
                    continue
                target = store.record_path(repo, name)
                if os.path.lexists(target):
                    present.append(name)
                    continue
                atomic_write(target, json.dumps(experiment.to_doc(), indent=1, default=str) + "\n")
                received.append(name)
    return RecordsTransfer(
        remote.name, "pull", received=tuple(sorted(received)), present=tuple(sorted(present)), warnings=tuple(warnings)
    )
