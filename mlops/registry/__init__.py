"""The model registry: versions, stages and aliases, policy gates, approvals, an audit chain,
lineage and model cards (docs/registry.md).

The names below are the interface serve, drift and scripts use; none of them imports a
heavy library until a model is loaded or a signature inferred.
"""

from ..errors import AuditTampered, PromotionRefused, RegistryTampered, UnknownModelError
from .api import (
    AliasResult,
    ApproveResult,
    ModelSummary,
    PromoteResult,
    RegisterResult,
    RollbackResult,
    approve,
    artifact_path,
    audit_append,
    delete_alias,
    get_version,
    history,
    list_models,
    load_model,
    promote,
    record_drift_check,
    register,
    registry_roots,
    resolve,
    rollback,
    set_alias,
    training_data,
    verify_audit,
    versions,
)
from .refs import ARCHIVED, NONE, PRODUCTION, STAGES, STAGING, Ref, parse_ref
from .store import ModelVersion

__all__ = [
    "ARCHIVED", "NONE", "PRODUCTION", "STAGES", "STAGING",
    "AliasResult", "ApproveResult", "AuditTampered", "ModelSummary", "ModelVersion", "PromoteResult", "PromotionRefused",
    "Ref", "RegisterResult", "RegistryTampered", "RollbackResult", "UnknownModelError",
    "approve", "artifact_path", "audit_append", "delete_alias", "get_version", "history", "list_models", "load_model",
    "parse_ref", "promote", "record_drift_check", "register", "registry_roots", "resolve", "rollback", "set_alias",
    "training_data", "verify_audit", "versions",
]
