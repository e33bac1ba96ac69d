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

import contextlib
import json
import os
from collections.abc import Iterator

from .. import paths
from ..errors import FormatError
from ..formats import parse_json
from ..fsio import atomic_write
from ..remotes.base import Remote, check_ref_name
from ..repo.repo import Repo
from ..tracking.refsync import RefsTransfer, name_in, pull_missing, push_missing
from . import store

REF_PREFIX = "experiments/"
REF_SUFFIX = ".json"


class RecordsTransfer(RefsTransfer):
    """What ``push_records`` (sent, present) or ``pull_records`` (received, present) did."""

    NOUN = "experiment(s)"
    NAMES_KEY = "names"


def ref_name(name: str) -> str:
    return check_ref_name(f"{REF_PREFIX}{store.check_name(name)}{REF_SUFFIX}")


def name_of(ref: str) -> str | None:
    """The experiment name a ref names (``experiments/<name>.json``); None for anything else."""
    return name_in(ref, REF_PREFIX, REF_SUFFIX, store.NAME)


def _serialized(experiment: store.Experiment) -> bytes:
    return (json.dumps(experiment.to_doc(), indent=1, default=str) + "\n").encode("utf-8")


def push_records(repo: Repo, remote: Remote) -> RecordsTransfer:
    """Send every readable record the remote lacks (the objects they name went first)."""
    warnings: list[str] = []
    records = [(ref_name(experiment.name), experiment) for experiment in store.read_all(repo, warnings)]
    pushed = push_missing(remote, REF_PREFIX, records, _serialized)
    return RecordsTransfer(
        remote.name,
        "push",
        sent=tuple(e.name for e in pushed.sent),
        present=tuple(e.name for e in pushed.present),
        warnings=tuple(warnings),
    )


def check_record(name: str, data: bytes) -> store.Experiment:
    """The record in ``data`` (received from a remote as ``name``), checked; FormatError if not one."""
    if len(data) > store.MAX_RECORD_BYTES:
        raise FormatError(f"larger than {store.MAX_RECORD_BYTES >> 20} MiB")
    doc = parse_json(data, f"{name}.json")
    try:
        return store.parse(doc, f"{name}.json")
    except (ValueError, TypeError) as exc:
        raise FormatError(str(exc)) from None


def pull_records(repo: Repo, remote: Remote) -> RecordsTransfer:
    """Take the remote's records this repo lacks; a local record is never overwritten."""

    @contextlib.contextmanager
    def session() -> Iterator[None]:
        # a symlink planted at .mlops/experiments would carry the records elsewhere: refused (exit 3)
        paths.Destinations(repo.dot).check_folder(store.FOLDER, where="the experiments folder")
        store.ensure_folder(repo)
        with store.lock(repo):
            yield

    def place(name: str, experiment: store.Experiment) -> bool:
        target = store.record_path(repo, name)
        if os.path.lexists(target):
            return False
        atomic_write(target, _serialized(experiment))
        return True

    pulled = pull_missing(
        remote,
        REF_PREFIX,
        key_of=name_of,
        have=lambda name: store.exists(repo, name),
        check=check_record,
        place=place,
        names="an experiment",
        invalid="a valid experiment record",
        session=session,
    )
    return RecordsTransfer(
        remote.name,
        "pull",
        received=tuple(sorted(pulled.received)),
        present=tuple(sorted(pulled.present)),
        warnings=pulled.warnings,
    )
