"""The audit trail: an append-only, hash-chained log of every registry change.

``.mlops/registry/audit.jsonl``, one JSON object per line::

    {"seq": 7, "time": "2026-01-05T10:00:00.123456Z", "event": "stage_changed", "actor": "alice",
     "model": "churn", "version": 3, ..., "prev": "<hash of entry 6>", "hash": "<sha256 of this entry>"}

``hash`` is the SHA-256 of the entry's canonical JSON (sorted keys, no spaces) without the
``hash`` field; ``prev`` is the ``hash`` of the entry before (64 zeros for the first). So an
edited entry no longer matches its hash, and an entry re-hashed after an edit breaks the
``prev`` of the one after it; ``seq`` numbers up from 1, so a deleted or moved entry leaves a
gap or an order that ``verify`` names.

A chain alone cannot see its own tail cut off, so two anchors point into it:
``.mlops/registry/audit.head`` (the last entry's seq and hash, rewritten after each append)
and every model file's ``audit`` field (the last entry that changed that model, plus the
SHA-256 of the model file's content, ``state``, which the entry also carries). ``verify``
checks both.

Order of a change (one registry lock held throughout): entries appended (fsynced), then the
model file replaced atomically, then the head. A crash after the append leaves entries past
the head: the next writer (``settle``) keeps those whose model file landed and appends an
``interrupted`` entry for those whose change never reached the model file. So the log never
claims a change that did not happen without saying so, and nothing is rewritten.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CouldNotComplete, FormatError, NewerFormatError, RegistryTampered, UsageError
from ..formats import display_path, parse_json, read_bytes
from ..fsio import append_bytes, append_record, atomic_write, truncate_file

AUDIT_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
HEAD_FORMAT = 1
GENESIS = "0" * 64
RESERVED = ("seq", "time", "event", "prev", "hash")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def state_hash(doc: Mapping[str, Any]) -> str:
    """The SHA-256 of a model file's content without its ``audit`` anchor."""
    return hashlib.sha256(canonical({k: v for k, v in doc.items() if k != "audit"})).hexdigest()


def json_safe(value: Any) -> Any:
    """A JSON round trip: numpy scalars and other objects become numbers or text."""

    def fallback(obj: Any) -> Any:
        for kind in (bool, int, float):  # numpy scalars know how to be Python values
            if type(obj).__name__.startswith(kind.__name__):
                try:
                    return kind(obj)
                except (TypeError, ValueError):
                    break
        if hasattr(obj, "tolist"):
            return obj.tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=fallback, allow_nan=True))


# --- reading -----------------------------------------------------------------------------------


@dataclass
class Line:
    number: int  # 1-based line in the file
    entry: dict[str, Any] | None  # None: not a JSON object
    raw: str


def read_lines(path: Path) -> list[Line]:
    try:
        return _lines(read_bytes(path, what="audit log"))
    except FileNotFoundError:
        return []


def _lines(data: bytes) -> list[Line]:
    text = data.decode("utf-8", "replace")
    out = []
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue
        try:
            entry = parse_json(raw, str(number))
        except FormatError:
            entry = None
        out.append(Line(number, entry if isinstance(entry, dict) else None, raw))
    return out


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The parseable entries, in file order (for history and settling; verify reads lines)."""
    return [line.entry for line in read_lines(path) if line.entry is not None]


def read_head(path: Path) -> dict[str, Any] | None:
    try:
        data = parse_json(read_bytes(path, what="audit head"), str(path))
    except FileNotFoundError:
        return None
    except FormatError as exc:
        raise FormatError(exc.message, file=str(path), hint="'mlops audit verify' says what else is wrong") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object", file=str(path))
    if isinstance(data.get("format"), int) and data["format"] > HEAD_FORMAT:
        raise NewerFormatError(
            f"{path}: written by a newer mlops (audit head format {data['format']})", hint="upgrade mlops"
        )
    return data


def write_head(path: Path, seq: int, digest: str) -> None:
    atomic_write(path, json.dumps({"format": HEAD_FORMAT, "seq": seq, "hash": digest}) + "\n")


# --- writing (the caller holds the registry lock) ----------------------------------------------


TAIL_CHUNK = 1 << 16  # the log is read backwards in chunks of this size


def reverse_entries(path: Path) -> Iterator[dict[str, Any]]:
    """The log's entries from the last to the first, read backwards in chunks: a reader that
    needs only the recent end never reads the whole log. Lines that are not JSON objects
    (a torn tail) are skipped."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    except OSError as exc:  # a folder in the log's place, an unreadable file
        raise FormatError(f"{path}: cannot be read: {exc.strerror or exc}", file=str(path)) from None
    with handle:
        pos = handle.seek(0, os.SEEK_END)
        rest = b""
        while pos > 0:
            step = min(TAIL_CHUNK, pos)
            pos -= step
            handle.seek(pos)
            lines = (handle.read(step) + rest).split(b"\n")
            rest = lines[0]  # may continue in the chunk before
            for raw in reversed(lines[1:]):
                entry = _parse(raw)
                if entry is not None:
                    yield entry
        entry = _parse(rest)
        if entry is not None:
            yield entry


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        entry = parse_json(raw, "audit entry")
    except FormatError:
        return None
    return entry if isinstance(entry, dict) else None


def _tail(path: Path) -> tuple[int, str]:
    """(seq, hash) of the last whole entry in the file, read from its end."""
    for entry in reverse_entries(path):
        if isinstance(entry.get("seq"), int) and isinstance(entry.get("hash"), str):
            return entry["seq"], entry["hash"]
    return 0, GENESIS


def drop_torn_tail(path: Path) -> bool:
    """Cut a last line that a crash tore mid-append (no trailing newline, not JSON).

    Only the unterminated remainder after the last newline is cut: whole lines are never
    touched. Returns True when something was cut.
    """
    try:
        data = read_bytes(path, what="audit log")
    except FileNotFoundError:
        return False
    if not data or data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    try:
        parse_json(data[cut:], str(path))
    except FormatError:
        truncate_file(path, cut)
        return True
    append_bytes(path, b"\n")  # a whole entry whose newline was lost: keep it, end the line
    return False


def changed_models(entries: Iterable[dict[str, Any]], up_to: int | None = None) -> dict[str, list[int]]:
    """Model name -> seqs of the entries that changed its file and landed: entries carrying a
    ``state``, not voided by an ``interrupted`` entry, and (``up_to``) at or below the head."""
    entries = list(entries)
    void = {e.get("of") for e in entries if e.get("event") == "interrupted"}
    out: dict[str, list[int]] = {}
    for e in entries:
        seq = e.get("seq")
        if not isinstance(seq, int) or seq in void or not e.get("state") or not isinstance(e.get("model"), str):
            continue
        if up_to is not None and seq > up_to:
            continue
        out.setdefault(e["model"], []).append(seq)
    return out


def check_model_anchor(
    log: Path,
    name: str,
    doc: Mapping[str, Any],
    shown: str,
    *,
    landed_up_to: int | None = None,
    refusing: str = "to change the registry",
) -> None:
    """Before a writer changes a model (the caller holds the lock and has settled the log):
    the file must be exactly what its audit entry recorded, and no later landed entry may have
    changed it. Otherwise ``RegistryTampered``, and nothing is written: a write must never
    launder a hand edit into a file whose anchor matches again.

    A reader about to use a model's artifact (``store.trusted_model``) makes the same check
    without the lock: it reads the head first and passes its seq as ``landed_up_to``, so that
    entries past it (a change in flight, whose model file may not be replaced yet) do not count
    as later changes the file lacks.

    Reads the log backwards from its end only as far as the model's anchor entry.
    """

    def tampered(message: str) -> RegistryTampered:
        return _tampered(log=False, message=message, refusing=refusing, model=name)

    anchor = doc.get("audit")
    seq = anchor.get("seq") if isinstance(anchor, dict) else None
    if not isinstance(anchor, dict) or not isinstance(seq, int) or isinstance(seq, bool):
        raise tampered(f"{shown} has no audit anchor (written outside mlops?)")
    state = state_hash(doc)
    if anchor.get("state") != state:
        raise tampered(f"{shown} was changed outside mlops: its content is not what audit entry #{seq} recorded")
    void: set[Any] = set()
    for entry in reverse_entries(log):
        at = entry.get("seq")
        if not isinstance(at, int):
            continue
        if entry.get("event") == "interrupted":
            void.add(entry.get("of"))  # an interrupted entry comes after the one it voids
        if at > seq:
            in_flight = landed_up_to is not None and at > landed_up_to
            if entry.get("model") == name and entry.get("state") and at not in void and not in_flight:
                raise tampered(f"{shown} is older than audit entry #{at} (an older copy of the file put back?)")
            continue
        if at == seq:
            if entry.get("hash") != anchor.get("hash") or entry_hash(entry) != entry.get("hash"):
                raise tampered(f"audit entry #{seq} is not the entry {shown} names (replaced or edited)")
            if entry.get("state") != state:
                raise tampered(
                    f"{shown} was changed outside mlops: its content is not what audit entry #{seq} recorded"
                )
            return
        break  # below the anchor: the entry it names is not in the log
    # the log is named: when it is the damaged file (garbage, cut), the message points at it too
    raise tampered(f"{shown} names audit entry #{seq}, which is not in the log ({display_path(log)})")


def check_absent_model(log: Path, name: str, shown: str) -> None:
    """Before a writer creates (or looks for) a model whose file does not exist: if the log says
    that file was written, it was deleted: ``RegistryTampered``. Version numbers are never
    given twice, so a deleted model's name is not reused until its file is restored."""
    seqs = changed_models(read_entries(log)).get(name)
    if seqs:
        what = f"entry #{seqs[0]}" if len(seqs) == 1 else f"entries #{seqs[0]}-#{seqs[-1]}"
        raise RegistryTampered(
            f"{shown} is missing, but audit {what} wrote it: the model file was deleted; refusing to write",
            hint=f"restore it from git (git checkout -- {shown}); 'mlops audit verify' says what else is wrong",
            model=name,
        )


@dataclass
class Appender:
    """Appends chained entries to the log; the caller holds the registry lock."""

    path: Path
    seq: int = 0
    last: str = GENESIS
    written: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path) -> Appender:
        seq, last = _tail(path)
        return cls(path, seq, last)

    def append(self, event: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        clash = [k for k in fields if k in RESERVED]
        if clash:
            raise UsageError(f"audit field '{clash[0]}' is reserved", hint=f"reserved: {', '.join(RESERVED)}")
        if not isinstance(event, str) or not event:
            raise UsageError("an audit event needs a name")
        entry: dict[str, Any] = {"seq": self.seq + 1, "time": now_iso(), "event": event}
        entry.update(json_safe(dict(fields)))
        entry["prev"] = self.last
        entry["hash"] = entry_hash(entry)
        append_record(self.path, entry)
        self.seq, self.last = entry["seq"], entry["hash"]
        self.written.append(entry)
        return entry


# --- verify ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    kind: str  # edited | deleted | reordered | duplicated | truncated | unreadable | model_file | pending
    seq: int | None
    line: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "line": self.line, "message": self.message}


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    head: int | None  # the seq the head file names
    problems: tuple[Problem, ...]  # tampering: exit 1
    notes: tuple[Problem, ...]  # not tampering (an interrupted change the next write settles)
    models: int

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "models": self.models,
            "problems": [p.to_dict() for p in self.problems],
            "notes": [n.to_dict() for n in self.notes],
        }


def verify_chain(
    log: Path, head_path: Path, read_models: Callable[[], Mapping[str, tuple[str, dict[str, Any] | None]]]
) -> VerifyReport:
    """Check the log, its head and the model files' anchors; name each broken entry.

    ``read_models()``: model name -> (file shown in messages, parsed content or None if unreadable).

    Read-only and lock-free. A writer appends to the log, then replaces model files, then moves
    the head; so this reads in the reverse order - the head, then the model files, then the log -
    and a change landing meanwhile is seen whole or as entries past the head (in flight), never
    as a model file older than a landed entry.
    """
    problems: list[Problem] = []
    notes: list[Problem] = []
    head = None
    try:
        head = read_head(head_path)
    except (FormatError, NewerFormatError) as exc:
        problems.append(Problem("unreadable", None, None, exc.message))
    model_docs = read_models()
    try:
        raw = read_bytes(log, what="audit log")
    except FileNotFoundError:
        raw = b""
    except FormatError as exc:
        problems.append(Problem("unreadable", None, None, exc.message))
        raw = b""
    lines = _lines(raw)
    torn_tail = bool(raw) and not raw.endswith(b"\n")
    entries: list[tuple[Line, dict[str, Any]]] = []
    for index, line in enumerate(lines):
        entry = line.entry
        if entry is None or not isinstance(entry.get("seq"), int) or not isinstance(entry.get("hash"), str):
            last = index == len(lines) - 1
            if last and torn_tail:
                notes.append(
                    Problem(
                        "torn",
                        None,
                        line.number,
                        (
                            f"line {line.number}: a torn last line (a crash mid-append); "
                            "the next registry write removes it"
                        ),
                    )
                )
            else:
                problems.append(
                    Problem("edited", None, line.number, f"line {line.number}: not an audit entry (edited by hand?)")
                )
            continue
        entries.append((line, entry))
        if entry_hash(entry) != entry["hash"]:
            problems.append(
                Problem(
                    "edited",
                    entry["seq"],
                    line.number,
                    f"entry #{entry['seq']} (line {line.number}) was edited: its content no longer matches its hash",
                )
            )
    by_seq: dict[int, tuple[Line, dict[str, Any]]] = {}
    for line, entry in entries:
        if entry["seq"] in by_seq:
            problems.append(
                Problem(
                    "duplicated",
                    entry["seq"],
                    line.number,
                    f"entry #{entry['seq']} appears twice (lines {by_seq[entry['seq']][0].number} and {line.number})",
                )
            )
        else:
            by_seq[entry["seq"]] = (line, entry)
    # order: each entry must come after the one numbered before it
    for (line_a, a), (line_b, b) in zip(entries, entries[1:], strict=False):
        if b["seq"] < a["seq"]:
            problems.append(
                Problem(
                    "reordered",
                    b["seq"],
                    line_b.number,
                    (
                        f"entry #{b['seq']} (line {line_b.number}) comes after "
                        f"entry #{a['seq']} (line {line_a.number}): entries were reordered"
                    ),
                )
            )
    top = max(by_seq, default=0)
    missing = [s for s in range(1, top + 1) if s not in by_seq]
    for run in _runs(missing):
        what = f"entry #{run[0]}" if len(run) == 1 else f"entries #{run[0]}-#{run[-1]}"
        problems.append(Problem("deleted", run[0], None, f"{what} deleted from the log"))
    # the chain: each entry names the hash of the one numbered before it
    for seq in sorted(by_seq):
        line, entry = by_seq[seq]
        want = GENESIS if seq == 1 else (by_seq[seq - 1][1]["hash"] if seq - 1 in by_seq else None)
        if want is not None and entry.get("prev") != want:
            problems.append(
                Problem(
                    "edited",
                    seq - 1 if seq > 1 else seq,
                    line.number,
                    f"entry #{seq} (line {line.number}) does not follow entry #{seq - 1}: "
                    + ("the entry before it was edited and re-hashed" if seq > 1 else "the first entry was replaced"),
                )
            )
    # the anchors: the head file (read first) and the model files
    head_seq = head.get("seq") if head else None
    if head is not None:
        if not isinstance(head_seq, int) or not isinstance(head.get("hash"), str):
            problems.append(Problem("unreadable", None, None, f"{head_path.name}: lacks seq/hash"))
            head_seq = None
        elif head_seq > top:
            what = f"entry #{head_seq}" if head_seq == top + 1 else f"entries #{top + 1}-#{head_seq}"
            problems.append(
                Problem(
                    "truncated",
                    top + 1,
                    None,
                    f"the log was truncated: {what} missing from its end (the head names #{head_seq})",
                )
            )
        elif head_seq in by_seq and by_seq[head_seq][1]["hash"] != head["hash"]:
            problems.append(
                Problem(
                    "edited",
                    head_seq,
                    by_seq[head_seq][0].number,
                    f"entry #{head_seq} is not the entry the head names (replaced)",
                )
            )
        elif head_seq < top:
            notes.append(
                Problem(
                    "pending",
                    head_seq + 1,
                    None,
                    (
                        f"entries #{head_seq + 1}-#{top} are past the head: a change in progress, "
                        "or one that was interrupted (the next registry write settles it)"
                    ),
                )
            )
    elif top:
        problems.append(
            Problem("truncated", None, None, f"{head_path.name} is missing while the log has {top} entries")
        )
    void = {e.get("of") for _, e in entries if e.get("event") == "interrupted"}  # changes that never landed
    for name, (shown, doc) in sorted(model_docs.items()):
        if doc is None:
            problems.append(Problem("model_file", None, None, f"{shown}: not readable"))
            continue
        anchor = doc.get("audit") or {}
        seq = anchor.get("seq")
        if not isinstance(seq, int):
            problems.append(Problem("model_file", None, None, f"{shown}: has no audit anchor (written outside mlops?)"))
            continue
        if seq not in by_seq:
            kind = "truncated" if seq > top else "deleted"
            problems.append(Problem(kind, seq, None, f"{shown} names audit entry #{seq}, which is not in the log"))
            continue
        entry = by_seq[seq][1]
        if entry["hash"] != anchor.get("hash"):
            problems.append(
                Problem("edited", seq, by_seq[seq][0].number, f"entry #{seq} is not the entry {shown} names (replaced)")
            )
            continue
        if entry.get("state") != state_hash(doc) or anchor.get("state") != entry.get("state"):
            problems.append(
                Problem(
                    "model_file",
                    seq,
                    None,
                    f"{shown} was changed outside mlops: its content is not what audit entry #{seq} recorded",
                )
            )
        later = [
            e for s, (_, e) in by_seq.items() if s > seq and e.get("model") == name and e.get("state") and s not in void
        ]
        landed = [e for e in later if head_seq is None or e["seq"] <= head_seq]
        if landed:
            problems.append(
                Problem(
                    "model_file",
                    landed[0]["seq"],
                    None,
                    f"{shown} is older than audit entry #{landed[0]['seq']} (an older copy of the file put back?)",
                )
            )
    gone = changed_models((e for _, e in entries), head_seq if head_seq is not None else top)
    for name, seqs in sorted(gone.items()):
        if name not in model_docs:
            what = f"entry #{seqs[0]}" if len(seqs) == 1 else f"entries #{seqs[0]}-#{seqs[-1]}"
            shown = f"{log.parent.parent.name}/{log.parent.name}/models/{name}.json"
            problems.append(
                Problem("deleted", seqs[-1], None, f"{shown} was deleted: audit {what} wrote it, and it is gone")
            )
    return VerifyReport(len(entries), head_seq, tuple(problems), tuple(notes), len(model_docs))


def _runs(numbers: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][-1] == n - 1:
            out[-1].append(n)
        else:
            out.append([n])
    return out


def settle(
    log: Path, head_path: Path, load_docs: Callable[[], Mapping[str, dict[str, Any] | None]]
) -> list[dict[str, Any]]:
    """Before a change (the caller holds the lock): make sure the log and its head agree.

    - a torn last line (a crash mid-append) is cut;
    - entries past the head (a crash between the append and the model file) are settled:
      those whose model file carries their state landed; for each other one an
      ``interrupted`` entry is appended, and the head moves to the end;
    - no head and an empty log (the first change): the head is written at the genesis (seq 0);
    - a head past the end of the log, naming another entry, or missing beside a non-empty
      log means the log was cut or replaced: ``RegistryTampered`` (exit 3), and nothing is written, so
      that a new entry never buries the evidence (``mlops audit verify`` says more).

    Returns the entries appended. Reads only the log's tail when all is well.
    """
    drop_torn_tail(log)
    head = read_head(head_path)
    seq, digest = _tail(log)
    if head is None:
        if seq == 0:
            # the first change: anchor the head at the genesis before the first append, so a
            # crash right after that append leaves an entry past the head (settled like any
            # other), not a log whose head is missing (which is what a cut log looks like)
            write_head(head_path, 0, GENESIS)
            return []
        raise _tampered(f"{head_path.name} is missing while the audit log has {seq} entries")
    head_seq, head_hash = head.get("seq"), head.get("hash")
    if not isinstance(head_seq, int) or not isinstance(head_hash, str):
        raise _tampered(f"{head_path.name} lacks its seq and hash")
    if head_seq == seq and head_hash == digest:
        return []
    if head_seq >= seq:
        raise _tampered(
            f"the audit log ends at entry #{seq} but its head names entry #{head_seq}"
            if head_seq > seq
            else f"the last audit entry #{seq} is not the one its head names"
        )
    entries = read_entries(log)
    anchor = next((e for e in entries if e.get("seq") == head_seq), None) if head_seq else {"hash": head_hash}
    if anchor is None or anchor.get("hash") != head_hash:
        raise _tampered(f"audit entry #{head_seq} is not the one its head names")
    pending = [e for e in entries if isinstance(e.get("seq"), int) and e["seq"] > head_seq]
    docs = load_docs()
    appender = Appender(log, seq, digest)
    added = []
    for entry in pending:
        model, state = entry.get("model"), entry.get("state")
        if not model or not state:
            continue  # an event that changed no model file landed with its append
        doc = docs.get(model)
        if doc is None or (doc.get("audit") or {}).get("state") != state:
            added.append(
                appender.append(
                    "interrupted",
                    {
                        "model": model,
                        "of": entry["seq"],
                        "note": (
                            f"entry #{entry['seq']} ({entry.get('event')}) never reached the model file (interrupted): "
                            "it did not happen"
                        ),
                    },
                )
            )
    write_head(head_path, appender.seq, appender.last)
    return added


def _tampered(
    message: str, *, log: bool = True, refusing: str = "to change the registry", **fields: Any
) -> RegistryTampered:
    return RegistryTampered(
        f"registry audit log (.mlops/registry/audit.jsonl): {message}; refusing to write to it"
        if log
        else f"{message}; refusing {refusing}",
        hint="run 'mlops audit verify'; restore .mlops/registry/ from git (git log -p .mlops/registry/)",
        **fields,
    )


# --- signed approvals ----------------------------------------------------------------------------
# An approval may carry an SSH signature made as git signs with SSH keys (`ssh-keygen -Y sign`),
# over the canonical JSON of what was approved; `mlops audit verify` checks it with
# `ssh-keygen -Y verify` against the repository's allowed_signers file (git's format: one
# "PRINCIPAL KEYTYPE KEY" per line), the principal being the approver's identity.

SIGNATURE_NAMESPACE = "mlops-approval"
ALLOWED_SIGNERS = "allowed_signers"  # .mlops/allowed_signers, committed with the project


def approval_payload(model: str, version: int, approval: Mapping[str, Any]) -> bytes:
    """The bytes an approval's signature covers: who approved which version for which stage, when, and why."""
    fields = {k: approval.get(k) for k in ("stage", "by", "at", "comment")}
    return canonical({"model": model, "version": version, **fields})


def _ssh_keygen(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["ssh-keygen", *args], input=data, capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        raise CouldNotComplete("ssh-keygen not found", hint="install OpenSSH 8.2 or later") from None


def sign_payload(payload: bytes, key: Path) -> str:
    """An armored SSH signature of ``payload`` with the private key at ``key`` (ssh-keygen -Y sign)."""
    if not key.is_file():
        raise UsageError(f"no SSH key at {key}", hint="--key ~/.ssh/id_ed25519, or git config user.signingkey PATH")
    proc = _ssh_keygen(["-Y", "sign", "-f", str(key), "-n", SIGNATURE_NAMESPACE], payload)
    text = proc.stdout.decode("ascii", "replace")
    if proc.returncode != 0 or "BEGIN SSH SIGNATURE" not in text:
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CouldNotComplete(
            f"ssh-keygen could not sign with {key}: {why[-1] if why else 'no signature'}",
            hint="a key with a passphrase needs a terminal or ssh-agent",
        )
    return text


def verify_signature(payload: bytes, signature: str, principal: str, allowed_signers: Path) -> tuple[bool, str]:
    """(whether ``signature`` is ``principal``'s over ``payload`` per ``allowed_signers``, ssh-keygen's word)."""
    if not allowed_signers.is_file():
        return False, f"no {ALLOWED_SIGNERS} file"
    with tempfile.TemporaryDirectory(prefix="mlops-sig-") as folder:
        sig = Path(folder) / "approval.sig"
        sig.write_text(signature)
        proc = _ssh_keygen(
            ["-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", SIGNATURE_NAMESPACE, "-s", str(sig)],
            payload,
        )
    said = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip().splitlines()
    return proc.returncode == 0, said[-1] if said else ""
