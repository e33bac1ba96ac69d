"""Deployments for the UI: each model's deployment file, and what its servers report.

Live statistics come from the snapshots every `mlops serve` worker writes each second under
``.mlops/serve/<model>/`` (the numbers `mlops canary status` adds up), read through
``serve.controller.canary_status``. The page asks this server for them again every two seconds
(``/deployments/NAME/status.json``); it never talks to the model server itself, whose address
and token it does not know and which the page's Content-Security-Policy would not let it reach.
"""

from __future__ import annotations

import os
from typing import Any

from ..paths import model_name_problem
from ..repo.repo import Repo
from ..serve.deployment import deployments_dir, load_deployment
from ..serve.requestlog import model_state_dir


def deployed_models(repo: Repo) -> list[str]:
    """The models with a deployment file (``.mlops/deployments/<model>.yaml``)."""
    try:
        with os.scandir(deployments_dir(repo)) as entries:
            names = [e.name[: -len(".yaml")] for e in entries if e.name.endswith(".yaml") and e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if model_name_problem(n) is None)


def deployment_status(repo: Repo, model: str) -> dict[str, Any] | None:
    """What `mlops canary status` shows for ``model``, or None without a deployment file.

    Read-only: when no server ever kept state for the model, its folder is not there and the
    status is the deployment file's alone (serve's own reader would create the folder)."""
    dep = load_deployment(repo, model)
    if dep is None:
        return None
    if (model_state_dir(repo, model).parent / ".gitignore").is_file():
        from ..serve.controller import canary_status

        return canary_status(repo, model)
    out = dep.to_dict()
    out["servers"] = {"live_workers": 0, "snapshots": 0, "as_of": None, "running": False}
    out["variants"] = [{"variant": "production", "version": dep.production}]
    if dep.candidate is not None:
        out["variants"].append({"variant": dep.candidate.mode, "version": dep.candidate.version})
        out["candidate"] = dep.candidate.to_dict()
    return out
