"""Records moved through a remote as named refs, one ref a record: the loops ``push --runs`` and
``pull --runs`` share for runs (``tracking/sync.py``), experiments (``experiments/share.py``) and
monitoring profiles (``monitor/share.py``).

A record is written once where it is made and never changes after, so both directions move only
what the other side lacks (one listing) and leave what is there as it is:

- ``push_missing`` sends each local record whose ref the remote does not list.
- ``pull_missing`` lists the remote's refs under a prefix; a ref that names no record (``key_of``
  says None) is skipped with a warning, one this repo has (``have``) is counted present, and each
  other one is read, checked by the caller's ``check`` (received content: it raises ``FormatError``,
  a ``UsageError`` or ``UnsafeNameError`` to refuse it, which skips that ref with a warning) and
  placed by the caller's ``place`` (False when a local record of that name appeared meanwhile: a
  local record is never overwritten). A ref the remote refuses to read (``RemoteError``, e.g. one
  past its size bound, not a file; the error names the ref) or one gone since the listing is skipped
  with a warning too; any other ``RemoteError`` (the remote down) stops the pull. The room's own
  folder check and lock wrap the placing through ``session``, entered only when something is wanted.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from .. import paths
from ..errors import FormatError, RemoteError, UnsafeNameError, UsageError
from ..parallel import run_parallel
from ..progress import NO_PROGRESS, Progress
from ..remotes.base import Remote

Item = TypeVar("Item")
Key = TypeVar("Key")
Checked = TypeVar("Checked")

# what a caller's check raises to refuse received content: that ref is skipped with a warning
REFUSED = (FormatError, UsageError, UnsafeNameError)


def shown(text: str) -> str:
    """A received name in a one-line warning: control characters escaped, length bounded."""
    return ascii(text[:120] + ("..." if len(text) > 120 else ""))


def name_in(ref: str, prefix: str, suffix: str, pattern: re.Pattern[str]) -> str | None:
    """The name a received ref ``<prefix><name><suffix>`` holds when it matches ``pattern`` and is a
    plain name by ``paths`` rules; None for anything else."""
    if not (ref.startswith(prefix) and ref.endswith(suffix)) or len(ref) <= len(prefix) + len(suffix):
        return None
    name = ref[len(prefix) : len(ref) - len(suffix)]
    if not pattern.fullmatch(name) or paths.name_problem(name):
        return None
    return name


@dataclass(frozen=True)
class Pushed(Generic[Item]):
    sent: tuple[Item, ...]
    present: tuple[Item, ...]  # already on the remote: left as they are


@dataclass(frozen=True)
class Pulled(Generic[Key]):
    received: tuple[Key, ...]
    present: tuple[Key, ...]  # the remote's records this repo already has (left as they are)
    warnings: tuple[str, ...]


def push_missing(
    remote: Remote,
    prefix: str,
    items: Iterable[tuple[str, Item]],
    payload: Callable[[Item], bytes],
    *,
    jobs: int | None = 1,
    progress: Progress = NO_PROGRESS,
    label: str = "",
) -> Pushed[Item]:
    """Send ``payload(item)`` as the ref of each ``(ref name, item)`` the remote does not list under ``prefix``."""
    existing = set(remote.list_refs(prefix))
    todo: list[tuple[str, Item]] = []
    present: list[Item] = []
    for ref, item in items:
        if ref in existing:
            present.append(item)
        else:
            todo.append((ref, item))

    def send(entry: tuple[str, Item]) -> Item:
        ref, item = entry
        remote.put_ref(ref, payload(item))
        return item

    sent: list[Item] = []
    if todo:
        with progress.task(label, total=len(todo)) as task, run_parallel(send, todo, jobs=jobs) as results:
            for item in results:
                sent.append(item)
                task.advance()
    return Pushed(tuple(sent), tuple(present))


def pull_missing(
    remote: Remote,
    prefix: str,
    *,
    key_of: Callable[[str], Key | None],
    have: Callable[[Key], bool],
    check: Callable[[Key, bytes], Checked],
    place: Callable[[Key, Checked], bool],
    names: str,
    invalid: str,
    session: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    jobs: int | None = 1,
    progress: Progress = NO_PROGRESS,
    label: str = "",
) -> Pulled[Key]:
    """Take the remote's records under ``prefix`` this repo lacks (see the module's text).

    ``names`` ends the warning for a ref that names no record ("a run"), ``invalid`` the one for a
    record that does not check ("a valid run bundle")."""
    remote.check_root()  # an absent remote is an outage, not one with no records
    present: list[Key] = []
    wanted: list[tuple[str, Key]] = []
    warnings: list[str] = []
    for ref in remote.list_refs(prefix):
        key = key_of(ref)
        if key is None:
            warnings.append(f"ref {shown(ref)} on remote '{remote.name}' does not name {names}; skipped")
        elif have(key):
            present.append(key)
        else:
            wanted.append((ref, key))

    def fetch(entry: tuple[str, Key]) -> tuple[str, Key, bytes | RemoteError | None]:
        ref, key = entry
        try:
            return ref, key, remote.get_ref(ref)
        except RemoteError as exc:
            if exc.fields.get("ref") != ref:
                raise  # the remote failed, not this ref: the pull cannot complete (exit 3)
            return ref, key, exc  # the remote refused this one ref (past its size bound, not a file): skipped

    received: list[Key] = []
    if wanted:
        with (
            session(),
            progress.task(label, total=len(wanted)) as task,
            run_parallel(fetch, wanted, jobs=jobs) as results,
        ):
            for ref, key, data in results:
                task.advance()
                if isinstance(data, RemoteError):
                    warnings.append(f"{data.message}; skipped")
                    continue
                if data is None:
                    warnings.append(f"{ref} vanished from remote '{remote.name}' while pulling; skipped")
                    continue
                try:
                    checked = check(key, data)
                except REFUSED as exc:
                    warnings.append(f"{ref} on remote '{remote.name}' is not {invalid}: {exc.message}; skipped")
                    continue
                (received if place(key, checked) else present).append(key)
    return Pulled(tuple(received), tuple(present), tuple(warnings))


@dataclass(frozen=True)
class RefsTransfer:
    """What a push (sent, present) or a pull (received, present) of one kind of record did.

    A room names its kind in a subclass: ``NOUN`` for the summary line, ``NAMES_KEY`` for the
    list of names in ``--json``."""

    NOUN: ClassVar[str] = "record(s)"
    NAMES_KEY: ClassVar[str] = "names"

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
        return f"{verb} {moved} {self.NOUN} ({len(self.present)} already {where}) via {self.remote}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "direction": self.direction,
            self.NAMES_KEY: list(self.sent if self.direction == "push" else self.received),
            "present": len(self.present),
            "warnings": list(self.warnings),
        }
