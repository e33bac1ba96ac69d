"""`mlops import dvc` on real public DVC projects, from a fresh clone, with data from a DVC remote.

The projects' own files are in tests/data_files/dvc_projects (see its README). Each test lays a
project out in a git repository, generates data in place of the real data, writes the data's
md5s into the .dvc and dvc.lock entries, builds a DVC remote in DVC's exact layout (written
here, byte by byte: DVC itself is not needed), clones the repository and imports it there.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipekit import git
from pipekit import mlops as run_mlops

PROJECTS = Path(__file__).parent.parent / "data_files" / "dvc_projects"

Tree = dict[str, bytes]  # relpath -> bytes, for a folder


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def dir_listing(tree: Tree) -> bytes:
    """A folder's .dir object as DVC writes it: sorted {md5, relpath} entries, json.dumps(sort_keys=True)."""
    entries = [{"md5": md5(tree[rel]), "relpath": rel} for rel in sorted(tree)]
    return json.dumps(entries, sort_keys=True).encode()


def entry_for(content: bytes | Tree) -> dict[str, Any]:
    if isinstance(content, bytes):
        return {"md5": md5(content), "size": len(content)}
    return {
        "md5": md5(dir_listing(content)) + ".dir",
        "size": sum(len(b) for b in content.values()),
        "nfiles": len(content),
    }


def blob(seed: str, size: int, *, text: bool = False) -> bytes:
    rng = random.Random(seed)
    if text:
        return "".join(rng.choice("abcdefgh <>/=\n") for _ in range(size)).encode()
    return rng.randbytes(size)


class World:
    """A DVC project in an 'origin' git repository, its data, and a DVC remote of that data."""

    def __init__(self, tmp: Path, name: str, *, base: str = "") -> None:
        self.tmp = tmp
        self.origin = tmp / "origin"
        self.base = base  # the folder the DVC project sits in ("" = the repository root)
        self.top = self.origin / base if base else self.origin
        shutil.copytree(PROJECTS / name, self.top)
        self.data: dict[str, bytes | Tree] = {}  # project-relative path -> content
        self.legacy: set[str] = set()  # paths whose objects DVC 2 laid out (no 'hash: md5')

    def rel(self, path: str) -> str:
        return f"{self.base}/{path}" if self.base else path

    def write_code(self, *paths: str) -> None:
        for path in paths:
            target = self.top / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"# stand-in for {path}\nprint('{path}')\n")

    def relock(self) -> None:
        """Write the generated data's md5s into the .dvc and dvc.lock entries, as 'dvc commit' would."""
        for dvc_file in sorted(self.top.rglob("*.dvc")):
            if dvc_file.is_dir():
                continue
            doc = yaml.safe_load(dvc_file.read_text())
            folder = dvc_file.parent.relative_to(self.top).as_posix()
            for out in doc["outs"]:
                path = out["path"] if folder == "." else f"{folder}/{out['path']}"
                out.update(entry_for(self.data[path]))
                if "hash" not in out:
                    self.legacy.add(path)
            dvc_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        for lock_file in sorted(self.top.rglob("dvc.lock")):
            doc = yaml.safe_load(lock_file.read_text())
            for stage in doc["stages"].values():
                for item in [*stage.get("deps", []), *stage.get("outs", [])]:
                    content = self.data.get(item["path"])
                    if content is None:
                        content = (self.top / item["path"]).read_bytes()
                    for key in ("md5", "size", "nfiles"):
                        item.pop(key, None)
                    item.update(entry_for(content))
                    if "hash" not in item and item["path"] in self.data:
                        self.legacy.add(item["path"])
            lock_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def objects(self) -> dict[str, bytes]:
        """DVC remote keys -> bytes: files/md5/ab/cdef... (DVC 3) or ab/cdef... (DVC 2), .dir listings too."""
        out: dict[str, bytes] = {}
        for path, content in self.data.items():
            prefix = "" if path in self.legacy else "files/md5/"
            pieces = [content] if isinstance(content, bytes) else [*content.values(), dir_listing(content)]
            for piece in pieces:
                digest = md5(piece) + (".dir" if not isinstance(content, bytes) and piece is pieces[-1] else "")
                out[f"{prefix}{digest[:2]}/{digest[2:]}"] = piece
        return out

    def add_remote(self, name: str, url: str, *, endpointurl: str | None = None, default: bool = False) -> None:
        config = self.top / ".dvc" / "config"
        text = config.read_text()
        if default:
            text = "\n".join(
                f"    remote = {name}" if line.strip().startswith("remote =") else line for line in text.splitlines()
            )
        text = text.rstrip("\n") + f"\n['remote \"{name}\"']\n    url = {url}\n"
        if endpointurl:
            text += f"    endpointurl = {endpointurl}\n"
        config.write_text(text)

    def clone(self) -> Path:
        git(self.origin, "init", "-q", "-b", "main")
        git(self.origin, "add", "-A")
        git(self.origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "the DVC project")
        clone = self.tmp / "clone"
        git(self.tmp, "clone", "-q", str(self.origin), str(clone))
        run_mlops("init", cwd=clone)
        return clone

    def assert_workspace_has_data(self, clone: Path) -> None:
        for path, content in self.data.items():
            target = clone / self.rel(path)
            if isinstance(content, bytes):
                assert target.read_bytes() == content, path
            else:
                found = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
                assert found == content, path


def write_local_remote(root: Path, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)


def mlops_json(*args: str, cwd: Path, code: int = 0) -> tuple[dict[str, Any], str]:
    proc = run_mlops(*args, "--json", cwd=cwd, code=code)
    return json.loads(proc.stdout), proc.stderr


def by_stage(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in doc["stages"]}


# --- iterative/example-get-started ------------------------------------------------------------


def get_started(tmp: Path, base: str = "") -> World:
    world = World(tmp, "example-get-started", base=base)
    world.write_code("src/prepare.py", "src/featurization.py", "src/train.py")
    world.data = {
        "data/data.xml": blob("data.xml", 40_000, text=True),
        "data/prepared": {
            "train.tsv": blob("train.tsv", 9000, text=True),
            "test.tsv": blob("test.tsv", 3000, text=True),
        },
        "data/features": {"train.pkl": blob("train.pkl", 5000), "test.pkl": blob("test.pkl", 2000)},
        "model.pkl": blob("model.pkl", 7000),
    }
    world.relock()
    return world


@pytest.mark.parametrize("base", ["", "project"], ids=["at-the-top", "dvc-init-subdir"])
def test_example_get_started_from_a_fresh_clone_with_a_local_dvc_remote(tmp_path: Path, base: str) -> None:
    world = get_started(tmp_path, base)
    remote = tmp_path / "dvc-remote"
    write_local_remote(remote, world.objects())
    world.add_remote("team", str(remote), default=True)
    clone = world.clone()
    prefix = "project." if base else ""
    data_xml = world.rel("data/data.xml")

    # the pipeline and the project's structure, without any data
    doc, _ = mlops_json("import", "dvc", cwd=clone)
    assert doc["stages"] == 3 and doc["pipeline_written"] and doc["lock_stages"] == 0
    assert doc["missing"] == [data_xml] and doc["tracked"] == []
    pipeline = yaml.safe_load((clone / "pipeline.yaml").read_text())
    assert list(pipeline["stages"]) == [f"{prefix}prepare", f"{prefix}featurize", f"{prefix}train"]
    if base:
        assert pipeline["stages"]["project.prepare"]["wdir"] == "project"
    record = json.loads((clone / ".mlops/dvc-import.json").read_text())
    assert record["dvc_roots"] == ([""] if not base else ["", "project"])
    assert record["sections"][0]["artifacts"]["text-classification"]["path"] == "model.pkl"

    # a fresh clone without data: dag, status and run --dry-run work and say what is missing
    dag, dag_err = mlops_json("dag", cwd=clone)
    assert dag["stages"] == list(pipeline["stages"])
    assert {m["path"] for m in dag["dvc_missing"]} == {
        data_xml,
        world.rel("data/prepared"),
        world.rel("data/features"),
        world.rel("model.pkl"),
    }
    plain = run_mlops("dag", cwd=clone)
    assert f"{data_xml}: tracked by DVC ({world.rel('data/data.xml.dvc')}:2)" in plain.stderr
    assert "mlops import dvc --data" in plain.stderr
    status, _ = mlops_json("status", cwd=clone)
    assert status["clean"] is False and data_xml in {m["path"] for m in status["dvc_missing"]}
    text_status = run_mlops("status", cwd=clone)
    assert "missing" in text_status.stdout and data_xml in text_status.stdout
    dry, _ = mlops_json("run", "--dry-run", cwd=clone)
    assert {s["name"]: s["status"] for s in dry["stages"]} == {name: "would run" for name in pipeline["stages"]}
    assert data_xml in {m["path"] for m in dry["dvc_missing"]}

    # the data from the DVC remote, md5 checked, into mlops' cache and the workspace
    doc, _ = mlops_json("import", "dvc", "--data", cwd=clone)
    assert not doc["pipeline_written"]  # unchanged
    assert set(doc["placed"]) == {
        data_xml,
        world.rel("data/prepared"),
        world.rel("data/features"),
        world.rel("model.pkl"),
    }
    assert doc["files"] == 6 and doc["tracked"] == [data_xml] and doc["lock_stages"] == 3
    world.assert_workspace_has_data(clone)
    pointer = yaml.safe_load((clone / (data_xml + ".mlops")).read_text())
    assert pointer["kind"] == "file" and pointer["size"] == len(world.data["data/data.xml"])

    status, _ = mlops_json("status", cwd=clone)
    assert [(t["path"], t["state"], t["in_cache"]) for t in status["targets"]] == [(data_xml, "unchanged", True)]
    assert "dvc_missing" not in status
    # what dvc.lock implies: prepare is up to date; the params edited since the last repro rerun the rest
    dry, _ = mlops_json("run", "--dry-run", cwd=clone)
    stages = by_stage(dry)
    assert stages[f"{prefix}prepare"]["status"] == "skipped"
    assert stages[f"{prefix}featurize"]["status"] == "would run"
    assert stages[f"{prefix}featurize"]["reasons"] == ["param featurize.max_features 100 -> 500"]
    assert stages[f"{prefix}train"]["status"] == "would run"
    assert "param train.min_split 0.01 -> 2" in stages[f"{prefix}train"]["reasons"]
    assert "dvc_missing" not in dry
    # the data is mlops' own now: gone from the workspace, checkout brings it back from mlops' cache
    (clone / data_xml).unlink()
    run_mlops("checkout", cwd=clone)
    assert (clone / data_xml).read_bytes() == world.data["data/data.xml"]


# --- iterative/example-get-started-experiments -------------------------------------------------


def experiments(tmp: Path) -> World:
    world = World(tmp, "example-get-started-experiments")
    world.write_code("src/data_split.py", "src/train.py", "src/evaluate.py")
    pool = {f"images/REGION_{r}/{i}.png": blob(f"img{r}-{i}", 300 + 50 * i) for r in (1, 2) for i in range(3)}
    pool.update({f"masks/REGION_{r}/{i}.png": blob(f"mask{r}-{i}", 100 + i) for r in (1, 2) for i in range(3)})
    world.data = {
        "data/pool_data": pool,
        "data/test_data": {k: v for k, v in pool.items() if "REGION_1" in k},
        "data/train_data": {k: v for k, v in pool.items() if "REGION_2" in k},
        "models/model.pkl": blob("model.pkl", 4000),
    }
    world.relock()
    return world


def test_example_get_started_experiments_with_its_data_from_an_s3_dvc_remote(tmp_path: Path, s3_bucket: Any) -> None:
    world = experiments(tmp_path)
    for key, data in world.objects().items():
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"dvcstore/{key}", Body=data)
    world.add_remote("minio", f"s3://{s3_bucket.name}/dvcstore", endpointurl=s3_bucket.endpoint_url)
    clone = world.clone()

    doc, _ = mlops_json("import", "dvc", cwd=clone)
    assert doc["stages"] == 4 and doc["missing"] == ["data/pool_data"]
    record = json.loads((clone / ".mlops/dvc-import.json").read_text())
    sections = {s["file"]: s for s in record["sections"]}
    top = sections["dvc.yaml"]
    assert top["params"] == ["results/train/params.yaml"]
    assert top["metrics"] == ["results/train/metrics.json", "results/evaluate/metrics.json"]
    assert top["plots"][0] == {"results/train/plots/metrics": {"x": "step"}}
    assert top["artifacts"]["pool-segmentation"]["type"] == "model"
    # the nested dvc.yaml dvclive wrote: its paths are relative to its own folder
    assert sections["results/evaluate/dvc.yaml"] == {
        "file": "results/evaluate/dvc.yaml",
        "base": "results/evaluate",
        "metrics": ["metrics.json"],
        "plots": ["plots/images"],
    }
    # pipeline.yaml has them too, the nested file's paths rebased to the repository root
    imported = yaml.safe_load((clone / "pipeline.yaml").read_text())
    assert imported["params"] == ["results/train/params.yaml"]
    assert imported["metrics"] == ["results/train/metrics.json", "results/evaluate/metrics.json"]
    assert imported["plots"] == [
        {"results/train/plots/metrics": {"x": "step"}},
        "results/evaluate/plots/images",
    ]
    assert imported["artifacts"]["pool-segmentation"]["labels"] == ["cv", "segmentation", "satellite-images", "alexnet"]
    dry, _ = mlops_json("run", "--dry-run", cwd=clone)
    assert {m["path"] for m in dry["dvc_missing"]} == {
        "data/pool_data",
        "data/test_data",
        "data/train_data",
        "models/model.pkl",
    }

    # an unknown remote name is refused, and nothing is brought
    proc = run_mlops("import", "dvc", "--data", "--remote", "nope", cwd=clone, code=2)
    assert "no DVC remote named 'nope'" in proc.stderr and not (clone / "data/pool_data").exists()
    # DVC 2 entries (no 'hash: md5'): the objects sit at ab/cdef... on the remote
    doc, _ = mlops_json("import", "dvc", "--data", "--remote", "minio", cwd=clone)
    assert set(doc["placed"]) == {"data/pool_data", "data/test_data", "data/train_data", "models/model.pkl"}
    assert doc["tracked"] == ["data/pool_data"] and doc["lock_stages"] == 3
    world.assert_workspace_has_data(clone)
    status, _ = mlops_json("status", cwd=clone)
    assert [(t["path"], t["state"]) for t in status["targets"]] == [("data/pool_data", "unchanged")]
    stages = by_stage(mlops_json("run", "--dry-run", cwd=clone)[0])
    # dvc.lock was written before data_split's params and train's outputs changed in dvc.yaml
    assert "param data_split.test_pct removed" in stages["data_split"]["reasons"]
    assert "param data_split.test_regions added" in stages["data_split"]["reasons"]
    assert "param train.batch_size 8 -> 7" in stages["train"]["reasons"]
    assert "never run" in stages["sagemaker"]["reasons"]


# --- one feature at a time, in a fresh repository (the `repo` fixture: git + mlops init) ----------


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_a_mapping_in_cmd_becomes_options_and_indexes_reach_into_lists(repo: Any, cli: Any) -> None:
    write(
        repo.root,
        {
            "params.yaml": (
                "train: {epochs: 3, name: my model, layers: [64, 32], verbose: true, quiet: false, opt: {beta: 0.9}}\n"
                "models: [{name: small, files: [a.txt, b.txt]}, {name: large}]\n"
            ),
            "dvc.yaml": (
                "stages:\n"
                "  train:\n"
                "    cmd: python -c \"import sys; open('args.txt', 'w').write(repr(sys.argv[1:]))\" ${train}"
                " --first ${models[0].name} --file ${models[0].files[1]}\n"
                "    outs: [args.txt]\n"
                "  last:\n"
                "    cmd: python -c \"open('${models[1].name}.txt', 'w').write('x')\"\n"
                "    outs: ['${models[1].name}.txt']\n"
            ),
        },
    )
    cli("import", "dvc")
    cli("run")
    # DVC's expansion: nested keys dotted, strings shell-quoted, true -> a flag, false -> nothing, a list -> nargs
    assert eval((repo.root / "args.txt").read_text()) == [  # noqa: S307 - the test's own repr
        "--epochs", "3", "--name", "my model", "--layers", "64", "32", "--verbose", "--opt.beta", "0.9",
        "--first", "small", "--file", "b.txt",
    ]  # fmt: skip
    assert (repo.root / "large.txt").read_text() == "x"


def test_a_mapping_outside_cmd_is_refused_with_its_line(repo: Any, cli: Any) -> None:
    write(
        repo.root,
        {"params.yaml": "train: {epochs: 3}\n", "dvc.yaml": "stages:\n  t:\n    cmd: echo\n    outs: ['${train}']\n"},
    )
    result = cli("import", "dvc", code=2)
    assert "dvc.yaml:3: ${train} is a mapping" in result.stderr
    assert not (repo.root / "pipeline.yaml").exists() and not (repo.root / ".mlops/dvc-import.json").exists()


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        ("params.json", '{"train": {"epochs": 10, "lr": [0.1, 0.01]}}', "train.epochs"),
        ("params.toml", "[train]\nepochs = 10\nlr = [0.1, 0.01]\n", "train.epochs"),
        (
            "params.py",
            "import os\nEPOCHS = 10\nLR: list = [0.1, 0.01]\nDERIVED = os.getcwd()\n"
            "open('executed.txt', 'w').write('ran')\n"
            "class Train:\n    epochs = 10\n    def __init__(self):\n        self.seed = 7\n",
            "Train.epochs",
        ),
    ],
    ids=["json", "toml", "python"],
)
def test_params_files_in_every_format_dvc_reads(repo: Any, cli: Any, name: str, text: str, key: str) -> None:
    write(
        repo.root,
        {
            name: text,
            "dvc.yaml": (
                f"vars: [{name}]\n"
                "stages:\n"
                "  train:\n"
                f"    cmd: python -c \"open('out.txt', 'w').write('${{{key}}}')\"\n"
                f"    params: [{{{name}: [{key}]}}]\n"
                "    outs: [out.txt]\n"
            ),
        },
    )
    cli("import", "dvc")
    cli("run")
    assert (repo.root / "out.txt").read_text() == "10"
    assert not (repo.root / "executed.txt").exists()  # a Python params file is read, never run
    write(repo.root, {name: text.replace("10", "20")})
    dry = json.loads(cli("run", "--dry-run", "--json").stdout)
    assert dry["stages"][0]["reasons"] == ["cmd changed", f"param {key} 10 -> 20"]


def test_python_params_are_read_with_ast() -> None:
    from mlops.pipeline.params import parse_python

    values = parse_python(
        "A = 1\nB: str = 'x'\nC = {'k': (1, 2)}\nD = len('abc')\nclass Model:\n    depth = 3\n"
        "    def __init__(self):\n        self.width = 4\n        other.width = 5\n",
        "params.py",
    )
    assert values == {"A": 1, "B": "x", "C": {"k": [1, 2]}, "Model": {"depth": 3, "width": 4}}


def test_what_cannot_be_carried_is_named_line_by_line_and_nothing_is_written(repo: Any, cli: Any) -> None:
    write(
        repo.root,
        {
            ".dvc/config": "[core]\n    remote = s\n[parsing]\n    bool = boolean_optional\n",
            "dvc.yaml": (
                "stages:\n"
                "  train:\n"
                "    cmd: python train.py\n"
                "    deps: [s3://bucket/raw.csv]\n"
                "    outs: [model.pkl]\n"
                "    live: {dir: dvclive}\n"
                "datasets:\n"
                "- name: d\n"
            ),
            "other.dvc": (
                "deps:\n- path: data.csv\n  repo: {url: 'https://github.com/x/y'}\n"
                "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  path: data.csv\n"
            ),
            "raw.dvc": "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  path: ../outside.csv\n",
        },
    )
    result = cli("import", "dvc", code=2)
    lines = [
        line.removeprefix("warning: ") for line in result.stderr.splitlines() if not line.startswith(("error", "hint"))
    ]
    assert lines == [
        ".dvc/config:3: parsing.bool = boolean_optional changes how DVC expands ${mapping} in cmd; "
        "mlops expands mappings as DVC's default (bool = store_true)",
        "dvc.yaml:7: top-level 'datasets' has no counterpart in mlops",
        "dvc.yaml:6: stage 'train': 'live' has no counterpart in mlops",
        "dvc.yaml:4: 's3://bucket/raw.csv' is outside the repository (mlops tracks files of the repository)",
        "other.dvc:1: made by 'dvc import'/'dvc import-url' (data from another repository or a URL): "
        "mlops tracks data of this repository",
        "raw.dvc:3: '../outside.csv': outside the repository",
    ]
    assert "nothing was written" in result.stderr
    assert not (repo.root / "pipeline.yaml").exists() and not (repo.root / ".mlops/dvc-import.json").exists()


def _project_with_data(root: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """A .dvc-tracked folder `data` (DVC 3 entry) and its objects; returns the objects by key."""
    listing = dir_listing(files)
    digest = md5(listing) + ".dir"
    write(
        root,
        {
            "data.dvc": yaml.safe_dump(
                {
                    "outs": [
                        {
                            "md5": digest,
                            "size": sum(map(len, files.values())),
                            "nfiles": len(files),
                            "hash": "md5",
                            "path": "data",
                        }
                    ]
                }
            )
        },
    )
    objects = {f"files/md5/{digest[:2]}/{digest[2:]}": listing}
    objects.update({f"files/md5/{md5(b)[:2]}/{md5(b)[2:]}": b for b in files.values()})
    return objects


def test_data_from_dvcs_own_cache(repo: Any, cli: Any) -> None:
    files = {"a.csv": b"1,2\n", "sub/b.csv": b"3,4\n"}
    write_local_remote(repo.root / ".dvc" / "cache", _project_with_data(repo.root, files))
    result = cli("import", "dvc")
    assert "data: tracked by DVC (data.dvc:2), not in the workspace" not in result.stderr
    assert "run 'mlops import dvc --data'" in result.stderr
    cli("import", "dvc", "--data")  # no remote configured: DVC's cache is enough
    assert (repo.root / "data/sub/b.csv").read_bytes() == b"3,4\n" and (repo.root / "data.mlops").is_file()
    assert json.loads(cli("status", "--json").stdout)["clean"] is True


def test_an_md5_mismatch_places_nothing(repo: Any, cli: Any, tmp_path: Path) -> None:
    files = {"a.csv": b"1,2\n", "b.csv": b"3,4\n"}
    objects = _project_with_data(repo.root, files)
    key = f"files/md5/{md5(b'3,4' + bytes([10]))[:2]}/{md5(b'3,4' + bytes([10]))[2:]}"
    objects[key] = b"3,5\n"  # altered on the remote
    write_local_remote(tmp_path / "remote", objects)
    write(repo.root, {".dvc/config": f"[core]\n    remote = r\n['remote \"r\"']\n    url = {tmp_path / 'remote'}\n"})
    result = cli("import", "dvc", "--data", code=3)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and f"{key}: its md5 is {md5(b'3,5' + bytes([10]))}" in errors[0]
    assert "data.dvc" in errors[0] and "nothing was placed" in errors[0]
    assert not (repo.root / "data").exists() and not (repo.root / "data.mlops").exists()
    assert not (repo.root / ".mlops/dvc-import.json").exists()
    assert not list((repo.root / ".mlops/tmp").glob("dvc-import-*"))


def test_a_listing_naming_a_path_outside_the_folder_is_refused(repo: Any, cli: Any, tmp_path: Path) -> None:
    files = {"a.csv": b"1,2\n"}
    listing = json.dumps([{"md5": md5(b"1,2\n"), "relpath": "../../escaped.csv"}], sort_keys=True).encode()
    digest = md5(listing) + ".dir"
    write(repo.root, {"data.dvc": f"outs:\n- md5: {digest}\n  hash: md5\n  path: data\n"})
    objects = {
        f"files/md5/{digest[:2]}/{digest[2:]}": listing,
        f"files/md5/{md5(files['a.csv'])[:2]}/{md5(files['a.csv'])[2:]}": b"1,2\n",
    }
    write_local_remote(repo.root / ".dvc" / "cache", objects)
    result = cli("import", "dvc", "--data", code=3)
    assert "refused path '../../escaped.csv'" in result.stderr
    assert not (repo.root / "data").exists() and not (repo.root.parent / "escaped.csv").exists()


def test_missing_objects_are_named_with_their_entry(repo: Any, cli: Any, tmp_path: Path) -> None:
    _project_with_data(repo.root, {"a.csv": b"1,2\n"})
    (tmp_path / "remote").mkdir()
    write(repo.root, {".dvc/config": f"[core]\n    remote = r\n['remote \"r\"']\n    url = {tmp_path / 'remote'}\n"})
    result = cli("import", "dvc", "--data", code=3)
    assert "data (data.dvc:2, md5 " in result.stderr and "DVC remote 'r'" in result.stderr
    assert not (repo.root / "data").exists()


def test_a_nested_dvc_yaml_has_its_own_folder_as_base(repo: Any, cli: Any) -> None:
    write(
        repo.root,
        {
            "dvc.yaml": (
                "stages:\n  top:\n    cmd: python -c \"open('top.txt', 'w').write('t')\"\n    outs: [top.txt]\n"
            ),
            "sub/params.yaml": "langs: [en, fr]\nsuffix: txt\n",
            "sub/dvc.yaml": (
                "vars:\n- greeting: hello\n"
                "stages:\n"
                "  greet:\n"
                "    foreach: ${langs}\n"
                "    do:\n"
                "      cmd: python -c \"open('${item}.${suffix}', 'w').write('${greeting}')\"\n"
                "      deps: [../top.txt]\n"
                "      outs: ['${item}.${suffix}']\n"
            ),
        },
    )
    cli("import", "dvc")
    dag = json.loads(cli("dag", "--json").stdout)
    assert dag["stages"] == ["top", "sub.greet@en", "sub.greet@fr"]
    assert {(e["from"], e["to"]) for e in dag["edges"]} == {("top", "sub.greet@en"), ("top", "sub.greet@fr")}
    cli("run")
    assert (repo.root / "sub/fr.txt").read_text() == "hello"
    # the folder's params.yaml stays live: a change reruns the stages that read it
    write(repo.root, {"sub/params.yaml": "langs: [en, fr]\nsuffix: md\n"})
    dry = json.loads(cli("run", "--dry-run", "--json").stdout)
    assert {s["name"]: s["status"] for s in dry["stages"]}["sub.greet@en"] == "would run"


def test_dvc2_text_files_hashed_with_lf_line_ends(repo: Any, cli: Any) -> None:
    crlf = b"id,value\r\n1,2\r\n"
    digest = md5(crlf.replace(b"\r\n", b"\n"))  # DVC 2's md5-dos2unix: the hash of the LF form
    write(repo.root, {"table.csv.dvc": f"outs:\n- md5: {digest}\n  size: {len(crlf)}\n  path: table.csv\n"})
    write_local_remote(repo.root / ".dvc" / "cache", {f"{digest[:2]}/{digest[2:]}": crlf})  # DVC 2's layout
    cli("import", "dvc", "--data")
    assert (repo.root / "table.csv").read_bytes() == crlf  # the bytes as they were, CRLF and all
    assert (repo.root / "table.csv.mlops").is_file()
    cli("import", "dvc")  # the workspace matches the entry the way DVC 2 hashed it: nothing to refuse


def test_a_remote_mlops_cannot_read_matters_only_for_what_the_cache_lacks(repo: Any, cli: Any) -> None:
    config = "[core]\n    remote = storage\n['remote \"storage\"']\n    url = https://remote.dvc.org/get-started\n"
    objects = _project_with_data(repo.root, {"a.csv": b"1,2\n"})
    write(repo.root, {".dvc/config": config})
    write_local_remote(repo.root / ".dvc" / "cache", objects)
    cli("import", "dvc", "--data")  # all in DVC's cache: the https remote is never asked
    assert (repo.root / "data/a.csv").read_bytes() == b"1,2\n"
    write(repo.root, {"more.txt.dvc": f"outs:\n- md5: {md5(b'more')}\n  hash: md5\n  path: more.txt\n"})
    result = cli("import", "dvc", "--data", code=2)
    assert ".dvc/config:3: DVC remote 'storage' is https://remote.dvc.org/get-started" in result.stderr
    assert not (repo.root / "more.txt").exists()
