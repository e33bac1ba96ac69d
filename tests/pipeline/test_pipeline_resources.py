"""pipeline.yaml's ``resources:``, ``image:`` and ``env:`` as a mapping (issue 14, Contract 1).

Parsed from real files in a real repository; the env mapping is run for real with ``mlops run``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pipekit import statuses

from mlops.errors import FormatError
from mlops.pipeline.params import ParamFiles
from mlops.pipeline.spec import Resources, load_pipeline
from mlops.pipeline.state import read_inputs

DIGEST = "sha256:" + "ab" * 32
# The run key of PINNED_PIPELINE's stage as computed before issue 14: a pipeline without `image:`
# keeps its keys, so every run-cache entry a team already has stays a hit.
PINNED_PIPELINE = """stages:
  train:
    cmd: python train.py --lr ${train.lr}
    deps: [data.txt]
    params: [train.lr]
    env: [PIN_SEED]
    outs: [model]
    metrics: [score.json]
"""
PINNED_KEY = "951da8f234c1771b0b6ed52f92653540"


def load(root: Path, text: str) -> Any:
    (root / "pipeline.yaml").write_text(text)
    return load_pipeline(root)


def key_of(repo: Any, text: str, stage: str = "train") -> str:
    pipeline = load(repo.root, text)
    found = pipeline.stages[stage]
    return read_inputs(repo, found, ParamFiles(repo.root)).run_key(found)


@pytest.fixture
def pinned(repo: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    (repo.root / "data.txt").write_text("d\n")
    (repo.root / "params.yaml").write_text("train:\n  lr: 0.1\n")
    monkeypatch.setenv("PIN_SEED", "7")
    return repo


def test_key_of_a_pipeline_without_image_is_unchanged(pinned: Any) -> None:
    assert key_of(pinned, PINNED_PIPELINE) == PINNED_KEY


def test_image_digest_enters_the_key_a_tag_does_not(pinned: Any) -> None:
    tagged = PINNED_PIPELINE + "    image: ghcr.io/team/train:1.2\n"
    assert key_of(pinned, tagged) == PINNED_KEY  # a tag can move: only a digest names the bytes
    pinned_a = key_of(pinned, PINNED_PIPELINE + f"    image: ghcr.io/team/train@{DIGEST}\n")
    pinned_b = key_of(pinned, PINNED_PIPELINE + f"    image: ghcr.io/team/train@sha256:{'cd' * 32}\n")
    assert len({PINNED_KEY, pinned_a, pinned_b}) == 3
    stage = load(pinned.root, PINNED_PIPELINE + f"    image: ghcr.io/team/train:1.2@{DIGEST}\n").stages["train"]
    assert stage.image == f"ghcr.io/team/train:1.2@{DIGEST}" and stage.image_digest == DIGEST


def test_declared_env_values_enter_the_key_ambient_ones_do_not(pinned: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    declared = PINNED_PIPELINE.replace("env: [PIN_SEED]", "env: {PIN_SEED: '7', MODE: fast}")
    stage = load(pinned.root, declared).stages["train"]
    assert stage.env == ("PIN_SEED", "MODE") and stage.env_values == {"PIN_SEED": "7", "MODE": "fast"}
    first = key_of(pinned, declared)
    monkeypatch.setenv("PIN_SEED", "999")  # the machine's own value of a declared name is not read
    monkeypatch.setenv("UNRELATED", "x")
    assert key_of(pinned, declared) == first
    assert key_of(pinned, declared.replace("MODE: fast", "MODE: slow")) != first
    # a null value: read from the environment, as a listed name is
    mixed = PINNED_PIPELINE.replace("env: [PIN_SEED]", "env: {PIN_SEED: null}")
    assert load(pinned.root, mixed).stages["train"].env_values == {}
    assert key_of(pinned, mixed) == key_of(pinned, PINNED_PIPELINE) != PINNED_KEY  # PIN_SEED is 999 now
    monkeypatch.setenv("PIN_SEED", "7")
    assert key_of(pinned, mixed) == PINNED_KEY


def test_resources(repo: Any) -> None:
    text = (
        "vars:\n  - {workers: 3}\n"
        "stages:\n"
        "  a:\n    cmd: echo a\n    resources: {cpus: 2, gpus: 1, memory: 4GB}\n"
        "  b:\n    cmd: echo b\n    resources: {cpus: 0.5, memory: 512MiB}\n"
        "  c:\n    cmd: echo c\n    resources: {memory: 1048576, cpus: '${workers}'}\n"
        "  d:\n    cmd: echo d\n"
        "  m:\n    matrix: {size: [1, 2]}\n    cmd: echo ${item.size}\n    resources: {gpus: '${item.size}'}\n"
        "  f:\n    foreach: [x]\n    do:\n      cmd: echo ${item}\n      resources: {memory: 1.5 GiB}\n"
    )
    stages = load(repo.root, text).stages
    assert stages["a"].resources == Resources(cpus=2.0, gpus=1.0, memory=4 * 10**9)
    assert stages["b"].resources == Resources(cpus=0.5, memory=512 << 20)
    assert stages["c"].resources == Resources(cpus=3.0, memory=1 << 20)
    assert stages["d"].resources == Resources() and not stages["d"].resources
    assert [stages[f"m@{n}"].resources.gpus for n in (1, 2)] == [1.0, 2.0]
    assert stages["f@x"].resources.to_dict() == {"memory": int(1.5 * (1 << 30))}


BAD = [
    ("resources: [2]", "'resources' must be a mapping", "5:16"),
    ("resources: {cpu: 2}", "unknown resource 'cpu'", "5:17"),
    ("resources: {cpus: -1}", "'cpus' must be a number of at least 0", "5:23"),
    ("resources: {cpus: 0}", "'cpus' must be above 0", "5:23"),
    ("resources: {gpus: many}", "'gpus' must be a number", "5:23"),
    ("resources: {memory: 4XB}", "'memory' must be bytes or a size", "5:25"),
    ("resources: {memory: -5}", "'memory' must be bytes or a size", "5:25"),
    ("image: 'Ubuntu Latest'", "is not a container image reference", "5:12"),
    ("image: 'python@sha256:abc'", "digest that is not sha256", "5:12"),
    ("image: [python]", "'image' must be a container image reference", "5:12"),
    ("env: {'1BAD': x}", "is not an environment variable name", "5:11"),
    ("env: {A: [1, 2]}", "env A must be a text or a number", "5:14"),
    ("env: 5", "'env' must be a list of strings", "5:10"),
]


@pytest.mark.parametrize(("line", "needle", "where"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_located(repo: Any, line: str, needle: str, where: str) -> None:
    text = f"stages:\n  a:\n    cmd: echo a\n    outs: [a.txt]\n    {line}\n"
    with pytest.raises(FormatError) as caught:
        load(repo.root, text)
    message = caught.value.message
    assert needle in message and message.startswith(f"pipeline.yaml:{where}:"), message


def test_declared_env_is_set_in_the_command(proj: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREETING", "from the machine")
    proj.pipeline(
        {
            "hello": {
                "cmd": f'{proj.cmd()} && printf \'%s|%s\' "$GREETING" "$SEED" > hello.txt',
                "env": {"GREETING": "declared", "SEED": 42},
                "outs": ["hello.txt"],
            }
        }
    )
    assert statuses(proj.run()) == {"hello": "ran"}
    assert proj.read("hello.txt") == "declared|42"
    assert statuses(proj.run()) == {"hello": "skipped"}
    monkeypatch.setenv("GREETING", "changed on this machine")  # not an input: the declared value is
    assert statuses(proj.run()) == {"hello": "skipped"}
    assert os.environ["GREETING"] == "changed on this machine"
