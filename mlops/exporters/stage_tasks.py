"""What the Airflow and Argo exports share: the pipeline as engine tasks.

One task per stage (a foreach/matrix member is a stage of its own, so the members run in
parallel), each calling ``mlops stage exec STAGE --rev SHA --json`` with the manifests of the
stages it needs as ``--upstream``; then one collect task calling ``mlops stage collect --rev SHA``
with every manifest. Names are mapped to what the engine accepts (Kubernetes: DNS-1123) so that
two stages never share one, and the stage's own name stays in the task's command.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import UsageError
from ..repo.repo import Repo

if TYPE_CHECKING:
    from ..pipeline.spec import Stage

#: a Kubernetes name (RFC 1123 label): what Argo accepts for a task and a template
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_MAX = 63
#: an Airflow task_id / dag_id: letters, digits, '-', '_', '.'; at most 250 characters
AIRFLOW_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")
AIRFLOW_ID_MAX = 250
#: the collect task's name in both engines, and the Argo DAG template's: no stage's task takes them
COLLECT = "collect"
RESERVED = (COLLECT, "pipeline")
#: a Kubernetes Secret's name (RFC 1123 subdomain)
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class ResourceRequest:
    """A stage's ``resources:`` in the engines' units: cpus (may be fractional), whole GPUs, bytes."""

    cpus: float | None = None
    gpus: int | None = None
    memory: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.cpus, self.gpus, self.memory))

    def kubernetes(self) -> dict[str, dict[str, str]]:
        """Kubernetes requests/limits: cpu and memory requested, memory and GPUs also limited
        (a GPU is only ever given as a limit, and a pod over its memory is killed, not slowed)."""
        requests: dict[str, str] = {}
        limits: dict[str, str] = {}
        if self.cpus is not None:
            requests["cpu"] = _cpu_quantity(self.cpus)
        if self.memory is not None:
            requests["memory"] = limits["memory"] = str(self.memory)
        if self.gpus:
            requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(self.gpus)
        out: dict[str, dict[str, str]] = {}
        if requests:
            out["requests"] = requests
        if limits:
            out["limits"] = limits
        return out


def _cpu_quantity(cpus: float) -> str:
    if float(cpus).is_integer():
        return str(int(cpus))
    return f"{round(cpus * 1000)}m"


@dataclass(frozen=True)
class StageTask:
    """One stage as an engine task."""

    stage: str  # the pipeline's stage name, as `mlops stage exec` takes it
    task: str  # the engine-safe name (unique within the export)
    upstream: tuple[str, ...]  # stage names whose manifests it takes, in pipeline order
    resources: ResourceRequest
    image: str = ""  # the stage's own `image:`, when pipeline.yaml gives one
    group: str = ""  # the foreach/matrix group it belongs to ("" for a plain stage)


@dataclass(frozen=True)
class ExportPlan:
    """The pipeline at one commit, as tasks an engine runs."""

    name: str  # the workflow's / DAG's name (engine-safe)
    rev: str  # 40-hex commit the tasks run
    repo_url: str  # where a worker clones the commit from ("" when not needed)
    remote: str | None  # the mlops remote the tasks use (None: the repo's default)
    tasks: tuple[StageTask, ...]  # in run order
    collect_task: str  # the collect task's engine name
    warnings: tuple[str, ...] = ()

    def task_of(self, stage: str) -> StageTask:
        return next(t for t in self.tasks if t.stage == stage)


def safe_names(
    names: list[str], *, pattern: re.Pattern[str], max_len: int, lower: bool, reserved: tuple[str, ...] = ()
) -> dict[str, str]:
    """An engine-safe name for each name: the name itself when the engine accepts it, else its
    nearest legal spelling plus a short hash of the original, so two names never meet (``a@b``
    and ``a_b`` both spell ``a-b``, and keep apart by their hashes). Injective: a collision, or a
    reserved name, takes a longer hash."""
    out: dict[str, str] = {}
    taken: set[str] = set(reserved)
    for name in names:
        if pattern.match(name) and len(name) <= max_len and name not in taken:
            out[name] = name
            taken.add(name)
    for name in names:
        if name in out:
            continue
        spelled = name.lower() if lower else name
        spelled = re.sub(r"[^a-z0-9-]" if lower else r"[^A-Za-z0-9_.\-]", "-", spelled)
        spelled = re.sub(r"-{2,}", "-", spelled).strip("-") or "stage"
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        for width in (6, 10, 16, 64):
            candidate = f"{spelled[: max_len - width - 1].rstrip('-')}-{digest[:width]}"
            if candidate not in taken:
                break
        else:  # pragma: no cover - a sha256 prefix of 64 characters does not collide
            raise UsageError(f"cannot name stage {name!r} uniquely for the engine")
        out[name] = candidate
        taken.add(candidate)
    return out


def dns1123_names(names: list[str], *, reserved: tuple[str, ...] = ()) -> dict[str, str]:
    """Kubernetes-safe task/template names (lower case, digits, '-', at most 63)."""
    return safe_names(names, pattern=DNS1123_LABEL, max_len=DNS1123_MAX, lower=True, reserved=reserved)


def airflow_ids(names: list[str], *, reserved: tuple[str, ...] = ()) -> dict[str, str]:
    """Airflow-safe task ids ('@' of a foreach/matrix member is refused there)."""
    return safe_names(names, pattern=AIRFLOW_ID, max_len=AIRFLOW_ID_MAX, lower=False, reserved=reserved)


#: what Airflow (Jinja) and Argo read as the start of a template in a task's fields
TEMPLATE_MARKS = ("{{", "{%", "{#")


def check_untemplated(value: str, what: str) -> str:
    """Refuse text the engine would render as a template: Airflow renders every task's command
    and env through Jinja (which runs code), Argo substitutes ``{{...}}`` in the whole spec."""
    if any(mark in value for mark in TEMPLATE_MARKS):
        raise UsageError(
            f"{what} {value!r} holds '{{{{', '{{%' or '{{#': the engine would render it as a template",
            hint="rename it (or give it another way) without braces",
        )
    return value


def check_repo_url(url: str) -> str:
    """Refuse a clone URL carrying credentials: the exported file is shared and committed."""
    text = url.strip()
    if not text:
        raise UsageError("--repo-url is empty", hint="give the URL workers clone the repository from")
    check_untemplated(text, "--repo-url")
    if any(ch in text for ch in "\n\r\t ") or text.startswith("-"):
        raise UsageError(f"--repo-url {text!r} is not a URL git can clone")
    parts = urlsplit(text) if "://" in text else None
    if parts is not None and (parts.password is not None or (parts.username and parts.scheme in ("http", "https"))):
        raise UsageError(
            "--repo-url carries credentials; the exported file would leak them",
            hint="give the URL without user:password@, and the credentials to the workers (a Kubernetes Secret, "
            "a git credential helper)",
        )
    return text


def _origin_url(root: Path) -> str:
    from ..repo.git import _gitpython

    git = _gitpython()
    try:
        return str(git.Repo(root).git.remote("get-url", "origin")).strip()
    except git.GitCommandError:
        return ""
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise UsageError(f"{root} is not a git repository", hint="exports run a commit: git init, commit") from None


def resolve_rev(repo: Repo, rev: str | None) -> str:
    """The commit the tasks run: ``rev`` resolved, or HEAD when its tracked files are committed
    (the same rule as the Ray driver's: mlops' own pipeline.lock and runs never count)."""
    from ..pipeline.stage_exec import changed_files, dirty_tree_error
    from ..repo.git import git_repo

    sha = git_repo(repo.root).resolve(rev or "HEAD")
    if rev is None:
        changed = changed_files(repo)
        if changed:
            raise dirty_tree_error(
                changed, "the tasks run a commit", hint="commit them (and push), or pass --rev to export a commit"
            )
    return sha


def stage_resources(stage: Stage) -> ResourceRequest:
    """A stage's ``resources:`` in engine units; Kubernetes gives whole GPUs only."""
    declared = stage.resources
    if declared.gpus is not None and not float(declared.gpus).is_integer():
        raise UsageError(
            f"{stage.where}: stage '{stage.name}' asks for {declared.gpus} GPUs; Kubernetes gives whole GPUs",
            hint="ask for a whole number of GPUs (fractions are for --executor ray)",
        )
    return ResourceRequest(
        cpus=float(declared.cpus) if declared.cpus is not None else None,
        gpus=int(declared.gpus) if declared.gpus is not None else None,
        memory=int(declared.memory) if declared.memory is not None else None,
    )


def export_plan(
    repo: Repo,
    *,
    rev: str | None,
    repo_url: str | None,
    remote: str | None,
    names: dict[str, str] | None = None,
    naming: str = "dns1123",
    need_url: bool = True,
    in_pods: bool = True,
) -> ExportPlan:
    """The pipeline at ``rev`` (default: HEAD, committed) as tasks, with the engine's names; a
    pipeline with no stage to run is refused.

    ``in_pods``: the tasks run in pods (Argo; Airflow's KubernetesPodOperator), which reach neither
    a repository URL that is a local path nor an mlops remote that is a local folder: both are
    warned about. Otherwise (Airflow's BashOperator) the tasks run on the workers, in a clone, and
    fetch a missing commit from its origin: a repository without one is warned about."""
    from ..pipeline.graph import build_graph
    from ..pipeline.spec import load_pipeline

    graph = build_graph(load_pipeline(repo.root), repo.root)
    sha = resolve_rev(repo, rev)
    if remote is not None and remote not in repo.config.remotes:
        known = ", ".join(sorted(repo.config.remotes)) or "none"
        raise UsageError(f"--remote: no remote named '{remote}' (remotes: {known})", hint="mlops remote list")
    if remote is not None:
        check_untemplated(remote, "--remote")
    url = ""
    if repo_url is not None:
        url = check_repo_url(repo_url)
    elif need_url:
        url = _origin_url(repo.root)
        if not url:
            raise UsageError(
                "the repository has no 'origin' remote for workers to clone from",
                hint="pass --repo-url URL (or git remote add origin URL)",
            )
        url = check_repo_url(url)
    # a frozen stage is never run, as `mlops run` never runs it (and collect skips it): its
    # outputs are found by key by the stages that need them
    order = [name for name in graph.order if not graph.stage(name).frozen]
    if not order:
        raise UsageError("the pipeline has no stages to export", hint="add stages to pipeline.yaml")
    namer = dns1123_names if naming == "dns1123" else airflow_ids
    task_names = namer(order, reserved=RESERVED)
    group_of = {member: group for group, members in graph.pipeline.templates.items() for member in members}
    tasks = tuple(
        StageTask(
            stage=name,
            task=task_names[name],
            upstream=tuple(u for u in order if u in graph.upstream[name]),
            resources=stage_resources(graph.stage(name)),
            image=graph.stage(name).image,
            group=group_of.get(name, ""),
        )
        for name in order
    )
    workflow = namer([repo.root.name], reserved=())[repo.root.name]
    reach = _unreachable_from_pods(repo, url, remote) if in_pods else [_no_origin(repo.root, sha)]
    warnings = tuple(w for w in [_unpushed(repo.root, sha), *reach] if w)
    return ExportPlan(
        name=workflow, rev=sha, repo_url=url, remote=remote, tasks=tasks, collect_task=COLLECT, warnings=warnings
    )


def is_local_path_url(url: str) -> bool:
    """Whether git reads ``url`` as a path on this machine (file://, /srv/repo, ../repo), not a
    host to reach (https://, ssh://, git@host:team/repo): git's own rule, a ':' before any '/'
    makes it scp-like."""
    if "://" in url:
        return url.lower().startswith("file://")
    head, colon, _ = url.partition(":")
    return not colon or "/" in head


def _unreachable_from_pods(repo: Repo, url: str, remote: str | None) -> list[str]:
    """Warnings for what a pod cannot reach: a local-path repository URL, a local-folder mlops remote."""
    from ..remotes.base import is_folder_url

    warnings = []
    if url and is_local_path_url(url):
        warnings.append(
            f"the repository URL {url} is a path on this machine: the pods cannot clone from it; "
            "pass --repo-url with a URL they reach (https://, ssh://, git@host:...)"
        )
    name = remote or repo.config.default_remote
    settings = repo.config.remotes.get(name) if name else None
    if settings and is_folder_url(str(settings.get("url", ""))):
        warnings.append(
            f"mlops remote '{name}' is a folder on this machine ({settings['url']}): the pods cannot reach it "
            "unless it is mounted in each at that path; give the tasks an S3, GCS, Azure or SSH remote (--remote NAME)"
        )
    return warnings


def _no_origin(root: Path, sha: str) -> str:
    """A warning when the repository has no 'origin': a worker's clone that lacks the commit fetches it from there."""
    if _origin_url(root):
        return ""
    return (
        f"the repository has no 'origin' remote: a worker's clone that lacks commit {sha[:12]} cannot fetch it; "
        "git remote add origin URL (a local path is fine: the tasks run where the DAG runs), "
        "or make sure each worker's clone has the commit"
    )


def _unpushed(root: Path, sha: str) -> str:
    """A warning when the commit is on no branch of origin that this clone knows: workers fetch
    it from there, so it must be pushed before the workflow runs."""
    from ..repo.git import _gitpython

    git = _gitpython()
    try:
        repo = git.Repo(root)
        if "origin" not in [r.name for r in repo.remotes]:
            return ""
        if repo.git.branch("-r", "--contains", sha).strip():
            return ""
    except git.GitCommandError:
        return ""
    return f"commit {sha[:12]} is on no branch of origin this clone knows: push it before the workflow runs"


def exec_command(plan: ExportPlan, task: StageTask, upstream_vars: list[str]) -> str:
    """The shell line running one stage; the upstream manifests come from environment variables
    (never spliced into the script: a manifest is data, not shell)."""
    words = ["mlops", "stage", "exec", shlex.quote(task.stage), "--rev", plan.rev]
    if plan.remote:
        words += ["--remote", shlex.quote(plan.remote)]
    words.append("--json")
    return _lines(" ".join(words), [f'--upstream "${var}"' for var in upstream_vars])


def collect_command(plan: ExportPlan, manifest_vars: list[str]) -> str:
    """The shell line of the collect task: every stage's manifest, from environment variables."""
    words = ["mlops", "stage", "collect", "--rev", plan.rev]
    if plan.remote:
        words += ["--remote", shlex.quote(plan.remote)]
    return _lines(" ".join(words), [f'--manifest "${var}"' for var in manifest_vars])


def _lines(head: str, options: list[str]) -> str:
    """One shell command, an option a line (continued with backslashes): short lines to read."""
    return " \\\n  ".join([head, *options])


def manifest_var(index: int) -> str:
    return f"MLOPS_MANIFEST_{index}"


def upstream_var(index: int) -> str:
    return f"MLOPS_UPSTREAM_{index}"


def check_task_options(*, secret: str | None, retries: int) -> None:
    """What both engines' tasks take beside the image: the Secret their pods read, and how often
    a failed task is retried."""
    if secret is not None:
        check_secret(secret)
    if retries < 0:
        raise UsageError("--retries must be 0 or more")


def check_image(image: str, option: str = "--image") -> str:
    text = image.strip()
    if not text or any(ch.isspace() for ch in text) or text.startswith("-"):
        raise UsageError(f"{option} {image!r} is not a container image reference", hint="e.g. ghcr.io/team/churn:1.4")
    return check_untemplated(text, option)


def check_secret(name: str) -> str:
    if not SECRET_NAME.match(name) or len(name) > 253:
        raise UsageError(f"--secret {name!r} is not a Kubernetes Secret name", hint="lower case, digits, '-', '.'")
    return name
