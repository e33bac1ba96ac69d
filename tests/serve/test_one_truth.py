"""One truth for production: a registry change moves the deployment file and a live server with it;
a pin holds a version on purpose, and says how to release it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from servekit import ROW, mlops, wait_for

from mlops import registry
from mlops.repo.repo import Repo
from mlops.serve.deployment import load_deployment


def answering(server) -> int:
    """The production version the live server answers with (from its health document and a real prediction)."""
    health = httpx.get(server.url + "/health").json()
    return int(health["production"])


def test_registry_rollback_moves_the_deployment_and_the_live_server(serve, model_repo: Path) -> None:
    mlops(model_repo, "promote", "churn", "2", "--to", "production")
    mlops(model_repo, "deploy", "churn")  # a deployment file: production v2, the registry's
    server = serve("churn@production")
    assert answering(server) == 2
    mlops(model_repo, "promote", "churn", "3", "--to", "production")
    wait_for(lambda: answering(server) == 3, timeout=15, what="the server to follow the promotion")

    out = mlops(model_repo, "rollback", "churn", "--reason", "v3 answers the opposite")
    assert "follows: production v2" in out.stderr
    assert load_deployment(Repo(model_repo), "churn").production == 2  # the file, in the same step
    wait_for(lambda: answering(server) == 2, timeout=15, what="the server to follow the rollback")
    with server.client() as c:
        r = c.post("/predict", json={"records": [ROW]})
        assert r.status_code == 200 and r.headers["x-model-version"] == "2"

    status = json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout)
    shown = json.loads(mlops(model_repo, "models", "show", "churn", "--json").stdout)["serving"]
    assert status["production"] == status["registry_production"] == 2 and status["agreement"]["state"] == "agrees"
    assert (shown["registry"], shown["deployed"], shown["agreement"]["state"]) == (2, 2, "agrees")

    server.kill()
    again = serve("churn@production")  # a restart serves the registry's version, without a warning
    assert answering(again) == 2
    assert "production is v" not in again.stderr()  # the warning of a file disagreeing with the reference


def test_a_registry_change_that_skipped_the_deployment_is_followed_by_the_server(serve, model_repo: Path) -> None:
    """The registry changed through the Python API (or a crash came between the two writes):
    the running server's controller writes the registry's version into the file and follows it."""
    mlops(model_repo, "deploy", "churn")
    server = serve("churn@production")
    assert answering(server) == 1
    repo = Repo(model_repo)
    registry.promote(repo, "churn", 2, "production", reason="through the library", actor="tests")
    assert load_deployment(repo, "churn").production == 1  # the library alone does not know deployments
    behind = json.loads(mlops(model_repo, "canary", "status", "churn", "--json").stdout)
    assert behind["agreement"]["state"] in ("behind", "agrees")  # the controller may already have caught up
    wait_for(lambda: answering(server) == 2, timeout=15, what="the controller to follow the registry")
    dep = load_deployment(repo, "churn")
    assert dep.production == 2 and dep.last_event["event"] == "follow"
    assert registry.history(repo, "churn")[-1]["event"] == "deployment_followed"


def test_a_pin_holds_a_version_on_purpose_and_status_says_how_to_release_it(serve, model_repo: Path) -> None:
    mlops(model_repo, "promote", "churn", "2", "--to", "production")
    mlops(model_repo, "deploy", "churn", "--pin", "1", "--reason", "incident 42")
    server = serve("churn@production")
    assert answering(server) == 1
    promoted = mlops(model_repo, "promote", "churn", "3", "--to", "production")
    assert "pinned at v1" in promoted.stderr and "mlops deploy churn --unpin" in promoted.stderr
    status = mlops(model_repo, "canary", "status", "churn").stdout
    assert "pinned at v1" in status and "mlops deploy churn --unpin" in status
    shown = mlops(model_repo, "models", "show", "churn")
    assert "pinned at v1" in shown.stderr and "--unpin" in shown.stderr
    assert answering(server) == 1  # the registry moved; the pin holds
    mlops(model_repo, "deploy", "churn", "--unpin")
    wait_for(lambda: answering(server) == 3, timeout=15, what="the server to follow the released pin")
    assert load_deployment(Repo(model_repo), "churn").pin is None
