"""The model registry: versions, stages and aliases, policy gates, approvals, an audit chain,
lineage and model cards (docs/registry.md).

The names below are the interface serve, drift, workflows and scripts use; none of them imports
a heavy library until a model is loaded or a signature inferred, and each family's module is
imported when one of its names is first used. The verbs live by family:
read.py (resolve, versions, list_models), artifacts.py (checked artifact paths, load_model,
training data), registration.py, transitions.py (promote, rollback), approvals.py, aliases.py,
drift_checks.py, audit_ops.py (append, history, verify) and roots.py (what push, fetch and gc keep).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import AuditTampered, PromotionRefused, RegistryTampered, UnknownModelError
from .refs import ARCHIVED, NONE, PRODUCTION, STAGES, STAGING, Ref, parse_ref

# Each verb's module is imported when the verb is first used (PEP 562): serving a bundle needs flavors
# and pyfunc, not the store, the audit chain and the policy gates behind them (a tenth of its start-up)
_HOMES = {
    "aliases": ("AliasResult", "delete_alias", "set_alias"),
    "approvals": ("ApproveResult", "approve"),
    "artifacts": ("artifact_path", "load_model", "training_data"),
    "audit_ops": ("audit_append", "history", "verify_audit"),
    "drift_checks": ("record_drift_check",),
    "read": ("ModelSummary", "get_version", "list_models", "resolve", "versions"),
    "registration": ("RegisterResult", "register"),
    "roots": ("registry_roots",),
    "store": ("ModelVersion",),
    "transitions": ("PromoteResult", "RollbackResult", "promote", "rollback"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "ARCHIVED",
    "NONE",
    "PRODUCTION",
    "STAGES",
    "STAGING",
    "AliasResult",
    "ApproveResult",
    "AuditTampered",
    "ModelSummary",
    "ModelVersion",
    "PromoteResult",
    "PromotionRefused",
    "Ref",
    "RegisterResult",
    "RegistryTampered",
    "RollbackResult",
    "UnknownModelError",
    "approve",
    "artifact_path",
    "audit_append",
    "delete_alias",
    "get_version",
    "history",
    "list_models",
    "load_model",
    "parse_ref",
    "promote",
    "record_drift_check",
    "register",
    "registry_roots",
    "resolve",
    "rollback",
    "set_alias",
    "training_data",
    "verify_audit",
    "versions",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
