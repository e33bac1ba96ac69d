"""`mlops features validate`: the definitions, checked against the sources' real schemas and hashes."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError
from ..repo.repo import Repo
from .definitions import Definitions, load_definitions
from .sources import SourceState, schema_problems, source_state


@dataclass(frozen=True)
class ValidationReport:
    definitions: Definitions
    sources: tuple[SourceState, ...]
    problems: tuple[str, ...]  # 'file:line:col: message', definitions first, then sources' content

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(repo: Repo, *, services: tuple[str, ...] = ()) -> ValidationReport:
    """Check features.yaml (raises FormatError on its own problems), then each source's columns,
    types and time zones against the definitions, and that each source is tracked and unchanged.
    With ``services``, only the sources those services read."""
    defs = load_definitions(repo.root)
    wanted = {defs.views[ref.view].source for name in services for ref in defs.service(name).features}
    states = tuple(source_state(repo, s) for s in defs.sources.values() if not services or s.name in wanted)
    problems = [f"{defs.sources[s.name].place('path')}: {s.problem}" for s in states if s.problem]
    problems = schema_problems(repo, defs) + problems
    return ValidationReport(defs, states, tuple(problems))


def checked_definitions(repo: Repo, service: str) -> tuple[Definitions, dict[str, SourceState]]:
    """The definitions and the states of the service's sources, or FormatError listing every problem."""
    report = validate(repo, services=(service,))
    if report.problems:
        count = len(report.problems)
        raise FormatError(
            report.problems[0] + (f" (and {count - 1} more)" if count > 1 else ""),
            hint="'mlops features validate' lists every problem",
            problems=list(report.problems),
        )
    return report.definitions, {s.name: s for s in report.sources}
