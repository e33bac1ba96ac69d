"""One truth for production: every change of the production version, in the registry and in the
deployment, made in one locked step so the two agree.

The registry's production version is the truth. A deployment file (``serve/deployment.py``)
copies it unless the user pinned a version on purpose (``mlops deploy NAME --pin V``). A flow
that changes the registry takes the deployment's lock first (lock order: deployment, then
registry, everywhere), changes the registry (its audit entry in the same registry
transaction), then rewrites the deployment to agree (with its own audit entry).

A crash between the two writes leaves the registry changed and the file one step behind:
unpinned, it is derived data, so the next flow on the model, or a running server's controller
within a second, writes the registry's version into it, and ``mlops canary status`` reports
it as behind meanwhile. Never the other way round: a deployment is not written before the
registry change it follows has committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import UsageError
from ..registry.refs import PRODUCTION, parse_ref
from ..repo.repo import Repo
from ..serve import deployment
from ..serve.deployment import Deployment, actor, agreement, deployment_lock, load_deployment, registry_production
from ..serve.source import open_source


@dataclass(frozen=True)
class ProductionView:
    """What serves a model: the registry's production version, and the deployment's."""

    model: str
    registry: int | None
    deployed: int | None  # None: no deployment file (a server follows the registry's reference)
    pinned: bool
    candidate: dict[str, Any] | None
    agreement: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ProductionChange:
    """A registry change and what the deployment did about it."""

    result: Any  # the registry's result (PromoteResult, RollbackResult) or the deployment
    deployment: Deployment | None  # the deployment after the change (None: the model has no deployment file)
    followed: bool  # the deployment was rewritten to the registry's production version
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_dict() if hasattr(self.result, "to_dict") else {}
        out["deployment"] = self.deployment.to_dict() if self.deployment is not None else None
        out["deployment_followed"] = self.followed
        out["warnings"] = list(self.warnings)
        return out


def view(repo: Repo, model: str, *, source: Any = None) -> ProductionView:
    """Read-only: the registry's and the deployment's production version, and whether they agree."""
    source = open_source(repo) if source is None else source
    in_registry = registry_production(source, model)
    dep = load_deployment(repo, model)
    if dep is None:
        state = {"state": "no_deployment", "message": None, "hint": None}
        return ProductionView(model, in_registry, None, False, None, state)
    cand = dep.candidate.to_dict() if dep.candidate else None
    return ProductionView(model, in_registry, dep.production, dep.pinned, cand, agreement(dep, in_registry))


def _follow(repo: Repo, source: Any, model: str, *, by: str, reason: str) -> tuple[Deployment | None, bool, list[str]]:
    """Under the deployment's lock: make it agree with the registry. Returns (deployment, followed, warnings)."""
    new = deployment.follow_registry_locked(repo, source, model, by=by, reason=reason)
    dep = new if new is not None else load_deployment(repo, model)
    warnings: list[str] = []
    if dep is not None and dep.pinned:
        in_registry = registry_production(source, model)
        if in_registry != dep.production:
            warnings.append(
                f"the deployment of {model} is pinned at v{dep.production}: servers keep answering with it "
                f"(the registry's production is {'v' + str(in_registry) if in_registry else 'none'}); "
                f"release the pin with: mlops deploy {model} --unpin"
            )
    if new is not None and (new.last_event or {}).get("candidate_removed"):
        warnings.append(f"v{new.production} was the deployment's candidate: it left the candidate's place")
    return dep, new is not None, warnings


def promote(
    repo: Repo,
    name: str,
    version: int | str | None,
    to_stage: str,
    *,
    reason: str = "",
    by: str | None = None,
    force: bool = False,
) -> ProductionChange:
    """``registry.promote`` (gates, forced promotions) and the deployment made to agree, in one locked step."""
    model = parse_ref(name).name
    source = open_source(repo)
    with deployment_lock(repo, model):
        result = registry.promote(repo, name, version, to_stage, reason=reason, actor=by, force=force)
        # also when the registry had nothing to change: the same promotion run again after a crash
        # between the two writes is what makes the deployment catch up (agreeing, nothing is written)
        touched = to_stage == PRODUCTION or result.from_stage == PRODUCTION
        if not touched:
            return ProductionChange(result, load_deployment(repo, model), False)
        why = f"{result.name}:{result.version} {result.from_stage} -> {result.to_stage}"
        dep, followed, warnings = _follow(repo, source, model, by=actor("mlops promote"), reason=why)
    return ProductionChange(result, dep, followed, tuple(warnings))


def rollback(repo: Repo, name: str, *, reason: str = "", by: str | None = None) -> ProductionChange:
    """``registry.rollback`` and the deployment made to agree, in one locked step."""
    model = parse_ref(name).name
    source = open_source(repo)
    with deployment_lock(repo, model):
        result = registry.rollback(repo, name, reason=reason, actor=by)
        why = f"rollback: v{result.from_version} -> v{result.to_version}" + (f" ({reason})" if reason else "")
        dep, followed, warnings = _follow(repo, source, model, by=actor("mlops rollback"), reason=why)
    return ProductionChange(result, dep, followed, tuple(warnings))


def signing_key(repo: Repo, key: str | None) -> Path:
    """The SSH key an approval is signed with: ``key``, else git's ``user.signingkey`` (as git signs with SSH)."""
    import subprocess

    if not key:
        proc = subprocess.run(
            ["git", "config", "--get", "user.signingkey"], cwd=repo.root, capture_output=True, text=True, check=False
        )
        key = proc.stdout.strip() if proc.returncode == 0 else ""
    if not key or key.startswith("key::"):
        raise UsageError(
            "--sign needs the path of an SSH private key",
            hint="--key ~/.ssh/id_ed25519, or: git config user.signingkey ~/.ssh/id_ed25519",
        )
    path = Path(key).expanduser()
    if path.suffix == ".pub" and path.with_suffix("").is_file():  # git lets user.signingkey name the public half
        path = path.with_suffix("")
    return path


def approve(
    repo: Repo,
    name: str,
    version: int | str | None,
    stage: str,
    *,
    by: str | None = None,
    comment: str = "",
    sign: bool = False,
    key: str | None = None,
) -> registry.ApproveResult:
    """An approval under the approver's identity (default: git's user.email), signed with their SSH key on request."""
    sign_key = signing_key(repo, key) if sign or key else None
    return registry.approve(repo, name, version, stage, by=by, comment=comment, sign_key=sign_key)


def deploy(
    repo: Repo,
    model: str,
    *,
    canary: int | None = None,
    shadow: int | None = None,
    weight: float | None = None,
    steps: tuple[float, ...] = (),
    interval_seconds: float | None = None,
    key: str | None = None,
    window_seconds: float | None = None,
    min_requests: int | None = None,
    max_error_rate: float | None = None,
    max_p99_ms: float | None = None,
    max_prediction_shift: float | None = None,
    pin: int | None = None,
    unpin: bool = False,
    pin_reason: str = "",
    state: Any = None,
) -> Deployment:
    """``mlops deploy``: the deployment, its production the registry's (or the pin); ``state``: the replicas'
    shared state (``serve.shared``), where the change is made."""
    return deployment.deploy(
        repo,
        open_source(repo),
        model,
        canary=canary,
        shadow=shadow,
        weight=weight,
        steps=steps,
        interval_seconds=interval_seconds,
        key=key,
        window_seconds=window_seconds,
        min_requests=min_requests,
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms,
        max_prediction_shift=max_prediction_shift,
        pin=pin,
        unpin=unpin,
        pin_reason=pin_reason,
        by=actor("mlops deploy"),
        state=state,
    )


def canary_promote(repo: Repo, model: str, *, reason: str, force: bool = False, state: Any = None) -> Deployment:
    """The candidate becomes production in the registry (through its gates) and in the deployment, in one step."""
    by = actor("mlops canary promote")
    return deployment.promote(repo, open_source(repo), model, reason=reason, by=by, force=force, state=state)


def canary_rollback(repo: Repo, model: str, *, reason: str, state: Any = None) -> Deployment:
    """The candidate leaves the deployment; production stays the registry's."""
    by = actor("mlops canary rollback")
    return deployment.rollback(repo, open_source(repo), model, reason=reason, by=by, state=state)
