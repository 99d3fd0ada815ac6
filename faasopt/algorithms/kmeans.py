"""k-means (LambdaML's KM, seed 003) as a driver and a runner: k-means++ then Lloyd.

The first k rounds seed the centroids by k-means++ over the blocks (``seed`` rounds: each block
sends one candidate row and its D² weight, the driver draws one); then Lloyd's rounds (``lloyd``:
each block sends its per-centroid sums and counts and its inertia, the driver takes the means).
Blocks keep nothing between rounds: any worker can take any block at any round. The trace lists
the Lloyd rounds, with the inertia at the broadcast centroids as their objective.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from faasopt import protocol as p
from faasopt.algorithms.base import StepRecord, each_block
from faasopt.checkpoint import Snapshot
from faasopt.errors import CheckpointError, DataError, ProtocolError
from faasopt.scalein import rounds_to_tolerance
from faasopt.solvers.kmeans import (
    CandidateMessage,
    ClusterStats,
    Criterion,
    KMeansRecord,
    KMeansSettings,
    Lloyd,
    candidate_block_step,
    choose_center,
    cluster_stats,
)

if TYPE_CHECKING:
    from faasopt.payload import WorkerPayload
    from faasopt.plan import JobPlan

SEED, LLOYD = "seed", "lloyd"


def settings_to_wire(settings: KMeansSettings) -> dict[str, Any]:
    return {
        "k": settings.k,
        "max_iterations": settings.max_iterations,
        "tolerance": settings.tolerance,
        "criterion": str(settings.criterion),
        "seed": settings.seed,
    }


def settings_from_wire(wire: Mapping[str, Any]) -> KMeansSettings:
    return KMeansSettings(**{**wire, "criterion": Criterion(wire["criterion"])})


class KMeansDriver:
    """k seeding rounds, then Lloyd's rounds until the centroids (or the inertia) settle."""

    ANSWER = p.Answer
    accepts: ClassVar[set[str]] = {p.Answer.KIND, p.Final.KIND}

    hands_back = False
    """Every block's state is the driver's: an evicted worker leaves at once."""

    def __init__(self, plan: JobPlan) -> None:
        self.settings: KMeansSettings = plan.settings
        self.n_blocks, self.features = plan.n_blocks, plan.features
        k, d = self.settings.k, self.features
        self.max_message_bytes = 8 * (plan.n_blocks * (k * d + k + d + p.PER_BLOCK_NUMBERS) + 1024)
        self.centers = np.zeros((0, d))
        self.lloyd: Lloyd | None = None
        self.round = 0
        self._answers: dict[int, tuple[tuple[float, ...], np.ndarray]] = {}

    @property
    def iteration(self) -> int:
        return self.round

    @property
    def done(self) -> bool:
        return self.lloyd is not None and self.lloyd.done

    @property
    def status(self):
        return self.lloyd.status if self.lloyd is not None else None

    @property
    def model(self) -> np.ndarray:
        return self.lloyd.centroids if self.lloyd is not None else self.centers

    def snapshot(self) -> Snapshot:
        """The round, the seeded centers, and Lloyd's centroids and history once it runs."""
        scalars: dict[str, Any] = {"round": self.round}
        arrays = {"centers": self.centers}
        if self.lloyd is not None:
            scalars["history"] = [dataclasses.asdict(r) for r in self.lloyd.history]
            arrays["centroids"] = self.lloyd.centroids
        return Snapshot(scalars, arrays)

    def restore(self, records: Sequence[StepRecord], snapshot: Snapshot) -> None:
        arrays, k = snapshot.arrays, self.settings.k
        seeded = "centroids" in arrays
        if list(arrays) != ["centers", "centroids"][: 1 + seeded] or (
            seeded and arrays["centroids"].shape != (k, self.features)
        ):
            raise CheckpointError(f"not a checkpoint of this k-means job: arrays {list(arrays)}")
        self.round, self.centers = snapshot.scalars["round"], arrays["centers"]
        if seeded:
            self.lloyd = Lloyd(self.settings, self.centers)
            self.lloyd.centroids = arrays["centroids"]
            self.lloyd.history = [KMeansRecord(**r) for r in snapshot.scalars["history"]]

    def broadcast(self, leave: tuple[str, ...] = ()) -> p.Round:
        self._answers = {}
        return p.Round(self.round, LLOYD if self.lloyd else SEED, self.model, leave)

    def take(self, answer: p.Answer) -> None:
        """Check the whole answer, then keep it: a malformed one changes nothing."""
        width = 2 if self.lloyd is None else 1
        if answer.width != width:
            raise ProtocolError("bad-shape", f"{answer.width} numbers a block, expected {width}")
        received = {}
        for i, (block, values) in enumerate(zip(answer.blocks, answer.parts(), strict=True)):
            scalars = answer.scalars[i * width : (i + 1) * width]
            self._check(block, scalars, values)
            received[block] = (scalars, values)
        self._answers.update(received)

    def _check(self, block: int, scalars: tuple[float, ...], values: np.ndarray) -> None:
        """A seeding answer: a weight >= 0, and a candidate row exactly when it is > 0; a Lloyd
        answer: an inertia >= 0, sums (k, d) and counts that are whole numbers >= 0."""
        k, d = self.settings.k, self.features
        if self.lloyd is None:
            weight, has = scalars
            if weight < 0 or has != float(weight > 0) or values.size != d * has:
                raise ProtocolError("bad-field", f"candidate of block {block}: weight {weight}")
            return
        counts = values[k * d :]
        whole = np.array_equal(counts, np.round(counts)) and np.all(counts >= 0)
        if values.size != k * d + k or scalars[0] < 0 or not whole:
            raise ProtocolError("bad-field", f"cluster statistics of block {block}")

    def reduce(self, seconds: float) -> StepRecord | None:
        if sorted(self._answers) != list(range(self.n_blocks)):
            raise ProtocolError("missing", f"answers for blocks {sorted(self._answers)}")
        k, d = self.settings.k, self.features
        answers = [self._answers[b] for b in range(self.n_blocks)]
        self.round += 1
        if self.lloyd is None:
            messages = [
                CandidateMessage(b, s[0], v if s[1] else None) for b, (s, v) in enumerate(answers)
            ]
            try:
                chosen = choose_center(messages, self.settings.seed, len(self.centers))
            except ValueError as exc:  # fewer distinct rows than k
                raise DataError(f"k-means with k = {k}: {exc}") from None
            self.centers = np.vstack([self.centers, chosen])
            if len(self.centers) == k:
                self.lloyd = Lloyd(self.settings, self.centers)
            return None
        stats = [
            ClusterStats(b, v[: k * d].reshape(k, d), v[k * d :].astype(np.int64), s[0])
            for b, (s, v) in enumerate(answers)
        ]
        r = self.lloyd.reduce(stats)
        details = {"lloydIteration": r.iteration, "change": r.change}
        details["emptyClusters"] = r.empty_clusters
        return StepRecord(self.round - 1, r.inertia, details)

    def assignment(self, worker: str, instance: str, blocks: tuple[int, ...]) -> p.Handover:
        sizes = (0,) * len(blocks)
        return p.Handover(worker, blocks, sizes, np.empty(0), instance, self.round)

    def finish(self) -> p.Finish:
        return p.Finish(str(self.status), self.model)

    def final_objective(self, losses: Sequence[float]) -> float:
        """The inertia at the final centroids (as scikit-learn reports it)."""
        return math.fsum(losses)

    def remaining_rounds(self) -> float | None:
        """Lloyd's rounds left: projected from the relative change (criterion centroids), at
        most the iteration budget; None while seeding."""
        s = self.settings
        if self.lloyd is None:
            return None
        history = self.lloyd.history
        left = float(s.max_iterations - len(history))
        if s.criterion is Criterion.CENTROIDS:
            reach = rounds_to_tolerance([r.change for r in history], s.tolerance)
            if reach is not None:
                left = min(left, reach)
        return left


class KMeansRunner:
    """A worker's blocks' k-means++ candidates and Lloyd statistics."""

    ASSIGN = p.Handover
    ROUND = p.Round

    def __init__(self, payload: WorkerPayload, data: Mapping[int, Any], wire: Mapping[str, Any]):
        self.payload = payload
        self.data = data
        self.settings = settings_from_wire(wire["settings"])
        self.features = next(iter(data.values())).A.shape[1]
        self.max_message_bytes = 8 * (
            self.settings.k * self.features + p.PER_BLOCK_NUMBERS * payload.n_blocks + 1024
        )
        self._held: tuple[int, ...] = ()
        self._ready = False
        self.cpu_seconds: dict[int, float] = {}

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def held(self) -> tuple[int, ...]:
        return self._held

    def take(self, message: p.Handover) -> None:
        self._held = tuple(sorted({*self._held, *message.blocks}))
        self._ready = True

    def fits(self, model: np.ndarray) -> bool:
        return model.shape == (self.settings.k, self.features)

    def valid(self, message: p.Round) -> bool:
        m = message.model
        if message.phase == LLOYD:
            return self.fits(m)
        return (
            message.phase == SEED
            and m.ndim == 2
            and m.shape[1:] == (self.features,)
            and (m.shape[0] < self.settings.k)
        )

    def step(self, message: p.Round) -> dict[str, Any]:
        steps = each_block(self._held, lambda b: self._block(b, message), self.cpu_seconds)
        scalars = [number for numbers, _ in steps for number in numbers]
        parts = [values for _, values in steps]
        return {
            "worker": self.payload.worker,
            "iteration": message.iteration,
            "blocks": self._held,
            "width": 2 if message.phase == SEED else 1,
            "scalars": tuple(scalars),
            "sizes": tuple(v.size for v in parts),
            "values": np.concatenate(parts) if parts else np.empty(0),
        }

    def _block(self, block: int, message: p.Round) -> tuple[tuple[float, ...], np.ndarray]:
        """A block's k-means++ candidate (seeding) or its Lloyd statistics: (scalars, values)."""
        A = self.data[block].A
        if message.phase == SEED:
            c = candidate_block_step(A, message.model, self.settings.seed, block)
            found = c.candidate is not None
            return (c.weight, float(found)), c.candidate if found else np.empty(0)
        s = cluster_stats(A, message.model, block)
        return (s.inertia,), np.concatenate([s.sums.ravel(), s.counts.astype(np.float64)])

    def answer(self, fields: dict[str, Any], leaving: bool, **timing: Any) -> p.Answer:
        return p.Answer(**fields, leaving=leaving, **timing)

    def final_losses(self, model: np.ndarray) -> tuple[float, ...]:
        def inertia(b: int) -> float:
            return cluster_stats(self.data[b].A, model, b).inertia

        return tuple(each_block(self._held, inertia, self.cpu_seconds))
