"""`mlops export k8s`: Kubernetes manifests for the image `mlops export docker` builds.

``k8s/`` gets one file per object, applied with ``kubectl apply -f k8s/``:

- ``deployment.yaml``: the server (``mlops serve --model-dir``, the image's own command) with
  resource requests and limits, a startup, a liveness (``/v2/health/live``) and a readiness
  (``/v2/health/ready``) probe, a short ``preStop`` pause (so endpoints drop the pod before it
  stops accepting) and ``terminationGracePeriodSeconds`` longer than that pause plus the
  server's drain (``ServeConfig.graceful_seconds``) plus a margin; a non-root, read-only root
  filesystem with an ``emptyDir`` for the server's state;
- ``service.yaml``: a ClusterIP Service, port 80 to the container's 8080;
- ``hpa.yaml``: an ``autoscaling/v2`` HorizontalPodAutoscaler on CPU, or on requests per
  second per pod (a Pods metric a Prometheus adapter derives from ``mlops_http_requests_total``);
- ``pdb.yaml``: a ``policy/v1`` PodDisruptionBudget (at most one pod down at a time by a drain).

Values are plain data (dicts) dumped as YAML; names from the registry become DNS-1123 labels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..repo.repo import Repo
from ..serve.config import ServeConfig
from .docker import MODEL_DIR, PORT, SERVE_COMMAND, STATE_DIR, UID

HEALTH_LIVE = "/v2/health/live"
HEALTH_READY = "/v2/health/ready"
PRE_STOP_SECONDS = 5  # endpoints and load balancers stop sending before SIGTERM
DRAIN_MARGIN_SECONDS = 15  # batchers drained and request logs closed after uvicorn's graceful stop
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?")


def termination_grace_seconds() -> int:
    """Longer than the server's drain: the preStop pause, uvicorn's graceful stop, the app's shutdown."""
    return int(PRE_STOP_SECONDS + ServeConfig.graceful_seconds + DRAIN_MARGIN_SECONDS)


def dns_name(text: str) -> str:
    """A model name (letters, digits, ``_ . -``) as a DNS-1123 label: lowercase, ``-`` for the rest, 63 at most."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")
    if not name:
        raise UsageError(f"{text!r} gives no Kubernetes name", hint="pass --name")
    return name


def default_image(name: str, version: int) -> str:
    """The tag `mlops export docker` suggests for the version's image."""
    return f"{dns_name(name)}:v{version}"


@dataclass(frozen=True)
class Sizing:
    cpu: str = "500m"
    memory: str = "512Mi"
    cpu_limit: str | None = None  # no CPU limit by default: throttling hurts latency more than it saves
    memory_limit: str | None = "1Gi"

    def check(self) -> Sizing:
        for label, value in (
            ("--cpu", self.cpu),
            ("--memory", self.memory),
            ("--cpu-limit", self.cpu_limit),
            ("--memory-limit", self.memory_limit),
        ):
            if value is not None and not QUANTITY.fullmatch(value):
                raise UsageError(f"{label} {value}: not a Kubernetes quantity", hint="e.g. 500m, 2, 512Mi, 1Gi")
        return self

    def resources(self) -> dict[str, Any]:
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, **({"limits": limits} if limits else {})}


def labels(name: str, version: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": dns_name(name),
        "app.kubernetes.io/version": f"v{version}",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "mlops",
    }


def container(
    name: str, image: str, sizing: Sizing, *, container_name: str = "server", model_dir: str = MODEL_DIR
) -> dict[str, Any]:
    """The server container: the image's own command (``args`` only when the bundle is elsewhere)."""
    probe = {"port": PORT}
    spec: dict[str, Any] = {
        "name": container_name,
        "image": image,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": "PORT", "value": str(PORT)}],
        "resources": sizing.resources(),
        "startupProbe": {
            "httpGet": {"path": HEALTH_LIVE, **probe},
            "periodSeconds": 2,
            "failureThreshold": 60,  # two minutes to import the libraries and verify and load the bundle
        },
        "livenessProbe": {"httpGet": {"path": HEALTH_LIVE, **probe}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": HEALTH_READY, **probe}, "periodSeconds": 5, "failureThreshold": 2},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}],
    }
    if model_dir != MODEL_DIR:
        spec["args"] = [*SERVE_COMMAND[:3], model_dir, *SERVE_COMMAND[4:]]
    return spec


@dataclass(frozen=True)
class ManifestResult:
    path: str
    ref: str
    image: str
    files: dict[str, dict[str, Any]]  # file name -> the object it holds
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ref": self.ref, "image": self.image, "files": sorted(self.files)}


def k8s_manifests(
    repo: Repo,
    ref: str,
    *,
    replicas: int = 2,
    max_replicas: int | None = None,
    image: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    sizing: Sizing = Sizing(),
    target_cpu: int = 70,
    target_rps: float | None = None,
) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """(the version's ref, the image, {file name: object}) for ``ref``."""
    from .. import registry

    if replicas < 1:
        raise UsageError("--replicas must be at least 1")
    max_replicas = max_replicas if max_replicas is not None else max(replicas * 3, replicas + 1)
    if max_replicas < replicas:
        raise UsageError(f"--max-replicas {max_replicas} is below --replicas {replicas}")
    mv = registry.resolve(repo, ref)
    sizing.check()
    image = image or default_image(mv.name, mv.version)
    app = dns_name(name or mv.name)
    meta: dict[str, Any] = {"name": app, "labels": labels(mv.name, mv.version)}
    if namespace:
        meta["namespace"] = dns_name(namespace)
    selector = {"app.kubernetes.io/name": app}
    pod_labels = {**labels(mv.name, mv.version), **selector}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {"mlops.dev/model": mv.ref(), "prometheus.io/path": "/metrics"},
                },
                "spec": {
                    "terminationGracePeriodSeconds": termination_grace_seconds(),
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container(mv.name, image, sizing)],
                    "volumes": [{"name": "state", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    if target_rps is not None:
        metric: dict[str, Any] = {
            "type": "Pods",
            "pods": {
                "metric": {"name": "mlops_http_requests_per_second"},
                "target": {"type": "AverageValue", "averageValue": f"{target_rps:g}"},
            },
        }
    else:
        metric = {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target_cpu}},
        }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": replicas,
            "maxReplicas": max_replicas,
            "metrics": [metric],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    files = {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": hpa, "pdb.yaml": pdb}
    return mv.ref(), image, files


def write_manifests(
    ref: str, image: str, files: dict[str, dict[str, Any]], out: str | os.PathLike[str]
) -> ManifestResult:
    from ..formats import dump_yaml
    from .bundle import check_new_folder, write_files

    target = check_new_folder(out)
    header = f"# {ref}, written by `mlops export k8s`\n"
    write_files(target, {name: (header + dump_yaml(obj)).encode() for name, obj in files.items()})
    return ManifestResult(str(target), ref, image, files)
