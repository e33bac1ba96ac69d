"""`mlops add` of what a pipeline stage produces is refused at add time, naming the stage: the
output is tracked by `mlops run` (pipeline.lock), and a pointer file beside it would compete."""

from __future__ import annotations

PIPELINE = """stages:
  featurize:
    cmd: cp data/raw.csv data/features.csv
    deps: [data/raw.csv]
    outs: [data/features.csv, models/]
    metrics: [metrics/score.json]
"""


def _project(tree) -> None:
    tree(
        {
            "pipeline.yaml": PIPELINE,
            "data/raw.csv": "a,b\n1,2\n",
            "data/features.csv": "a,b\n1,2\n",
            "models/m.bin": "weights",
            "metrics/score.json": "{}",
            "other/notes.txt": "mine",
        }
    )


def test_add_of_a_stage_output_is_refused_with_the_stage_named(repo, cli, tree) -> None:
    _project(tree)
    result = cli("add", "data/features.csv", code=2)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        "error: data/features.csv is an output of stage 'featurize' in pipeline.yaml: mlops run tracks it "
        "(pipeline.lock); remove it from the stage's outs to track it by hand"
    ]
    assert not (repo.root / "data/features.csv.mlops").exists()


def test_add_of_a_metrics_file_a_folder_holding_an_output_or_a_path_inside_one_is_refused(repo, cli, tree) -> None:
    _project(tree)
    assert "stage 'featurize'" in cli("add", "metrics/score.json", code=2).stderr
    held = cli("add", "data", code=2).stderr
    assert "data holds data/features.csv, an output of stage 'featurize'" in held
    inside = cli("add", "models/m.bin", code=2).stderr
    assert "models/m.bin is inside models, which is an output of stage 'featurize'" in inside
    # nothing of a refused command was added, not even the paths before the refused one
    assert "other" not in cli("add", "other/notes.txt", "data/features.csv", code=2).stdout
    assert not [p for p in repo.root.rglob("*.mlops") if p.is_file()]


def test_add_of_other_data_passes_beside_a_pipeline(repo, cli, tree) -> None:
    _project(tree)
    cli("add", "data/raw.csv", "other/notes.txt")
    assert (repo.root / "data/raw.csv.mlops").is_file() and (repo.root / "other/notes.txt.mlops").is_file()


def test_add_of_unrelated_data_passes_when_pipeline_yaml_is_broken(repo, mlops_bin, tree) -> None:
    _project(tree)
    (repo.root / "pipeline.yaml").write_text("stages:\n  featurize: [not, a, stage\n")
    proc = mlops_bin("add", "other/notes.txt")
    assert (repo.root / "other/notes.txt.mlops").is_file()
    assert "warning: pipeline.yaml could not be read" in proc.stderr


def test_refusal_exit_code_from_the_real_command(repo, mlops_bin, tree) -> None:
    _project(tree)
    proc = mlops_bin("add", "./data/features.csv", code=2)
    assert "stage 'featurize'" in proc.stderr and "Traceback" not in proc.stderr
