"""foreach (list, mapping), matrix, vars (inline, files), wdir: what the stages become and where they run."""

from __future__ import annotations

import json
import os

from pipekit import reasons, statuses


def test_foreach_over_a_list(proj):
    proj.write({"data/cats.txt": "meow\n", "data/dogs.txt": "woof\n"})
    (proj.root / "pipeline.yaml").write_text(
        "stages:\n"
        "  clean:\n"
        "    foreach: [cats, dogs]\n"
        "    do:\n"
        f"      cmd: {proj.cmd('copy:data/${item}.txt=clean/${item}.txt')}\n"
        "      deps: ['data/${item}.txt']\n"
        "      outs: ['clean/${item}.txt']\n"
    )
    doc = proj.run()
    assert [s["name"] for s in doc["stages"]] == ["clean@cats", "clean@dogs"]
    assert proj.read("clean/cats.txt") == "meow\n" and proj.read("clean/dogs.txt") == "woof\n"
    lock = proj.lock()
    assert lock["clean@dogs"]["deps"][0]["path"] == "data/dogs.txt"
    assert "copy:data/dogs.txt=clean/dogs.txt" in lock["clean@dogs"]["cmd"]
    # one member's dependency changes: only that member runs
    (proj.root / "data/cats.txt").write_text("purr\n")
    assert statuses(proj.run()) == {"clean@cats": "ran", "clean@dogs": "skipped"}


def test_foreach_over_a_mapping_key_and_item(proj):
    (proj.root / "pipeline.yaml").write_text(
        "stages:\n"
        "  fit:\n"
        "    foreach:\n"
        "      small: {layers: 2, width: 8}\n"
        "      big: {layers: 6, width: 64}\n"
        "    do:\n"
        f"      cmd: {proj.cmd('write:models/${key}.txt=${key}-${item.layers}-${item.width}')}\n"
        "      outs: ['models/${key}.txt']\n"
    )
    doc = proj.run()
    assert [s["name"] for s in doc["stages"]] == ["fit@small", "fit@big"]
    assert proj.read("models/small.txt") == "small-2-8\n"
    assert proj.read("models/big.txt") == "big-6-64\n"


def test_foreach_from_params_by_interpolation(proj):
    proj.write({"params.yaml": "models: [lin, tree]\nseed: 4\n"})
    (proj.root / "pipeline.yaml").write_text(
        "stages:\n"
        "  m:\n"
        "    foreach: ${models}\n"
        "    do:\n"
        f"      cmd: {proj.cmd('write:${item}.txt=${item}-${seed}')}\n"
        "      outs: ['${item}.txt']\n"
    )
    proj.run()
    assert proj.read("lin.txt") == "lin-4\n" and proj.read("tree.txt") == "tree-4\n"
    dag = json.loads(proj.cli("dag", "--json").stdout)
    assert dag["stages"] == ["m@lin", "m@tree"]


def test_matrix_with_two_axes(proj):
    (proj.root / "pipeline.yaml").write_text(
        "stages:\n"
        "  train:\n"
        "    matrix:\n"
        "      model: [cnn, xgb]\n"
        "      lr: [1, 2]\n"
        f"    cmd: {proj.cmd('write:out/${item.model}-${item.lr}.txt=${item.model}@${item.lr}')}\n"
        "    outs: ['out/${item.model}-${item.lr}.txt']\n"
        "  merge:\n"
        f"    cmd: {proj.cmd('cat:out/cnn-1.txt+out/cnn-2.txt+out/xgb-1.txt+out/xgb-2.txt=all.txt')}\n"
        "    deps: [out/cnn-1.txt, out/cnn-2.txt, out/xgb-1.txt, out/xgb-2.txt]\n"
        "    outs: [all.txt]\n"
    )
    doc = proj.run()
    names = [s["name"] for s in doc["stages"]]
    assert names == ["train@cnn-1", "train@cnn-2", "train@xgb-1", "train@xgb-2", "merge"]
    assert proj.read("out/xgb-2.txt") == "xgb@2\n"
    assert proj.read("all.txt") == "cnn@1\ncnn@2\nxgb@1\nxgb@2\n"
    # the group name selects all four
    assert [s["name"] for s in proj.dry("train", "--force")["stages"]] == names[:4]
    dag = json.loads(proj.cli("dag", "--json").stdout)
    assert sorted(e["from"] for e in dag["edges"] if e["to"] == "merge") == names[:4]


def test_matrix_values_with_odd_characters_make_safe_names(proj):
    (proj.root / "pipeline.yaml").write_text(
        "stages:\n"
        "  t:\n"
        "    matrix:\n"
        "      lr: [0.1, 1e-3]\n"
        "      flag: [true]\n"
        f"    cmd: {proj.cmd('print:${item.lr}')}\n"
    )
    dag = json.loads(proj.cli("dag", "--json").stdout)
    assert dag["stages"] == ["t@0.1-true", "t@1e-3-true"]


def test_vars_inline_and_from_files(proj):
    proj.write(
        {
            "params.yaml": "name: from-params\nsize: 1\n",
            "conf/vars.yaml": "size: 10\nnested:\n  depth: 3\n",
            "conf/more.yaml": "pick: chosen\nskip: never\n",
        }
    )
    (proj.root / "pipeline.yaml").write_text(
        "vars:\n"
        "  - conf/vars.yaml\n"
        "  - conf/more.yaml:pick\n"
        "  - {greeting: hello, size: 20}\n"
        "stages:\n"
        "  show:\n"
        "    vars:\n"
        "      - {local: mine}\n"
        f"    cmd: {proj.cmd('write:out.txt=${greeting}-${name}-${size}-${nested.depth}-${pick}-${local}')}\n"
        "    outs: [out.txt]\n"
        "  other:\n"
        f"    cmd: {proj.cmd('write:other.txt=${size}')}\n"
        "    outs: [other.txt]\n"
    )
    proj.run()
    # later vars win over earlier ones and over params.yaml; stage vars are the stage's own
    assert proj.read("out.txt") == "hello-from-params-20-3-chosen-mine\n"
    assert proj.read("other.txt") == "20\n"
    # a key not picked from a file is not defined
    (proj.root / "pipeline.yaml").write_text("vars:\n  - conf/more.yaml:pick\nstages:\n  s:\n    cmd: echo ${skip}\n")
    proj.cli("dag", code=2)
    (proj.root / "pipeline.yaml").write_text("vars:\n  - conf/nothere.yaml\nstages:\n  s:\n    cmd: echo\n")
    assert "pipeline.yaml:2:5: vars file 'conf/nothere.yaml' does not exist" in proj.cli("dag", code=2).stderr
    # a stage's vars are not visible to another stage
    (proj.root / "pipeline.yaml").write_text(
        "stages:\n  a:\n    vars: [{v: 1}]\n    cmd: echo ${v}\n  b:\n    cmd: echo ${v}\n"
    )
    assert "pipeline.yaml:6:10: unknown ${v}" in proj.cli("dag", code=2).stderr


def test_interpolated_param_change_is_a_cmd_change(proj):
    proj.write({"params.yaml": "epochs: 3\n"})
    proj.pipeline({"fit": {"cmd": proj.cmd("write:e.txt=${epochs}"), "outs": ["e.txt"]}})
    proj.run()
    assert proj.read("e.txt") == "3\n"
    (proj.root / "params.yaml").write_text("epochs: 5\n")
    assert reasons(proj.dry())["fit"] == ["cmd changed"]
    proj.run()
    assert proj.read("e.txt") == "5\n"


def test_wdir_paths_relative_and_cmd_runs_there(proj):
    proj.write(
        {
            "sub/input.txt": "in\n",
            "sub/params.yaml": "k: 7\n",
            "shared.txt": "shared\n",
        }
    )
    (proj.root / "pipeline.yaml").write_text(
        "stages:\n"
        "  inner:\n"
        "    wdir: sub\n"
        f"    cmd: {proj.cmd('env:where.json', 'cat:input.txt+../shared.txt=out/result.txt', 'param:k=k.txt')}\n"
        "    deps: [input.txt, ../shared.txt]\n"
        "    params: [k]\n"
        "    outs: [out, k.txt]\n"
        "  outer:\n"
        f"    cmd: {proj.cmd('copy:sub/out/result.txt=final.txt')}\n"
        "    deps: [sub/out]\n"
        "    outs: [final.txt]\n"
    )
    doc = proj.run()
    assert statuses(doc) == {"inner": "ran", "outer": "ran"}
    seen = json.loads(proj.read("sub/where.json"))
    assert os.path.realpath(seen["cwd"]) == os.path.realpath(proj.root / "sub")
    assert proj.read("sub/out/result.txt") == "in\nshared\n"
    assert proj.read("final.txt") == "in\nshared\n"
    lock = proj.lock()
    assert [d["path"] for d in lock["inner"]["deps"]] == ["sub/input.txt", "shared.txt"]
    assert [o["path"] for o in lock["inner"]["outs"]] == ["sub/out", "sub/k.txt"]
    assert lock["inner"]["params"] == {"sub/params.yaml": {"k": 7}}
    assert (proj.root / "sub/.gitignore").read_text().splitlines() == ["/out", "/k.txt"]
    # the graph sees through wdir: outer depends on inner
    dag = json.loads(proj.cli("dag", "--json").stdout)
    assert dag["edges"] == [{"from": "inner", "to": "outer"}]
    (proj.root / "sub/params.yaml").write_text("k: 8\n")
    assert reasons(proj.dry()) == {"inner": ["param k 7 -> 8"], "outer": ["upstream inner will run"]}
    (proj.root / "sub/where.json").unlink()
    assert statuses(proj.run())["inner"] == "ran"
    assert proj.read("sub/k.txt") == "k=8\n"


def test_wdir_escaping_the_repo_is_refused(proj):
    (proj.root / "pipeline.yaml").write_text("stages:\n  a:\n    wdir: ..\n    cmd: echo\n")
    assert "pipeline.yaml:3:11: '..' is outside the repository" in proj.cli("dag", code=2).stderr
