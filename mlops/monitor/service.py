"""The server's side of a window: requests, refusals (4xx), failures (5xx) and latency, per slot.

Built by ``monitor build`` from the request logs (``status`` and ``latency_ms`` of each request,
serve/requestlog.py) into each log file's profile, per hour, and merged into windows by
``monitor check`` the way the data profiles are: by adding counts, so merge(stats(A), stats(B))
equals stats(A ∪ B) exactly and the same logs always give the same figures.

Latency goes into a fixed-bin histogram: ``BINS_PER_DECADE`` log-spaced bins per power of ten
from ``LOW_MS`` to ``HIGH_MS`` (plus an underflow and an overflow bin), with the exact minimum
and maximum. A quantile is the geometric middle of the bin that holds the order statistic
numpy's ``quantile(method="inverted_cdf")`` picks, kept within [min, max]: it is within a factor
``RESOLUTION`` (10^(1/80), 2.9 %) of that exact value for latencies between ``LOW_MS`` and
``HIGH_MS``. Any latency of the request counts, whatever its status (as the server's /metrics
histogram counts it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import FormatError

BINS_PER_DECADE = 40
LOW_MS = 1e-3  # 1 µs: faster is the underflow bin
HIGH_MS = 1e7  # ~2.8 hours: slower is the overflow bin
FIRST_BIN = round(math.log10(LOW_MS) * BINS_PER_DECADE)  # -120
END_BIN = round(math.log10(HIGH_MS) * BINS_PER_DECADE)  # 280 (exclusive)
RESOLUTION = 10 ** (1 / (2 * BINS_PER_DECADE))
UNDER, OVER = "under", "over"
MAX_SLOTS = 64  # variants x versions in one hour's stats: a parser bound, far above any deployment


@dataclass(frozen=True)
class LatencyHistogram:
    """Counts of latencies (ms) per fixed log-spaced bin; ``bins`` maps a bin number (or
    ``under``/``over``) to its count, only bins with a count."""

    bins: dict[str, int] = field(default_factory=dict)
    count: int = 0
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, latencies_ms: Any) -> LatencyHistogram:
        import numpy as np

        values = np.asarray(latencies_ms, dtype=np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            return cls()
        bins: dict[str, int] = {}
        under = int((values < LOW_MS).sum())
        over = int((values >= HIGH_MS).sum())
        inside = values[(values >= LOW_MS) & (values < HIGH_MS)]
        numbers = np.clip(np.floor(np.log10(inside) * BINS_PER_DECADE).astype(np.int64), FIRST_BIN, END_BIN - 1)
        counts = np.bincount(numbers - FIRST_BIN, minlength=END_BIN - FIRST_BIN)
        if under:
            bins[UNDER] = under
        bins.update({str(b + FIRST_BIN): int(counts[b]) for b in np.flatnonzero(counts).tolist()})
        if over:
            bins[OVER] = over
        return cls(bins, int(len(values)), float(values.min()), float(values.max()))

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        if not other.count:
            return self
        if not self.count:
            return other
        bins = dict(self.bins)
        for key, n in other.bins.items():
            bins[key] = bins.get(key, 0) + n
        return LatencyHistogram(
            _ordered(bins), self.count + other.count, min(self.min, other.min), max(self.max, other.max)
        )  # type: ignore[type-var]

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1) within the bin resolution (module docstring)."""
        if not self.count or self.min is None or self.max is None:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for key in _order(self.bins):
            seen += self.bins[key]
            if seen >= rank:
                if key == UNDER:
                    return self.min
                if key == OVER:
                    return self.max
                middle = 10 ** ((int(key) + 0.5) / BINS_PER_DECADE)
                return min(max(middle, self.min), self.max)
        return self.max

    def to_dict(self) -> dict[str, Any]:
        return {"bins": dict(self.bins), "count": self.count, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LatencyHistogram:
        if not isinstance(data, dict) or not isinstance(data.get("bins", {}), dict):
            raise FormatError(f"{where}: a latency histogram is not an object")
        bins = data.get("bins", {})
        if len(bins) > END_BIN - FIRST_BIN + 2:
            raise FormatError(f"{where}: a latency histogram has more bins than there are")
        out: dict[str, int] = {}
        for key, n in bins.items():
            if key not in (UNDER, OVER) and not (_is_int(key) and FIRST_BIN <= int(key) < END_BIN):
                raise FormatError(f"{where}: latency bin {str(key)[:20]!r} is not a bin")
            out[key] = _count(n, where)
        count = _count(data.get("count", 0), where)
        if sum(out.values()) != count:
            raise FormatError(f"{where}: a latency histogram's bins do not add up to its count")
        low, high = data.get("min"), data.get("max")
        if count and not (isinstance(low, int | float) and isinstance(high, int | float)):
            raise FormatError(f"{where}: a latency histogram without its min and max")
        return cls(_ordered(out), count, None if low is None else float(low), None if high is None else float(high))


@dataclass(frozen=True)
class SlotStats:
    """One slot's (a variant's version's) requests: count per HTTP status, and their latency."""

    statuses: dict[str, int] = field(default_factory=dict)  # "200" -> requests
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def refused(self) -> int:
        return sum(n for s, n in self.statuses.items() if 400 <= int(s) < 500)

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if int(s) >= 500)

    def merge(self, other: SlotStats) -> SlotStats:
        statuses = dict(self.statuses)
        for s, n in other.statuses.items():
            statuses[s] = statuses.get(s, 0) + n
        return SlotStats(dict(sorted(statuses.items())), self.latency.merge(other.latency))

    def summary(self) -> dict[str, Any]:
        """Counts, rates and latency quantiles, as reports show them."""
        n = self.requests
        return {
            "requests": n,
            "ok": n - self.refused - self.failed,
            "refused": self.refused,
            "failed": self.failed,
            "refused_rate": self.refused / n if n else None,
            "error_rate": self.failed / n if n else None,
            "statuses": dict(self.statuses),
            "latency_ms": {
                "p50": self.latency.quantile(0.5),
                "p95": self.latency.quantile(0.95),
                "p99": self.latency.quantile(0.99),
                "max": self.latency.max,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {"statuses": dict(self.statuses), "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SlotStats:
        if not isinstance(data, dict) or not isinstance(data.get("statuses", {}), dict):
            raise FormatError(f"{where}: a slot's request statistics are not an object")
        statuses = data.get("statuses", {})
        if len(statuses) > 100:
            raise FormatError(f"{where}: more HTTP statuses than there are")
        for s in statuses:
            if not (_is_int(s) and 100 <= int(s) <= 599):
                raise FormatError(f"{where}: {str(s)[:20]!r} is not an HTTP status")
        return cls(
            {str(s): _count(n, where) for s, n in sorted(statuses.items())},
            LatencyHistogram.from_dict(data.get("latency", {}), where),
        )


Slots = dict[str, SlotStats]  # "production:3" -> stats


def slot_name(variant: str | None, version: int | None) -> str:
    return f"{variant or 'unrouted'}:{'' if version is None else int(version)}"


def merge_slots(a: Slots, b: Slots) -> Slots:
    out = dict(a)
    for key, stats in b.items():
        out[key] = out[key].merge(stats) if key in out else stats
    return dict(sorted(out.items()))


def total(slots: Slots) -> SlotStats:
    out = SlotStats()
    for stats in slots.values():
        out = out.merge(stats)
    return out


def slots_of(variants: Any, versions: Any, statuses: Any, latencies: Any) -> Slots:
    """Requests (one entry each) grouped per slot: variant names ("" or None: not routed),
    versions (None or a negative number: none), HTTP statuses, latencies in ms."""
    import numpy as np

    given = np.asarray(["" if v is None else str(v) for v in variants], dtype=str)
    names, codes = np.unique(given, return_inverse=True)
    versions = [-1 if v is None else int(v) for v in versions]
    return hourly_slots(np.zeros(len(codes), dtype=np.int64), list(names), codes, versions, statuses, latencies).get(
        0, {}
    )


def hourly_slots(
    hours: Any, variant_names: list[str], variant_codes: Any, versions: Any, statuses: Any, latencies: Any
) -> dict[int, Slots]:
    """Requests grouped per hour and slot, in one sort: ``variant_codes`` index ``variant_names``
    ("" not routed), ``versions`` below 0 are none."""
    import numpy as np

    hours = np.asarray(hours, dtype=np.int64)
    codes = np.asarray(variant_codes, dtype=np.int64)
    versions = np.asarray(versions, dtype=np.int64)
    statuses = np.asarray(statuses, dtype=np.int64)
    latencies = np.asarray(latencies, dtype=np.float64)
    if not len(hours):
        return {}
    # one integer per (hour, variant, version): a sort of integers, not of rows (8x faster, measured)
    versions = np.maximum(versions, -1)
    first_hour, n_codes, n_versions = int(hours.min()), len(variant_names), int(versions.max()) + 2
    keys = ((hours - first_hour) * n_codes + codes) * n_versions + (versions + 1)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.diff(ordered)) + 1
    bounds = [0, *starts.tolist(), len(ordered)]
    out: dict[int, Slots] = {}
    for k, key in enumerate(ordered[[0, *starts.tolist()]].tolist()):
        rows = order[bounds[k] : bounds[k + 1]]
        rest, version = divmod(key, n_versions)
        hour, code = divmod(rest, n_codes)
        hour, version = hour + first_hour, version - 1
        name = slot_name(variant_names[code], None if version < 0 else version)
        counts = np.bincount(np.clip(statuses[rows], 0, 599), minlength=600)
        out.setdefault(hour, {})[name] = SlotStats(
            {str(c): int(counts[c]) for c in np.flatnonzero(counts).tolist()}, LatencyHistogram.of(latencies[rows])
        )
    return {h: dict(sorted(slots.items())) for h, slots in out.items()}


def slots_to_dict(slots: Slots) -> dict[str, Any]:
    return {k: s.to_dict() for k, s in sorted(slots.items())}


def slots_from_dict(data: Any, where: str) -> Slots:
    if not isinstance(data, dict) or len(data) > MAX_SLOTS:
        raise FormatError(f"{where}: request statistics are not an object of at most {MAX_SLOTS} slots")
    out: Slots = {}
    for key, value in data.items():
        variant, colon, version = str(key).partition(":")
        if not variant or not colon or len(key) > 80 or (version and not _is_int(version)):
            raise FormatError(f"{where}: {str(key)[:20]!r} is not a slot (variant:version)")
        out[str(key)] = SlotStats.from_dict(value, where)
    return out


def _order(bins: dict[str, int]) -> list[str]:
    numbered = sorted(int(k) for k in bins if k not in (UNDER, OVER))
    return [*([UNDER] if UNDER in bins else []), *(str(b) for b in numbered), *([OVER] if OVER in bins else [])]


def _ordered(bins: dict[str, int]) -> dict[str, int]:
    return {k: bins[k] for k in _order(bins)}


def _is_int(text: Any) -> bool:
    return isinstance(text, str) and text.lstrip("-").isdigit() and len(text) < 12


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FormatError(f"{where}: a count is not a whole number >= 0")
    return value
