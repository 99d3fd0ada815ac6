"""What the coordinator and the worker need of an algorithm's two halves."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from faasopt import protocol as p
from faasopt.checkpoint import Snapshot


@dataclass(frozen=True)
class StepRecord:
    """One finished round of an algorithm other than ADMM (ADMM's is its ``RoundRecord``)."""

    iteration: int
    objective: float
    """What the algorithm tracks per round: the mean minibatch loss (SGD), the inertia at the
    broadcast centroids (k-means)."""
    details: dict[str, Any] = field(default_factory=dict)
    """The algorithm's own figures of the round, camelCase, as the report's trace shows them."""


T = TypeVar("T")


def each_block(
    blocks: Iterable[int], work: Callable[[int], T], seconds: dict[int, float]
) -> list[T]:
    """``[work(b) for b in blocks]``, with each call's CPU seconds in ``seconds[b]`` (cleared
    first): the simulated platform's clock pairs runs block by block (:mod:`faasopt.sim`)."""
    seconds.clear()
    out = []
    for b in blocks:
        started = time.thread_time()
        out.append(work(b))
        seconds[b] = time.thread_time() - started
    return out


class Driver(Protocol):
    """The coordinator's half of an algorithm (see :mod:`faasopt.algorithms`)."""

    ANSWER: ClassVar[type]
    """The message kind a worker answers a round with."""
    accepts: set[str]
    """Kinds the coordinator's decoder takes from workers (besides hello and heartbeat)."""
    max_message_bytes: int

    @property
    def iteration(self) -> int:
        """The round under way (counted from 0 over every phase)."""

    @property
    def done(self) -> bool: ...

    @property
    def status(self) -> Any:
        """Why the run ended (a StrEnum), or None while it runs."""

    @property
    def model(self) -> np.ndarray:
        """The solution so far: z (ADMM), x (SGD), the centroids (k-means)."""

    def broadcast(self, leave: tuple[str, ...] = ()) -> p.Message:
        """This round's message to every worker; starts collecting answers. ``leave``: the
        workers to answer with their blocks' states and go (evicted, or rotated out by a ready
        successor); only drivers that ``hands_back`` are given any."""

    @property
    def hands_back(self) -> bool:
        """Whether a worker's blocks keep state on it that it must hand back before leaving."""

    def take(self, answer: Any) -> None:
        """Keep a worker's answer for its blocks; raises ProtocolError for a malformed one."""

    def reduce(self, seconds: float) -> Any | None:
        """Finish the round from every block's answer (in block order); returns its record, or
        None for a round the trace does not list (k-means++ seeding)."""

    def assignment(self, worker: str, instance: str, blocks: tuple[int, ...]) -> p.Message:
        """The exact state of ``blocks`` for a worker that takes them over."""

    def finish(self) -> p.Finish:
        """The message that ends the run: workers evaluate their losses at the final model."""

    def final_objective(self, losses: Sequence[float]) -> float:
        """The objective at the final model from every block's loss, in block order."""

    def remaining_rounds(self) -> float | None:
        """Rounds still to go, projected (the budget guard's input); None: unknown."""

    def snapshot(self) -> Snapshot:
        """The state a checkpoint keeps, to go on from the round after the last reduced."""

    def restore(self, records: Sequence[Any], snapshot: Snapshot) -> None:
        """Go on from a checkpoint: its ``snapshot`` and the trace's records so far.
        Raises CheckpointError for a snapshot of another algorithm or shape."""


class Runner(Protocol):
    """The worker's half of an algorithm (see :mod:`faasopt.algorithms`)."""

    ASSIGN: ClassVar[type]
    ROUND: ClassVar[type]
    max_message_bytes: int
    cpu_seconds: dict[int, float]
    """CPU seconds of each held block's part of the last step or final losses."""

    @property
    def ready(self) -> bool:
        """Whether it holds the state of its blocks (its first assignment came)."""

    @property
    def held(self) -> tuple[int, ...]:
        """The blocks it holds, ascending."""

    def take(self, assignment: Any) -> None:
        """Take the state of the assigned blocks (their data is loaded); keep the others.
        Raises ProtocolError, changing nothing, for a malformed state."""

    def fits(self, model: np.ndarray) -> bool:
        """Whether a model (a round's, the final one) has this job's shape."""

    def valid(self, message: Any) -> bool:
        """Whether a round's broadcast fits this job (shapes); a bad one is dropped."""

    def step(self, message: Any) -> dict[str, Any]:
        """This worker's blocks' part of the round: the answer's fields but the timings."""

    def answer(self, fields: dict[str, Any], leaving: bool, **timing: Any) -> p.Message:
        """The answer to send; a worker that leaves adds its blocks' states when they have one."""

    def final_losses(self, model: np.ndarray) -> tuple[float, ...]:
        """Each held block's loss at the final model, in the order of ``held``."""
