"""The one exception tree of mlops.

Every error a user can cause, or that the world can cause, is an ``MlopsError``
subclass carrying its exit code. The CLI's error boundary (``mlops.cli.main``)
is the only place that turns these into a message on stderr and an exit code.

Exit-code contract (documented in docs/exit-codes.md, held by a test):

    0    ok
    1    a check or gate found something (status --check, verify, drift, refused promotion)
    2    bad usage, configuration or input
    3    could not complete (lock held, remote down, stage failed, disk full, internal error)
    129  stopped by SIGHUP (the terminal closed), as Ctrl-C stops
    130  interrupted (Ctrl-C)
    141  broken pipe (stdout closed early, e.g. piped into ``head``)
    143  stopped by SIGTERM (a CI job cancelled, `kill`), as Ctrl-C stops

Codes are class attributes and never reused for another meaning; the one exception is
``Interrupted``, whose code says which signal stopped the command (128 + its number, as a
shell reports a process a signal ended).
"""

from __future__ import annotations

from typing import Any


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (scikit-learn's span several), cut at ``limit`` characters."""
    try:
        text = " ".join(str(exc).split())
    except Exception:  # a model's own exception class whose __str__ raises: still one line, never a new error
        text = f"{type(exc).__name__} (its message could not be read)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_FAILURE = 3
EXIT_HANGUP = 129  # 128 + SIGHUP
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: signal number -> exit code of a command that signal stopped (SIGINT 2, SIGHUP 1, SIGTERM 15)
STOP_EXIT_CODES = {2: EXIT_INTERRUPTED, 1: EXIT_HANGUP, 15: EXIT_TERMINATED}


class MlopsError(Exception):
    """Base of every mlops error: a one-line message, an optional hint, fields for --json."""

    exit_code = EXIT_FAILURE
    kind = "error"
    #: set by a command that already printed its --json report: the error adds no second document
    report_printed = False

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def after_report(self) -> MlopsError:
        """Mark that the command's --json report is already on stdout."""
        self.report_printed = True
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.kind, "message": self.message, "exit_code": self.exit_code}
        if self.hint:
            out["hint"] = self.hint
        out.update(self.fields)
        return out


# --- 1: a check or gate found something -------------------------------------------------
class CheckFailed(MlopsError):
    """A check ran to the end and found something (changes, corruption, a failed gate)."""

    #: a check's command prints its report (with --json, its document) before it raises this; one raised
    #: with no report printed (a check inside a command that writes something) sets it False on the instance
    report_printed = True

    exit_code = EXIT_CHECK_FAILED
    kind = "check_failed"


class PromotionRefused(CheckFailed):
    """A policy gate refused a stage transition; every failed rule is listed with the value seen."""

    kind = "promotion_refused"


class AuditTampered(CheckFailed):
    """The registry's audit log (or a registry file it vouches for) was edited, cut or reordered."""

    kind = "audit_tampered"


# --- 2: bad usage, configuration or input ----------------------------------------------
class UsageError(MlopsError):
    """The user asked for something that cannot be done as asked."""

    exit_code = EXIT_USAGE
    kind = "usage"


class NotARepoError(UsageError):
    """No `.mlops/` in the working folder or any parent."""

    kind = "not_a_repo"


class InvalidPathError(UsageError):
    """A path outside the repo, inside .mlops/ or .git/, missing, or a symlink leaving the repo."""

    kind = "invalid_path"


class ConfigError(UsageError):
    """A configuration or state file that cannot be read as mlops expects."""

    kind = "config"


class FormatError(ConfigError):
    """A file that is not valid YAML/JSON or lacks a field; the message names file:line:col."""

    kind = "format"


class NewerFormatError(ConfigError):
    """A file written by a newer mlops than this one."""

    kind = "newer_format"


class UnknownRevisionError(UsageError):
    """A git revision that does not exist."""

    kind = "unknown_revision"


class UnknownModelError(UsageError):
    """A model, version, stage or alias that the registry does not have (what exists is listed)."""

    kind = "unknown_model"


class SignatureError(UsageError):
    """Input data that does not match the model's signature (the first problems are listed)."""

    kind = "signature"


class DataError(UsageError):
    """A data file that cannot be read as a table (missing, unreadable, wrong format, no rows); the file is named."""

    kind = "data"


# --- 3: could not complete --------------------------------------------------------------
class CouldNotComplete(MlopsError):
    """The command could not finish its work."""

    exit_code = EXIT_FAILURE
    kind = "failure"


class LockHeldError(CouldNotComplete):
    """Another mlops process held the lock past the wait (its pid and start time are named)."""

    kind = "lock_held"


class RemoteError(CouldNotComplete):
    """A remote that is unreachable, refuses credentials or answered with an error."""

    kind = "remote"


class CorruptObjectError(CouldNotComplete):
    """An object whose bytes no longer match its hash, found while it was needed."""

    kind = "corrupt_object"


class MissingObjectError(CouldNotComplete):
    """An object that a pointer file references is neither in the cache nor where it was sought."""

    kind = "missing_object"


class StorageError(CouldNotComplete):
    """The disk refused a write (full, read-only, permissions)."""

    kind = "storage"


class RegistryTampered(CouldNotComplete):
    """A registry change refused to write: the audit log or a model file was tampered with."""

    kind = "registry_tampered"


class UnsafeNameError(CouldNotComplete):
    """Received content (a manifest, pointer, lock file, run bundle, request) names a path that
    would leave the repository, land in .git/ or .mlops/, or go through a symlink: refused whole."""

    kind = "unsafe_name"


class GitError(CouldNotComplete):
    """git failed underneath."""

    kind = "git"


class Interrupted(MlopsError):
    """Stopped by Ctrl-C (130), SIGTERM (143) or SIGHUP (129)."""

    exit_code = EXIT_INTERRUPTED
    kind = "interrupted"

    def __init__(self, message: str, *, hint: str | None = None, signum: int | None = None, **fields: Any) -> None:
        super().__init__(message, hint=hint, **fields)
        if signum is not None:
            self.exit_code = STOP_EXIT_CODES.get(signum, EXIT_INTERRUPTED)


#: Every class a user can meet, for the documented exit-code table (held by a test).
ALL_ERRORS: tuple[type[MlopsError], ...] = (
    CheckFailed,
    PromotionRefused,
    AuditTampered,
    UsageError,
    NotARepoError,
    InvalidPathError,
    ConfigError,
    FormatError,
    NewerFormatError,
    UnknownRevisionError,
    UnknownModelError,
    SignatureError,
    DataError,
    CouldNotComplete,
    LockHeldError,
    RemoteError,
    CorruptObjectError,
    MissingObjectError,
    StorageError,
    RegistryTampered,
    UnsafeNameError,
    GitError,
    Interrupted,
)
