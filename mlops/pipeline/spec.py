"""`pipeline.yaml`: parse, expand foreach/matrix, interpolate ${...}, validate.

Every problem is reported with file:line:col before anything runs. The vocabulary is
DVC's: cmd (string or list), deps, outs, params, metrics, plots, frozen, always_changed,
persist, cache, foreach/do, matrix, vars, wdir, desc, meta; plus ``env: [NAME, ...]``,
which makes environment variables dependencies of a stage (their values read from the
environment of the machine that runs it), or ``env: {NAME: value}``, whose values are declared
here, set in the command's environment, and enter the stage's key (a null value: read from the
environment); ``resources: {cpus, gpus, memory}``, what an engine reserves for the stage (Ray
task options, Kubernetes requests); and ``image:``, the container image an engine runs it in
(its ``@sha256:`` digest, when given, enters the stage's key). Beside ``stages``, DVC's top-level
sections: ``metrics`` (files ``mlops metrics`` reads), ``params`` (a list: files ``mlops params
diff`` compares; a string still names the default parameter file), ``plots`` (what ``mlops
plots`` draws) and ``artifacts`` (name -> path, type, desc, labels, meta: what ``mlops register
NAME`` registers).

pipeline.yaml comes through git from other people, and a stage deletes its outputs before it
runs: every path it names (deps, outs, metrics, plots, params and vars files, wdir) goes
through the one containment rule (``paths.relpath_problem``: inside the repository, nothing
in or replacing .git/ or .mlops/), and no output may be, or contain, pipeline.yaml,
pipeline.lock, a parameter file the pipeline reads, or a ``*.mlops`` pointer file.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..formats import Position, check_format, display_path, parse_yaml_positions, read_text
from ..paths import model_name_problem, relpath_problem
from .params import MISSING, ParamFiles, flatten, lookup

PIPELINE_FILE = "pipeline.yaml"
LOCK_FILE = "pipeline.lock"  # lock.py's name for it (lock.py stands above this module)
POINTER_SUFFIX = ".mlops"
PIPELINE_FORMAT = 1
DEFAULT_PARAMS = "params.yaml"
TOP_KEYS = {"format", "params", "vars", "stages", "metrics", "plots", "artifacts"}
SECTION_KEYS = ("params", "metrics", "plots", "artifacts")  # DVC's top-level sections
PLOT_OPTIONS = {"x", "y", "template", "title", "x_label", "y_label", "header"}
PLOT_TEMPLATES = ("linear", "simple", "scatter", "smooth")  # DVC's templates `mlops plots` draws
ARTIFACT_KEYS = {"path", "type", "desc", "labels", "meta"}
STAGE_KEYS = {
    "cmd",
    "deps",
    "outs",
    "params",
    "metrics",
    "plots",
    "frozen",
    "always_changed",
    "wdir",
    "desc",
    "meta",
    "env",
    "vars",
    "resources",
    "image",
}
RESOURCE_KEYS = ("cpus", "gpus", "memory")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ENV_VALUE = 32 << 10  # a declared value is configuration, not data
# memory: bytes, or a number with a unit (decimal KB/MB/GB/TB, binary KiB/MiB/GiB/TiB)
MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
MEMORY_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
MEMORY_UNITS.update({"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40})
# an OCI image reference: [registry[:port]/]name[:tag][@sha256:<64 hex>]
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._\-/:]*(@sha256:[0-9a-f]{64})?$")
IMAGE_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")
TEMPLATE_KEYS = {"foreach", "matrix", "do"}
OUT_FLAGS = {"cache", "persist", "desc", "remote", "push"}
INTERPOLATION = re.compile(r"\$\{\s*([^}]*?)\s*\}")
INDEX = re.compile(r"\[\s*([^\]]*?)\s*\]")  # ${a.b[1].c}: an index is one more dotted part
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@\-]*$")


@dataclass(frozen=True)
class Out:
    path: str  # repo-relative posix path, no trailing slash
    kind: str = "out"  # out | metric | plot
    cache: bool = True
    persist: bool = False
    where: str = field(default="", compare=False)  # file:line:col of its entry in pipeline.yaml


@dataclass(frozen=True)
class ParamRef:
    file: str  # repo-relative
    key: str  # dotted; "" for the whole file


@dataclass(frozen=True)
class Resources:
    """What an engine reserves for a stage: CPUs and GPUs (fractions allowed), memory in bytes."""

    cpus: float | None = None
    gpus: float | None = None
    memory: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.cpus, self.gpus, self.memory))

    def to_dict(self) -> dict[str, float | int]:
        return {k: v for k in RESOURCE_KEYS if (v := getattr(self, k)) is not None}


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: tuple[str, ...]
    wdir: str  # repo-relative ("" = root): the command runs there
    deps: tuple[str, ...]
    params: tuple[ParamRef, ...]
    outs: tuple[Out, ...]
    env: tuple[str, ...] = ()
    frozen: bool = False
    always_changed: bool = False
    desc: str = ""
    meta: Any = None
    where: str = ""  # file:line:col of the stage's definition
    resources: Resources = field(default_factory=Resources)
    image: str = ""  # a container image reference, as written
    # env: values declared in pipeline.yaml (their names are in ``env`` too); the rest of ``env``
    # is read from the environment of the machine that runs the stage
    env_values: dict[str, str] = field(default_factory=dict)

    @property
    def image_digest(self) -> str:
        """``sha256:<hex>`` when ``image`` pins a digest, else "" (a tag alone never enters the key)."""
        match = IMAGE_DIGEST.search(self.image)
        return match.group(1) if match else ""

    @property
    def cmd_text(self) -> str:
        return " && ".join(self.cmd)

    @property
    def cached_outs(self) -> tuple[Out, ...]:
        return tuple(o for o in self.outs if o.cache)


@dataclass(frozen=True)
class PlotSource:
    file: str  # repo-relative: a data file (CSV, TSV, JSON, YAML), an image, or a folder of them
    x: str = ""  # the column on x; "" = the row's position (DVC's ``step``)
    y: tuple[str, ...] = ()  # the columns drawn; () = the last column


@dataclass(frozen=True)
class Plot:
    """One entry of top-level ``plots:``: a file (or folder) with options, or a named definition
    whose ``y`` maps files to columns (several files on one chart)."""

    id: str  # the file or folder, or the definition's name
    sources: tuple[PlotSource, ...]
    template: str = ""  # "" = linear
    title: str = ""
    x_label: str = ""
    y_label: str = ""
    header: bool = True  # CSV/TSV: the first row names the columns
    named: bool = False
    where: str = field(default="", compare=False)

    def to_doc(self) -> Any:
        """The entry as pipeline.yaml writes it."""
        options: dict[str, Any] = {}
        if self.named:
            xs = {s.file: s.x for s in self.sources if s.x}
            if xs and len(xs) == len(self.sources) and len(set(xs.values())) == 1:
                options["x"] = next(iter(xs.values()))
            elif xs:
                options["x"] = xs
            options["y"] = {s.file: s.y[0] if len(s.y) == 1 else list(s.y) for s in self.sources}
        else:
            source = self.sources[0]
            if source.x:
                options["x"] = source.x
            if source.y:
                options["y"] = source.y[0] if len(source.y) == 1 else list(source.y)
        for key in ("template", "title", "x_label", "y_label"):
            if getattr(self, key):
                options[key] = getattr(self, key)
        if not self.header:
            options["header"] = False
        return {self.id: options} if options else self.id


@dataclass(frozen=True)
class Artifact:
    """One entry of top-level ``artifacts:``: a model or data set the project declares."""

    name: str  # a model name (the registry's rule)
    path: str  # repo-relative
    type: str = ""
    desc: str = ""
    labels: tuple[str, ...] = ()
    meta: Any = None
    where: str = field(default="", compare=False)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path}
        if self.type:
            doc["type"] = self.type
        if self.desc:
            doc["desc"] = self.desc
        if self.labels:
            doc["labels"] = list(self.labels)
        if self.meta is not None:
            doc["meta"] = self.meta
        return doc


@dataclass(frozen=True)
class Sections:
    """pipeline.yaml's top-level ``metrics``, ``params`` (files), ``plots`` and ``artifacts``."""

    metrics: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    plots: tuple[Plot, ...] = ()
    artifacts: dict[str, Artifact] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.params or self.plots or self.artifacts)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.params:
            doc["params"] = list(self.params)
        if self.metrics:
            doc["metrics"] = list(self.metrics)
        if self.plots:
            doc["plots"] = [p.to_doc() for p in self.plots]
        if self.artifacts:
            doc["artifacts"] = {name: a.to_doc() for name, a in self.artifacts.items()}
        return doc


@dataclass(frozen=True)
class Pipeline:
    path: Path
    stages: dict[str, Stage]  # in file order
    default_params: str
    templates: dict[str, tuple[str, ...]] = field(default_factory=dict)  # foreach/matrix name -> expanded names
    sections: Sections = field(default_factory=Sections)

    def resolve_names(self, names: list[str]) -> list[str]:
        """Stage names a user typed: a plain name, or a foreach/matrix group name."""
        out: list[str] = []
        for name in names:
            if name in self.stages:
                out.append(name)
            elif name in self.templates:
                out.extend(self.templates[name])
            else:
                known = ", ".join(list(self.stages)[:10])
                raise FormatError(f"{display_path(self.path)}: no stage named '{name}'", hint=f"stages: {known}")
        return list(dict.fromkeys(out))


class _Reader:
    """Walks the parsed document with its positions, raising located errors."""

    def __init__(self, root: Path, source: str, positions: dict[tuple[Any, ...], Position]) -> None:
        self.root = root
        self.source = source
        self.positions = positions
        self.read_files: set[str] = set()  # parameter and vars files the pipeline reads: never outputs

    def where(self, path: tuple[Any, ...], *, key: bool = False) -> str:
        probe = path
        if key and path:
            probe = (*path[:-1], "<key>", path[-1])
        while probe and probe not in self.positions:
            probe = probe[:-1]
        line, col = self.positions.get(probe, (1, 1))
        return f"{self.source}:{line}:{col}"

    def fail(self, path: tuple[Any, ...], message: str, *, key: bool = False, hint: str | None = None) -> FormatError:
        return FormatError(f"{self.where(path, key=key)}: {message}", hint=hint, file=self.source)


def load_pipeline(root: Path, path: Path | None = None) -> Pipeline:
    """Parse and validate ``pipeline.yaml`` (file-level checks; graph checks live in graph.py)."""
    path = path or root / PIPELINE_FILE
    source = display_path(path)
    if not path.is_file():
        raise FormatError(
            f"{source}: no pipeline file", hint="write a pipeline.yaml (see docs/pipelines.md), or 'mlops import dvc'"
        )
    data, positions = parse_yaml_positions(read_text(path, source=source, what="pipeline file"), source)
    reader = _Reader(root, source, positions)
    if data is None:
        data = {}
    check_format(data, source, supported=PIPELINE_FORMAT, kind="pipeline")
    for key in data:
        if key not in TOP_KEYS:
            raise reader.fail(
                (key,), f"unknown key '{key}'", key=True, hint=f"top-level keys: {', '.join(sorted(TOP_KEYS))}"
            )
    default_params = data.get("params", DEFAULT_PARAMS)
    if isinstance(default_params, list):  # DVC's top-level params: files to compare, not the default
        default_params = DEFAULT_PARAMS
    if not isinstance(default_params, str):
        raise reader.fail(
            ("params",), "'params' names the default parameter file, or lists parameter files (DVC's form)"
        )
    default_params = _normalize(reader, default_params, "", ("params",))
    reader.read_files.add(default_params)
    params = ParamFiles(root)
    context = _global_context(reader, data.get("vars"), ("vars",), params, default_params)
    stages_doc = data.get("stages")
    if stages_doc is None:
        stages_doc = {}
    if not isinstance(stages_doc, dict):
        raise reader.fail(("stages",), "'stages' must be a mapping of stage name -> definition")
    stages: dict[str, Stage] = {}
    templates: dict[str, tuple[str, ...]] = {}
    for name, body in stages_doc.items():
        at = ("stages", name)
        if not isinstance(name, str) or not NAME.match(name) or "@" in name:
            raise reader.fail(at, f"invalid stage name {name!r} (letters, digits, _ . -)", key=True)
        if not isinstance(body, dict):
            raise reader.fail(at, f"stage '{name}' must be a mapping")
        if "foreach" in body or "matrix" in body:
            expanded = _expand_template(reader, name, body, at, context, params, default_params)
            templates[name] = tuple(s.name for s in expanded)
            for stage in expanded:
                stages[stage.name] = stage
        else:
            if "do" in body:
                raise reader.fail((*at, "do"), "'do' needs 'foreach' or 'matrix' beside it", key=True)
            stages[name] = _stage(reader, name, body, at, context, params, default_params)
    _refuse_protected_outputs(root, path, stages, reader.read_files)
    top = {k: data[k] for k in SECTION_KEYS if k in data and not (k == "params" and isinstance(data[k], str))}
    return Pipeline(path, stages, default_params, templates, read_sections(reader, top))


def section_reader(root: Path, source: str, positions: dict[tuple[Any, ...], Position]) -> _Reader:
    """A reader of another YAML file (a dvc.yaml) whose errors name that file, for ``read_sections``."""
    return _Reader(root, source, positions)


def read_sections(reader: _Reader, data: dict[str, Any], *, base: str = "") -> Sections:
    """Top-level ``params`` (a list), ``metrics``, ``plots`` and ``artifacts``, paths relative to
    ``base`` (a nested dvc.yaml's folder) made repo-relative. These files are only read, never
    written, so they are not protected from outputs: a stage usually writes its metrics and plots."""
    files = {}
    for key in ("params", "metrics"):
        value = data.get(key)
        if value is None:
            files[key] = ()
            continue
        if not isinstance(value, list):
            raise reader.fail((key,), f"'{key}' must be a list of files")
        entries = []
        for index, entry in enumerate(value):
            if not isinstance(entry, str):
                raise reader.fail((key, index), f"each entry of '{key}' is a file (relative to the repository)")
            entries.append(_normalize(reader, entry, base, (key, index)))
        files[key] = tuple(dict.fromkeys(entries))
    plots: list[Plot] = []
    value = data.get("plots")
    if value is not None:
        if not isinstance(value, list):
            raise reader.fail(("plots",), "'plots' must be a list (files, files with options, named plots)")
        for index, entry in enumerate(value):
            plot = plot_entry(reader, entry, ("plots", index), base)
            if any(p.id == plot.id for p in plots):
                raise reader.fail(("plots", index), f"plot '{plot.id}' is declared twice")
            plots.append(plot)
    return Sections(files["metrics"], files["params"], tuple(plots), _artifacts(reader, data.get("artifacts"), base))


def plot_entry(reader: _Reader, entry: Any, at: tuple[Any, ...], base: str) -> Plot:
    """One plot as DVC writes it: ``file``, ``{file: {x, y, template, ...}}``, or ``{name: {y: {file: column}}}``."""
    if isinstance(entry, str):
        return Plot(
            _normalize(reader, entry, base, at),
            (PlotSource(_normalize(reader, entry, base, at)),),
            where=reader.where(at),
        )
    if not isinstance(entry, dict) or len(entry) != 1:
        raise reader.fail(at, "a plot is a file, '- file: {x: ..., y: ...}', or '- name: {y: {file: column}}'")
    ((key, options),) = entry.items()
    options = options or {}
    if not isinstance(key, str) or not isinstance(options, dict):
        raise reader.fail(at, "a plot's options are a mapping: '- file: {x: ..., y: ...}'")
    for option in options:
        if option not in PLOT_OPTIONS:
            raise reader.fail(
                (*at, key, option),
                f"plot '{key}': unknown option '{option}'",
                key=True,
                hint=f"plot options: {', '.join(sorted(PLOT_OPTIONS))}",
            )
    text = {}
    for option in ("template", "title", "x_label", "y_label"):
        value = options.get(option, "")
        if not isinstance(value, str):
            raise reader.fail((*at, key, option), f"plot '{key}': '{option}' must be text")
        text[option] = value
    if text["template"] and text["template"] not in PLOT_TEMPLATES:
        raise reader.fail(
            (*at, key, "template"),
            f"plot '{key}': template '{text['template']}' is not one mlops draws",
            hint=f"templates: {', '.join(PLOT_TEMPLATES)} (a line or scatter chart)",
        )
    header = options.get("header", True)
    if not isinstance(header, bool):
        raise reader.fail((*at, key, "header"), f"plot '{key}': 'header' must be true or false")
    x, y = options.get("x", ""), options.get("y")
    if isinstance(y, dict):  # a named plot: its files are y's keys
        if not y:
            raise reader.fail((*at, key, "y"), f"plot '{key}': 'y' maps no file")
        if not isinstance(x, (str, dict)):
            raise reader.fail((*at, key, "x"), f"plot '{key}': 'x' is a column, or maps files to columns")
        sources = []
        for file, columns in y.items():
            where = (*at, key, "y", file)
            rel = _normalize(reader, str(file), base, where)
            column_x = x.get(file, "") if isinstance(x, dict) else x
            if not isinstance(column_x, str):
                raise reader.fail((*at, key, "x"), f"plot '{key}': x of '{file}' must be a column name")
            sources.append(PlotSource(rel, column_x, _columns(reader, columns, where, key)))
        if isinstance(x, dict):
            for file in x:
                if file not in y:
                    raise reader.fail((*at, key, "x", file), f"plot '{key}': x names '{file}', which y does not")
        if not key.strip() or not key.isprintable():
            raise reader.fail(at, f"invalid plot name {_shown(key)}", key=True)
        return Plot(key, tuple(sources), **text, header=header, named=True, where=reader.where(at))
    if not isinstance(x, str):
        raise reader.fail((*at, key, "x"), f"plot '{key}': 'x' must be a column name (or map files, with 'y' too)")
    rel = _normalize(reader, key, base, at)
    ys = () if y is None else _columns(reader, y, (*at, key, "y"), key)
    return Plot(rel, (PlotSource(rel, x, ys),), **text, header=header, where=reader.where(at))


def _columns(reader: _Reader, value: Any, at: tuple[Any, ...], plot: str) -> tuple[str, ...]:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and value and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return tuple(str(v) for v in value)
    raise reader.fail(at, f"plot '{plot}': 'y' is a column name or a list of them")


def _artifacts(reader: _Reader, value: Any, base: str) -> dict[str, Artifact]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise reader.fail(("artifacts",), "'artifacts' must map names to {path: ..., type: ..., desc: ...}")
    out: dict[str, Artifact] = {}
    for name, body in value.items():
        at = ("artifacts", name)
        problem = model_name_problem(name)
        if problem:
            raise reader.fail(at, f"artifact {_shown(str(name))}: {problem}", key=True)
        if not isinstance(body, dict) or not isinstance(body.get("path"), str):
            raise reader.fail(at, f"artifact '{name}' needs a 'path'")
        for key in body:
            if key not in ARTIFACT_KEYS:
                raise reader.fail(
                    (*at, key),
                    f"artifact '{name}': unknown key '{key}'",
                    key=True,
                    hint=f"artifact keys: {', '.join(sorted(ARTIFACT_KEYS))}",
                )
        for key in ("type", "desc"):
            if not isinstance(body.get(key, ""), str):
                raise reader.fail((*at, key), f"artifact '{name}': '{key}' must be text")
        labels = body.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            raise reader.fail((*at, "labels"), f"artifact '{name}': 'labels' must be a list of words")
        out[name] = Artifact(
            name,
            _normalize(reader, body["path"], base, (*at, "path")),
            body.get("type", ""),
            body.get("desc", ""),
            tuple(labels),
            body.get("meta"),
            where=reader.where(at),
        )
    return out


def _refuse_protected_outputs(root: Path, path: Path, stages: dict[str, Stage], read_files: set[str]) -> None:
    """No output may be (or contain) a file the pipeline itself stands on: a stage deletes its outputs."""
    protected = {LOCK_FILE: "the lock file", PIPELINE_FILE: "the pipeline file"}
    try:
        protected[path.resolve().relative_to(root.resolve()).as_posix()] = "the pipeline file"
    except ValueError:
        pass
    for file in sorted(read_files):
        protected.setdefault(file, "a parameter file the pipeline reads")
    for stage in stages.values():
        for out in stage.outs:
            problem = None
            if out.path.rsplit("/", 1)[-1].endswith(POINTER_SUFFIX):
                problem = "is a pointer file (*.mlops)"
            for file, what in protected.items():
                if out.path == file:
                    problem = f"is {what}"
                elif file.startswith(out.path + "/"):
                    problem = f"contains {file}, {what}"
            if problem:
                raise FormatError(
                    f"{out.where or stage.where}: stage '{stage.name}' output {out.path} {problem}",
                    hint="a stage deletes its outputs before it runs: name only files the stage itself writes",
                    file=display_path(path),
                )


def _global_context(
    reader: _Reader, vars_doc: Any, at: tuple[Any, ...], params: ParamFiles, default_params: str
) -> dict[str, Any]:
    """What ${...} can name: the default params file, then `vars` (mappings or param files)."""
    context: dict[str, Any] = {}
    base = params.load(default_params)
    if isinstance(base, dict):
        context.update(base)
    context.update(_vars(reader, vars_doc, at, params))
    return context


def _vars(reader: _Reader, vars_doc: Any, at: tuple[Any, ...], params: ParamFiles) -> dict[str, Any]:
    if vars_doc is None:
        return {}
    if not isinstance(vars_doc, list):
        raise reader.fail(at, "'vars' must be a list of mappings or parameter file names")
    out: dict[str, Any] = {}
    for index, item in enumerate(vars_doc):
        if isinstance(item, dict):
            out.update(item)
        elif isinstance(item, str):
            file, _, keys = item.partition(":")
            file = _normalize(reader, file, "", (*at, index))
            reader.read_files.add(file)
            loaded = params.load(file)
            if loaded is MISSING:
                raise reader.fail((*at, index), f"vars file '{file}' does not exist")
            if keys:
                for key in keys.split(","):
                    value = lookup(loaded, key.strip())
                    if value is MISSING:
                        raise reader.fail((*at, index), f"'{key.strip()}' not found in {file}")
                    out[key.strip()] = value
            elif isinstance(loaded, dict):
                out.update(loaded)
        else:
            raise reader.fail((*at, index), "each 'vars' entry is a mapping or a file name")
    return out


def _expand_template(
    reader: _Reader,
    name: str,
    body: dict[str, Any],
    at: tuple[Any, ...],
    context: dict[str, Any],
    params: ParamFiles,
    default_params: str,
) -> list[Stage]:
    if "foreach" in body:
        for key in body:
            if key not in ("foreach", "do", "desc", "meta"):
                raise reader.fail(
                    (*at, key), f"unknown key '{key}' beside foreach (stage keys go under 'do')", key=True
                )
    if "foreach" in body and "matrix" in body:
        raise reader.fail(at, f"stage '{name}' has both foreach and matrix; use one")
    if "matrix" in body:
        matrix = body["matrix"]
        if not isinstance(matrix, dict) or not matrix:
            raise reader.fail((*at, "matrix"), "'matrix' must map each name to a list of values")
        axes = []
        for axis, values in matrix.items():
            values = _interpolate_value(reader, values, (*at, "matrix", axis), context)
            if not isinstance(values, list) or not values:
                raise reader.fail((*at, "matrix", axis), f"matrix '{axis}' must be a non-empty list")
            axes.append([(axis, v) for v in values])
        items = []
        for combo in itertools.product(*axes):
            item = dict(combo)
            suffix = "-".join(_name_part(v) for _, v in combo)
            items.append((suffix, item, None))
        if "do" in body:
            raise reader.fail((*at, "do"), "with 'matrix', write the stage keys beside it, not under 'do'", key=True)
        definition = {k: v for k, v in body.items() if k != "matrix"}
        do_at = at
    else:
        foreach = _interpolate_value(reader, body["foreach"], (*at, "foreach"), context)
        if "do" not in body or not isinstance(body["do"], dict):
            raise reader.fail(at, f"stage '{name}': 'foreach' needs a 'do' mapping with the stage definition")
        definition = {**{k: body[k] for k in ("desc", "meta") if k in body}, **body["do"]}
        do_at = (*at, "do")
        if isinstance(foreach, list):
            if not foreach:
                raise reader.fail((*at, "foreach"), "'foreach' list is empty")
            items = [
                (_name_part(v) if not isinstance(v, (dict, list)) else str(i), v, None) for i, v in enumerate(foreach)
            ]
        elif isinstance(foreach, dict):
            if not foreach:
                raise reader.fail((*at, "foreach"), "'foreach' mapping is empty")
            items = [(_name_part(k), v, k) for k, v in foreach.items()]
        else:
            raise reader.fail((*at, "foreach"), "'foreach' must be a list, a mapping, or ${...} naming one")
    stages = []
    seen: set[str] = set()
    for suffix, item, key in items:
        stage_name = f"{name}@{suffix}"
        if stage_name in seen:
            raise reader.fail(at, f"foreach/matrix produces the stage name '{stage_name}' twice")
        seen.add(stage_name)
        local = {**context, "item": item}
        if key is not None:
            local["key"] = key
        stages.append(_stage(reader, stage_name, definition, do_at, local, params, default_params))
    return stages


def _name_part(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", text)


def _stage(
    reader: _Reader,
    name: str,
    body: dict[str, Any],
    at: tuple[Any, ...],
    context: dict[str, Any],
    params: ParamFiles,
    default_params: str,
) -> Stage:
    for key in body:
        if key not in STAGE_KEYS:
            hint = f"stage keys: {', '.join(sorted(STAGE_KEYS))}"
            if key in TEMPLATE_KEYS:
                hint = "foreach/matrix go at the stage's top level"
            raise reader.fail((*at, key), f"stage '{name}': unknown key '{key}'", key=True, hint=hint)
    if "vars" in body:
        context = {**context, **_vars(reader, body["vars"], (*at, "vars"), params)}
    if "cmd" not in body or body["cmd"] in (None, "", []):
        raise reader.fail(
            at, f"stage '{name}' has no 'cmd'", hint="every stage needs the command that produces its outputs"
        )
    cmd_doc = body["cmd"]
    cmds = cmd_doc if isinstance(cmd_doc, list) else [cmd_doc]
    cmd = []
    for index, part in enumerate(cmds):
        where = (*at, "cmd", index) if isinstance(cmd_doc, list) else (*at, "cmd")
        if not isinstance(part, (str, int, float)):
            raise reader.fail(where, f"stage '{name}': 'cmd' must be a string or a list of strings")
        cmd.append(_interpolate(reader, str(part), where, context, in_cmd=True))

    wdir = body.get("wdir", ".")
    if not isinstance(wdir, str):
        raise reader.fail((*at, "wdir"), "'wdir' must be a path")
    wdir = _normalize(reader, _interpolate(reader, wdir, (*at, "wdir"), context), "", (*at, "wdir"), allow_root=True)

    deps = tuple(
        _normalize(reader, _interpolate(reader, d, (*at, "deps", i), context), wdir, (*at, "deps", i))
        for i, d in enumerate(_string_list(reader, body.get("deps"), (*at, "deps"), name))
    )
    outs: list[Out] = []
    for section, kind, default_cache in (("outs", "out", True), ("metrics", "metric", False), ("plots", "plot", False)):
        outs.extend(_outs(reader, body.get(section), (*at, section), name, kind, default_cache, wdir, context))
    param_refs = _params(reader, body.get("params"), (*at, "params"), name, wdir, default_params, context)
    env, env_values = _env(reader, body.get("env"), (*at, "env"), name, context)
    flags = {}
    for flag in ("frozen", "always_changed"):
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise reader.fail((*at, flag), f"'{flag}' must be true or false")
        flags[flag] = value
    desc = body.get("desc", "")
    return Stage(
        name=name,
        cmd=tuple(cmd),
        wdir=wdir,
        deps=deps,
        params=param_refs,
        outs=tuple(outs),
        env=env,
        frozen=flags["frozen"],
        always_changed=flags["always_changed"],
        desc=str(desc or ""),
        meta=body.get("meta"),
        where=reader.where(at),
        resources=_resources(reader, body.get("resources"), (*at, "resources"), name, context),
        image=_image(reader, body.get("image"), (*at, "image"), name, context),
        env_values=env_values,
    )


def _env(
    reader: _Reader, value: Any, at: tuple[Any, ...], stage: str, context: dict[str, Any]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """``env:`` as names (read from the environment) or a mapping NAME -> declared value (null: read)."""
    if isinstance(value, dict):
        names: list[str] = []
        declared: dict[str, str] = {}
        for var, raw in value.items():
            where = (*at, var)
            if not isinstance(var, str) or not ENV_NAME.match(var):
                raise reader.fail(
                    where, f"stage '{stage}': {_shown(str(var))} is not an environment variable name", key=True
                )
            names.append(var)
            if raw is None:
                continue
            if isinstance(raw, bool):
                raw = "true" if raw else "false"
            if not isinstance(raw, (str, int, float)):
                raise reader.fail(
                    where, f"stage '{stage}': env {var} must be a text or a number (null: read it from the environment)"
                )
            text = _interpolate(reader, str(raw), where, context)
            if "\0" in text or len(text) > MAX_ENV_VALUE:
                raise reader.fail(
                    where, f"stage '{stage}': env {var} must be at most {MAX_ENV_VALUE >> 10} KiB with no NUL"
                )
            declared[var] = text
        return tuple(names), declared
    names = _string_list(reader, value, at, stage)
    if not isinstance(value, (list, str, type(None))):
        raise reader.fail(at, f"stage '{stage}': 'env' is a list of names, or a mapping NAME: value")
    for index, var in enumerate(names):
        if not ENV_NAME.match(var):
            raise reader.fail((*at, index), f"'{var}' is not an environment variable name")
    return tuple(names), {}


def _resources(reader: _Reader, value: Any, at: tuple[Any, ...], stage: str, context: dict[str, Any]) -> Resources:
    if value is None:
        return Resources()
    if not isinstance(value, dict):
        raise reader.fail(at, f"stage '{stage}': 'resources' must be a mapping: {{cpus: 2, gpus: 1, memory: 4GB}}")
    found: dict[str, Any] = {}
    for key, raw in value.items():
        where = (*at, key)
        if key not in RESOURCE_KEYS:
            raise reader.fail(
                where, f"stage '{stage}': unknown resource '{key}'", key=True, hint="resources: cpus, gpus, memory"
            )
        raw = _interpolate_value(reader, raw, where, context)
        if isinstance(raw, str) and INTERPOLATION.search(raw):
            raw = _interpolate(reader, raw, where, context)
        if raw is None:
            continue
        if key == "memory":
            found[key] = _memory(reader, raw, where, stage)
            continue
        number = raw
        if isinstance(raw, str):
            try:
                number = float(raw)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not (0 <= number < 1e6):
            raise reader.fail(where, f"stage '{stage}': '{key}' must be a number of at least 0, found {raw!r}")
        if key == "cpus" and number == 0:
            raise reader.fail(where, f"stage '{stage}': 'cpus' must be above 0 (a fraction like 0.5 is fine)")
        found[key] = float(number)
    return Resources(**found)


def _memory(reader: _Reader, raw: Any, where: tuple[Any, ...], stage: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    match = MEMORY.match(raw) if isinstance(raw, str) else None
    if match:
        amount = float(match.group(1)) * MEMORY_UNITS[(match.group(2) or "B").upper()]
        if 0 < amount < 1 << 60:
            return int(amount)
    raise reader.fail(
        where,
        f"stage '{stage}': 'memory' must be bytes or a size like 512MB or 4GiB, found {raw!r}",
        hint="units: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)",
    )


def _image(reader: _Reader, raw: Any, where: tuple[Any, ...], stage: str, context: dict[str, Any]) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise reader.fail(where, f"stage '{stage}': 'image' must be a container image reference")
    image = _interpolate(reader, raw, where, context).strip()
    if "@" in image and not IMAGE_DIGEST.search(image):
        raise reader.fail(
            where,
            f"stage '{stage}': image {_shown(image)} has a digest that is not sha256:<64 lowercase hex>",
            hint="write registry/name@sha256:<digest>, or a tag alone (registry/name:tag)",
        )
    if len(image) > 512 or not IMAGE.match(image):
        raise reader.fail(
            where,
            f"stage '{stage}': {_shown(image)} is not a container image reference",
            hint="registry/name:tag or registry/name@sha256:<digest> (lowercase name)",
        )
    return image


def _string_list(reader: _Reader, value: Any, at: tuple[Any, ...], stage: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise reader.fail(at, f"stage '{stage}': '{at[-1]}' must be a list of strings")
    return value


def _outs(
    reader: _Reader,
    value: Any,
    at: tuple[Any, ...],
    stage: str,
    kind: str,
    default_cache: bool,
    wdir: str,
    context: dict[str, Any],
) -> list[Out]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise reader.fail(at, f"stage '{stage}': '{at[-1]}' must be a list")
    out = []
    for index, entry in enumerate(value):
        where = (*at, index)
        flags: dict[str, Any] = {}
        if isinstance(entry, dict):
            if len(entry) != 1:
                raise reader.fail(where, "an output with options is written '- path: {cache: false}'")
            ((raw, flags),) = entry.items()
            flags = flags or {}
            if not isinstance(flags, dict):
                raise reader.fail(where, f"options of '{raw}' must be a mapping")
            for flag in flags:
                if flag not in OUT_FLAGS:
                    raise reader.fail(
                        (*where, raw, flag),
                        f"unknown output option '{flag}'",
                        key=True,
                        hint=f"options: {', '.join(sorted(OUT_FLAGS))}",
                    )
        elif isinstance(entry, str):
            raw = entry
        else:
            raise reader.fail(where, f"stage '{stage}': each entry of '{at[-1]}' is a path")
        path = _normalize(reader, _interpolate(reader, str(raw), where, context), wdir, where)
        for flag in ("cache", "persist"):
            if flag in flags and not isinstance(flags[flag], bool):
                raise reader.fail((*where, raw, flag), f"'{flag}' must be true or false")
        out.append(
            Out(
                path,
                kind,
                bool(flags.get("cache", default_cache)),
                bool(flags.get("persist", False)),
                where=reader.where(where),
            )
        )
    return out


def _params(
    reader: _Reader,
    value: Any,
    at: tuple[Any, ...],
    stage: str,
    wdir: str,
    default_params: str,
    context: dict[str, Any],
) -> tuple[ParamRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise reader.fail(at, f"stage '{stage}': 'params' must be a list")
    refs: list[ParamRef] = []
    for index, entry in enumerate(value):
        where = (*at, index)
        if isinstance(entry, str):
            default_file = _normalize(reader, default_params, wdir, where)
            reader.read_files.add(default_file)
            refs.append(ParamRef(default_file, _interpolate(reader, entry, where, context)))
        elif isinstance(entry, dict):
            for file, keys in entry.items():
                rel = _normalize(reader, str(file), wdir, where)
                reader.read_files.add(rel)
                if keys is None or keys == []:
                    refs.append(ParamRef(rel, ""))
                    continue
                if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                    raise reader.fail((*where, file), f"keys of '{file}' must be a list of names")
                refs.extend(ParamRef(rel, _interpolate(reader, k, (*where, file), context)) for k in keys)
        else:
            raise reader.fail(where, "each params entry is a key name or {file: [keys]}")
    return tuple(refs)


def _select(context: dict[str, Any], expression: str) -> Any:
    """The value ``${expression}`` names: dotted keys with list indexes, ``a.b[1].c`` as in DVC."""
    return lookup(context, INDEX.sub(r".\1", expression))


def _interpolate(
    reader: _Reader, text: str, at: tuple[Any, ...], context: dict[str, Any], *, in_cmd: bool = False
) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = _select(context, name)
        if value is MISSING:
            raise reader.fail(
                at, f"unknown ${{{name}}}", hint="define it in params.yaml or 'vars', or check its spelling"
            )
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return " ".join(str(v) for v in value)
        if isinstance(value, dict):
            if in_cmd:
                return _as_arguments(reader, value, at, name)
            raise reader.fail(at, f"${{{name}}} is a mapping; name one of its keys (a whole mapping only in 'cmd')")
        return str(value)

    return INTERPOLATION.sub(replace, text)


def _as_arguments(reader: _Reader, mapping: dict[str, Any], at: tuple[Any, ...], name: str) -> str:
    """A mapping in 'cmd' becomes command-line options, as DVC expands it: nested keys dotted,
    ``--key value`` (strings shell-quoted), ``--flag`` for true and nothing for false, and a
    list as ``--key a b c``."""
    import shlex

    words: list[str] = []
    for key, value in flatten("", mapping).items():
        if isinstance(value, bool):
            if value:
                words.append(f"--{key}")
        elif isinstance(value, str):
            words.append(f"--{key} {shlex.quote(value)}")
        elif isinstance(value, (list, tuple)):
            items = []
            for item in value:
                if isinstance(item, (list, tuple, dict)):
                    raise reader.fail(at, f"${{{name}}}: '{key}' holds a nested list, which has no command-line form")
                items.append(shlex.quote(item) if isinstance(item, str) else str(item))
            if items:
                words.append(f"--{key} {' '.join(items)}")
        elif value == {}:
            continue
        else:
            words.append(f"--{key} {value}")
    return " ".join(words)


def _interpolate_value(reader: _Reader, value: Any, at: tuple[Any, ...], context: dict[str, Any]) -> Any:
    """A whole-value ${...} (foreach: ${models}) yields the value itself, not its text."""
    if isinstance(value, str):
        match = INTERPOLATION.fullmatch(value.strip())
        if match:
            found = _select(context, match.group(1))
            if found is MISSING:
                raise reader.fail(at, f"unknown ${{{match.group(1)}}}")
            return found
    return value


def _normalize(reader: _Reader, path: str, wdir: str, at: tuple[Any, ...], *, allow_root: bool = False) -> str:
    """A path as written (relative to wdir) -> repo-relative posix, refusing escapes."""
    shown = _shown(path)
    if os.path.isabs(path):
        raise reader.fail(at, f"{shown} is absolute; paths in pipeline.yaml are relative to the repository")
    joined = posixpath.normpath(posixpath.join(wdir, path)) if wdir else posixpath.normpath(path)
    if joined == ".":
        if allow_root:
            return ""
        raise reader.fail(at, "the repository root itself cannot be a dependency or an output")
    if joined.startswith("../") or joined == "..":
        raise reader.fail(at, f"{shown} is outside the repository")
    if joined.split("/")[0] in (".git", ".mlops"):
        raise reader.fail(at, f"{shown} is inside {joined.split('/')[0]}/")
    # the one containment rule for names from elsewhere (docs/security.md), as a located error
    problem = relpath_problem(joined)
    if problem:
        raise reader.fail(at, f"{shown} refused: {problem}")
    return joined


def _shown(path: str) -> str:
    """A path for a one-line message: quoted, control characters escaped."""
    return "'" + "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in path) + "'"
