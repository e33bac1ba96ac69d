"""A bad pipeline.yaml is refused before anything runs: exit 2, one located error line, no traceback."""

from __future__ import annotations

import re

import pytest
from pipekit import assert_one_error, counts

# (id, pipeline.yaml text, needles in the error line, exact location or None)
CASES = [
    (
        "unknown-top-level-key",
        "stages:\n  a:\n    cmd: {cmd}\n    outs: [a.txt]\ncolour: red\n",
        ["unknown key 'colour'"],
        "pipeline.yaml:5:1",
    ),
    (
        "unknown-stage-key",
        "stages:\n  a:\n    cmd: {cmd}\n    depz: [exists.txt]\n    outs: [a.txt]\n",
        ["stage 'a': unknown key 'depz'"],
        "pipeline.yaml:4:5",
    ),
    (
        "unknown-key-under-do",
        "stages:\n  ev:\n    foreach: [x, y]\n    do:\n      cmd: {cmd}\n      outz: [o.txt]\n",
        ["unknown key 'outz'"],
        "pipeline.yaml:6:7",
    ),
    (
        "unknown-output-option",
        "stages:\n  a:\n    cmd: {cmd}\n    outs:\n    - a.txt:\n        cahce: false\n",
        ["unknown output option 'cahce'"],
        "pipeline.yaml:6:9",
    ),
    (
        "missing-cmd",
        "stages:\n  first:\n    cmd: {cmd}\n    outs: [f.txt]\n  a:\n    deps: [exists.txt]\n    outs: [a.txt]\n",
        ["stage 'a' has no 'cmd'"],
        "pipeline.yaml:6:5",
    ),
    (
        "empty-cmd",
        "stages:\n  a:\n    cmd: ''\n    outs: [a.txt]\n",
        ["stage 'a' has no 'cmd'"],
        "pipeline.yaml:3:5",
    ),
    (
        "unknown-param-in-cmd",
        "stages:\n  a:\n    cmd: echo ${{train.nope}} > a.txt\n    outs: [a.txt]\n",
        ["unknown ${train.nope}"],
        "pipeline.yaml:3:10",
    ),
    (
        "unknown-var-in-out",
        "stages:\n  a:\n    cmd: {cmd}\n    outs:\n    - ${{where}}/a.txt\n",
        ["unknown ${where}"],
        "pipeline.yaml:5:7",
    ),
    (
        "foreach-not-a-list",
        "stages:\n  ev:\n    foreach: 5\n    do:\n      cmd: {cmd}\n",
        ["'foreach' must be a list, a mapping"],
        "pipeline.yaml:3:14",
    ),
    (
        "foreach-empty-list",
        "stages:\n  ev:\n    foreach: []\n    do:\n      cmd: {cmd}\n",
        ["'foreach' list is empty"],
        "pipeline.yaml:3:14",
    ),
    (
        "foreach-empty-mapping",
        "stages:\n  ev:\n    foreach: {{}}\n    do:\n      cmd: {cmd}\n",
        ["'foreach' mapping is empty"],
        "pipeline.yaml:3:14",
    ),
    (
        "foreach-without-do",
        "stages:\n  ev:\n    foreach: [a, b]\n",
        ["'foreach' needs a 'do' mapping"],
        "pipeline.yaml:3:5",
    ),
    (
        "foreach-key-beside",
        "stages:\n  ev:\n    foreach: [a, b]\n    cmd: {cmd}\n    do:\n      cmd: {cmd}\n",
        ["unknown key 'cmd' beside foreach"],
        "pipeline.yaml:4:5",
    ),
    (
        "foreach-duplicate-names",
        "stages:\n  ev:\n    foreach: [a, A, 'a']\n    do:\n      cmd: {cmd}\n",
        ["'ev@a' twice"],
        None,
    ),
    (
        "matrix-not-a-mapping",
        "stages:\n  tr:\n    matrix: [1, 2]\n    cmd: {cmd}\n",
        ["'matrix' must map each name to a list of values"],
        "pipeline.yaml:3:13",
    ),
    (
        "matrix-axis-not-a-list",
        "stages:\n  tr:\n    matrix:\n      lr: 5\n    cmd: {cmd}\n",
        ["matrix 'lr' must be a non-empty list"],
        "pipeline.yaml:4:11",
    ),
    (
        "matrix-axis-empty",
        "stages:\n  tr:\n    matrix:\n      lr: []\n      model: [a]\n    cmd: {cmd}\n",
        ["matrix 'lr' must be a non-empty list"],
        "pipeline.yaml:4:11",
    ),
    (
        "matrix-with-do",
        "stages:\n  tr:\n    matrix:\n      lr: [1]\n    do:\n      cmd: {cmd}\n",
        ["with 'matrix', write the stage keys beside it"],
        "pipeline.yaml:5:5",
    ),
    (
        "invalid-yaml-unclosed-list",
        "stages:\n  a:\n    cmd: {cmd}\n    outs: [x\n  b:\n    cmd: {cmd}\n",
        ["not valid YAML"],
        "pipeline.yaml:5:4",
    ),
    (
        "invalid-yaml-tab",
        "stages:\n  a:\n    cmd: {cmd}\n\touts: []\n",
        ["not valid YAML"],
        "pipeline.yaml:4:1",
    ),
    (
        "duplicate-key",
        "stages:\n  a:\n    cmd: {cmd}\n    outs: [a.txt]\n    cmd: again\n",
        ["duplicate key 'cmd'"],
        "pipeline.yaml:5:5",
    ),
    (
        "stages-not-a-mapping",
        "stages: [a, b]\n",
        ["'stages' must be a mapping"],
        "pipeline.yaml:1:9",
    ),
    (
        "bad-stage-name",
        "stages:\n  ok:\n    cmd: {cmd}\n  'bad name':\n    cmd: {cmd}\n",
        ["invalid stage name 'bad name'"],
        "pipeline.yaml:4:3",
    ),
    (
        "frozen-not-bool",
        "stages:\n  a:\n    cmd: {cmd}\n    frozen: sometimes\n",
        ["'frozen' must be true or false"],
        "pipeline.yaml:4:13",
    ),
    (
        "bad-env-name",
        "stages:\n  a:\n    cmd: {cmd}\n    env: [OK, 1BAD]\n",
        ["'1BAD' is not an environment variable name"],
        "pipeline.yaml:4:15",
    ),
    (
        "output-outside-repo",
        "stages:\n  a:\n    cmd: {cmd}\n    outs: [../escape.txt]\n",
        ["outside the repository"],
        "pipeline.yaml:4:12",
    ),
    (
        "output-inside-dot-mlops",
        "stages:\n  a:\n    cmd: {cmd}\n    outs: [.mlops/x]\n",
        ["inside .mlops/"],
        "pipeline.yaml:4:12",
    ),
    (
        "absolute-dep",
        "stages:\n  a:\n    cmd: {cmd}\n    deps: [/etc/passwd]\n",
        ["is absolute"],
        "pipeline.yaml:4:12",
    ),
    (
        "newer-format",
        "format: 99\nstages: {{}}\n",
        ["written by a newer mlops"],
        None,
    ),
    # --- graph checks: located at the stage that breaks the rule -----------------------------
    (
        "same-output-twice",
        "stages:\n  a:\n    cmd: {cmd}\n    outs: [out.txt]\n  b:\n    cmd: {cmd}\n    outs: [out.txt]\n",
        ["stages 'a' and 'b' both write out.txt"],
        "pipeline.yaml:6:5",
    ),
    (
        "overlapping-outputs",
        "stages:\n  a:\n    cmd: {cmd}\n    outs: [models]\n  b:\n    cmd: {cmd}\n    outs: [models/m.pkl]\n",
        ["stages 'a' and 'b' write overlapping outputs models and models/m.pkl"],
        "pipeline.yaml:6:5",
    ),
    (
        "overlapping-outputs-reverse-order",
        "stages:\n  b:\n    cmd: {cmd}\n    outs: [models/m.pkl]\n  a:\n    cmd: {cmd}\n    outs: [models]\n",
        ["overlapping outputs models/m.pkl and models"],
        "pipeline.yaml:6:5",
    ),
    (
        "depends-on-own-output",
        "stages:\n  a:\n    cmd: {cmd}\n    deps: [a.txt]\n    outs: [a.txt]\n",
        ["stage 'a' depends on its own output a.txt"],
        "pipeline.yaml:3:5",
    ),
    (
        "depends-on-folder-holding-own-output",
        "stages:\n  a:\n    cmd: {cmd}\n    deps: [work]\n    outs: [work/a.txt]\n",
        ["stage 'a' depends on its own output work/a.txt"],
        "pipeline.yaml:3:5",
    ),
    (
        "dangling-dependency",
        "stages:\n  a:\n    cmd: {cmd}\n    deps: [exists.txt, nowhere.txt]\n    outs: [a.txt]\n",
        ["stage 'a' depends on nowhere.txt, which is neither on disk nor produced by a stage"],
        "pipeline.yaml:3:5",
    ),
]


@pytest.fixture
def project(proj):
    proj.write({"exists.txt": "x\n", "params.yaml": "train:\n  lr: 0.1\n"})
    return proj


@pytest.mark.parametrize(("text", "needles", "where"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_pipeline_is_refused_with_location(project, text, needles, where):
    (project.root / "pipeline.yaml").write_text(
        text.format(cmd=project.cmd(f"count:{project.counter}").replace("'", ""))
    )
    proc = project.mlops("run", code=2)
    line = assert_one_error(proc.stderr, *needles)
    if where is not None:
        assert line.startswith(f"error: {where}: "), line
    else:
        assert line.startswith("error: pipeline.yaml"), line
    assert proc.stdout == ""
    assert counts(project.counter) == []  # nothing ran
    assert not (project.root / "pipeline.lock").exists()
    # the same refusal from every command that reads the pipeline
    for args in (["run", "--dry-run"], ["dag"], ["status"]):
        again = project.cli(*args, code=2)
        assert assert_one_error(again.stderr) == line


def test_cycle_names_the_stages_on_it(project):
    cmd = project.cmd(f"count:{project.counter}")
    (project.root / "pipeline.yaml").write_text(
        "stages:\n"
        f"  start:\n    cmd: {cmd}\n    deps: [exists.txt]\n    outs: [s.txt]\n"  # 2-5, not on the cycle
        f"  a:\n    cmd: {cmd}\n    deps: [s.txt, c.txt]\n    outs: [a.txt]\n"  # 6-9
        f"  b:\n    cmd: {cmd}\n    deps: [a.txt]\n    outs: [b.txt]\n"  # 10-13
        f"  c:\n    cmd: {cmd}\n    deps: [b.txt]\n    outs: [c.txt]\n"  # 14-17
        f"  tail:\n    cmd: {cmd}\n    deps: [c.txt]\n    outs: [t.txt]\n"  # 18-21, after the cycle
    )
    proc = project.mlops("run", code=2)
    line = assert_one_error(proc.stderr, "cycle")
    match = re.search(r"cycle: (.*)$", line)
    assert match, line
    names = [n.strip() for n in match.group(1).split("->")]
    assert names[0] == names[-1] and sorted(set(names)) == ["a", "b", "c"] and len(names) == 4
    # in data-flow order: each stage feeds the next
    flow = {"a": "b", "b": "c", "c": "a"}
    assert all(flow[x] == y for x, y in zip(names, names[1:], strict=False)), names
    located = re.match(r"error: pipeline\.yaml:(\d+):(\d+): ", line)
    assert located and int(located.group(1)) in (7, 11, 15)
    assert counts(project.counter) == []


def test_two_stage_cycle(project):
    cmd = project.cmd("print:x")
    (project.root / "pipeline.yaml").write_text(
        f"stages:\n  x:\n    cmd: {cmd}\n    deps: [y.txt]\n    outs: [x.txt]\n"
        f"  y:\n    cmd: {cmd}\n    deps: [x.txt]\n    outs: [y.txt]\n"
    )
    line = assert_one_error(project.mlops("dag", code=2).stderr, "cycle")
    assert "x -> y -> x" in line or "y -> x -> y" in line


def test_missing_param_key_dry_run(project):
    (project.root / "pipeline.yaml").write_text(
        f"stages:\n  a:\n    cmd: {project.cmd('write:a.txt=a')}\n"
        "    params: [train.lr, train.nope]\n    outs: [a.txt]\n"
    )
    proc = project.mlops("run", "--dry-run", code=2)
    assert_one_error(proc.stderr, "pipeline.yaml:", "'train.nope' not found in params.yaml")
    proc = project.mlops("status", code=2)
    assert_one_error(proc.stderr, "'train.nope' not found in params.yaml")


def test_missing_params_file_dry_run(project):
    (project.root / "pipeline.yaml").write_text(
        f"stages:\n  a:\n    cmd: {project.cmd('write:a.txt=a')}\n"
        "    params:\n    - other.yaml: [seed]\n    outs: [a.txt]\n"
    )
    proc = project.mlops("run", "--dry-run", code=2)
    assert_one_error(proc.stderr, "other.yaml", "does not exist")


def test_missing_param_key_refused_before_anything_runs(project):
    (project.root / "pipeline.yaml").write_text(
        "stages:\n"
        f"  first:\n    cmd: {project.cmd(f'count:{project.counter}', 'write:f.txt=f')}\n    outs: [f.txt]\n"
        f"  a:\n    cmd: {project.cmd(f'count:{project.counter}', 'write:a.txt=a')}\n"
        "    deps: [f.txt]\n    params: [train.nope]\n    outs: [a.txt]\n"
    )
    proc = project.mlops("run", code=None)
    assert counts(project.counter) == []  # nothing ran
    assert proc.returncode == 2
    assert_one_error(proc.stderr, "pipeline.yaml:", "'train.nope' not found in params.yaml")


def test_valid_edge_cases_are_accepted(project):
    """Things that look odd but are fine: './' paths, trailing slashes, a cmd list, numbers in cmd."""
    (project.root / "pipeline.yaml").write_text(
        "stages:\n"
        "  a:\n"
        f"    cmd:\n    - {project.cmd('write:out/a.txt=a')}\n    - {project.cmd('write:out/b.txt=b')}\n"
        "    deps: [./exists.txt]\n"
        "    outs: [out/]\n"
        "  b:\n"
        f"    cmd: {project.cmd('cat:out=b.txt')}\n"
        "    deps: [out/a.txt]\n"
        "    outs: [b.txt]\n"
    )
    project.mlops("run")
    assert (project.root / "b.txt").read_text() == "a\nb\n"
    lock = project.lock()
    assert lock["a"]["deps"][0]["path"] == "exists.txt" and lock["a"]["outs"][0]["path"] == "out"
    assert " && " in lock["a"]["cmd"]


def test_no_pipeline_file(proj):
    proc = proj.mlops("run", code=2)
    assert_one_error(proc.stderr, "pipeline.yaml: no pipeline file")
    proj.mlops("dag", code=2)
    # status works without a pipeline (data only)
    proj.mlops("status", "--check")


def test_bad_jobs_value_is_usage_error(proj):
    proj.pipeline({"a": {"cmd": proj.cmd("write:a.txt=a"), "outs": ["a.txt"]}})
    proj.mlops("run", "-j", "0", code=2)
    assert not (proj.root / "a.txt").exists()


def test_output_already_tracked_by_a_pointer_file_is_refused(project):
    (project.root / "data.csv").write_text("v1\n")
    project.cli("add", "data.csv")
    (project.root / "pipeline.yaml").write_text(
        f"stages:\n  gen:\n    cmd: {project.cmd(f'count:{project.counter}', 'write:data.csv=v2')}\n"
        "    outs: [data.csv]\n"
    )
    proc = project.mlops("run", code=None)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert_one_error(proc.stderr, "data.csv")
    assert counts(project.counter) == []
