"""`pipeline.yaml`: parse, expand foreach/matrix, interpolate ${...}, validate.

Every problem is reported with file:line:col before anything runs. The vocabulary is
DVC's: cmd (string or list), deps, outs, params, metrics, plots, frozen, always_changed,
persist, cache, foreach/do, matrix, vars, wdir, desc, meta; plus ``env: [NAME, ...]``,
which makes environment variables dependencies of a stage.

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
from ..paths import relpath_problem
from .params import MISSING, ParamFiles, flatten, lookup

PIPELINE_FILE = "pipeline.yaml"
LOCK_FILE = "pipeline.lock"  # lock.py's name for it (lock.py stands above this module)
POINTER_SUFFIX = ".mlops"
PIPELINE_FORMAT = 1
DEFAULT_PARAMS = "params.yaml"
TOP_KEYS = {"format", "params", "vars", "stages"}
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
}
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

    @property
    def cmd_text(self) -> str:
        return " && ".join(self.cmd)

    @property
    def cached_outs(self) -> tuple[Out, ...]:
        return tuple(o for o in self.outs if o.cache)


@dataclass(frozen=True)
class Pipeline:
    path: Path
    stages: dict[str, Stage]  # in file order
    default_params: str
    templates: dict[str, tuple[str, ...]] = field(default_factory=dict)  # foreach/matrix name -> expanded names

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
    if not isinstance(default_params, str):
        raise reader.fail(("params",), "'params' must name a parameter file")
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
    return Pipeline(path, stages, default_params, templates)


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
    env = tuple(_string_list(reader, body.get("env"), (*at, "env"), name))
    for index, var in enumerate(env):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", var):
            raise reader.fail((*at, "env", index), f"'{var}' is not an environment variable name")
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
    )


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
