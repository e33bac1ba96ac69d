"""Which variant answers a request: the weighted canary split, sticky by a request key.

With a key (the ``X-Request-ID`` header, or a field of the first record), the key is hashed
with the candidate's version as salt into one of 10,000 slots; slots below ``weight * 100`` go to
the canary. So the same key always reaches the same variant while the deployment stands, and
raising the weight (5 -> 25 -> 50) only moves keys from production to the canary, never back.
A new candidate version reshuffles which keys it gets. Without a key the split is random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import xxhash

SLOTS = 10_000
PRODUCTION, CANARY, SHADOW = "production", "canary", "shadow"


def slot(key: str, salt: str) -> int:
    return xxhash.xxh64_intdigest(f"{salt}\x00{key}".encode("utf-8", "surrogatepass")) % SLOTS


@dataclass(frozen=True)
class Route:
    production: Any  # the served variant objects (see runtime.Served)
    canary: Any | None = None
    shadow: Any | None = None
    weight: float = 0.0  # percent of requests to the canary
    salt: str = ""

    def choose(self, key: str | None) -> tuple[str, Any]:
        """(variant name, served) for one request."""
        if self.canary is None or self.weight <= 0:
            return PRODUCTION, self.production
        if self.weight >= 100:
            return CANARY, self.canary
        if key:
            to_canary = slot(key, self.salt) < self.weight * (SLOTS / 100)
        else:
            to_canary = random.random() * 100 < self.weight
        return (CANARY, self.canary) if to_canary else (PRODUCTION, self.production)

    def find(self, version: int) -> tuple[str, Any] | None:
        """(variant name, served) of the variant serving ``version``, or None when no variant does."""
        for name, served in ((PRODUCTION, self.production), (CANARY, self.canary), (SHADOW, self.shadow)):
            if served is not None and served.version == version:
                return name, served
        return None

    def versions(self) -> list[int]:
        """The versions this route serves: production, then the canary or shadow."""
        return [s.version for s in (self.production, self.canary, self.shadow) if s is not None]
