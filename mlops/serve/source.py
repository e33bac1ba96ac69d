"""The model-loading seam: what serving needs from the registry, and nothing more.

Given a reference (``churn@production``, ``churn:4``, ``churn``) a source answers the model's
name, version and signature, loads the object (its artifact's hash checked before unpickling),
and carries out the two registry actions serving takes: a promotion through the policy gates,
and an audit entry for a rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigError
from ..repo.repo import Repo
from .signature import Signature


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    stage: str
    signature: Signature | None
    flavor: str = "sklearn"
    artifact: str = ""

    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class ModelSource(Protocol):
    def resolve(self, ref: str) -> ModelInfo:
        """The version a reference names now; UsageError (exit 2) when there is none."""

    def load(self, info: ModelInfo) -> Any:
        """The model object, after its artifact's hash is checked."""

    def promote(self, name: str, version: int, *, reason: str, actor: str, force: bool = False) -> None:
        """Make ``version`` the production version through the policy gates; CheckFailed when refused."""

    def audit(self, event: str, **fields: Any) -> None:
        """Append one entry to the registry's audit log."""


@dataclass(frozen=True)
class Preloaded:
    """What the command already opened and loaded, handed to a one-worker server so that nothing is
    read, verified or unpickled twice at start-up (a bundle's files are hashed once)."""

    source: ModelSource
    info: ModelInfo
    model: Any


def servable(info: ModelInfo, model: Any) -> Any:
    if not callable(getattr(model, "predict", None)):
        raise ConfigError(
            f"{info.ref()} is not servable: the loaded {info.flavor} artifact has no predict() method",
            hint="register a model object with predict() (a scikit-learn estimator or pipeline)",
        )
    return model


class RegistrySource:
    """The registry of the repository (``mlops.registry``), imported when first used."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def _info(self, mv: Any) -> ModelInfo:
        return ModelInfo(
            name=mv.name,
            version=int(mv.version),
            stage=str(mv.stage),
            signature=Signature.from_dict(mv.signature),
            flavor=str(getattr(mv, "flavor", "sklearn")),
            artifact=str(getattr(mv, "artifact", "")),
        )

    def resolve(self, ref: str) -> ModelInfo:
        from .. import registry

        return self._info(registry.resolve(self.repo, ref))

    def load(self, info: ModelInfo) -> Any:
        # load_model refuses (RegistryTampered, exit 3) a model file that is not what the audit
        # log recorded before it opens the artifact: serve's start-up and every reload go through it
        from .. import registry

        mv = registry.resolve(self.repo, info.ref())
        return servable(info, registry.load_model(mv, repo=self.repo))

    def promote(self, name: str, version: int, *, reason: str, actor: str, force: bool = False) -> None:
        from .. import registry

        registry.promote(self.repo, name, version, "production", reason=reason, actor=actor, force=force)

    def audit(self, event: str, **fields: Any) -> None:
        from .. import registry

        registry.audit_append(self.repo, event, **fields)


def open_source(repo: Repo, *, bundle: str | None = None, runtime: str = "auto") -> ModelSource:
    """The source serving reads models from: the repository's registry, or a bundle folder
    (verified here, every file's hash, before anything is loaded from it; ``runtime``: its pickle
    or its ONNX form, serve/bundle.py's RUNTIMES)."""
    if bundle is not None:
        from .bundle import BundleSource, open_bundle

        return BundleSource(open_bundle(bundle), runtime=runtime)
    return RegistrySource(repo)
