"""`mlops export docker`: a container build context for one registered version, written without a
daemon; `docker build`, `buildah bud` and kaniko build it unchanged.

```
build/
  Dockerfile          slim Python base (the version the model was registered with), pinned wheels,
                      a non-root user, EXPOSE 8080, HEALTHCHECK on /v2/health/ready, CMD `mlops serve --model-dir`
  requirements.txt    the bundle's pins: every wheel the image installs, exact versions, no resolver at build time
  wheels/             local wheels pip prefers to the index (an mlops wheel given with --wheel); may be empty
  bundle/             the model bundle (exporters/bundle.py), verified again when the container starts
  .dockerignore
```

The image holds the bundle and the installed wheels only: no repository, no cache, no secret. The
bundle is owned by root and read-only to the server's user; the server's state goes to /tmp.
The port is ``$PORT`` (8080 unless the platform sets it: Knative, hence KServe, does), which
``mlops serve --port`` reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UsageError
from ..repo.repo import Repo
from .bundle import BundlePlan, bundle_files, check_new_folder, plan_bundle, write_files

MODEL_DIR = "/srv/model"  # where the bundle lands in the image
STATE_DIR = "/tmp/mlops"  # the server's request logs and statistics: writable, not the bundle
PORT = 8080
UID = 10001
SERVE_COMMAND = ("mlops", "serve", "--model-dir", MODEL_DIR, "--host", "0.0.0.0", "--state-dir", STATE_DIR)
HEALTH_COMMAND = (
    "python",
    "-c",
    "import os, urllib.request as r; "
    "r.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('PORT', '8080'), timeout=4)",
)


@dataclass(frozen=True)
class DockerResult:
    path: str
    ref: str
    image_base: str
    files: tuple[str, ...]
    command: tuple[str, ...] = SERVE_COMMAND
    warnings: tuple[str, ...] = ()
    bundle_digest: str = ""
    requirements: dict[str, str] = field(default_factory=dict)
    image: str = ""  # the tag export k8s and export kserve name by default

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ref": self.ref,
            "base_image": self.image_base,
            "image": self.image,
            "files": list(self.files),
            "command": list(self.command),
            "bundle_digest": self.bundle_digest,
            "requirements": self.requirements,
            "warnings": list(self.warnings),
        }


def base_image(python: str) -> str:
    """The official slim image of the interpreter the model was registered with (major.minor.patch)."""
    parts = python.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:3]):
        raise UsageError(f"cannot choose a Python image for python {python!r}")
    return f"python:{'.'.join(parts[:3])}-slim"


def dockerfile(plan: BundlePlan, *, base: str) -> str:
    mlops_spec = f"mlops=={__version__}"
    health = json.dumps(list(HEALTH_COMMAND))
    command = json.dumps(list(SERVE_COMMAND))
    return f"""\
# {plan.ref}, written by `mlops export docker` (mlops {__version__}).
# Build with docker build, buildah bud or kaniko, unchanged: no network but the package index
# (and none at all when wheels/ holds every wheel).
FROM {base}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PORT={PORT}

RUN groupadd --system --gid {UID} mlops \\
    && useradd --system --uid {UID} --gid mlops --no-create-home --home-dir /nonexistent \\
       --shell /usr/sbin/nologin mlops

# every wheel pinned (requirements.txt is the bundle's): nothing is resolved at build time
COPY requirements.txt /tmp/build/requirements.txt
COPY wheels/ /tmp/build/wheels/
RUN pip install --no-cache-dir --no-deps --find-links /tmp/build/wheels \\
        -r /tmp/build/requirements.txt "{mlops_spec}" \\
    && rm -rf /tmp/build

# the bundle is root's and read-only to the server, which checks every file's hash when it starts
COPY bundle/ {MODEL_DIR}/

USER {UID}:{UID}
WORKDIR /tmp
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD {health}
CMD {command}
"""


def export_docker(
    repo: Repo,
    ref: str,
    out: str | os.PathLike[str],
    *,
    wheel: str | None = None,
    onnx: bool = False,
    check_data: str | None = None,
    tolerance: float | None = None,
) -> DockerResult:
    import hashlib

    target = check_new_folder(out)
    wheel_path = None
    if wheel is not None:
        wheel_path = Path(wheel)
        if not wheel_path.is_file() or not wheel_path.name.endswith(".whl"):
            raise UsageError(f"--wheel {wheel}: not a wheel file", hint="build one with 'pip wheel --no-deps .'")
    from .k8s import default_image

    plan = plan_bundle(repo, ref, onnx=onnx, check_data=check_data, tolerance=tolerance)
    base = base_image(plan.python)
    files: dict[str, bytes | Path] = dict(bundle_files(plan, under="bundle"))
    files["requirements.txt"] = plan.files["requirements.txt"]
    files["Dockerfile"] = dockerfile(plan, base=base).encode()
    files[".dockerignore"] = b"# the context is exactly what the Dockerfile copies\n**/__pycache__\n"
    files["wheels/README.txt"] = (
        b"Wheels here are preferred to the package index (pip --find-links): put an mlops wheel here\n"
        b"to build without publishing mlops; every wheel named in requirements.txt may go here for an offline build.\n"
    )
    if wheel_path is not None:
        files[f"wheels/{wheel_path.name}"] = wheel_path
    write_files(target, files)
    manifest = files["bundle/mlops-bundle.json"]
    assert isinstance(manifest, bytes)
    return DockerResult(
        path=str(target),
        ref=plan.ref,
        image_base=base,
        files=tuple(sorted(files)),
        warnings=plan.warnings,
        bundle_digest=hashlib.sha256(manifest).hexdigest(),
        requirements=plan.requirements,
        image=default_image(plan.name, plan.version),
    )
