"""Features looked up at serving time, for a model whose signature names a feature service.

Callers send entity keys (``{"customer_id": 42}``); each row's features come from the online
store (TTL applied at read time), then go through the same signature checks as direct inputs,
and the request log records the values used. The service's policy in features.yaml decides the
rest: ``defaults`` (feature -> value used when the store has none; without one, the request is
a 400 naming the missing features) and ``allow_direct`` (whether a caller may send a feature
itself, which then wins over the store).

A model bundle (``mlops export model``) carries the service's definitions in its own
``features.yaml`` with the online store's settings (a Redis store: the repository's SQLite file
stays behind), and a server of the bundle reads them from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, MlopsError, UsageError
from ..features.definitions import FEATURES_FILE, Definitions, load_definitions
from ..features.online import OnlineReader
from ..repo.repo import Repo
from .protocols import BadRequest, Inputs
from .signature import Column, Signature, dtype_kind

MAX_LISTED = 5  # missing features named per response, the rest counted


class FeatureInputs:
    """One per served version: the online store opened once, lookups per request row."""

    def __init__(self, repo: Repo, service: str, *, bundle: str | None = None) -> None:
        defs = _definitions(repo, bundle)
        self.reader = OnlineReader(repo, defs, service)
        self.service = self.reader.service
        self.keys = self.reader.join_keys()

    def request_signature(self, signature: Signature) -> Signature:
        """What a request is parsed with: the entity keys first, then the model's inputs (a V2 tensor
        named customer_id is then a column, not a matrix of the model's inputs)."""
        keys = tuple(
            Column(key, kind, dtype_kind(kind), False)
            for key, kind in self.keys.items()
            if signature.column(key) is None
        )
        return Signature(keys + signature.inputs, signature.outputs, signature.feature_service)

    def caller_signature(self, signature: Signature) -> Signature:
        """What a caller sends (V2 model metadata): the entity keys, the model's inputs that no feature
        of the service supplies, and the service's features only where callers may send them."""
        served = {ref.feature for ref in self.service.features}
        request = self.request_signature(signature)
        inputs = tuple(c for c in request.inputs if self.service.allow_direct or c.name not in served)
        return Signature(inputs, signature.outputs, signature.feature_service)

    def fill(self, inputs: Inputs, takes: tuple[str, ...]) -> tuple[Inputs, list[str]]:
        """The request's columns with the service's features looked up, and the problems (a 400)."""
        columns = dict(inputs.columns)
        problems = [f"missing entity key '{key}' (feature service '{self.service.name}')" for key in self.keys]
        problems = [p for key, p in zip(self.keys, problems, strict=True) if key not in columns]
        direct = [ref.feature for ref in self.service.features if ref.feature in columns]
        if direct and not self.service.allow_direct:
            problems.append(
                f"{', '.join(direct)}: from feature service '{self.service.name}'; send the entity keys "
                f"({', '.join(self.keys)}) only (allow_direct is off)"
            )
        if problems:
            return inputs, problems
        wanted = [ref for ref in self.service.features if ref.feature not in columns]
        looked_up: dict[str, list[Any]] = {ref.feature: [] for ref in wanted}
        missing: dict[str, int] = {}
        first_missing: dict[str, dict[str, Any]] = {}
        for row in range(inputs.rows):
            entity = {key: columns[key][row] for key in self.keys}
            if any(value is None for value in entity.values()):
                found: dict[str, Any] = {}
            else:
                try:
                    found = self.reader.lookup(entity).values
                except UsageError as exc:  # a key that is not of its entity's type
                    problems.append(f"row {row}: {exc.message}")
                    continue
                except MlopsError as exc:  # the store cannot answer (Redis down, file unreadable)
                    raise BadRequest([f"the online store cannot answer: {exc.message}"], status=503) from None
            for ref in wanted:
                value = found.get(ref.feature)
                if value is None:
                    if ref.feature in self.service.defaults:
                        value = self.service.defaults[ref.feature]
                    else:
                        missing[str(ref)] = missing.get(str(ref), 0) + 1
                        first_missing.setdefault(str(ref), entity)
                looked_up[ref.feature].append(value)
        if problems:
            return inputs, problems
        for name, count in list(missing.items())[:MAX_LISTED]:
            where = ", ".join(f"{k}={v}" for k, v in first_missing[name].items())
            rows = f" (and {count - 1} more rows)" if count > 1 else ""
            problems.append(f"no value for feature {name} for {where}{rows}, and no default")
        if len(missing) > MAX_LISTED:
            problems.append(f"... and {len(missing) - MAX_LISTED} more missing features")
        columns.update(looked_up)
        for key in self.keys:
            if key not in takes:  # the model does not take its entity keys as inputs
                columns.pop(key, None)
        return Inputs(columns, inputs.rows, inputs.request_id, inputs.parameters, inputs.binary_output), problems

    def probe(self) -> None:
        """Every view of the service materialized in the store (reached now, not at the first request)."""
        for view in self.service.views():
            if self.reader.store.watermark(view) is None:
                raise UsageError(
                    f"feature view '{view}' of service '{self.service.name}' is not materialized in the online "
                    "store yet",
                    hint=f"run 'mlops features materialize --service {self.service.name}' first",
                )

    def close(self) -> None:
        self.reader.close()


def _definitions(repo: Repo, bundle: str | None) -> Definitions:
    if bundle is None:
        return load_definitions(repo.root)
    if not (Path(bundle) / FEATURES_FILE).is_file():
        raise ConfigError(
            f"bundle {bundle}: the model looks its inputs up in a feature service, and the bundle carries no "
            f"{FEATURES_FILE} (exported by an older mlops)",
            hint="export the model again ('mlops export model REF -o DIR')",
        )
    defs = load_definitions(Path(bundle))  # a file of the bundle, hash-checked with it (serve/bundle.py)
    if not defs.redis_store:
        raise ConfigError(
            f"bundle {bundle}: its features.yaml names no Redis online store, and a bundle reaches no other",
            hint="export the model again from a repository whose features.yaml sets online_store: redis://...",
        )
    return defs


def check_feature_inputs(repo: Repo, service: str, *, bundle: str | None = None) -> None:
    """Before a server starts: the definitions read and the store reached, or one error line now."""
    inputs = FeatureInputs(repo, service, bundle=bundle)
    try:
        inputs.probe()
    finally:
        inputs.close()
