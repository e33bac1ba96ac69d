"""A committed project whose pipeline has what an export must carry: names engines refuse
(upper case, '_', foreach/matrix members' '@'), a foreach and a matrix group, params, resources."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git

PIPELINE = """\
stages:
  prepare_Data:
    cmd: mkdir -p data && cp raw.csv data/clean.csv
    deps: [raw.csv]
    outs: [data/clean.csv]
    resources: {cpus: 0.5, memory: 512MiB}
  train:
    foreach: [small, Large_v2]
    do:
      cmd: mkdir -p models && cat data/clean.csv > models/${item}.txt && echo ${item} >> models/${item}.txt
      deps: [data/clean.csv]
      params: [train.lr]
      outs: ["models/${item}.txt"]
      resources: {cpus: 2, gpus: 1, memory: 4GB}
  evaluate:
    matrix:
      model: [small, Large_v2]
      split: [a, b]
    cmd: mkdir -p reports && cat models/${item.model}.txt > reports/${item.model}-${item.split}.txt
    deps: ["models/${item.model}.txt"]
    outs: ["reports/${item.model}-${item.split}.txt"]
"""

#: every stage of PIPELINE, as `mlops stage exec` names them
MEMBERS = ["prepare_Data", "train@small", "train@Large_v2"] + [
    f"evaluate@{m}-{s}" for m in ("small", "Large_v2") for s in ("a", "b")
]
#: stage -> the stages it needs
UPSTREAM = {
    "prepare_Data": [],
    "train@small": ["prepare_Data"],
    "train@Large_v2": ["prepare_Data"],
    **{f"evaluate@{m}-{s}": [f"train@{m}"] for m in ("small", "Large_v2") for s in ("a", "b")},
}


@pytest.fixture
def project(repo, tree) -> Path:
    """The pipeline above, committed, with an origin URL to clone from."""
    tree({"pipeline.yaml": PIPELINE, "params.yaml": "train:\n  lr: 0.1\n", "raw.csv": "a,b\n1,2\n"})
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "pipeline")
    git(repo.root, "remote", "add", "origin", "https://git.example.com/team/churn.git")
    return repo.root
