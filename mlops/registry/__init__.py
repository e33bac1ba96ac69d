"""The model registry: versions, stages and aliases, policy gates, approvals, an audit chain,
lineage and model cards (docs/registry.md).

The names below are the interface serve, drift, workflows and scripts use; none of them imports
a heavy library until a model is loaded or a signature inferred. The verbs live by family:
read.py (resolve, versions, list_models), artifacts.py (checked artifact paths, load_model,
training data), registration.py, transitions.py (promote, rollback), approvals.py, aliases.py,
drift_checks.py, audit_ops.py (append, history, verify) and roots.py (what push, fetch and gc keep).
"""

from ..errors import AuditTampered, PromotionRefused, RegistryTampered, UnknownModelError
from .aliases import AliasResult, delete_alias, set_alias
from .approvals import ApproveResult, approve
from .artifacts import artifact_path, load_model, training_data
from .audit_ops import audit_append, history, verify_audit
from .drift_checks import record_drift_check
from .read import ModelSummary, get_version, list_models, resolve, versions
from .refs import ARCHIVED, NONE, PRODUCTION, STAGES, STAGING, Ref, parse_ref
from .registration import RegisterResult, register
from .roots import registry_roots
from .store import ModelVersion
from .transitions import PromoteResult, RollbackResult, promote, rollback

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
