"""`mlops export kserve`: a KServe InferenceService (serving.kserve.io/v1beta1) whose predictor is a
custom container: the image `mlops export docker` builds, speaking the Open Inference Protocol V2
(and mlops' own and MLflow's protocols) on 8080.

- ``--canary N --weight W``: the predictor names version N's image with
  ``canaryTrafficPercent: W``; KServe then sends W% to the new revision and the rest to the
  last revision that took all traffic (production, applied before). Promotion is the same
  file without ``--canary`` (or ``canaryTrafficPercent: 100``); rollback is KServe's own.
- ``--storage-uri URI``: the generic image serves a bundle (`mlops export model`) that KServe's
  storage initializer downloads into ``/mnt/models`` (the ``STORAGE_URI`` variable of a custom
  container), instead of the bundle baked into the image.

Knative runs the pod: one port, probes without a port of their own, no lifecycle hooks, no
volumes; the container keeps the non-root user and dropped capabilities.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..repo.repo import Repo
from .docker import PORT, SERVE_COMMAND, UID
from .k8s import HEALTH_LIVE, HEALTH_READY, Sizing, default_image, dns_name, labels

KSERVE_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer places a storageUri's files


def inference_service(
    repo: Repo,
    ref: str,
    *,
    canary: int | None = None,
    weight: float | None = None,
    image: str | None = None,
    storage_uri: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    sizing: Sizing = Sizing(),
    min_replicas: int = 1,
    max_replicas: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """(the ref of the version the predictor runs, the InferenceService)."""
    from .. import registry

    if weight is not None and canary is None:
        raise UsageError("--weight goes with --canary VERSION")
    if canary is not None and not (weight is None or 0 < weight <= 100):
        raise UsageError(f"--weight {weight:g}: a percentage above 0, at most 100")
    if min_replicas < 0 or (max_replicas is not None and max_replicas < max(min_replicas, 1)):
        raise UsageError("--min-replicas/--max-replicas: 0 <= min <= max, max >= 1")
    production = registry.resolve(repo, ref)
    served = registry.resolve(repo, f"{production.name}:{canary}") if canary is not None else production
    if canary is not None and served.version == production.version:
        raise UsageError(f"--canary {canary} is {ref} itself", hint="name the version to try beside production")
    sizing.check()
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": image or default_image(served.name, served.version),
        "ports": [{"name": "http1", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": "PORT", "value": str(PORT)}],
        "resources": sizing.resources(),
        "livenessProbe": {"httpGet": {"path": HEALTH_LIVE}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": HEALTH_READY}, "periodSeconds": 5, "failureThreshold": 2},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if storage_uri is not None:
        if "://" not in storage_uri:
            raise UsageError(f"--storage-uri {storage_uri}: not a URI", hint="e.g. s3://bucket/churn/v4/bundle")
        container["env"].append({"name": "STORAGE_URI", "value": storage_uri})
        container["args"] = [*SERVE_COMMAND[1:3], KSERVE_MODEL_DIR, *SERVE_COMMAND[4:]]
        container["command"] = [SERVE_COMMAND[0]]
    predictor: dict[str, Any] = {"minReplicas": min_replicas, "containers": [container]}
    if max_replicas is not None:
        predictor["maxReplicas"] = max_replicas
    if canary is not None:
        predictor["canaryTrafficPercent"] = int(round(weight if weight is not None else 10))
    meta: dict[str, Any] = {
        "name": dns_name(name or production.name),
        "labels": labels(served.name, served.version),
        "annotations": {
            "mlops.dev/model": served.ref(),
            "mlops.dev/production": production.ref(),
            "mlops.dev/protocols": "v2 mlflow own",
        },
    }
    if namespace:
        meta["namespace"] = dns_name(namespace)
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }
    return served.ref(), isvc
