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
