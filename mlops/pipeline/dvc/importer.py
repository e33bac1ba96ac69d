"""The import itself: read and check everything, then write (nothing at all if anything is refused).

The top-level ``params``, ``metrics``, ``plots`` and ``artifacts`` of every dvc.yaml go into
pipeline.yaml beside the stages (pipelines.py converts them).

Order of writes, once every check passed and (with ``--data``) every object arrived and matched
its md5 in a private staging folder: the data into the workspace, pipeline.yaml, the data into
the mlops cache with its pointer files (``add``), pipeline.lock, and last the record.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...data.add import add, snapshot_path
from ...errors import FormatError, MlopsError, UsageError
from ...formats import dump_yaml, parse_yaml_positions, read_text
from ...fsio import atomic_write
from ...paths import relpath_problem
from ...repo.repo import Repo
from ..lock import LOCK_FILE, LockedPath, LockEntry, read_lock, write_lock
from ..params import flatten
from ..spec import PIPELINE_FILE, Pipeline, Sections, load_pipeline
from ..state import read_path
from .objects import Fetcher, Wanted, is_md5, open_sources, place, staging_folder, workspace_matches
from .pipelines import Converted, convert, merged_sections, prefix_for
from .problems import Located, Problems
from .project import DATA_SUFFIX, LOCK_NAME, Project, scan
from .record import read_record, record_path, render_record

HEADER = "# mlops pipeline, imported from dvc.yaml by 'mlops import dvc'.\n"
DATA_KEYS = {"md5", "size", "nfiles", "path", "hash", "cache", "persist", "desc", "type", "labels", "meta", "remote"}
DATA_KEYS |= {"push", "metric", "isexec", "files"}
DATA_FILE_KEYS = {"outs", "md5", "wdir", "frozen", "meta", "desc"}


@dataclass(frozen=True)
class ImportResult:
    stages: int
    lock_stages: int
    pipeline_written: bool
    tracked: tuple[str, ...] = ()  # paths that now have a pointer file
    placed: tuple[str, ...] = ()  # paths brought from DVC's cache or remote
    missing: tuple[str, ...] = ()  # DVC-tracked paths still to come (run with --data)
    files: int = 0
    bytes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def import_dvc(repo: Repo, *, data: bool = False, remote: str | None = None, force: bool = False) -> ImportResult:
    problems = Problems()
    project = scan(repo.root, problems)
    if not project.pipelines and not project.data_files:
        raise UsageError("no dvc.yaml or .dvc file in the repository", hint="run this in a DVC project")
    converted = convert(repo.root, project.pipelines, problems)
    sections = merged_sections(converted, problems)
    wanted = _data_files(repo.root, project, problems)
    problems.raise_if_any()

    text, pipeline = _pipeline_text(repo, converted, sections, [w.path for w in wanted], problems)
    locks = _read_locks(repo.root, project, converted, pipeline, problems) if pipeline else {}
    outs = _lock_outputs(pipeline, locks) if pipeline else []
    target = repo.root / PIPELINE_FILE
    # compared as bytes: a pipeline.yaml that is not UTF-8 simply differs from the import
    pipeline_changes = text is not None and (not target.is_file() or target.read_bytes() != text.encode())
    if pipeline_changes and target.exists() and not force:
        raise UsageError(
            f"{PIPELINE_FILE} already exists (and differs from the import)", hint="use --force to overwrite it"
        )
    absent: list[Wanted] = []
    for item in wanted:
        path = repo.root / item.path
        if not path.exists() and not path.is_symlink():
            absent.append(item)
        elif not workspace_matches(path, item):
            problems.add(
                item.where,
                f"{item.path} in the workspace is not what the .dvc file records (md5 {item.md5}); "
                "restore it ('dvc checkout') or record it ('dvc add') first",
            )
    problems.raise_if_any()
    absent_outs = [o for o in outs if not (repo.root / o.path).exists()]
    notes: list[str] = []
    placed: list[str] = []
    fetched_files = fetched_bytes = 0
    if data and (absent or absent_outs):
        with staging_folder(repo.tmp) as staging:
            staged: list[tuple[Wanted, Path]] = []
            for group in _by_source(repo, project, remote, absent + absent_outs):
                fetcher = Fetcher(group[0], staging)
                for index, item in enumerate(group[1]):
                    got = fetcher.fetch(item, f"{id(fetcher)}-{index}")
                    if got is not None:
                        staged.append((item, got))
                strict = [(i, m) for i, m in fetcher.missing if i.kind == "data"]
                for item, _ in fetcher.missing:
                    if item.kind == "out":
                        notes.append(f"{item.path} ({item.where}) is in no DVC cache or remote: its stage will run")
                fetcher.missing = strict
                fetcher.raise_missing()
                fetched_files += fetcher.files
                fetched_bytes += fetcher.bytes
            # every object arrived and matched: from here on, write
            for item, got in staged:
                place(repo.root, got, item.path, where=item.where)
                placed.append(item.path)
    if pipeline_changes:
        atomic_write(target, text)
    present = [i.path for i in wanted if (repo.root / i.path).exists()]
    tracked: list[str] = []
    if present:
        result = add(repo, present)
        tracked = [t.path for t in result.targets]
    lock_stages = _import_locks(repo, pipeline, locks, notes, force=force) if pipeline else 0
    still_missing = [i.path for i in absent if i.path not in placed]
    _write_record(repo, project, converted, wanted, outs, placed)
    for path in still_missing:
        notes.append(f"{path}: not in the workspace; run 'mlops import dvc --data' to bring it")
    return ImportResult(
        stages=len(pipeline.stages) if pipeline else 0,
        lock_stages=lock_stages,
        pipeline_written=pipeline_changes,
        tracked=tuple(tracked),
        placed=tuple(placed),
        missing=tuple(still_missing),
        files=fetched_files,
        bytes=fetched_bytes,
        notes=tuple(notes),
    )


# --- .dvc files ----------------------------------------------------------------------------


def _data_files(repo_root: Path, project: Project, problems: Problems) -> list[Wanted]:
    """The data each .dvc file tracks (outputs with ``cache: false`` live in git: nothing to move)."""
    wanted: list[Wanted] = []
    for rel in project.data_files:
        try:
            data, positions = parse_yaml_positions((repo_root / rel).read_text(encoding="utf-8"), rel)
        except MlopsError as exc:
            problems.add_line(exc.message)
            continue
        except UnicodeDecodeError:
            problems.add(f"{rel}:1", "not UTF-8 text")
            continue
        doc = Located(rel, data, positions)
        if not isinstance(data, dict):
            problems.add(doc.where(), "a .dvc file is a mapping with 'outs'")
            continue
        if "deps" in data or "cmd" in data:
            reason = "made by 'dvc import'/'dvc import-url' (data from another repository or a URL)"
            if "cmd" in data:
                reason = "a DVC 1 stage file (cmd in a .dvc file)"
            problems.add(
                doc.where("deps" if "deps" in data else "cmd", key=True),
                f"{reason}: mlops tracks data of this repository",
            )
            continue
        for key in data:
            if key not in DATA_FILE_KEYS:
                problems.add(doc.where(key, key=True), f"'{key}' has no counterpart in mlops")
        folder = posixpath.dirname(rel)
        wdir = data.get("wdir") or "."
        for index, out in enumerate(data.get("outs") or []):
            at = ("outs", index)
            if not isinstance(out, dict) or not isinstance(out.get("path"), str):
                problems.add(doc.where(*at), "each output needs a 'path'")
                continue
            for key in out:
                if key not in DATA_KEYS:
                    problems.add(
                        doc.where(*at, key, key=True),
                        f"'{key}' has no counterpart in mlops (only md5-addressed data is)",
                    )
            if out.get("cache") is False:
                continue
            path = posixpath.normpath(posixpath.join(folder, str(wdir), out["path"]))
            problem = "an absolute path" if out["path"].startswith("/") else None
            if problem is None and (path == ".." or path.startswith("../")):
                problem = "outside the repository"
            problem = problem or relpath_problem(path)
            if problem:
                problems.add(doc.where(*at, "path"), f"'{out['path']}': {problem}")
                continue
            if out.get("hash") not in (None, "md5") or not is_md5(out.get("md5")):
                problems.add(doc.where(*at), f"{path}: no md5 (mlops carries DVC's md5-addressed data only)")
                continue
            wanted.append(_wanted(path, out, doc.where(*at), "data"))
    return wanted


def _wanted(path: str, entry: dict[str, Any], where: str, kind: str) -> Wanted:
    size = entry.get("size")
    nfiles = entry.get("nfiles")
    return Wanted(
        path=path,
        md5=entry["md5"],
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        nfiles=nfiles if isinstance(nfiles, int) and not isinstance(nfiles, bool) else None,
        legacy=entry.get("hash") != "md5",
        where=where,
        kind=kind,
    )


# --- dvc.yaml -> pipeline.yaml ---------------------------------------------------------------


def _pipeline_text(
    repo: Repo, converted: Converted, sections: Sections, coming: list[str], problems: Problems
) -> tuple[str | None, Pipeline | None]:
    """pipeline.yaml's text, validated by mlops' own loader before anything is written."""
    if not converted.stages and not sections:
        return None, None
    doc: dict[str, Any] = {}
    if converted.vars is not None:
        doc["vars"] = converted.vars
    doc.update(sections.to_doc())
    doc["stages"] = converted.stages
    text = HEADER + dump_yaml(doc)
    draft = repo.tmp / "import-pipeline.yaml"
    draft.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(draft, text)
    try:
        pipeline = load_pipeline(repo.root, draft)
        from ..graph import build_graph

        build_graph(pipeline, repo.root, coming=coming)
    except FormatError as exc:
        problems.add(*_locate(text, exc.message, converted))
        problems.raise_if_any()
        raise
    finally:
        draft.unlink(missing_ok=True)
    return text, pipeline


def _locate(text: str, message: str, converted: Converted) -> tuple[str, str]:
    """Point an error mlops' loader found in the generated pipeline back at the dvc.yaml stage."""
    match = re.match(r"^\S*import-pipeline\.yaml:(\d+)(?::\d+)?: (.*)$", message)
    if not match:
        return "dvc.yaml", message
    line, reason = int(match.group(1)), match.group(2)
    owner = None
    for number, row in enumerate(text.splitlines(), start=1):
        if number > line:
            break
        found = re.match(r"^  (\S[^:]*):\s*$", row)
        if found and found.group(1).strip("'\"") in converted.origin:
            owner = found.group(1).strip("'\"")
    if owner is None:
        return "dvc.yaml", reason
    located, dvc_name, _ = converted.origin[owner]
    return located.where("stages", dvc_name), reason


# --- dvc.lock -> pipeline.lock ----------------------------------------------------------------


def _read_locks(
    repo_root: Path, project: Project, converted: Converted, pipeline: Pipeline, problems: Problems
) -> dict[str, tuple[dict[str, Any], str]]:
    """mlops stage name -> (its dvc.lock entry, file:line), for stages the pipeline has."""
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for rel in project.pipelines:
        lock_rel = posixpath.join(posixpath.dirname(rel), LOCK_NAME) if posixpath.dirname(rel) else LOCK_NAME
        if not (repo_root / lock_rel).is_file():
            continue
        try:
            # read_text: bytes that are not UTF-8 or a folder in its place are one problem naming the file
            data, positions = parse_yaml_positions(read_text(repo_root / lock_rel, source=lock_rel), lock_rel)
        except MlopsError as exc:
            problems.add(lock_rel, exc.message)
            continue
        doc = Located(lock_rel, data or {}, positions)
        stages = (data or {}).get("stages") if isinstance(data, dict) else None
        if not isinstance(stages, dict):
            continue
        prefix = prefix_for(posixpath.dirname(rel))
        for name, body in stages.items():
            mlops_name = prefix + str(name)
            if mlops_name in pipeline.stages and isinstance(body, dict):
                found[mlops_name] = (body, doc.where("stages", name))
    return found


def _in_wdir(wdir: str, path: str) -> str:
    """dvc.lock writes paths relative to the stage's wdir."""
    return posixpath.normpath(posixpath.join(wdir, path)) if wdir else posixpath.normpath(path)


def _lock_outputs(pipeline: Pipeline, locks: dict[str, tuple[dict[str, Any], str]]) -> list[Wanted]:
    """Cached stage outputs dvc.lock records: DVC keeps them in its cache and remote too."""
    outs: list[Wanted] = []
    seen: set[str] = set()
    for name, (body, where) in locks.items():
        stage = pipeline.stages[name]
        cached = {o.path for o in stage.outs if o.cache}
        for item in body.get("outs") or []:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not is_md5(item.get("md5")):
                continue
            path = _in_wdir(stage.wdir, item["path"])
            if path in cached and path not in seen and relpath_problem(path) is None:
                seen.add(path)
                outs.append(_wanted(path, item, where, "out"))
    return outs


def _matches(repo: Repo, wdir: str, item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not is_md5(item.get("md5")):
        return False
    path = _in_wdir(wdir, item["path"])
    if relpath_problem(path):
        return False
    return workspace_matches(repo.root / path, _wanted(path, item, "", "out"))


def _flat(values: Any) -> dict[str, Any]:
    """dvc.lock keeps a section as a nested mapping; pipeline.lock compares key by key."""
    out: dict[str, Any] = {}
    for key, value in (values or {}).items():
        out.update(flatten(str(key), value))
    return out


def _import_locks(
    repo: Repo, pipeline: Pipeline, locks: dict[str, tuple[dict[str, Any], str]], notes: list[str], *, force: bool
) -> int:
    """Stages whose files still match dvc.lock (md5 by md5) go into pipeline.lock with mlops' hashes."""
    if not locks:
        return 0
    existing = {} if force else read_lock(repo.root)
    entries: dict[str, LockEntry] = dict(existing)
    added = 0
    for name, (body, _where) in locks.items():
        if name in existing:
            continue
        stage = pipeline.stages[name]
        deps, outs = body.get("deps") or [], body.get("outs") or []
        if not all(_matches(repo, stage.wdir, item) for item in [*deps, *outs]):
            notes.append(f"stage '{name}': the workspace does not match dvc.lock; it will run")
            continue
        cached = {o.path for o in stage.outs if o.cache}
        locked_outs = []
        for item in outs:
            rel = _in_wdir(stage.wdir, item["path"])
            if rel in cached:
                pointer = snapshot_path(repo, rel).pointer
                locked_outs.append(LockedPath(pointer.target, pointer.hash, pointer.kind, pointer.size, pointer.files))
            else:
                locked_outs.append(read_path(repo, rel))
        cmd = body.get("cmd", "")
        entries[name] = LockEntry(
            cmd=" && ".join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd),
            deps=tuple(read_path(repo, _in_wdir(stage.wdir, item["path"])) for item in deps),
            params={_in_wdir(stage.wdir, str(f)): _flat(v) for f, v in (body.get("params") or {}).items()},
            outs=tuple(locked_outs),
        )
        added += 1
    if added:
        with repo.lock("pipeline-lock", what=LOCK_FILE):
            write_lock(repo.root, entries, list(pipeline.stages))
    return added


# --- where objects come from -----------------------------------------------------------------


def _by_source(
    repo: Repo, project: Project, remote: str | None, items: list[Wanted]
) -> list[tuple[list, list[Wanted]]]:
    """Items grouped by the DVC root they belong to, each group with its cache and remote."""
    groups: dict[str, list[Wanted]] = {}
    for item in items:
        groups.setdefault(project.root_of(item.path).path, []).append(item)
    out = []
    for root_path, group in groups.items():
        root = next(r for r in project.roots if r.path == root_path)
        name = remote or root.default_remote
        chosen = None
        if name is not None:
            if name not in root.remotes:
                known = ", ".join(sorted(root.remotes)) or "none"
                where = root.default_where if remote is None else f"{root.dot_dvc}/config"
                raise UsageError(f"{where}: no DVC remote named '{name}' (remotes: {known})")
            chosen = root.remotes[name]
        out.append((open_sources(repo.root, root.cache_dir, chosen), group))
    return out


# --- the record --------------------------------------------------------------------------------


def _write_record(
    repo: Repo, project: Project, converted: Converted, wanted: list[Wanted], outs: list[Wanted], placed: list[str]
) -> None:
    old = read_record(repo) or {}
    carried_before = {e.get("path") for e in old.get("data") or [] if isinstance(e, dict) and e.get("carried")}
    data = []
    for item in [*wanted, *outs]:
        entry: dict[str, Any] = {
            "path": item.path,
            "kind": item.kind,
            "md5": item.md5,
            "where": item.where,
        }
        if item.size is not None:
            entry["size"] = item.size
        if item.nfiles is not None:
            entry["nfiles"] = item.nfiles
        pointer = repo.root / (item.path + ".mlops")
        here = item.kind == "out" and (repo.root / item.path).exists()
        if item.path in placed or item.path in carried_before or pointer.is_file() or here:
            entry["carried"] = True
        data.append(entry)
    doc = {
        "dvc_roots": [r.path for r in project.roots],
        "pipelines": project.pipelines,
        "data_files": project.data_files,
        "data": data,
        "sections": converted.sections,
        "output_options": converted.output_options,
    }
    if render_record(doc) != (record_path(repo).read_text(encoding="utf-8") if record_path(repo).is_file() else ""):
        atomic_write(record_path(repo), render_record(doc))


__all__ = ["DATA_SUFFIX", "ImportResult", "import_dvc"]
