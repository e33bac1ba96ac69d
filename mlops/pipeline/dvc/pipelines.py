"""Every dvc.yaml -> the stages of one pipeline.yaml, and the sections pipeline.yaml has no place for.

The stage vocabulary is DVC's, so a stage carries over as it is. A dvc.yaml below the top has
its own folder as base: its stages get that folder as ``wdir`` (paths and the default
params.yaml are then read from there, as DVC does), a name prefixed with the folder
(``sub/dir/dvc.yaml:train`` -> ``sub.dir.train``), and the folder's params.yaml and ``vars`` as
stage ``vars``. A ``foreach``/``matrix`` of such a file that names ``${...}`` is resolved here,
against that folder's params, since pipeline.yaml's own context is the top folder's.

The top-level ``params``, ``metrics``, ``plots`` and ``artifacts`` sections become pipeline.yaml's
own (read by spec.py's ``read_sections``, so the same rules hold; paths of a nested file rebased
to the repository root); an output's plot options (x, y, template, ...) become a top-level plot
of that file, as DVC merges them. Output options that describe an artifact (type, labels,
meta) and, for the record, the sections as written are kept in ``.mlops/dvc-import.json``.
Everything else that mlops could not carry is refused with file:line (a plot template mlops
does not draw, an unknown option, two files declaring one artifact name, ...).
"""

from __future__ import annotations

import copy
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import FormatError, MlopsError
from ...formats import parse_yaml_positions
from ..params import MISSING, ParamFiles, lookup
from ..spec import INTERPOLATION, OUT_FLAGS, STAGE_KEYS, Plot, Sections, plot_entry, read_sections, section_reader
from .problems import Located, Problems

TOP_SECTIONS = ("params", "metrics", "plots", "artifacts")
PLOT_OPTIONS = {"x", "y", "x_label", "y_label", "title", "template", "header"}  # spec.PLOT_OPTIONS
META_OPTIONS = {"type", "labels", "meta"}
DVC_STAGE_KEYS = STAGE_KEYS - {"env", "resources", "image"}  # mlops' own
TEMPLATE_KEYS = {"foreach", "do", "matrix"}


@dataclass
class Converted:
    vars: list[Any] | None = None
    stages: dict[str, Any] = field(default_factory=dict)  # mlops name -> definition, in file order
    origin: dict[str, tuple[Located, str, str]] = field(default_factory=dict)  # mlops name -> (file, dvc name, base)
    sections: list[dict[str, Any]] = field(default_factory=list)  # as written, for the record
    output_options: list[dict[str, Any]] = field(default_factory=list)
    top: list[Sections] = field(default_factory=list)  # each dvc.yaml's sections, repo-relative
    output_plots: list[Plot] = field(default_factory=list)  # outputs' plot options as top-level plots

    def dvc_name_map(self) -> dict[tuple[str, str], str]:
        """(dvc.yaml, DVC's stage name) -> mlops stage name; foreach/matrix groups map by prefix."""
        return {(located.source, dvc_name): name for name, (located, dvc_name, _) in self.origin.items()}


def prefix_for(base: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", base.replace("/", ".")) + "." if base else ""


def convert(repo_root: Path, pipelines: list[str], problems: Problems) -> Converted:
    out = Converted()
    for rel in pipelines:
        try:
            data, positions = parse_yaml_positions((repo_root / rel).read_text(encoding="utf-8"), rel)
        except MlopsError as exc:
            problems.add_line(exc.message)  # already file:line:col
            continue
        except UnicodeDecodeError:
            problems.add(f"{rel}:1", "not UTF-8 text")
            continue
        doc = Located(rel, data or {}, positions)
        if not isinstance(doc.data, dict):
            problems.add(doc.where(), "a dvc.yaml is a mapping (stages, vars, params, metrics, plots, artifacts)")
            continue
        _convert_file(repo_root, doc, posixpath.dirname(rel), out, problems)
    return out


def _convert_file(repo_root: Path, doc: Located, base: str, out: Converted, problems: Problems) -> None:
    section: dict[str, Any] = {}
    for key, value in doc.data.items():
        if key == "stages":
            continue
        if key == "vars":
            if base:
                continue  # carried into each stage below
            out.vars = value
        elif key in TOP_SECTIONS:
            section[key] = value
        else:
            problems.add(doc.where(key, key=True), f"top-level '{key}' has no counterpart in mlops")
    reader = section_reader(repo_root, doc.source, doc.positions)
    if section:
        out.sections.append({"file": doc.source, "base": base, **copy.deepcopy(section)})
        try:
            out.top.append(read_sections(reader, section, base=base))
        except FormatError as exc:
            problems.add_line(exc.message)  # file:line:col and the reason
    stages = doc.data.get("stages") or {}
    if not isinstance(stages, dict):
        problems.add(doc.where("stages"), "'stages' must map stage names to definitions")
        return
    nested_context = _nested_context(repo_root, doc, base, problems) if base else None
    for name, body in stages.items():
        at = ("stages", name)
        if not isinstance(body, dict):
            problems.add(doc.where(*at), f"stage '{name}' must be a mapping")
            continue
        body = copy.deepcopy(body)
        mlops_name = prefix_for(base) + str(name)
        if mlops_name in out.stages:
            problems.add(doc.where(*at), f"stage '{name}' becomes '{mlops_name}', which another dvc.yaml also makes")
            continue
        definition, def_at = (body["do"], (*at, "do")) if isinstance(body.get("do"), dict) else (body, at)
        for key in list(body):
            if key not in DVC_STAGE_KEYS | TEMPLATE_KEYS:
                problems.add(doc.where(*at, key, key=True), f"stage '{name}': '{key}' has no counterpart in mlops")
        if definition is not body:
            for key in list(definition):
                if key not in DVC_STAGE_KEYS:
                    problems.add(
                        doc.where(*def_at, key, key=True), f"stage '{name}': '{key}' has no counterpart in mlops"
                    )
        for key in ("deps", "outs", "metrics", "plots"):
            _check_paths(doc, (*def_at, key), definition.get(key), base, str(definition.get("wdir") or "."), problems)
        stage_dir = posixpath.normpath(posixpath.join(base, str(definition.get("wdir") or ".")))
        for key in ("outs", "metrics", "plots"):
            carried = _split_output_options(doc, (*def_at, key), definition.get(key), mlops_name, base, out, problems)
            _output_plots(reader, (*def_at, key), carried, stage_dir, out, problems)
        if base:
            own_params = (repo_root / base / "params.yaml").is_file()
            _rebase(doc, body, definition, at, base, nested_context or {}, problems, own_params=own_params)
        out.stages[mlops_name] = body
        out.origin[mlops_name] = (doc, str(name), base)


def _nested_context(repo_root: Path, doc: Located, base: str, problems: Problems) -> dict[str, Any]:
    """What ${...} names in a dvc.yaml below the top: its folder's params.yaml, then its vars."""
    params = ParamFiles(repo_root)
    context: dict[str, Any] = {}
    try:
        loaded = params.load(posixpath.join(base, "params.yaml"))
        if isinstance(loaded, dict):
            context.update(loaded)
        for index, item in enumerate(doc.data.get("vars") or []):
            if isinstance(item, dict):
                context.update(item)
            elif isinstance(item, str):
                file, _, keys = item.partition(":")
                values = params.load(posixpath.normpath(posixpath.join(base, file)))
                if values is MISSING:
                    problems.add(doc.where("vars", index), f"vars file '{file}' does not exist")
                elif keys:
                    context.update({k.strip(): lookup(values, k.strip()) for k in keys.split(",")})
                elif isinstance(values, dict):
                    context.update(values)
    except MlopsError as exc:
        problems.add(doc.where("vars"), exc.message)
    return context


def _rebase(
    doc: Located,
    body: dict[str, Any],
    definition: dict[str, Any],
    at: tuple[Any, ...],
    base: str,
    context: dict[str, Any],
    problems: Problems,
    *,
    own_params: bool,
) -> None:
    """A stage of a dvc.yaml below the top: its folder becomes part of wdir, its params and vars stage vars."""
    wdir = str(definition.get("wdir") or ".")
    definition["wdir"] = posixpath.normpath(posixpath.join(base, wdir))
    stage_vars: list[Any] = []
    for item in doc.data.get("vars") or []:
        stage_vars.append(_rebase_var(item, base))
    for item in definition.get("vars") or []:
        stage_vars.append(_rebase_var(item, definition["wdir"]))
    if own_params:
        stage_vars.insert(0, posixpath.join(base, "params.yaml"))  # DVC loads the folder's params.yaml first
    if stage_vars:
        definition["vars"] = stage_vars
    for key in ("foreach", "matrix"):
        if key not in body:
            continue
        value = body[key]
        if key == "matrix" and isinstance(value, dict):
            body[key] = {axis: _resolve(doc, (*at, key, axis), v, context, problems) for axis, v in value.items()}
        else:
            body[key] = _resolve(doc, (*at, key), value, context, problems)


def _rebase_var(item: Any, base: str) -> Any:
    if isinstance(item, str):
        file, sep, keys = item.partition(":")
        return posixpath.normpath(posixpath.join(base, file)) + sep + keys
    return item


def _resolve(doc: Located, at: tuple[Any, ...], value: Any, context: dict[str, Any], problems: Problems) -> Any:
    if isinstance(value, str):
        match = INTERPOLATION.fullmatch(value.strip())
        if match:
            found = lookup(context, re.sub(r"\[\s*([^\]]*?)\s*\]", r".\1", match.group(1)))
            if found is MISSING:
                problems.add(doc.where(*at), f"unknown ${{{match.group(1)}}} (not in this folder's params or vars)")
                return value
            return found
    return value


def _check_paths(doc: Located, at: tuple[Any, ...], entries: Any, base: str, wdir: str, problems: Problems) -> None:
    """Dependencies and outputs must be files of this repository: no URLs, nothing outside it."""
    if not isinstance(entries, list):
        return
    for index, entry in enumerate(entries):
        raw = next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else entry
        if not isinstance(raw, str):
            continue
        if "://" in raw or raw.startswith("remote:"):
            problems.add(
                doc.where(*at, index), f"'{raw}' is outside the repository (mlops tracks files of the repository)"
            )
        elif raw.startswith("/"):
            problems.add(doc.where(*at, index), f"'{raw}' is an absolute path")
        elif "${" not in raw:
            joined = posixpath.normpath(posixpath.join(base, wdir, raw))
            if joined == ".." or joined.startswith("../"):
                problems.add(doc.where(*at, index), f"'{raw}' is outside the repository")


def _output_plots(
    reader: Any,
    at: tuple[Any, ...],
    carried: list[tuple[int, Any, dict[str, Any]]],
    stage_dir: str,
    out: Converted,
    problems: Problems,
) -> None:
    """An output's plot options (``- plots/loss.csv: {x: step, y: loss}``) become a top-level plot of
    that file, checked by the same rules; a path naming ``${...}`` keeps them in the record only."""
    for index, path, carried_options in carried:
        options = {k: v for k, v in carried_options.items() if k in PLOT_OPTIONS}
        if not options or not isinstance(path, str) or "${" in path:
            continue
        try:
            plot = plot_entry(reader, {path: options}, (*at, index), "" if stage_dir == "." else stage_dir)
        except FormatError as exc:
            problems.add_line(exc.message)
            continue
        out.output_plots.append(plot)


def merged_sections(converted: Converted, problems: Problems) -> Sections:
    """Every dvc.yaml's sections as pipeline.yaml's one set: files once each, a plot or an artifact
    name declared by two files (differently) refused with both places."""
    metrics: dict[str, None] = {}
    params: dict[str, None] = {}
    plots: dict[str, Plot] = {}
    artifacts: dict[str, Any] = {}
    for sections in converted.top:
        metrics.update(dict.fromkeys(sections.metrics))
        params.update(dict.fromkeys(sections.params))
        for plot in sections.plots:
            if plot.id in plots and plots[plot.id] != plot:
                problems.add(plot.where, f"plot '{plot.id}' is also declared at {plots[plot.id].where}, differently")
            plots.setdefault(plot.id, plot)
        for name, artifact in sections.artifacts.items():
            if name in artifacts:
                problems.add(artifact.where, f"artifact '{name}' is also declared at {artifacts[name].where}")
            artifacts.setdefault(name, artifact)
    for plot in converted.output_plots:
        plots.setdefault(plot.id, plot)  # a top-level definition of the same file wins, as in DVC
    return Sections(tuple(metrics), tuple(params), tuple(plots.values()), artifacts)


def _split_output_options(
    doc: Located,
    at: tuple[Any, ...],
    entries: Any,
    stage: str,
    base: str,
    out: Converted,
    problems: Problems,
) -> list[tuple[int, Any, dict[str, Any]]]:
    """Keep the options mlops runs with; carry plot and artifact descriptions; refuse the rest.
    Returns (index, path, carried options) of each output that had some."""
    found: list[tuple[int, Any, dict[str, Any]]] = []
    if not isinstance(entries, list):
        return found
    for index, entry in enumerate(entries):
        if not (isinstance(entry, dict) and len(entry) == 1):
            continue
        ((path, options),) = entry.items()
        if not isinstance(options, dict):
            continue
        carried = {}
        for option in list(options):
            if option in OUT_FLAGS:
                continue
            if option in PLOT_OPTIONS | META_OPTIONS:
                carried[option] = options.pop(option)
            else:
                problems.add(
                    doc.where(*at, index, path, option), f"output option '{option}' has no counterpart in mlops"
                )
        if carried:
            out.output_options.append({"stage": stage, "path": path, "base": base, "options": carried})
            found.append((index, path, carried))
        if not options:
            entries[index] = path
    return found
