"""Where a DVC project lives in the repository, and what its files say.

A DVC root is a folder with a ``.dvc/`` folder in it: the repository root, or a subfolder for
projects made with ``dvc init --subdir`` (several may sit in one repository). Every
``dvc.yaml`` and ``.dvc`` file belongs to the nearest root above it. A repository with
``dvc.yaml`` files but no ``.dvc/`` folder is taken as one project rooted at the top.
"""

from __future__ import annotations

import configparser
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...data.pointer import PRUNED_DIRS
from .problems import Problems

PIPELINE_NAME = "dvc.yaml"
LOCK_NAME = "dvc.lock"
DATA_SUFFIX = ".dvc"
REMOTE_SECTION = re.compile(r'^remote\s+"([^"]+)"$')
# DVC's defaults for expanding a mapping in cmd; anything else changes the command line
PARSING_DEFAULTS = {"bool": "store_true", "list": "nargs"}


@dataclass(frozen=True)
class DvcRemote:
    name: str
    url: str
    endpointurl: str | None
    where: str  # file:line of its section
    base: str  # repo-relative folder a relative url is read from (the .dvc/ folder)
    options: dict[str, str] = field(default_factory=dict)  # the rest of its section (region, keys, ...)


@dataclass
class DvcRoot:
    path: str  # repo-relative ("" = the repository root)
    remotes: dict[str, DvcRemote] = field(default_factory=dict)
    default_remote: str | None = None
    default_where: str = ""
    cache_dir: str = ""  # repo-relative or absolute: DVC's local cache

    @property
    def dot_dvc(self) -> str:
        return posixpath.join(self.path, ".dvc") if self.path else ".dvc"


@dataclass
class Project:
    roots: list[DvcRoot]
    pipelines: list[str]  # repo-relative dvc.yaml files, sorted
    data_files: list[str]  # repo-relative .dvc files, sorted

    def root_of(self, rel: str) -> DvcRoot:
        best = self.roots[0]
        for root in self.roots:
            if (not root.path or rel.startswith(root.path + "/")) and len(root.path) >= len(best.path):
                best = root
        return best


def scan(repo_root: Path, problems: Problems) -> Project:
    """Every DVC root, dvc.yaml and .dvc file under the repository (read-only)."""
    roots: list[str] = []
    pipelines: list[str] = []
    data_files: list[str] = []
    for folder, dirs, files in os.walk(repo_root):
        rel_folder = Path(folder).relative_to(repo_root).as_posix()
        rel_folder = "" if rel_folder == "." else rel_folder
        if rel_folder and "pyvenv.cfg" in files:
            dirs[:] = []
            continue
        if ".dvc" in dirs and os.path.isdir(os.path.join(folder, ".dvc")):
            roots.append(rel_folder)
        dirs[:] = sorted(d for d in dirs if d not in PRUNED_DIRS and d != ".dvc")
        for name in files:
            rel = posixpath.join(rel_folder, name) if rel_folder else name
            if name == PIPELINE_NAME:
                pipelines.append(rel)
            elif name.endswith(DATA_SUFFIX) and name != DATA_SUFFIX:
                data_files.append(rel)
    if "" not in roots:
        roots.insert(0, "")  # dvc.yaml files above every .dvc/ folder (or none at all) belong to the top
    project = Project([DvcRoot(r) for r in sorted(roots)], sorted(pipelines), sorted(data_files))
    for root in project.roots:
        _read_config(repo_root, root, problems)
    return project


def _read_config(repo_root: Path, root: DvcRoot, problems: Problems) -> None:
    """Remotes, the default remote and the cache folder from .dvc/config (then config.local)."""
    root.cache_dir = posixpath.join(root.dot_dvc, "cache")
    for name in ("config", "config.local"):
        rel = posixpath.join(root.dot_dvc, name)
        path = repo_root / rel
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text, source=rel)
        except configparser.Error as exc:
            line = getattr(exc, "lineno", 1) or 1
            problems.add(f"{rel}:{line}", f"not a DVC config file DVC could read ({type(exc).__name__})")
            continue
        for section in parser.sections():
            title = section.strip().strip("'").strip()
            where = f"{rel}:{_line_of(text, section)}"
            values = parser[section]
            match = REMOTE_SECTION.match(title)
            if match:
                url = values.get("url")
                if url:
                    root.remotes[match.group(1)] = DvcRemote(
                        match.group(1),
                        url.strip(),
                        (values.get("endpointurl") or "").strip() or None,
                        where,
                        root.dot_dvc,
                        {k: v.strip() for k, v in values.items() if k not in ("url", "endpointurl")},
                    )
            elif title == "core" and values.get("remote"):
                root.default_remote = values["remote"].strip()
                root.default_where = where
            elif title == "cache" and values.get("dir"):
                cache = values["dir"].strip()
                # DVC reads a relative cache dir from the config file's own folder
                root.cache_dir = (
                    cache if os.path.isabs(cache) else posixpath.normpath(posixpath.join(root.dot_dvc, cache))
                )
            elif title == "parsing":
                for key, default in PARSING_DEFAULTS.items():
                    if values.get(key, default).strip() != default:
                        problems.add(
                            where,
                            f"parsing.{key} = {values[key].strip()} changes how DVC expands ${{mapping}} in cmd; "
                            f"mlops expands mappings as DVC's default ({key} = {default})",
                        )


def _line_of(text: str, section: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() == f"[{section}]":
            return number
    return 1
