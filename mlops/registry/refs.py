"""Model references: how a model version is named everywhere (CLI, serve, drift, load_model).

churn            the latest version
churn:3          version 3
churn@production the version in a stage (staging, production; archived only if one)
churn@champion   the version an alias points at
churn@latest     the latest version
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError
from ..paths import MODEL_NAME, model_name_problem

NAME = MODEL_NAME  # fullmatch: also a safe file name (the rule lives in paths.py, below the pipeline's artifacts)
ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")

NONE, STAGING, PRODUCTION, ARCHIVED = "none", "staging", "production", "archived"
STAGES = (NONE, STAGING, PRODUCTION, ARCHIVED)
SINGLE_STAGES = (STAGING, PRODUCTION)  # one version at a time per model
LATEST = "latest"
RESERVED_ALIASES = (*STAGES, LATEST)


@dataclass(frozen=True)
class Ref:
    name: str
    version: int | None = None  # churn:3
    label: str | None = None  # a stage or an alias (churn@production); None + no version = latest

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.label is not None:
            return f"{self.name}@{self.label}"
        return self.name


def check_name(name: str) -> str:
    problem = model_name_problem(name)
    if problem:
        raise UsageError(f"not a valid model name: {name!r}", hint=problem)
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias):
        raise UsageError(
            f"not a valid alias: {alias!r}", hint="a letter, then letters, digits, '_' or '-' (at most 64)"
        )
    if alias.lower() in RESERVED_ALIASES:
        raise UsageError(f"'{alias}' is reserved (a stage name or 'latest'); choose another alias")
    return alias


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise UsageError(f"unknown stage '{stage}'", hint=f"stages: {', '.join(STAGES)}")
    return stage


def parse_version(text: str | int) -> int:
    """A version number as a user types it: 3 or v3."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text).strip()
        raw = raw[1:] if raw[:1] in ("v", "V") else raw
        if not raw.isdigit():
            raise UsageError(f"not a version number: {text!r}", hint="versions are whole numbers from 1 (3 or v3)")
        value = int(raw)
    if value < 1:
        raise UsageError(f"not a version number: {text!r}", hint="versions number up from 1")
    return value


REF_FORMS = "a model reference is NAME, NAME:VERSION (churn:3) or NAME@STAGE (churn@production, or an alias)"


def parse_ref(text: str) -> Ref:
    """Parse ``name``, ``name:N`` or ``name@label``; a bad shape is a UsageError naming the text."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("empty model reference", hint=REF_FORMS)
    text = text.strip()
    if "@" in text:
        name, _, label = text.partition("@")
        check_name(name)
        if not label or not (label in STAGES or label == LATEST or ALIAS.fullmatch(label)):
            # the likely slip: a version after '@' (walkm@1), which is written walkm:1
            meant = f"; version {label} is '{name}:{label}'" if label.isdigit() else ""
            raise UsageError(f"not a model reference: {text!r}", hint=REF_FORMS + meant)
        if label == LATEST:
            return Ref(name)
        return Ref(name, label=label)
    if ":" in text:
        name, _, version = text.partition(":")
        check_name(name)
        return Ref(name, version=parse_version(version))
    return Ref(check_name(text))


def check_target(name_or_ref: str, version: int | str | None) -> str:
    """Validate the shape of NAME + VERSION, or of one reference when VERSION is None; returns
    how to write it back in a hint. The version itself is resolved inside the transaction."""
    if version is None:
        return str(parse_ref(name_or_ref))
    return f"{check_name(name_or_ref)} {parse_version(version)}"
