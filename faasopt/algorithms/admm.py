"""Consensus ADMM (seed 001, Algorithms 1 and 2) as a driver and a runner.

The driver keeps every block's variables (:class:`~faasopt.solvers.admm.Consensus`); a worker
gets its blocks' exact state in ``assign`` and sends back their new x_b each round, from which the
driver forms the dual steps itself. So any worker can take any block at any round, and the
iterates do not depend on the placement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from faasopt import protocol as p
from faasopt.algorithms.base import each_block
from faasopt.checkpoint import Snapshot
from faasopt.errors import CheckpointError, ProtocolError
from faasopt.scalein import remaining_rounds
from faasopt.solvers.admm import (
    Consensus,
    ConsensusState,
    RoundRecord,
    block_step,
    final_objective,
    with_tolerance,
)
from faasopt.solvers.local import LocalSolverSettings
from faasopt.solvers.logistic import logistic_loss
from faasopt.solvers.penalty import SpectralMemory

if TYPE_CHECKING:
    from faasopt.data import Block
    from faasopt.payload import WorkerPayload
    from faasopt.plan import JobPlan


_ARRAYS = ("z", "z_u", "x", "u", "rho", "rho_u", "tolerance")
"""The arrays of a ConsensusState, in the order a checkpoint stores them."""
_SPECTRAL = ("x", "grad", "z", "lam")
"""The arrays of the spectral penalty rule's memory, stored after them when it has one."""


def consensus_snapshot(state: ConsensusState) -> Snapshot:
    """``state`` as a checkpoint keeps it."""
    arrays = {name: getattr(state, name) for name in _ARRAYS}
    spectral = state.spectral
    if spectral is not None:
        arrays |= {f"spectral.{n}": getattr(spectral, n) for n in _SPECTRAL}
    scalars = {
        "rho_changes": state.rho_changes,
        "spectral_iteration": None if spectral is None else spectral.iteration,
    }
    return Snapshot(scalars, arrays)


def consensus_state(snapshot: Snapshot) -> ConsensusState:
    """The inverse of :func:`consensus_snapshot`; CheckpointError for another algorithm's."""
    scalars, arrays = snapshot.scalars, snapshot.arrays
    spectral_iteration = scalars.get("spectral_iteration")
    spectral_arrays = [f"spectral.{n}" for n in _SPECTRAL] if spectral_iteration is not None else []
    expected = [*_ARRAYS, *spectral_arrays]
    if list(arrays) != expected or "rho_changes" not in scalars:
        raise CheckpointError(f"not an ADMM checkpoint: arrays {list(arrays)}")
    spectral = None
    if spectral_iteration is not None:
        spectral = SpectralMemory(spectral_iteration, *(arrays[f"spectral.{n}"] for n in _SPECTRAL))
    return ConsensusState(
        **{name: arrays[name] for name in _ARRAYS},
        rho_changes=scalars["rho_changes"],
        spectral=spectral,
    )


class AdmmDriver:
    """The coordinator's half: broadcast (k, rho_k, z_k), gather x_b, reduce, z-step."""

    ANSWER = p.Result
    accepts: ClassVar[set[str]] = {p.Result.KIND, p.Final.KIND}

    hands_back = False
    """Every block's state is the driver's: an evicted worker leaves at once."""

    def __init__(self, plan: JobPlan) -> None:
        self.settings = plan.settings
        self.n_blocks, self.features = plan.n_blocks, plan.features
        self.consensus = Consensus(plan.settings, plan.n_blocks, plan.features)
        self.max_message_bytes = 8 * (plan.n_blocks * (plan.features + p.PER_BLOCK_NUMBERS) + 1024)
        self._x = self._loss = self._evaluations = self._iterations = np.empty(0)

    @property
    def iteration(self) -> int:
        return self.consensus.iteration

    @property
    def done(self) -> bool:
        return self.consensus.done

    @property
    def status(self):
        return self.consensus.status

    @property
    def model(self) -> np.ndarray:
        return self.consensus.z

    @property
    def rho_changes(self) -> int:
        return self.consensus.rho_changes

    def snapshot(self) -> Snapshot:
        return consensus_snapshot(self.consensus.state)

    def restore(self, records: Sequence[RoundRecord], snapshot: Snapshot) -> None:
        self.consensus.restore(list(records), consensus_state(snapshot))

    def broadcast(self, leave: tuple[str, ...] = ()) -> p.Iterate:
        """Round k's (k, rho_k, z_k); ``leave`` is never needed (every block's state is here)."""
        c, nb = self.consensus, self.n_blocks
        self._x = np.empty((nb, self.features))
        self._loss = np.empty(nb)
        self._evaluations = np.zeros(nb, dtype=int)
        self._iterations = np.zeros(nb, dtype=int)
        rho, tolerance = tuple(map(float, c.rho)), tuple(map(float, c.state.tolerance))
        return p.Iterate(c.iteration, rho, tolerance, c.z)

    def take(self, answer: p.Result) -> None:
        idx = list(answer.blocks)
        per_block = (answer.loss_at_z, answer.gradient_evaluations, answer.solver_iterations)
        if answer.x.shape != (len(idx), self.features) or any(
            len(values) != len(idx) for values in per_block
        ):
            raise ProtocolError("bad-shape", f"x {answer.x.shape} for blocks {idx}")
        self._x[idx], self._loss[idx] = answer.x, answer.loss_at_z
        self._evaluations[idx] = answer.gradient_evaluations
        self._iterations[idx] = answer.solver_iterations

    def reduce(self, seconds: float) -> RoundRecord:
        return self.consensus.reduce(
            self._x, self._loss.tolist(), self._evaluations.tolist(), self._iterations.tolist()
        )

    def assignment(self, worker: str, instance: str, blocks: tuple[int, ...]) -> p.Assign:
        idx = list(blocks)
        st = self.consensus.state
        return p.Assign(
            worker=worker,
            instance=instance,
            iteration=self.consensus.iteration,
            blocks=blocks,
            rho_u=tuple(map(float, st.rho_u[idx])),
            relaxation=self.settings.relaxation,
            state=np.vstack([st.x[idx], st.u[idx], st.z_u[None]]),
            **asdict(self.settings.local),
        )

    def finish(self) -> p.Finish:
        return p.Finish(str(self.consensus.status), self.consensus.z)

    def final_objective(self, losses: Sequence[float]) -> float:
        return final_objective(list(losses), self.consensus.z, self.settings)

    def remaining_rounds(self) -> float | None:
        history, s = self.consensus.history, self.settings
        return remaining_rounds(
            [r.primal_residual for r in history],
            [r.dual_residual for r in history],
            s.primal_tolerance,
            s.dual_tolerance,
        )


class AdmmRunner:
    """The worker's half: the x-steps of its blocks (Algorithm 2, lines 5-9)."""

    ASSIGN = p.Assign
    ROUND = p.Iterate

    def __init__(self, payload: WorkerPayload, data: Mapping[int, Block]) -> None:
        self.payload = payload
        self.data = data
        features = self.features = next(iter(data.values())).A.shape[1]
        # an assign is the largest: every block of the job may end up here (scale-in)
        self.max_message_bytes = 8 * (
            (2 * payload.n_blocks + 1) * features + p.PER_BLOCK_NUMBERS * payload.n_blocks + 1024
        )
        self._held: tuple[int, ...] = ()
        self.x = self.u = self.rho_u = self.z_u = None
        self.relaxation = 1.0
        self.settings = LocalSolverSettings()
        self.cpu_seconds: dict[int, float] = {}

    @property
    def ready(self) -> bool:
        return self.x is not None

    @property
    def held(self) -> tuple[int, ...]:
        return self._held

    def take(self, message: p.Assign) -> None:
        nb = len(message.blocks)
        given = {
            b: (message.state[i], message.state[nb + i], message.rho_u[i])
            for i, b in enumerate(message.blocks)
        }
        kept = {
            b: (self.x[i], self.u[i], self.rho_u[i])
            for i, b in enumerate(self._held)
            if b not in given
        }
        merged = {**kept, **given}
        self._held = tuple(sorted(merged))
        self.x = np.array([merged[b][0] for b in self._held])
        self.u = np.array([merged[b][1] for b in self._held])
        self.rho_u = np.array([merged[b][2] for b in self._held])
        self.z_u = np.array(message.state[2 * nb])
        self.relaxation = message.relaxation
        self.settings = LocalSolverSettings(
            **{f.name: getattr(message, f.name) for f in dataclasses.fields(LocalSolverSettings)}
        )

    def fits(self, model: np.ndarray) -> bool:
        return model.shape == (self.features,)

    def valid(self, message: p.Iterate) -> bool:
        return len(message.rho) == self.payload.n_blocks and self.fits(message.z)

    def step(self, message: p.Iterate) -> dict[str, Any]:
        """Each held block's x-step with its penalty and gradient tolerance from the broadcast."""
        rho = np.array([message.rho[b] for b in self._held])
        row = {block: i for i, block in enumerate(self._held)}

        def x_step(block: int):
            i = row[block]
            return block_step(
                self.data[block].A,
                self.data[block].y,
                self.x[i],
                self.u[i],
                message.z,
                self.z_u,
                float(rho[i]),
                float(self.rho_u[i]),
                self.relaxation,
                with_tolerance(self.settings, message.gradient_tolerance[block]),
            )

        updates = each_block(self._held, x_step, self.cpu_seconds)
        self.x = np.stack([up.x for up in updates])
        self.u = np.stack([up.u for up in updates])
        self.rho_u = rho
        self.z_u = message.z
        return {
            "worker": self.payload.worker,
            "iteration": message.iteration,
            "blocks": self._held,
            "loss_at_z": tuple(up.loss_at_z for up in updates),
            "gradient_evaluations": tuple(up.gradient_evaluations for up in updates),
            "solver_iterations": tuple(up.solver_iterations for up in updates),
            "x": self.x,
        }

    def answer(self, fields: dict[str, Any], leaving: bool, **timing: Any) -> p.Result:
        return p.Result(**fields, leaving=leaving, **timing)

    def final_losses(self, model: np.ndarray) -> tuple[float, ...]:
        def loss(b: int) -> float:
            return logistic_loss(self.data[b].A, self.data[b].y, model)

        return tuple(each_block(self._held, loss, self.cpu_seconds))
