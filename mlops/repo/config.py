"""`.mlops/config.yaml` (committed) merged with `.mlops/config.local.yaml` (git-ignored, for secrets)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..formats import check_format, display_path, load_yaml, write_yaml
from ..store.links import DEFAULT_LINK_TYPES, LINK_TYPES

CONFIG_FORMAT = 1
CONFIG_HEADER = "# mlops configuration: commit this file. Secrets go in config.local.yaml (not committed).\n"
LOCAL_HEADER = "# mlops local configuration: not committed (listed in .mlops/.gitignore).\n"
REMOTE_KEYS = {
    "url",
    "endpoint_url",
    "region",
    "profile",
    "access_key_id",
    "secret_access_key",
    "jobs",
    "timeout",
    # gs://: the GCP project and a service-account key file (or 'anon', 'google_default')
    "project",
    "token",
    # azure://: the storage account, and its secrets (config.local.yaml only)
    "account_name",
    "account_key",
    "connection_string",
    "sas_token",
    # ssh://: a private key file, a known_hosts file, a password (config.local.yaml only)
    "key_file",
    "known_hosts",
    "password",
}


@dataclass
class Config:
    """The merged configuration, plus the two raw documents it came from (for writing back)."""

    shared: dict[str, Any] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)
    source: str = ".mlops/config.yaml"

    @property
    def merged(self) -> dict[str, Any]:
        return _merge(self.shared, self.local)

    @property
    def link_types(self) -> tuple[str, ...]:
        kinds = (self.merged.get("cache") or {}).get("type", list(DEFAULT_LINK_TYPES))
        if isinstance(kinds, str):
            kinds = [k.strip() for k in kinds.split(",")]
        if not isinstance(kinds, list) or not kinds or any(k not in LINK_TYPES for k in kinds):
            raise ConfigError(
                f"{self.source}: cache.type must be a list drawn from {', '.join(LINK_TYPES)}, found {kinds!r}",
                hint="e.g. cache: {type: [reflink, hardlink, copy]}",
            )
        return tuple(kinds)

    @property
    def remotes(self) -> dict[str, dict[str, Any]]:
        remotes = self.merged.get("remotes") or {}
        if not isinstance(remotes, dict):
            raise ConfigError(f"{self.source}: 'remotes' must be a mapping of name -> settings")
        for name, settings in remotes.items():
            if not isinstance(settings, dict) or not isinstance(settings.get("url"), str):
                raise ConfigError(f"{self.source}: remote '{name}' needs a 'url'", hint="mlops remote add NAME URL")
        return remotes

    @property
    def default_remote(self) -> str | None:
        name = (self.merged.get("core") or {}).get("remote")
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"{self.source}: core.remote must be a remote's name, found {name!r}")
        return name


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: The sections mlops reads; each is a mapping when present, checked as the file is read so
#: that a hand-edited or received `cache: 5` is one line naming the file, not a crash later.
SECTIONS = ("core", "cache", "remotes")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path)  # bounded; a folder or non-UTF-8 bytes in its place: one line naming it
    except FileNotFoundError:
        return {}
    if data is None:
        return {}
    source = display_path(path)
    data = check_format(data, source, supported=CONFIG_FORMAT, kind="config")
    for section in SECTIONS:
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise ConfigError(
                f"{source}: '{section}' must be a mapping, found {type(data[section]).__name__}",
                hint=f"fix or remove the '{section}' section",
                file=source,
            )
    return data


def load_config(dot: Path) -> Config:
    return Config(
        shared=_read(dot / "config.yaml"),
        local=_read(dot / "config.local.yaml"),
        source=display_path(dot / "config.yaml"),
    )


def save_config(dot: Path, config: Config) -> None:
    shared = {"format": CONFIG_FORMAT, **{k: v for k, v in config.shared.items() if k != "format"}}
    write_yaml(dot / "config.yaml", shared, header=CONFIG_HEADER)
    if config.local:
        local = {"format": CONFIG_FORMAT, **{k: v for k, v in config.local.items() if k != "format"}}
        write_yaml(dot / "config.local.yaml", local, header=LOCAL_HEADER)


def default_config() -> dict[str, Any]:
    return {"format": CONFIG_FORMAT, "cache": {"type": list(DEFAULT_LINK_TYPES)}}
