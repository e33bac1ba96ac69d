"""`mlops export k8s` and `mlops export kserve` (issue 15): manifests validated offline, the Kubernetes
objects with kubernetes-validate (strict: no unknown field) and the InferenceService against
KServe's published CRD schema (tests/data_files/schemas/, with its source)."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from servekit import mlops

from mlops.serve.config import ServeConfig

CRD = Path(__file__).resolve().parents[1] / "data_files" / "schemas" / "kserve-inferenceservice-crd.yaml"


def kubernetes_validate(*files: Path) -> subprocess.CompletedProcess[str]:
    tool = str(Path(sys.executable).with_name("kubernetes-validate"))
    return subprocess.run([tool, "--strict", *map(str, files)], capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def k8s(model_repo: Path, tmp_path: Path) -> Path:
    out = tmp_path / "k8s"
    mlops(model_repo, "export", "k8s", "churn@production", "--replicas", "3", "-o", str(out))
    return out


def test_k8s_manifests_validate_against_the_kubernetes_schemas(k8s: Path) -> None:
    files = sorted(k8s.iterdir())
    assert [f.name for f in files] == ["deployment.yaml", "hpa.yaml", "pdb.yaml", "service.yaml"]
    proc = kubernetes_validate(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed") == 4, proc.stdout


def test_the_deployment_probes_drains_and_scales_as_the_server_does(k8s: Path) -> None:
    dep = load(k8s / "deployment.yaml")
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["resources"]["requests"]["cpu"] and server["resources"]["limits"]["memory"]
    assert server["ports"][0]["containerPort"] == 8080
    pre_stop = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    # SIGTERM arrives after preStop; the server drains for graceful_seconds, then closes its batchers and logs
    assert pod["terminationGracePeriodSeconds"] > pre_stop + ServeConfig.graceful_seconds
    assert server["securityContext"]["runAsNonRoot"] and server["securityContext"]["runAsUser"] != 0
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    assert "/tmp/mlops" in mounts  # the read-only root filesystem leaves the server's state folder writable
    hpa = load(k8s / "hpa.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    pdb = load(k8s / "pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    service = load(k8s / "service.yaml")
    assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_a_broken_manifest_is_caught_by_the_validator(k8s: Path, tmp_path: Path) -> None:
    """The validation is real: a wrong type and an unknown field fail it."""
    dep = load(k8s / "deployment.yaml")
    dep["spec"]["replicas"] = "three"
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dep))
    assert kubernetes_validate(bad).returncode != 0


def test_requests_per_second_scaling_is_a_pods_metric(model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "rps"
    mlops(model_repo, "export", "k8s", "churn:1", "--target-rps", "50", "--max-replicas", "9", "-o", str(out))
    (metric,) = load(out / "hpa.yaml")["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["averageValue"] == "50"
    assert kubernetes_validate(out / "hpa.yaml").returncode == 0


@cache
def isvc_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema does not declare (the API server would prune them silently: a typo is lost)."""
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        if not schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("additionalProperties"):
            found += [f"{where}.{k}" for k in value if k not in schema["properties"]]
        for key, item in value.items():
            if key in schema["properties"]:
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{index}]")
    return found


def check_isvc(doc: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.Draft7Validator(isvc_schema()).validate(doc)
    assert unknown_fields(doc, isvc_schema()) == []


def test_the_inference_service_validates_against_kserves_crd(model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "isvc.yaml"
    mlops(model_repo, "export", "kserve", "churn@production", "-o", str(out))
    doc = load(out)
    check_isvc(doc)
    predictor = doc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["image"] == "churn:v1" and "canaryTrafficPercent" not in predictor


def test_a_canary_is_kserves_own_traffic_split(model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "canary.yaml"
    mlops(model_repo, "export", "kserve", "churn@production", "--canary", "3", "--weight", "10", "-o", str(out))
    doc = load(out)
    check_isvc(doc)
    predictor = doc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10 and predictor["containers"][0]["image"] == "churn:v3"
    assert doc["metadata"]["annotations"]["mlops.dev/production"] == "churn:1"
    stored = tmp_path / "stored.yaml"
    uri = "s3://team-bucket/churn/v1/bundle"
    mlops(
        model_repo,
        "export",
        "kserve",
        "churn:1",
        "--storage-uri",
        uri,
        "--image",
        "ghcr.io/acme/mlops:0.1",
        "-o",
        str(stored),
    )
    doc = load(stored)
    check_isvc(doc)
    (container,) = doc["spec"]["predictor"]["containers"]
    assert {"name": "STORAGE_URI", "value": uri} in container["env"]
    assert container["args"][:3] == ["serve", "--model-dir", "/mnt/models"]


def test_the_crd_check_catches_a_wrong_field(model_repo: Path, tmp_path: Path) -> None:
    import jsonschema

    out = tmp_path / "isvc.yaml"
    mlops(model_repo, "export", "kserve", "churn:1", "-o", str(out))
    doc = load(out)
    doc["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        check_isvc(doc)
    doc = load(out)
    doc["spec"]["predictor"]["containers"][0]["livenessProbes"] = {}
    assert unknown_fields(doc, isvc_schema()) == [".spec.predictor.containers[0].livenessProbes"]


def test_bad_options_are_usage_errors(model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.yaml"
    assert (
        "--canary" in mlops(model_repo, "export", "kserve", "churn:1", "--weight", "5", "-o", str(out), code=2).stderr
    )
    proc = mlops(model_repo, "export", "k8s", "churn:1", "--cpu", "lots", "-o", str(tmp_path / "k"), code=2)
    assert "quantity" in proc.stderr


def test_k8s_and_kserve_take_the_same_pod_options(model_repo: Path, tmp_path: Path) -> None:
    """The six options both commands share (one @pod_options) reach each command's objects."""
    pod = ["--image", "reg.example/churn:7", "--name", "churn-api", "--namespace", "ml"]
    sizing = ["--cpu", "250m", "--memory", "300Mi", "--memory-limit", "600Mi"]
    mlops(model_repo, "export", "k8s", "churn:1", *pod, *sizing, "-o", str(tmp_path / "k"))
    mlops(model_repo, "export", "kserve", "churn:1", *pod, *sizing, "-o", str(tmp_path / "isvc.yaml"))
    deployment = load(tmp_path / "k" / "deployment.yaml")
    (served,) = deployment["spec"]["template"]["spec"]["containers"]
    isvc = load(tmp_path / "isvc.yaml")
    (predictor,) = isvc["spec"]["predictor"]["containers"]
    for metadata, container in ((deployment["metadata"], served), (isvc["metadata"], predictor)):
        assert (metadata["name"], metadata["namespace"]) == ("churn-api", "ml")
        assert container["image"] == "reg.example/churn:7"
        assert container["resources"]["requests"] == {"cpu": "250m", "memory": "300Mi"}
        assert container["resources"]["limits"]["memory"] == "600Mi"
