"""Properties of the containment rule and of the decoders that feed it (hypothesis).

Whatever the input: a name ``check_name`` accepts is one direct child of the root; a path
``check_relpath`` accepts resolves inside the root and never into .git or .mlops; a
destination ``Destinations`` accepts is never reached through a symlink. The manifest, pointer
and lock-file decoders, fed random bytes or random documents, raise nothing but MlopsError,
return only what the rule accepts, and finish well within a second each.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.data.pointer import parse_pointer
from mlops.errors import MlopsError
from mlops.paths import Destinations, check_name, check_relpath, name_problem
from mlops.pipeline.lock import parse_lock
from mlops.store.hashing import is_hash
from mlops.store.tree import TREE_FORMAT, decode_manifest

FAST = settings(
    deadline=timedelta(seconds=1), max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

TRICKY = ["", ".", "..", "...", ".git", ".GIT", ".Git", ".mlops", ".MLOPS", "a", "b", "data", "link", "inner"]
CHARS = st.sampled_from(["a", ".", "/", "\x00", "\n", "\r", "\\", "g", "i", "t", "G", " ", "é", "\u202e"])
NAMES = st.one_of(st.sampled_from(TRICKY), st.text(CHARS, max_size=12), st.text(max_size=40))
RELPATHS = st.one_of(
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(CHARS, max_size=4)), min_size=1, max_size=6).map("/".join),
    st.text(max_size=60),
    NAMES,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with a real folder, a symlink out of it, a symlink within it, and a file."""
    base = tmp_path_factory.mktemp("world")
    root = base / "root"
    (root / "data" / "sub").mkdir(parents=True)
    (base / "outside").mkdir()
    os.symlink(base / "outside", root / "link")
    os.symlink("data", root / "inner")
    os.symlink("data/sub", root / "data" / "ln")
    (root / "file").write_text("x")
    return root


def strictly_inside(root: Path, path: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real.startswith(real_root + os.sep)


@FAST
@given(name=NAMES)
def test_an_accepted_name_is_one_child_of_the_root(world: Path, name: str) -> None:
    try:
        check_name(name, where="test")
    except MlopsError:
        return
    assert os.path.dirname(os.path.normpath(os.path.join("/r", name))) == "/r"
    assert name.lower() not in (".git", ".mlops")
    assert strictly_inside(world, os.path.join(world, "data", name))


@FAST
@given(rel=RELPATHS)
def test_an_accepted_path_stays_inside_and_out_of_git_and_mlops(world: Path, rel: str) -> None:
    try:
        check_relpath(rel, where="test")
    except MlopsError:
        return
    assert os.path.normpath(rel) == rel, "no '.', '..' or empty component survives"
    assert not {part.lower() for part in rel.split("/")} & {".git", ".mlops"}
    assert strictly_inside(world / "data", os.path.join(world, "data", rel))


@FAST
@given(rel=RELPATHS)
def test_a_destination_is_never_reached_through_a_symlink(world: Path, rel: str) -> None:
    try:
        path = Destinations(world).check(rel, where="test")
    except MlopsError:
        return
    parent = os.path.dirname(path)
    # every folder on the way that exists is a real one: its resolved path is its own path
    assert os.path.realpath(parent) == str(parent) or not os.path.lexists(parent)
    # the destination itself may be a link: it is replaced (os.replace), never followed
    final = os.path.join(os.path.realpath(parent), os.path.basename(path))
    assert os.path.normpath(final).startswith(os.path.realpath(world) + os.sep)
    assert rel.split("/")[0] not in ("link", "inner") or rel in ("link", "inner")  # nothing through a link


def test_the_properties_can_fail(world: Path) -> None:
    """The checks above would see an escape: here are some that the rule refuses."""
    for bad in ("..", "a/../..", ".git/hooks/x", "/etc/passwd", "a\x00b"):
        assert check_relpath_refuses(bad)
    with pytest.raises(MlopsError, match="symlink"):
        Destinations(world).check("link/x", where="test")
    with pytest.raises(MlopsError, match="symlink"):
        Destinations(world).check("data/ln/x", where="test")
    assert not strictly_inside(world, os.path.join(world, "link", "x"))


def check_relpath_refuses(rel: str) -> bool:
    try:
        check_relpath(rel, where="test")
    except MlopsError:
        return True
    return False


# --- decoders: random bytes and random documents ----------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=40)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)),
    max_leaves=30,
)
HASHES = st.one_of(st.sampled_from(["0" * 32, "ab" * 16, "../../x", "A" * 32, "0" * 31]), st.text(max_size=34))
ROWS = st.lists(
    st.one_of(
        st.tuples(NAMES, st.sampled_from(["f", "t", "x", 1]), HASHES, JSON_LEAVES, JSON_LEAVES).map(list),
        JSON,
    ),
    max_size=8,
)


def only_mlops_errors(fn, *args):  # noqa: ANN001, ANN201
    try:
        return fn(*args)
    except MlopsError as exc:
        # YAML syntax errors quote the parser's own multi-line text (formats.parse_yaml, not ours)
        assert "\n" not in exc.message or "not valid YAML" in exc.message, "an error is one line"
        return None


@FAST
@given(data=st.binary(max_size=300))
def test_decode_manifest_on_random_bytes(data: bytes) -> None:
    only_mlops_errors(decode_manifest, data, "0" * 32)


@FAST
@given(rows=ROWS, fmt=st.sampled_from([TREE_FORMAT, "mlops-tree/2", 1]))
def test_decode_manifest_returns_only_what_the_rule_accepts(rows: list, fmt: object) -> None:
    data = json.dumps({"format": fmt, "entries": rows}).encode()
    entries = only_mlops_errors(decode_manifest, data, "0" * 32)
    for entry in entries or ():
        assert name_problem(entry.name) is None and is_hash(entry.hash)
        assert entry.kind in ("f", "t") and type(entry.size) is int and entry.size >= 0
    if entries:
        assert len({e.name for e in entries}) == len(entries)


@FAST
@given(doc=JSON)
def test_decode_manifest_on_random_documents(doc: object) -> None:
    only_mlops_errors(decode_manifest, json.dumps(doc).encode(), "0" * 32)


POINTER_DOCS = st.fixed_dictionaries(
    {"format": st.sampled_from([1, 2, "1"]), "kind": st.sampled_from(["file", "dir", "x"]), "hash": HASHES},
    optional={"path": NAMES, "size": JSON_LEAVES, "files": JSON_LEAVES},
)


@FAST
@given(data=st.binary(max_size=300), rel=RELPATHS)
def test_parse_pointer_on_random_bytes(data: bytes, rel: str) -> None:
    only_mlops_errors(parse_pointer, data, rel + ".mlops")


@FAST
@given(doc=st.one_of(POINTER_DOCS, JSON), rel=RELPATHS)
def test_parse_pointer_returns_only_safe_targets(world: Path, doc: object, rel: str) -> None:
    pointer = only_mlops_errors(parse_pointer, yaml.safe_dump(doc), rel + ".mlops")
    if pointer is not None:
        assert not pointer.target.endswith(".mlops")
        assert strictly_inside(world / "data", os.path.join(world, "data", pointer.target))
        assert not {p.lower() for p in pointer.target.split("/")} & {".git", ".mlops"}


LOCK_OUT = st.fixed_dictionaries(
    {"path": st.one_of(RELPATHS, JSON_LEAVES)},
    optional={"hash": st.one_of(HASHES, st.none()), "kind": st.sampled_from(["file", "dir", 3]), "size": JSON_LEAVES},
)
LOCK_DOCS = st.fixed_dictionaries(
    {
        "format": st.sampled_from([1, 2]),
        "stages": st.dictionaries(
            st.text(max_size=8),
            st.fixed_dictionaries(
                {"cmd": JSON_LEAVES},
                optional={"outs": st.one_of(st.lists(LOCK_OUT, max_size=4), JSON), "params": JSON, "env": JSON},
            ),
            max_size=3,
        ),
    }
)


@FAST
@given(data=st.binary(max_size=300))
def test_parse_lock_on_random_bytes(data: bytes) -> None:
    only_mlops_errors(lambda: parse_lock(data.decode("utf-8", "replace"), "pipeline.lock"))


@FAST
@given(doc=st.one_of(LOCK_DOCS, JSON))
def test_parse_lock_returns_only_safe_outputs(world: Path, doc: object) -> None:
    entries = only_mlops_errors(parse_lock, yaml.safe_dump(doc), "pipeline.lock")
    for entry in (entries or {}).values():
        for out in entry.outs:
            assert out.hash is None or is_hash(out.hash)
            assert strictly_inside(world / "data", os.path.join(world, "data", out.path))
