"""Per-variant statistics over a sliding window, shared between worker processes.

Each worker counts, per (variant, version), in one bucket per second: requests that passed the
input checks (answered 200 or 5xx), 5xx answers, rows, a latency histogram, the prediction
distribution and, in shadow mode, how many rows the shadow answered differently from
production. 4xx answers (the caller's input) are counted apart: they are not in the request
count, the error rate's denominator, ``min_requests`` or the latency histogram, so a caller
sending bad input can neither dilute a failing candidate's error rate nor make up the evidence
a progressive step waits for. It also keeps running totals
since it started (for /metrics).

Every second each worker writes its snapshot (the last ``KEEP_SECONDS`` of buckets and the
totals) to ``.mlops/serve/<model>/stats/<host>-<pid>.json``; the controller, `/metrics` and
`mlops canary status` add the snapshots of all live workers together. So with
``--workers 4`` the rollback decision sees all traffic, not a quarter of it; it is at most
about a second behind.

Latency percentiles come from the histogram (bounds in ``LATENCY_BOUNDS_MS``, interpolated
within a bucket), so p50/p99 are accurate to the bucket's width, about 30-50%
of the value at worst, and exact when every request falls in one bucket's bound.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..formats import parse_json
from ..fsio import atomic_writer, pid_alive

LATENCY_BOUNDS_MS = (
    0.1,
    0.2,
    0.3,
    0.5,
    0.7,
    1,
    1.5,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    30,
    50,
    70,
    100,
    150,
    200,
    300,
    500,
    700,
    1000,
    1500,
    2000,
    3000,
    5000,
    7000,
    10000,
    20000,
    30000,
    60000,
)
KEEP_SECONDS = 600  # buckets kept per worker: the longest window `canary status` and rollback can use
MAX_CLASSES = 50  # distinct prediction values counted per bucket; the rest count as "<other>"
STATS_FORMAT = 1


def latency_index(ms: float) -> int:
    lo, hi = 0, len(LATENCY_BOUNDS_MS)
    while lo < hi:  # first bound >= ms
        mid = (lo + hi) // 2
        if LATENCY_BOUNDS_MS[mid] < ms:
            lo = mid + 1
        else:
            hi = mid
    return lo  # == len(bounds): above the last bound


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


@dataclass
class Bucket:
    n: int = 0  # requests that passed the input checks and were answered (200 or 5xx)
    e5: int = 0  # 5xx answers (model errors, overload, time-outs): what the error rate counts, over n
    e4: int = 0  # 4xx answers (the caller's input): counted apart, not in n, ms or hist
    rows: int = 0
    ms: float = 0.0  # latencies added up (for Prometheus' _sum)
    hist: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))
    classes: dict[str, int] = field(default_factory=dict)
    num: list[float] = field(default_factory=lambda: [0, 0.0, 0.0, math.inf, -math.inf])  # n, sum, sumsq, min, max
    compared: int = 0  # shadow rows compared with production
    disagreed: int = 0

    def add(self, latency_ms: float, status: int, predictions: Iterable[Any] | None) -> None:
        if 400 <= status < 500:
            self.e4 += 1
            return
        self.n += 1
        if status >= 500:
            self.e5 += 1
        self.ms += latency_ms
        self.hist[latency_index(latency_ms)] += 1
        if predictions is not None:
            self.add_predictions(predictions)

    def add_predictions(self, predictions: Iterable[Any]) -> None:
        classes = self.classes
        num = self.num
        rows = 0
        for value in predictions:
            rows += 1
            if isinstance(value, float):
                if math.isfinite(value):
                    num[0] += 1
                    num[1] += value
                    num[2] += value * value
                    num[3] = min(num[3], value)
                    num[4] = max(num[4], value)
                continue
            key = str(value)
            if key in classes or len(classes) < MAX_CLASSES:
                classes[key] = classes.get(key, 0) + 1
            else:
                classes["<other>"] = classes.get("<other>", 0) + 1
        self.rows += rows

    def compare(self, mine: list[Any], theirs: list[Any]) -> None:
        self.compared += len(mine)
        self.disagreed += sum(1 for a, b in zip(mine, theirs, strict=False) if not _close(a, b))

    def merge(self, other: Bucket) -> None:
        self.n += other.n
        self.e5 += other.e5
        self.e4 += other.e4
        self.rows += other.rows
        self.ms += other.ms
        for i, c in enumerate(other.hist):
            self.hist[i] += c
        for k, c in other.classes.items():
            self.classes[k] = self.classes.get(k, 0) + c
        self.num[0] += other.num[0]
        self.num[1] += other.num[1]
        self.num[2] += other.num[2]
        self.num[3] = min(self.num[3], other.num[3])
        self.num[4] = max(self.num[4], other.num[4])
        self.compared += other.compared
        self.disagreed += other.disagreed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n": self.n,
            "e5": self.e5,
            "e4": self.e4,
            "rows": self.rows,
            "ms": round(self.ms, 3),
            "hist": {str(i): c for i, c in enumerate(self.hist) if c},
        }
        # copies: a snapshot is written (or added up) in a thread while the loop goes on counting
        if self.classes:
            out["classes"] = dict(self.classes)
        if self.num[0]:
            out["num"] = list(self.num)
        if self.compared:
            out["compared"], out["disagreed"] = self.compared, self.disagreed
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bucket:
        bucket = cls(
            n=int(data.get("n", 0)),
            e5=int(data.get("e5", 0)),
            e4=int(data.get("e4", 0)),
            rows=int(data.get("rows", 0)),
            ms=float(data.get("ms", 0.0)),
        )
        for i, c in (data.get("hist") or {}).items():
            index = int(i)
            if 0 <= index < len(bucket.hist):
                bucket.hist[index] += int(c)
        bucket.classes = {str(k): int(v) for k, v in (data.get("classes") or {}).items()}
        if data.get("num"):
            bucket.num = [float(x) for x in data["num"]]
        bucket.compared = int(data.get("compared", 0))
        bucket.disagreed = int(data.get("disagreed", 0))
        return bucket

    # --- summaries ------------------------------------------------------------------------------
    @property
    def error_rate(self) -> float:
        return self.e5 / self.n if self.n else 0.0

    def percentile_ms(self, q: float) -> float | None:
        total = sum(self.hist)
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.hist):
            if not count:
                continue
            if seen + count >= rank:
                lower = LATENCY_BOUNDS_MS[index - 1] if index > 0 else 0.0
                upper = LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else LATENCY_BOUNDS_MS[-1]
                return lower + (upper - lower) * max(0.0, min(1.0, (rank - seen) / count))
            seen += count
        return LATENCY_BOUNDS_MS[-1]

    def distribution(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        total = sum(self.classes.values())
        if total:
            out["classes"] = {k: round(v / total, 4) for k, v in sorted(self.classes.items(), key=lambda kv: -kv[1])}
        if self.num[0]:
            n, s, ss, lo, hi = self.num
            mean = s / n
            out["numeric"] = {
                "count": int(n),
                "mean": mean,
                "std": math.sqrt(max(0.0, ss / n - mean * mean)),
                "min": lo,
                "max": hi,
            }
        return out

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.percentile_ms(0.5), self.percentile_ms(0.99)
        out: dict[str, Any] = {
            "requests": self.n,
            "errors": self.e5,
            "bad_requests": self.e4,
            "error_rate": round(self.error_rate, 4),
            "rows": self.rows,
            "p50_ms": None if p50 is None else round(p50, 3),
            "p99_ms": None if p99 is None else round(p99, 3),
            "distribution": self.distribution(),
        }
        if self.compared:
            out["disagreement"] = round(self.disagreed / self.compared, 4)
            out["compared_rows"] = self.compared
        return out


def distribution_distance(a: Bucket, b: Bucket) -> float | None:
    """Total variation distance between two class distributions (0: same, 1: disjoint)."""
    ta, tb = sum(a.classes.values()), sum(b.classes.values())
    if not ta or not tb:
        return None
    keys = set(a.classes) | set(b.classes)
    return 0.5 * sum(abs(a.classes.get(k, 0) / ta - b.classes.get(k, 0) / tb) for k in keys)


def prediction_shift(production: Bucket, candidate: Bucket) -> float | None:
    """How far the candidate's answers are from production's: the total variation distance of the
    classes, or (numbers) |mean difference| / production's standard deviation; None without both."""
    distance = distribution_distance(production, candidate)
    if distance is not None:
        return distance
    pn, cn = production.num[0], candidate.num[0]
    if not pn or not cn:
        return None
    p_mean, c_mean = production.num[1] / pn, candidate.num[1] / cn
    p_std = math.sqrt(max(production.num[2] / pn - p_mean * p_mean, 0.0))
    return abs(c_mean - p_mean) / max(p_std, 1e-12)


def _answers(bucket: Bucket) -> str:
    total = sum(bucket.classes.values())
    if total:
        top = sorted(bucket.classes.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{k} {v / total:.0%}" for k, v in top)
    if bucket.num[0]:
        return f"mean {bucket.num[1] / bucket.num[0]:.4g}"
    return "no answers"


Key = tuple[str, int]  # (variant, version)


class Stats:
    """One worker's counts; touched only from its event loop."""

    def __init__(self) -> None:
        self.started = time.time()
        self.totals: dict[Key, Bucket] = {}
        self.seconds: dict[Key, dict[int, Bucket]] = {}
        self.counters: dict[str, float] = {}  # other totals for /metrics: rejected, shadow_dropped, ...
        self._frozen: dict[Key, dict[int, dict[str, Any]]] = {}  # JSON of past seconds: they no longer change

    def bucket(self, key: Key, now: float | None = None) -> Bucket:
        second = int(now if now is not None else time.time())
        per = self.seconds.get(key)
        if per is None:
            per = self.seconds[key] = {}
        bucket = per.get(second)
        if bucket is None:
            bucket = per[second] = Bucket()
        return bucket

    def record(self, variant: str, version: int, latency_ms: float, status: int, predictions: list[Any] | None) -> None:
        key = (variant, version)
        self.bucket(key).add(latency_ms, status, predictions)
        total = self.totals.get(key)
        if total is None:
            total = self.totals[key] = Bucket()
        total.add(latency_ms, status, predictions)

    def record_shadow_comparison(self, version: int, shadow: list[Any], production: list[Any]) -> None:
        key = ("shadow", version)
        self.bucket(key).compare(shadow, production)
        self.totals.setdefault(key, Bucket()).compare(shadow, production)

    def count(self, name: str, amount: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def prune(self, now: float) -> None:
        oldest = int(now) - KEEP_SECONDS
        for per in (*self.seconds.values(), *self._frozen.values()):
            for second in [s for s in per if s < oldest]:
                del per[second]

    def _seconds_json(self, key: Key, now: float) -> dict[str, Any]:
        """Each bucket serialised once after its second is over (a snapshot is written every second)."""
        current = int(now)
        frozen = self._frozen.setdefault(key, {})
        out = {}
        for second, bucket in sorted(self.seconds.get(key, {}).items()):
            if second < current:
                data = frozen.get(second)
                if data is None:
                    data = frozen[second] = bucket.to_json()
            else:
                data = bucket.to_json()
            out[str(second)] = data
        return out

    def snapshot(self, model: str, now: float | None = None, *, seconds: bool = True) -> dict[str, Any]:
        """A plain-data copy (call it from the thread that records: the event loop); ``seconds=False``: totals only."""
        now = time.time() if now is None else now
        self.prune(now)
        variants = []
        for key in sorted(set(self.totals) | set(self.seconds)):
            variants.append(
                {
                    "variant": key[0],
                    "version": key[1],
                    "total": self.totals.get(key, Bucket()).to_json(),
                    "seconds": self._seconds_json(key, now) if seconds else {},
                }
            )
        return {
            "format": STATS_FORMAT,
            "model": model,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self.started,
            "written": now,
            "variants": variants,
            "counters": dict(self.counters),
        }


# --- snapshots on disk ---------------------------------------------------------------------------


def stats_dir(serve_dir: Path) -> Path:
    return serve_dir / "stats"


def snapshot_path(serve_dir: Path) -> Path:
    return stats_dir(serve_dir) / f"{socket.gethostname()}-{os.getpid()}.json"


def write_snapshot(serve_dir: Path, snapshot: Mapping[str, Any]) -> None:
    folder = stats_dir(serve_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # runtime state, rewritten every second and rebuilt on restart: atomic, but not fsynced
    with atomic_writer(snapshot_path(serve_dir), "w", fsync=False) as handle:
        json.dump(snapshot, handle, separators=(",", ":"))


def read_snapshots(serve_dir: Path, *, exclude_self: bool = False, prune: bool = False) -> list[dict[str, Any]]:
    """The snapshots of workers; those of dead workers on this host only while recent."""
    folder = stats_dir(serve_dir)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    mine = snapshot_path(serve_dir).name
    host = socket.gethostname()
    now = time.time()
    out = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        if exclude_self and name == mine:
            continue
        path = folder / name
        try:
            data = parse_json(path.read_bytes(), str(path))
        except (OSError, FormatError):
            continue  # a damaged or half-written statistics file only loses one worker's numbers
        version = data.get("format", 1) if isinstance(data, dict) else None
        if not isinstance(version, int) or version > STATS_FORMAT:
            continue
        dead = data.get("host") == host and isinstance(data.get("pid"), int) and not pid_alive(data["pid"])
        written = data.get("written", 0)
        written = written if isinstance(written, (int, float)) and not isinstance(written, bool) else 0
        if dead and prune and now - written > KEEP_SECONDS:
            try:
                path.unlink()
            except OSError:
                pass
            continue
        data["alive"] = not dead
        out.append(data)
    return out


@dataclass
class Aggregate:
    window: dict[Key, Bucket]
    totals: dict[Key, Bucket]
    counters: dict[str, float]
    workers: int
    live_workers: int
    as_of: float | None


def aggregate(
    snapshots: Iterable[Mapping[str, Any]], *, since: float, until: float, live_totals_only: bool = True
) -> Aggregate:
    """Window buckets in [since, until] and totals, added over snapshots (one not of this shape is skipped)."""
    window: dict[Key, Bucket] = {}
    totals: dict[Key, Bucket] = {}
    counters: dict[str, float] = {}
    workers = live = 0
    as_of = None
    for snap in snapshots:
        try:
            alive, written, its_window, its_totals, its_counters = _read_one(snap, since, until, live_totals_only)
        except (TypeError, ValueError, AttributeError):  # another version's snapshot, a bad edit: not counted
            continue
        workers += 1
        live += bool(alive)
        as_of = written if as_of is None else max(as_of, written)
        for into, part in ((window, its_window), (totals, its_totals)):
            for key, bucket in part:
                into.setdefault(key, Bucket()).merge(bucket)
        for name, value in its_counters:
            counters[name] = counters.get(name, 0) + value
    return Aggregate(window, totals, counters, workers, live, as_of)


def _read_one(snap: Mapping[str, Any], since: float, until: float, live_totals_only: bool) -> tuple[Any, ...]:
    alive = snap.get("alive", True)
    written = float(snap.get("written", 0))
    window: list[tuple[Key, Bucket]] = []
    totals: list[tuple[Key, Bucket]] = []
    counters: list[tuple[str, float]] = []
    for entry in snap.get("variants") or ():
        key = (str(entry.get("variant")), int(entry.get("version", 0)))
        for second, data in (entry.get("seconds") or {}).items():
            if since <= float(second) <= until:
                window.append((key, Bucket.from_json(data)))
        if alive or not live_totals_only:
            totals.append((key, Bucket.from_json(entry.get("total") or {})))
    if alive or not live_totals_only:
        counters = [(str(name), float(value)) for name, value in (snap.get("counters") or {}).items()]
    return alive, written, window, totals, counters


# --- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    healthy: bool | None  # None: too few requests in the window to judge
    reason: str
    requests: int


def judge(
    window: Bucket | None,
    *,
    min_requests: int,
    max_error_rate: float | None,
    max_p99_ms: float | None,
    window_seconds: float,
    baseline: Bucket | None = None,
    max_prediction_shift: float | None = None,
) -> Verdict:
    """Whether a candidate's window breaks a threshold; nothing is judged below ``min_requests``.

    ``baseline``: production over the same window (Kayenta-style canary analysis). With at least
    ``min_requests`` production requests to compare, the candidate is blamed only for what
    production does not also do: its error rate must pass the threshold *and* exceed production's
    by more than the threshold (inputs that make both fail are the callers', not the
    candidate's), and its p99 must pass the threshold while production's stays within it. With
    too few production requests (a canary at 100%, a quiet window) the candidate is judged alone.

    ``max_prediction_shift``: with production to compare, the candidate is also unhealthy when its
    answers depart from production's on the same traffic: classes by total variation distance
    (a candidate answering one class for everything), numbers by the difference of the means in
    production's standard deviations (``prediction_shift``).
    """
    n = window.n if window else 0
    if window is None or n < min_requests:
        return Verdict(None, f"{n} of the {min_requests} request(s) needed in the last {window_seconds:g} s", n)
    base = baseline if baseline is not None and baseline.n >= min_requests else None
    against = (
        f"; production {base.error_rate:.1%} over the same window ({base.e5} of {base.n})"
        if base is not None
        else "; production: too few requests to compare"
        if baseline is not None
        else ""
    )
    if max_error_rate is not None and window.error_rate > max_error_rate:
        excess = window.error_rate - (base.error_rate if base is not None else 0.0)
        if excess > max_error_rate:
            return Verdict(
                False,
                f"error rate {window.error_rate:.1%} > {max_error_rate:.1%} over the last {window_seconds:g} s "
                f"({window.e5} of {n} requests failed){against}",
                n,
            )
    p99 = window.percentile_ms(0.99)
    base_p99 = base.percentile_ms(0.99) if base is not None else None
    if max_p99_ms is not None and p99 is not None and p99 > max_p99_ms:
        if base_p99 is None or base_p99 <= max_p99_ms:
            return Verdict(
                False,
                f"p99 latency {p99:.1f} ms > {max_p99_ms:g} ms over the last {window_seconds:g} s ({n} requests)"
                + (f"; production p99 {base_p99:.1f} ms" if base_p99 is not None else ""),
                n,
            )
    if max_prediction_shift is not None and base is not None:
        shift = prediction_shift(base, window)
        if shift is not None and shift > max_prediction_shift:
            return Verdict(
                False,
                f"predictions departed from production's: shift {shift:.3f} > {max_prediction_shift:g} "
                f"over the last {window_seconds:g} s ({n} requests; {_answers(window)} against {_answers(base)})",
                n,
            )
    return Verdict(
        True,
        f"healthy over the last {window_seconds:g} s ({n} requests, error rate {window.error_rate:.1%}"
        + (f", p99 {p99:.1f} ms)" if p99 is not None else ")")
        + against,
        n,
    )
