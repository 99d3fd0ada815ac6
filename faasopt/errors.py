"""The error vocabulary of faasopt: one base class, subclasses grouped as callers catch them.

Messages are one line that says what was expected and what came; facts travel as attributes.
"""

from __future__ import annotations

from dataclasses import dataclass


class FaasoptError(Exception):
    """Base of every error faasopt raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    """One problem of a manifest: the dotted camelCase path of the field and the reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class SpecError(FaasoptError):
    """A TrainingJob manifest is invalid; ``problems`` lists every field at fault."""

    def __init__(self, problems: list[FieldProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(str(p) for p in self.problems))


class DataError(FaasoptError):
    """Problem data cannot be read or is malformed; ``path`` and ``line`` locate it when known."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class ProtocolError(FaasoptError):
    """A message from the network is malformed, foreign or stale; ``reason`` is a short label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class PlatformError(FaasoptError):
    """A platform could not start, reach or stop its workers (or the NATS server)."""


class CheckpointError(FaasoptError):
    """A checkpoint cannot be used: corrupt, of another version, job or problem."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (Ctrl-C, SIGTERM) after its processes were stopped."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")


class JobDeadlineError(FaasoptError, TimeoutError):
    """The job ran past runPolicy.activeDeadlineSeconds."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"job exceeded its active deadline of {seconds:g} s")


class GuardStop(FaasoptError):
    """A scale-in guard ended the job (reason BudgetExceeded or DeadlineExceeded); the last z is
    the solution."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")
