"""The pipeline as an Airflow DAG file: one task per stage, then a collect task.

The file imports only Airflow (and its standard / cncf.kubernetes providers). Each task runs
``mlops stage exec STAGE --rev SHA --json``: with BashOperator in a clone on the worker (given by
the MLOPS_CLONE environment variable, else the Airflow Variable ``mlops_clone_<dag_id>``, else
the path the export ran in), the manifest being the last line of stdout (XCom); with
KubernetesPodOperator in a pod that clones the commit, the manifest written to the XCom file.
Downstream tasks pull their upstream manifests from XCom into environment variables (never into
the script: a manifest is data, not shell) and pass them as ``--upstream``.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass

from ..errors import UsageError
from ..repo.repo import Repo
from .stage_tasks import (
    ExportPlan,
    StageTask,
    check_image,
    check_task_options,
    check_untemplated,
    collect_command,
    dns1123_names,
    exec_command,
    export_plan,
    manifest_var,
    upstream_var,
)

PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")
XCOM_FILE = "/airflow/xcom/return.json"
CLONE_PATH = "/tmp/mlops/repo"

# BashOperator: the worker's clone, the commit fetched when it lacks it. The manifest that
# `mlops stage exec --json` prints is folded onto one line (JSON needs no newline: inside strings
# they are escaped), the last line of stdout, which BashOperator pushes to XCom.
BASH_PREAMBLE = """set -euo pipefail
cd "${MLOPS_CLONE:-${MLOPS_CLONE_VARIABLE:-$MLOPS_CLONE_AT_EXPORT}}"
git cat-file -e "$MLOPS_REV^{commit}" 2>/dev/null || git fetch --quiet origin
"""
POD_PREAMBLE = f"""set -eu
git clone --quiet --no-checkout "$MLOPS_REPO_URL" {CLONE_PATH}
cd {CLONE_PATH}
git checkout --quiet --detach "$MLOPS_REV" 2>/dev/null || \\
  {{ git fetch --quiet origin "$MLOPS_REV" && git checkout --quiet --detach "$MLOPS_REV"; }}
"""


@dataclass(frozen=True)
class AirflowExport:
    """What `mlops export airflow` writes: the DAG file's text."""

    plan: ExportPlan
    dag_id: str
    text: str


def check_schedule(schedule: str | None) -> str | None:
    """A preset (@daily, ...) or a five-field cron expression; None: triggered by hand."""
    if schedule is None or schedule.strip().lower() in ("", "none"):
        return None
    text = " ".join(schedule.split())
    if text.startswith("@"):
        if text not in PRESETS:
            raise UsageError(f"--schedule {schedule!r}: unknown preset", hint=f"one of {', '.join(PRESETS)}")
        return text
    fields = text.split(" ")
    if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
        raise UsageError(
            f"--schedule {schedule!r} is neither a preset nor a five-field cron expression",
            hint="e.g. @daily or '0 3 * * *'",
        )
    return text


def _stage_script(plan: ExportPlan, task: StageTask, kubernetes: bool) -> str:
    variables = [upstream_var(i) for i in range(len(task.upstream))]
    command = exec_command(plan, task, variables)
    if kubernetes:
        return POD_PREAMBLE + f"mkdir -p {XCOM_FILE.rsplit('/', 1)[0]}\n{command} > {XCOM_FILE}\n"
    return BASH_PREAMBLE + f"manifest=$({command})\nprintf '%s' \"$manifest\" | tr -d '\\n'\necho\n"


def _collect_script(plan: ExportPlan, kubernetes: bool) -> str:
    command = collect_command(plan, [manifest_var(i) for i in range(len(plan.tasks))])
    if kubernetes:
        return POD_PREAMBLE + command + "\n"
    # collect writes the state of the commit checked out: the worker's clone moves to it
    # (git refuses when that would overwrite local changes, and the task fails saying so)
    checkout = '[ "$(git rev-parse HEAD)" = "$MLOPS_REV" ] || git checkout --quiet --detach "$MLOPS_REV"\n'
    return BASH_PREAMBLE + checkout + command + "\n"


def _pull(task_id: str, kubernetes: bool) -> str:
    # a pod's XCom is the parsed JSON document: tojson writes it back as JSON, not as a Python repr
    suffix = " | tojson" if kubernetes else ""
    return "{{ ti.xcom_pull(task_ids=" + repr(task_id) + ")" + suffix + " }}"


def py_str(text: str) -> str:
    """A Python string literal as ruff format writes it: double quotes unless they need more escapes."""
    if '"' in text and "'" not in text:
        return repr(text) if repr(text).startswith("'") else "'" + repr(text)[1:-1] + "'"
    return json.dumps(text, ensure_ascii=False)


def py_constants(values: dict[str, str]) -> list[str]:
    """Constants fixed at export (a long clone path or image name) as one mapping with a trailing
    comma, then a name for each: ruff format keeps such a mapping as written at any line length
    (an assignment of a long string would be parenthesized at 88 columns and joined at 120)."""
    lines = ["EXPORTED = {", *(f"    {py_str(k)}: {v}," for k, v in values.items()), "}"]
    return lines + [f"{name} = EXPORTED[{py_str(name)}]" for name in values]


def py_raw_block(text: str) -> str:
    """A shell script as a raw triple-quoted literal: it reads as the script, backslashes kept."""
    if '"""' in text or text.endswith("\\"):
        return py_str(text)
    return 'r"""' + text + '"""'


def py_value(value: object, indent: int) -> str:
    """A literal, every non-empty mapping or list expanded one item a line with a trailing comma
    (ruff format's magic trailing comma keeps it so: the file is format-clean as written)."""
    pad = " " * (indent + 4)
    if isinstance(value, str):
        return py_str(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = "".join(f"{pad}{py_str(k)}: {py_value(v, indent + 4)},\n" for k, v in value.items())
        return "{\n" + items + " " * indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = "".join(f"{pad}{py_value(v, indent + 4)},\n" for v in value)
        return "[\n" + items + " " * indent + "]"
    return repr(value)


def py_call(name: str, args: list[str], indent: int) -> str:
    """``name(`` then each (already rendered) argument on its own line, with a trailing comma."""
    pad = " " * (indent + 4)
    return f"{name}(\n" + "".join(f"{pad}{arg},\n" for arg in args) + " " * indent + ")"


def _name_list(names: list[str]) -> str:
    """Task variables (``[stage_0, stage_1]``), expanded a name a line when long (with the
    trailing comma that keeps ruff format from joining them again)."""
    flat = f"[{', '.join(names)}]"
    if len(flat) <= 60:
        return flat
    return "[\n" + "".join(f"        {n},\n" for n in names) + "    ]"


def _resources(task: StageTask, indent: int) -> str:
    spec = task.resources.kubernetes()
    if not spec:
        return "None"
    parts = [f"{key}={py_value(value, indent + 4)}" for key, value in spec.items()]
    return py_call("k8s.V1ResourceRequirements", parts, indent)


def dag_source(
    plan: ExportPlan,
    *,
    dag_id: str,
    schedule: str | None,
    retries: int,
    clone: str,
    image: str | None = None,
    secret: str | None = None,
    start: datetime.date | None = None,
) -> str:
    """The DAG file's text (``image`` given: KubernetesPodOperator, else BashOperator). Written so
    that `ruff check` and `ruff format --check` accept it as it is."""
    kubernetes = image is not None
    start = start or datetime.datetime.now(datetime.timezone.utc).date()
    by_stage = {t.stage: t for t in plan.tasks}
    lines = [
        '"""Airflow DAG written by `mlops export airflow`.',
        "",
        f"It runs commit {plan.rev}:",
        "each task runs `mlops stage exec` (restored from the shared run cache, or run and",
        "pushed), the manifests pass through XCom, and a collect task records the run. Data",
        "meets in the mlops remote, never in Airflow. Re-export after a new commit.",
        '"""',
        "",
        "import datetime",
        "",
        "try:  # Airflow 3",
        "    from airflow.sdk import DAG",
        "except ImportError:  # Airflow 2",
        "    from airflow import DAG",
    ]
    if kubernetes:
        lines += [
            "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator",
            "from kubernetes.client import models as k8s  # comes with the cncf.kubernetes provider",
        ]
    else:
        lines += [
            "",
            "try:",
            "    from airflow.providers.standard.operators.bash import BashOperator",
            "except ImportError:  # Airflow 2 without the standard provider",
            "    from airflow.operators.bash import BashOperator",
        ]
    constants = {"DAG_ID": py_str(dag_id), "REV": py_str(plan.rev)}
    if kubernetes:
        constants["IMAGE"] = py_str(image or "")
    else:
        constants["CLONE"] = py_str(clone)
    lines += ["", *py_constants(constants)]
    if kubernetes:
        lines += [
            "ENV = {",
            '    "MLOPS_REV": REV,',
            f'    "MLOPS_REPO_URL": {py_str(plan.repo_url)},',
            "}",
        ]
    else:
        variable = "{{ var.value.get(" + repr(f"mlops_clone_{dag_id}") + ", '') }}"
        lines += [
            "ENV = {",
            '    "MLOPS_REV": REV,',
            "    # the clone to run in: $MLOPS_CLONE on the worker, else this Airflow Variable,",
            "    # else the path the export ran in",
            f'    "MLOPS_CLONE_VARIABLE": {py_str(variable)},',
            '    "MLOPS_CLONE_AT_EXPORT": CLONE,',
            "}",
        ]
    for index, task in enumerate(plan.tasks):
        lines += [
            "",
            f"# stage {task.stage}",
            f"SCRIPT_{index} = {py_raw_block(_stage_script(plan, task, kubernetes))}",
        ]
    lines += ["", f"COLLECT = {py_raw_block(_collect_script(plan, kubernetes))}", ""]
    if kubernetes:
        if secret:
            source = py_call("k8s.V1SecretEnvSource", [f"name={py_str(secret)}"], 8)
            env_from = "[\n    " + py_call("k8s.V1EnvFromSource", [f"secret_ref={source}"], 4) + ",\n]"
        else:
            env_from = "None"
        lines += [
            f"ENV_FROM = {env_from}",
            "",
            "",
            "def stage_task(task_id, pod, script, env, resources=None, image=IMAGE):",
            "    return KubernetesPodOperator(",
            "        task_id=task_id,",
            "        name=pod,",
            "        image=image,",
            '        cmds=["sh", "-c"],',
            "        arguments=[script],",
            "        env_vars={**ENV, **env},",
            "        env_from=ENV_FROM,",
            "        container_resources=resources,",
            "        do_xcom_push=True,",
            "        get_logs=True,",
            '        on_finish_action="delete_pod",',
            "    )",
        ]
    else:
        lines += [
            "",
            "def stage_task(task_id, script, env):",
            "    return BashOperator(",
            "        task_id=task_id,",
            "        bash_command=script,",
            "        env={**ENV, **env},",
            "        append_env=True,",
            "    )",
        ]
    start_text = f"{start.isoformat()}T00:00:00+00:00"
    lines += [
        "",
        "",
        "with DAG(",
        "    dag_id=DAG_ID,",
        f"    schedule={py_str(schedule) if schedule else 'None'},",
        f"    start_date=datetime.datetime.fromisoformat({py_str(start_text)}),",
        "    catchup=False,",
        "    max_active_runs=1,  # one collect at a time writes the run record",
        f'    default_args={{"retries": {retries}, "retry_delay": datetime.timedelta(minutes=1)}},',
        '    tags=["mlops"],',
        ") as dag:",
    ]
    names: dict[str, str] = {}
    # a pod's name is a DNS-1123 label: the tasks' ids spelt so by stage_tasks, as Argo's names are
    pods = dns1123_names([t.task for t in plan.tasks] + [plan.collect_task]) if kubernetes else {}

    def pod(task_id: str) -> list[str]:
        return [py_str(pods[task_id])] if kubernetes else []

    for index, task in enumerate(plan.tasks):
        var = f"stage_{index}"
        names[task.stage] = var
        env = {upstream_var(i): _pull(by_stage[u].task, kubernetes) for i, u in enumerate(task.upstream)}
        args = [py_str(task.task), *pod(task.task), f"SCRIPT_{index}", py_value(env, 8)]
        if kubernetes:
            args.append(f"resources={_resources(task, 8)}")
            if task.image:
                args.append(f"image={py_str(task.image)}")
        lines += [f"    # stage {task.stage}", f"    {var} = {py_call('stage_task', args, 4)}"]
    collect_env = {manifest_var(i): _pull(t.task, kubernetes) for i, t in enumerate(plan.tasks)}
    collect_args = [py_str(plan.collect_task), *pod(plan.collect_task), "COLLECT", py_value(collect_env, 8)]
    lines.append(f"    collect = {py_call('stage_task', collect_args, 4)}")
    for task in plan.tasks:
        if task.upstream:
            lines.append(f"    {_name_list([names[u] for u in task.upstream])} >> {names[task.stage]}")
    lines.append(f"    {_name_list([names[t.stage] for t in plan.tasks])} >> collect")
    return "\n".join(lines) + "\n"


def export_airflow(
    repo: Repo,
    *,
    schedule: str | None = None,
    kubernetes: bool = False,
    image: str | None = None,
    rev: str | None = None,
    repo_url: str | None = None,
    remote: str | None = None,
    secret: str | None = None,
    retries: int = 2,
    dag_id: str | None = None,
    clone: str | None = None,
) -> AirflowExport:
    """The pipeline at ``rev`` as an Airflow DAG file (nothing written: the CLI writes ``text``)."""
    schedule = check_schedule(schedule)
    if kubernetes:
        if image is None:
            raise UsageError("--kubernetes needs --image", hint="the container image with mlops and git")
        image = check_image(image)
    elif image is not None:
        raise UsageError("--image is for --kubernetes", hint="add --kubernetes, or drop --image")
    elif secret is not None:
        raise UsageError("--secret is for --kubernetes", hint="add --kubernetes, or drop --secret")
    check_task_options(secret=secret, retries=retries)
    plan = export_plan(
        repo, rev=rev, repo_url=repo_url, remote=remote, naming="airflow", need_url=kubernetes, in_pods=kubernetes
    )
    chosen = dag_id if dag_id is not None else plan.name
    if not re.match(r"^[A-Za-z0-9_.\-]{1,250}$", chosen):
        raise UsageError(f"--dag-id {chosen!r}: letters, digits, '_', '.', '-' only (at most 250)")
    clone = check_untemplated(clone or str(repo.root), "--clone")  # the tasks' env is rendered by Jinja too
    text = dag_source(
        plan,
        dag_id=chosen,
        schedule=schedule,
        retries=retries,
        clone=clone,
        image=image if kubernetes else None,
        secret=secret,
    )
    return AirflowExport(plan, chosen, text)
