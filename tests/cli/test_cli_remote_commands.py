"""`mlops remote add|list|remove|default|modify`, in-process and as the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from datakit import assert_error, mlops


def _remotes(cli) -> list[dict]:
    return json.loads(cli("remote", "list", "--json").stdout)["remotes"]


def _shared() -> dict:
    return yaml.safe_load(Path(".mlops/config.yaml").read_text())


def test_add_list_default(repo, cli, tmp_path):
    assert _remotes(cli) == []
    result = cli("remote", "add", "store", str(tmp_path / "r1"), "--default")
    assert "store" in result.stderr and "(default)" in result.stderr
    cli("remote", "add", "backup", "file://" + str(tmp_path / "r2"))
    assert _remotes(cli) == [
        {"name": "backup", "url": "file://" + str(tmp_path / "r2"), "default": False},
        {"name": "store", "url": str(tmp_path / "r1"), "default": True},
    ]
    plain = cli("remote", "list").stdout.splitlines()
    assert plain == [f"backup\tfile://{tmp_path / 'r2'}\t", f"store\t{tmp_path / 'r1'}\t*"]
    cli("remote", "default", "backup")
    assert [r["name"] for r in _remotes(cli) if r["default"]] == ["backup"]
    shared = _shared()
    assert shared["format"] == 1 and shared["core"]["remote"] == "backup"
    assert set(shared["remotes"]) == {"store", "backup"}


def test_add_existing_name_needs_force(repo, cli, tmp_path):
    cli("remote", "add", "store", str(tmp_path / "r1"))
    result = cli("remote", "add", "store", str(tmp_path / "other"), code=2)
    assert_error(result.stderr, "store", "already exists")
    assert _remotes(cli)[0]["url"] == str(tmp_path / "r1")
    cli("remote", "add", "store", str(tmp_path / "other"), "--force")
    assert _remotes(cli)[0]["url"] == str(tmp_path / "other")


def test_add_refuses_unsupported_scheme(repo, cli):
    result = cli("remote", "add", "web", "http://example.com/data", code=2)
    assert_error(result.stderr, "http://")
    assert _remotes(cli) == []


def test_modify_settings_and_secrets(repo, cli, tmp_path):
    cli("remote", "add", "store", str(tmp_path / "r"), "--default")
    cli("remote", "modify", "store", "jobs", "4")
    cli("remote", "modify", "store", "region", "eu-west-1")
    [row] = _remotes(cli)
    assert row["jobs"] == 4 and row["region"] == "eu-west-1"

    for key in ("secret_access_key", "access_key_id"):
        result = cli("remote", "modify", "store", key, "hunter2", code=2)
        assert_error(result.stderr, key, "secret")
        assert "--local" in result.stderr
    assert "hunter2" not in Path(".mlops/config.yaml").read_text()

    cli("remote", "modify", "store", "secret_access_key", "hunter2", "--local")
    assert "hunter2" not in Path(".mlops/config.yaml").read_text()
    local = yaml.safe_load(Path(".mlops/config.local.yaml").read_text())
    assert local["remotes"]["store"]["secret_access_key"] == "hunter2"
    listed = cli("remote", "list", "--json").stdout
    assert "hunter2" not in listed and "secret_access_key" not in listed
    assert json.loads(listed)["remotes"][0]["url"] == str(tmp_path / "r")  # merged with the shared url
    assert "/config.local.yaml" in Path(".mlops/.gitignore").read_text()  # never committed


def test_modify_bad_input(repo, cli, tmp_path):
    cli("remote", "add", "store", str(tmp_path / "r"))
    assert_error(cli("remote", "modify", "store", "colour", "red", code=2).stderr, "colour")
    assert_error(cli("remote", "modify", "ghost", "region", "x", code=2).stderr, "ghost")
    assert_error(cli("remote", "modify", "store", "jobs", "many", code=2).stderr, "jobs")
    assert "jobs" not in _remotes(cli)[0]


def test_remove_and_default_clearing(repo, cli, tmp_path):
    cli("remote", "add", "store", str(tmp_path / "r"), "--default")
    cli("remote", "add", "other", str(tmp_path / "o"))
    cli("remote", "modify", "store", "access_key_id", "AKIA", "--local")
    cli("remote", "remove", "store")
    assert [r["name"] for r in _remotes(cli)] == ["other"]
    assert "remote" not in (_shared().get("core") or {})
    assert "store" not in (yaml.safe_load(Path(".mlops/config.local.yaml").read_text()).get("remotes") or {})
    assert_error(cli("remote", "remove", "store", code=2).stderr, "store")
    assert_error(cli("remote", "default", "ghost", code=2).stderr, "ghost")
    result = cli("push", code=2)  # the default went with it
    assert_error(result.stderr, "no remote")


def test_local_only_remote(repo, cli, tmp_path):
    cli("remote", "add", "mine", str(tmp_path / "m"), "--local", "--default")
    assert "mine" not in Path(".mlops/config.yaml").read_text()
    assert _remotes(cli) == [{"name": "mine", "url": str(tmp_path / "m"), "default": True}]


def test_remote_commands_as_subprocess(repo, tmp_path):
    mlops("remote", "add", "store", str(tmp_path / "r"), "--default", cwd=repo.root)
    proc = mlops("remote", "list", cwd=repo.root)
    assert proc.stdout == f"store\t{tmp_path / 'r'}\t*\n"
    doc = json.loads(mlops("remote", "list", "--json", cwd=repo.root).stdout)
    assert doc == {"remotes": [{"name": "store", "url": str(tmp_path / "r"), "default": True}]}
    proc = mlops("remote", "modify", "store", "secret_access_key", "x", cwd=repo.root, code=2)
    assert_error(proc.stderr, "secret")
    mlops("remote", "remove", "store", cwd=repo.root)
    assert json.loads(mlops("remote", "list", "--json", cwd=repo.root).stdout) == {"remotes": []}


def test_broken_remotes_section_is_a_config_error(repo, cli):
    config = _shared()
    config["remotes"] = {"store": {"region": "x"}}  # no url
    Path(".mlops/config.yaml").write_text(yaml.safe_dump(config))
    proc = mlops("remote", "list", cwd=repo.root, code=2)
    assert_error(proc.stderr, "store", "url")
