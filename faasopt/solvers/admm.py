r"""Consensus ADMM for L1/L2-regularized empirical risk (seed 001, eqs. 5-7, Algorithms 1 and 2).

The problem, with the data cut into B blocks,

.. math::

    \min_x \sum_{b=1}^{B} f_b(x) + h(x), \qquad
    h(x) = \lambda_1 \|x\|_1 + \tfrac{\lambda_2}{2} \|x\|_2^2,

is solved in the global-consensus form. Round k, with penalty :math:`\rho_k` and consensus
variable :math:`z_k` broadcast by the coordinator, does for every block b (Algorithm 2):

.. math::

    r_b = x_b - z_k, \quad u_b \leftarrow u_b + r_b, \quad
    x_b \leftarrow \arg\min_x f_b(x) + \tfrac{\rho_k}{2}\|x - z_k + u_b\|^2, \quad
    \omega_b = x_b + u_b, \quad q_b = \|r_b\|^2,

and the coordinator (Algorithm 1) sets
:math:`z_{k+1} = \arg\min_z h(z) + \tfrac{B \rho_k}{2} \|z - \bar\omega\|^2`, the primal residual
:math:`r = \sqrt{\sum_b q_b}`, the dual residual :math:`s = \rho_k \|z_{k+1} - z_k\|` (the paper's
definitions, no :math:`\sqrt{B}` factor) and :math:`\rho_{k+1}` by the penalty rule. The scaled
dual variables are rescaled by :math:`\rho_k / \rho_{k+1}` when the penalty changes, so they keep
their meaning.

Everything here is pure numpy: the distributed coordinator and worker call the same functions as
:func:`reference_admm`, so a distributed run reproduces the reference bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from faasopt.solvers.local import LocalSolverSettings, solve_x_step
from faasopt.solvers.logistic import logistic_loss

RHO_MIN = 1e-6
"""Smallest penalty the adaptive rules may reach (a guard-rail; the paper's rule has none)."""
RHO_MAX = 1e6
"""Largest penalty the adaptive rules may reach."""


class Penalty(StrEnum):
    """How the penalty rho changes between rounds."""

    PAPER = "paper"
    """Seed 001 (after Boyd et al. 3.4.1): x2 if r > 10 s, x0.5 if s > 10 r."""
    FIXED = "fixed"
    """rho never changes."""


class Status(StrEnum):
    """How a run ended."""

    CONVERGED = "converged"
    """Both residuals are within their tolerances."""
    MAX_ITERATIONS = "maxIterations"
    """The iteration budget ran out first; the residuals say how far the run got."""


@dataclass(frozen=True)
class AdmmSettings:
    """Settings of the outer (consensus) iteration; defaults are the paper's (seed 001, III)."""

    l1: float = 1.0
    """lambda1, weight of ||z||_1 in h."""
    l2: float = 0.0
    """lambda2, weight of ||z||^2 / 2 in h."""
    rho: float = 1.0
    """rho_0, the initial penalty."""
    penalty: Penalty = Penalty.PAPER
    """The penalty rule."""
    max_iterations: int = 100
    """K, the most rounds; each round is one broadcast and one gather."""
    primal_tolerance: float = 0.02
    """eps_r: stop when r <= eps_r and s <= eps_s (absolute, as in the paper)."""
    dual_tolerance: float = 0.02
    """eps_s, see primal_tolerance."""
    local: LocalSolverSettings = field(default_factory=LocalSolverSettings)
    """The worker's x-step solver."""


def soft_threshold(a: np.ndarray, b: float) -> np.ndarray:
    """S(a; b) = sign(a) max(|a| - b, 0), element-wise: the prox of b ||.||_1."""
    return np.sign(a) * np.maximum(np.abs(a) - b, 0.0)


def z_step(omega_sum: np.ndarray, n_blocks: int, rho: float, l1: float, l2: float) -> np.ndarray:
    r"""Coordinator update :math:`z = \arg\min_z h(z) + \tfrac{B\rho}{2}\|z - \bar\omega\|^2`.

    With :math:`B \bar\omega = \sum_b \omega_b` the closed form is
    :math:`z = S(\rho \sum_b \omega_b; \lambda_1) / (B \rho + \lambda_2)`; for
    :math:`\lambda_2 = 0` this is the paper's :math:`S(\bar\omega; \lambda_1 / (B \rho))`.
    """
    return soft_threshold(rho * omega_sum, l1) / (n_blocks * rho + l2)


def regularizer(z: np.ndarray, l1: float, l2: float) -> float:
    """h(z) = l1 ||z||_1 + l2/2 ||z||^2."""
    return float(l1 * np.abs(z).sum() + 0.5 * l2 * (z @ z))


def next_penalty(rho: float, primal: float, dual: float, rule: Penalty) -> float:
    """rho_{k+1} from the residuals of round k, clamped to [RHO_MIN, RHO_MAX]."""
    if rule is Penalty.FIXED:
        return rho
    if primal > 10.0 * dual:
        rho = 2.0 * rho
    elif dual > 10.0 * primal:
        rho = 0.5 * rho
    return min(max(rho, RHO_MIN), RHO_MAX)


def dual_update(u: np.ndarray, x: np.ndarray, z: np.ndarray, rho_u: float, rho: float):
    """Algorithm 2, lines 5-6: u_b + (x_b - z_k), u_b first rescaled from rho_u to rho_k.

    Works on one block (d,) or a stack (B, d). Workers and the coordinator both call it, with the
    same inputs, so the coordinator's copy of every u_b is the worker's to the last bit.
    """
    return u * (rho_u / rho) + (x - z)


@dataclass
class BlockUpdate:
    """One block's round: the new x_b (sent to the coordinator) and the work it took."""

    x: np.ndarray
    u: np.ndarray
    loss_at_z: float
    gradient_evaluations: int
    solver_iterations: int


def block_step(
    A,
    y: np.ndarray,
    x: np.ndarray,
    u: np.ndarray,
    z: np.ndarray,
    rho: float,
    rho_u: float,
    settings: LocalSolverSettings,
) -> BlockUpdate:
    """One block's part of round k (Algorithm 2, lines 5-7).

    ``u`` is scaled for penalty ``rho_u`` (the previous round's). ``loss_at_z`` is f_b(z_k), so
    the coordinator can report the objective at z_k. The paper's worker also forms
    omega_b = x_b + u_b and q_b = ||x_b - z_k||^2; here the coordinator does, from x_b and its own
    exact copy of u_b (see :class:`Consensus`).
    """
    u = dual_update(u, x, z, rho_u, rho)
    local = solve_x_step(A, y, z - u, rho, x, settings)
    return BlockUpdate(
        x=local.x,
        u=u,
        loss_at_z=logistic_loss(A, y, z),
        gradient_evaluations=local.gradient_evaluations,
        solver_iterations=local.iterations,
    )


@dataclass(frozen=True)
class RoundRecord:
    """The coordinator's view of one finished round k."""

    iteration: int
    objective: float
    """F(z_k): sum_b f_b(z_k) + h(z_k), at the z broadcast for this round."""
    primal_residual: float
    dual_residual: float
    rho: float
    """rho_k, the penalty used in this round."""
    gradient_evaluations: int
    """Local gradient evaluations of all blocks in this round."""


class Consensus:
    """The coordinator's state and z-step, free of I/O (Algorithm 1).

    Workers send their new x_b; the coordinator applies the workers' own dual update
    (:func:`dual_update`, same inputs, same arithmetic) to its copy of every u_b, then forms
    omega_b = x_b + u_b and q_b = ||x_b - z_k||^2 itself. So it always holds every block's exact
    state ``(x_b, u_b)``, and any block can be handed to a fresh, stateless worker with nothing
    lost but the round in flight.

    Parameters
    ----------
    settings : AdmmSettings
    n_blocks : int
        B, the number of data blocks (fixed for the whole run).
    n_features : int
        d, the dimension of x and z.
    """

    def __init__(self, settings: AdmmSettings, n_blocks: int, n_features: int) -> None:
        self.settings = settings
        self.n_blocks = n_blocks
        self.iteration = 0
        self.rho = settings.rho
        self.rho_u = settings.rho  # the penalty the tracked u_b are scaled for
        self.z = np.zeros(n_features)
        self.x = np.zeros((n_blocks, n_features))
        self.u = np.zeros((n_blocks, n_features))
        self.status: Status | None = None
        self.history: list[RoundRecord] = []
        self.rho_changes = 0

    @property
    def done(self) -> bool:
        return self.status is not None

    def restore(
        self,
        history: list[RoundRecord],
        rho: float,
        rho_u: float,
        rho_changes: int,
        z: np.ndarray,
        x: np.ndarray,
        u: np.ndarray,
    ) -> None:
        """Continue from a saved state (a checkpoint taken after ``len(history)`` rounds)."""
        if x.shape != self.x.shape or u.shape != self.u.shape or z.shape != self.z.shape:
            raise ValueError(f"state of shape {x.shape} for a run of shape {self.x.shape}")
        self.history = list(history)
        self.iteration = len(history)
        self.rho, self.rho_u, self.rho_changes = rho, rho_u, rho_changes
        self.z, self.x, self.u = z, x, u

    def reduce(
        self, x: np.ndarray, loss_at_z: Sequence[float], gradient_evaluations: int
    ) -> RoundRecord:
        """Finish round k from every block's new x_b, given in block order.

        ``x`` has shape (B, d); ``loss_at_z`` has length B. Summing in block order makes the
        result independent of which worker computed which block.
        """
        s = self.settings
        if x.shape != self.u.shape:
            raise ValueError(f"x must have shape {self.u.shape}, got {x.shape}")
        r = self.x - self.z
        q = np.einsum("bd,bd->b", r, r)
        self.u = dual_update(self.u, self.x, self.z, self.rho_u, self.rho)
        self.x = np.array(x)
        self.rho_u = self.rho
        omega = self.x + self.u

        z_new = z_step(omega.sum(axis=0), self.n_blocks, self.rho, s.l1, s.l2)
        primal = math.sqrt(math.fsum(q))
        dual = self.rho * float(np.linalg.norm(z_new - self.z))
        record = RoundRecord(
            iteration=self.iteration,
            objective=math.fsum(loss_at_z) + regularizer(self.z, s.l1, s.l2),
            primal_residual=primal,
            dual_residual=dual,
            rho=self.rho,
            gradient_evaluations=int(gradient_evaluations),
        )
        self.history.append(record)
        self.z = z_new
        self.iteration += 1
        if primal <= s.primal_tolerance and dual <= s.dual_tolerance:
            self.status = Status.CONVERGED
        elif self.iteration >= s.max_iterations:
            self.status = Status.MAX_ITERATIONS
        else:
            rho_next = next_penalty(self.rho, primal, dual, s.penalty)
            self.rho_changes += rho_next != self.rho
            self.rho = rho_next
        return record


@dataclass
class AdmmResult:
    """Outcome of a run: the solution z, how it ended, and the per-round history."""

    z: np.ndarray
    status: Status
    objective: float
    """F(z) at the returned z."""
    history: list[RoundRecord]
    x: np.ndarray
    u: np.ndarray

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def iterations(self) -> int:
        return len(self.history)


def final_objective(losses: Sequence[float], z: np.ndarray, settings: AdmmSettings) -> float:
    """F(z) from the blocks' losses at z, summed in block order."""
    return math.fsum(losses) + regularizer(z, settings.l1, settings.l2)


def reference_admm(blocks: Sequence, settings: AdmmSettings) -> AdmmResult:
    """Plain in-process consensus ADMM over ``blocks`` (objects with ``A`` and ``y``).

    The twin that distributed runs are checked against: same functions, one process, no I/O.
    Each round starts from the coordinator's own copy of the blocks' state, as a fresh worker
    would.
    """
    state = Consensus(settings, len(blocks), blocks[0].A.shape[1])
    while not state.done:
        updates = [
            block_step(
                b.A, b.y, state.x[i], state.u[i], state.z, state.rho, state.rho_u, settings.local
            )
            for i, b in enumerate(blocks)
        ]
        state.reduce(
            np.stack([up.x for up in updates]),
            [up.loss_at_z for up in updates],
            sum(up.gradient_evaluations for up in updates),
        )
    losses = [logistic_loss(b.A, b.y, state.z) for b in blocks]
    return AdmmResult(
        z=state.z,
        status=state.status,
        objective=final_objective(losses, state.z, settings),
        history=state.history,
        x=state.x,
        u=state.u,
    )
