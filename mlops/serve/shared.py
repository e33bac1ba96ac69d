"""One deployment shared by replicas on machines with no common disk (``--state URL``).

The state lives under a prefix of an S3-compatible store, or in a local folder, opened through
the remote machinery (``mlops.remotes``), as refs::

    <url>/refs/deployment/<n>.yaml     revision n of the deployment, created once, never rewritten
    <url>/refs/lease/<k>.json          the controller lease, term k: {holder, expires}
    <url>/refs/stats/<replica>.json    each replica worker's statistics snapshot (only it writes it)

**Compare-and-swap by create-once objects.** A writer reads the newest revision n, makes its
change, and creates ``deployment/<n+1>.yaml`` only if absent (``Remote.create_ref``:
``If-None-Match: *`` on S3, an exclusive hard link on a folder). Of two writers starting from n,
exactly one creates n+1; the other learns it lost and starts again from the winner (or, for the
controller's decisions made against revision n, gives up and decides again next tick). No update
is lost. Create-once was chosen over ``If-Match`` on an ETag because the remotes already rely on
it (the shared run cache, with a probe), the moto test server and real S3 both honour it, and
the revisions it leaves are a history of who changed what.

**The lease** is taken the same way: term k+1 is created by whoever finds term k expired (or by
the holder renewing it before it expires). A holder that dies stops renewing; after the lease
time another replica creates the next term. A holder acts only while its own term has more than
a margin left on its own clock, so a clock skew between machines smaller than that margin cannot
give two controllers at once.

Every replica copies the newest revision into its local deployment file
(``.mlops/deployments/<model>.yaml``), which its workers already follow: they follow a change
within their poll interval. Old lease terms are deleted by the holder (best effort).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import FormatError, UsageError
from ..remotes.base import Remote, open_remote
from .deployment import HEADER, Deployment, RevisionChanged, now_iso, parse_deployment

DEPLOYMENT_PREFIX = "deployment/"
LEASE_PREFIX = "lease/"
STATS_PREFIX = "stats/"
NUMBERED = re.compile(r"(\d{1,12})\.(yaml|json)")
MAX_ATTEMPTS = 20  # a hand edit retried this many times against other writers before giving up (exit 3)
DEFAULT_LEASE_SECONDS = 10.0
STATS_LIVE_SECONDS = 30.0  # a replica's snapshot older than this is a replica that stopped (dead or gone)


def open_state(url: str, *, root: Path | None = None) -> SharedState:
    """The shared state at ``url``: s3://bucket/prefix (endpoint from AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL, credentials from the AWS environment) or a local folder / file:// URL."""
    if not url or not isinstance(url, str):
        raise UsageError("--state: give an s3://bucket/prefix URL or a folder")
    settings: dict[str, Any] = {"url": url}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if url.startswith("s3://") and endpoint:
        settings["endpoint_url"] = endpoint
    if "://" not in url or url.startswith("file://"):
        folder = Path(url.removeprefix("file://"))
        folder = folder if folder.is_absolute() else (root or Path.cwd()) / folder
        folder.mkdir(parents=True, exist_ok=True)
        settings["url"] = str(folder.resolve())
    return SharedState(open_remote("state", settings, root=root or Path.cwd()), url)


def _number_of(name: str, prefix: str) -> int | None:
    match = NUMBERED.fullmatch(name[len(prefix) :]) if name.startswith(prefix) else None
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Lease:
    term: int
    holder: str
    expires: float


class SharedState:
    def __init__(self, remote: Remote, url: str) -> None:
        self.remote = remote
        self.url = url
        self._revision = 0  # the newest revision seen: the next look probes the one after it
        self._term = 0  # the newest lease term seen

    # --- the deployment -----------------------------------------------------------------------
    def _newest(self, prefix: str, seen: int, suffix: str) -> int:
        """The newest number under ``prefix``: a listing the first time, then probes of the next ones."""
        if seen == 0:
            numbers = [n for n in (_number_of(name, prefix) for name in self.remote.list_refs(prefix)) if n]
            seen = max(numbers, default=0)
        while self.remote.get_ref(f"{prefix}{seen + 1}.{suffix}") is not None:
            seen += 1
        return seen

    def latest(self, model: str) -> Deployment | None:
        """The newest revision of the deployment (None: none written yet)."""
        self._revision = self._newest(DEPLOYMENT_PREFIX, self._revision, "yaml")
        if self._revision == 0:
            return None
        name = f"{DEPLOYMENT_PREFIX}{self._revision}.yaml"
        data = self.remote.get_ref(name)
        if data is None:  # removed by hand: start again from a listing
            self._revision = 0
            return self.latest(model)
        source = f"{self.url} {name}"
        try:
            dep = parse_deployment(data.decode("utf-8"), source)
        except UnicodeDecodeError:
            raise FormatError(f"{source}: not a text file (not UTF-8)") from None
        if dep.model != model:
            raise FormatError(f"{source}: names model '{dep.model}', not '{model}'")
        if dep.revision != self._revision:
            raise FormatError(f"{source}: says revision {dep.revision}, its name {self._revision}")
        return dep

    def update(
        self,
        model: str,
        change: Callable[[Deployment | None], Deployment],
        *,
        by: str,
        expect_revision: int | None = None,
        gate: Callable[[Deployment | None, Deployment], None] | None = None,
        after: Callable[[Deployment | None, Deployment], None] | None = None,
    ) -> Deployment:
        """Read the newest revision, change it, create the next one only if absent; again on a lost race.

        ``expect_revision``: the change was decided on that revision; a newer one raises
        RevisionChanged instead of retrying (the controller decides again on what it sees).
        ``gate``: runs before the create (a promotion through the registry's gates: refused, nothing
        is written). ``after``: runs once this call's revision exists (the audit entry: exactly once
        per change that happened, never for a change that lost the race).
        """
        for _ in range(MAX_ATTEMPTS):
            current = self.latest(model)
            have = current.revision if current else 0
            if expect_revision is not None and have != expect_revision:
                raise RevisionChanged(f"the shared deployment of {model} changed while this change was prepared")
            new = replace(change(current), revision=have + 1, updated_at=now_iso(), updated_by=by)
            text = HEADER + dump(new)
            parse_deployment(text, f"{self.url} (new revision)")  # never write what the readers would refuse
            if gate is not None:
                gate(current, new)
            if self.remote.create_ref(f"{DEPLOYMENT_PREFIX}{new.revision}.yaml", text.encode("utf-8")):
                self._revision = new.revision
                if after is not None:
                    after(current, new)
                return new
            if expect_revision is not None:
                raise RevisionChanged(f"the shared deployment of {model} changed while this change was prepared")
        raise RevisionChanged(f"the shared deployment of {model} kept changing: {MAX_ATTEMPTS} attempts lost")

    # --- the controller lease ------------------------------------------------------------------
    def lease(self) -> Lease | None:
        self._term = self._newest(LEASE_PREFIX, self._term, "json")
        if self._term == 0:
            return None
        data = self.remote.get_ref(f"{LEASE_PREFIX}{self._term}.json")
        try:
            doc = json.loads(data or b"")
            return Lease(self._term, str(doc["holder"]), float(doc["expires"]))
        except (ValueError, KeyError, TypeError):
            return Lease(self._term, "", 0.0)  # unreadable: counts as expired, the next term replaces it

    def take_lease(self, holder: str, seconds: float, *, now: float | None = None) -> Lease | None:
        """This holder's lease (taken, renewed, or still held), or None when another holds a live one."""
        now = time.time() if now is None else now
        current = self.lease()
        if current is not None and current.holder != holder and current.expires > now:
            return None
        if current is not None and current.holder == holder and current.expires - now > seconds * 2 / 3:
            return current  # renewed recently enough
        term = (current.term if current else 0) + 1
        doc = json.dumps({"holder": holder, "expires": now + seconds, "taken_at": now_iso(now)}).encode()
        if not self.remote.create_ref(f"{LEASE_PREFIX}{term}.json", doc):
            return None  # another replica took this term first
        self._term = term
        for old in (term - 2, term - 3):  # keep the last two terms: a reader between two probes still finds one
            if old > 0:
                with contextlib.suppress(Exception):
                    self.remote.delete_ref(f"{LEASE_PREFIX}{old}.json")
        return Lease(term, holder, now + seconds)

    def release_lease(self, holder: str) -> None:
        """Hand the lease back on a clean stop: a term that expires now (best effort)."""
        current = self.lease()
        if current is None or current.holder != holder:
            return
        doc = json.dumps({"holder": "", "expires": 0, "released_by": holder}).encode()
        with contextlib.suppress(Exception):
            self.remote.create_ref(f"{LEASE_PREFIX}{current.term + 1}.json", doc)

    # --- statistics ----------------------------------------------------------------------------
    def publish_stats(self, replica: str, snapshot: dict[str, Any]) -> None:
        self.remote.put_ref(f"{STATS_PREFIX}{replica}.json", json.dumps(snapshot, separators=(",", ":")).encode())

    def read_stats(self, *, now: float | None = None, prune: bool = False) -> list[dict[str, Any]]:
        """The snapshots of all replicas' workers; one not written for ``STATS_LIVE_SECONDS`` is not alive
        (its requests still count in the windows it covers: they happened). ``prune``: a snapshot older
        than the longest window (``health.KEEP_SECONDS``) is deleted (the controller does it)."""
        from .health import KEEP_SECONDS

        now = time.time() if now is None else now
        out = []
        for name in self.remote.list_refs(STATS_PREFIX):
            data = self.remote.get_ref(name)
            try:
                snap = json.loads(data or b"")
            except ValueError:
                continue  # a damaged snapshot only loses one replica's numbers
            if not isinstance(snap, dict):
                continue
            written = snap.get("written", 0)
            written = written if isinstance(written, (int, float)) and not isinstance(written, bool) else 0
            if prune and now - written > KEEP_SECONDS:
                with contextlib.suppress(Exception):
                    self.remote.delete_ref(name)
                continue
            snap["alive"] = now - written < STATS_LIVE_SECONDS
            out.append(snap)
        return out


def dump(dep: Deployment) -> str:
    from ..formats import dump_yaml

    return dump_yaml(dep.to_dict())


def replica_id() -> str:
    """This worker process's name under ``stats/`` and as a lease holder: host, pid, and a random part
    (a pid is reused across restarts and containers)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"
