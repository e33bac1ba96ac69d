"""The stage graph: who produces what, who needs whom, in which order; and the checks on it."""

from __future__ import annotations

import heapq
from collections.abc import Collection
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from ..errors import FormatError
from .spec import Pipeline, Stage


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder + "/")


def _overlap(a: str, b: str) -> bool:
    return a == b or _inside(a, b) or _inside(b, a)


@dataclass(frozen=True)
class Graph:
    pipeline: Pipeline
    upstream: dict[str, tuple[str, ...]]  # stage -> stages it needs
    downstream: dict[str, tuple[str, ...]]  # stage -> stages that need it
    order: tuple[str, ...]  # topological, file order among equals
    producers: dict[str, str]  # output path -> stage

    def stage(self, name: str) -> Stage:
        return self.pipeline.stages[name]

    def select(self, targets: list[str] | None, *, downstream: bool = False, single: bool = False) -> list[str]:
        """The targets and what they need (or, with ``downstream``, what needs them), in order."""
        if not targets:
            return list(self.order)
        names = self.pipeline.resolve_names(targets)
        chosen: set[str] = set(names)
        if not single:
            edges = self.downstream if downstream else self.upstream
            stack = list(names)
            while stack:
                for other in edges[stack.pop()]:
                    if other not in chosen:
                        chosen.add(other)
                        stack.append(other)
        return [n for n in self.order if n in chosen]


def build_graph(pipeline: Pipeline, root: Path, *, coming: Collection[str] | None = None) -> Graph:
    """Build the DAG and check it: overlapping outputs, self-dependencies, dangling deps, cycles."""
    stages = pipeline.stages
    source = pipeline.path
    producers: dict[str, str] = {}
    outs: list[tuple[str, str]] = []
    for stage in stages.values():
        for out in stage.outs:
            for other_path, other_stage in outs:
                if _overlap(out.path, other_path):
                    same = out.path == other_path
                    what = (
                        f"both write {out.path}" if same else f"write overlapping outputs {other_path} and {out.path}"
                    )
                    raise FormatError(
                        f"{stage.where}: stages '{other_stage}' and '{stage.name}' {what}",
                        hint="each output has exactly one stage that writes it",
                        file=str(source),
                    )
            _refuse_tracked(root, stage, out.path, str(source))
            outs.append((out.path, stage.name))
            producers[out.path] = stage.name
    upstream: dict[str, list[str]] = {name: [] for name in stages}
    for stage in stages.values():
        for dep in stage.deps:
            for out in stage.outs:
                if _overlap(dep, out.path):
                    raise FormatError(
                        f"{stage.where}: stage '{stage.name}' depends on its own output {out.path}",
                        hint="a stage cannot read what it writes; split it into two stages",
                        file=str(source),
                    )
            found = [producer for path, producer in outs if _overlap(dep, path)]
            if not found and not (root / dep).exists() and not _comes_later(root, dep, coming):
                raise FormatError(
                    (
                        f"{stage.where}: stage '{stage.name}' depends on {dep}, "
                        "which is neither on disk nor produced by a stage"
                    ),
                    hint="create it, track it with 'mlops add'/'mlops pull', or add the stage that writes it",
                    file=str(source),
                )
            for producer in found:
                if producer not in upstream[stage.name]:
                    upstream[stage.name].append(producer)
    downstream: dict[str, list[str]] = {name: [] for name in stages}
    for name, needs in upstream.items():
        for need in needs:
            downstream[need].append(name)
    order = _topological(pipeline, upstream)
    return Graph(
        pipeline,
        {k: tuple(v) for k, v in upstream.items()},
        {k: tuple(v) for k, v in downstream.items()},
        tuple(order),
        producers,
    )


def _comes_later(root: Path, dep: str, coming: Collection[str] | None) -> bool:
    """A dependency not on disk yet that is known to come: tracked by a pointer file ('mlops pull'
    or 'checkout' brings it), or DVC data that 'mlops import dvc' recorded (``coming``: those paths;
    by default read from the import's record)."""
    parts = dep.split("/")
    if any((root / ("/".join(parts[:n]) + ".mlops")).is_file() for n in range(1, len(parts) + 1)):
        return True
    if coming is None:
        if not (root / ".mlops" / "dvc-import.json").is_file():
            return False
        from .dvc.record import recorded_paths

        coming = recorded_paths(root)
    return any(dep == path or _inside(dep, path) for path in coming)


def _refuse_tracked(root: Path, stage: Stage, path: str, source: str) -> None:
    """An output cannot also be data tracked by `mlops add`: the two would undo each other."""
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        tracked = "/".join(parts[:depth])
        if (root / f"{tracked}.mlops").is_file():
            raise FormatError(
                f"{stage.where}: stage '{stage.name}' writes {path}, which is tracked by {tracked}.mlops",
                hint=(
                    f"let the stage own it: remove {tracked}.mlops (git rm --cached), or drop it from the stage's outs"
                ),
                file=source,
            )


def _topological(pipeline: Pipeline, upstream: dict[str, list[str]]) -> list[str]:
    """graphlib's order, taking among the stages ready at once the one written first in the file."""
    position = {name: index for index, name in enumerate(pipeline.stages)}
    sorter = TopologicalSorter(upstream)
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = exc.args[1]  # [a, b, ..., a], each feeding the next (graphlib walks to successors)
        first = pipeline.stages[cycle[0]]
        raise FormatError(
            f"{first.where}: the stages form a cycle: {' -> '.join(cycle)}",
            hint="a stage's outputs cannot lead back to its own dependencies",
            file=str(pipeline.path),
        ) from None
    order: list[str] = []
    ready: list[tuple[int, str]] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, (position[name], name))
        _, name = heapq.heappop(ready)
        order.append(name)
        sorter.done(name)
    return order
