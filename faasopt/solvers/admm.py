r"""Consensus ADMM for L1/L2-regularized empirical risk (seed 001, eqs. 5-7, Algorithms 1 and 2).

The problem, with the data cut into B blocks,

.. math::

    \min_x \sum_{b=1}^{B} f_b(x) + h(x), \qquad
    h(x) = \lambda_1 \|x\|_1 + \tfrac{\lambda_2}{2} \|x\|_2^2,

is solved in the global-consensus form, with one penalty :math:`\rho_b` per block (equal for
every block unless the penalty rule is per-block) and over-relaxation
:math:`\alpha \in [1, 1.9]` (Boyd et al. 2011, Sec. 3.4.3; :math:`\alpha = 1` is the paper's
plain ADMM). Round k, with :math:`(\rho_k, z_k)` broadcast by the coordinator, does for every
block b (Algorithm 2):

.. math::

    \hat x_b = \alpha x_b + (1 - \alpha) z_{k-1}, \quad
    u_b \leftarrow u_b + \hat x_b - z_k, \quad
    x_b \leftarrow \arg\min_x f_b(x) + \tfrac{\rho_b}{2}\|x - z_k + u_b\|^2,

and the coordinator (Algorithm 1) forms :math:`\omega_b = \hat x_b + u_b` (with the new
:math:`x_b` relaxed against :math:`z_k`) and sets

.. math::

    z_{k+1} = \arg\min_z h(z) + \sum_b \tfrac{\rho_b}{2} \|z - \omega_b\|^2, \quad
    r = \sqrt{\textstyle\sum_b \|x_b - z_k\|^2}, \quad
    s = \operatorname{rms}_b(\rho_b)\, \|z_{k+1} - z_k\|

(the paper's definitions: no :math:`\sqrt{B}` factor; :math:`s = \rho \|z_{k+1} - z_k\|` for one
rho), then :math:`\rho_{k+1}` by the penalty rule (:mod:`faasopt.solvers.penalty`) and the x-step
tolerances of the next round (:mod:`faasopt.solvers.schedule`). When a penalty changes, the scaled
dual variable is rescaled by :math:`\rho_b^k / \rho_b^{k+1}` after the dual step of round k (Boyd
et al. 3.4.1), so :math:`\lambda_b = \rho_b u_b` keeps its meaning.

Stopping: ``absolute`` is the paper's rule, :math:`r \le \epsilon_r` and :math:`s \le \epsilon_s`;
``relative`` is Boyd et al.'s (Sec. 3.3.1) for consensus, with :math:`\sqrt{B}\,s` (Boyd's dual
residual) and

.. math::

    \epsilon_{pri} = \sqrt{Bd}\,\epsilon_{abs} + \epsilon_{rel}\max(\|x\|, \sqrt{B}\|z\|), \qquad
    \epsilon_{dual} = \sqrt{Bd}\,\epsilon_{abs} + \epsilon_{rel}\|(\rho_b u_b)_b\|,

which does not depend on the scale of the data.

Everything here is pure numpy: the distributed coordinator and worker call the same functions as
:func:`reference_admm`, so a distributed run reproduces the reference bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from faasopt.solvers.local import LocalSolverSettings, solve_x_step
from faasopt.solvers.logistic import logistic_loss
from faasopt.solvers.penalty import (
    RHO_MAX,
    RHO_MIN,
    SPECTRAL_EVERY,
    Penalty,
    Residuals,
    SpectralMemory,
    balanced_rule,
    paper_rule,
    spectral_rule,
)
from faasopt.solvers.schedule import Schedule, next_tolerances

__all__ = [
    "RHO_MAX",
    "RHO_MIN",
    "AdmmResult",
    "AdmmSettings",
    "BlockUpdate",
    "Consensus",
    "Penalty",
    "RoundRecord",
    "Schedule",
    "Status",
    "Stopping",
    "block_step",
    "dual_update",
    "final_objective",
    "reference_admm",
    "regularizer",
    "relaxed",
    "soft_threshold",
    "with_tolerance",
    "z_step",
]

RELAXATION_RANGE = (1.0, 1.9)
"""Over-relaxation alpha allowed (Boyd et al. 2011, Sec. 3.4.3: 1.5-1.8 usually helps)."""


class Stopping(StrEnum):
    """Which test of the residuals ends a run."""

    ABSOLUTE = "absolute"
    """The paper's: r <= eps_r and s <= eps_s."""
    RELATIVE = "relative"
    """Boyd et al. Sec. 3.3.1: absolute plus relative tolerances, scale-free."""


class Status(StrEnum):
    """How a run ended."""

    CONVERGED = "converged"
    """The residuals passed the stopping test (or the caller's own test did)."""
    MAX_ITERATIONS = "maxIterations"
    """The iteration budget ran out first; the residuals say how far the run got."""


@dataclass(frozen=True)
class AdmmSettings:
    """Settings of the outer (consensus) iteration; defaults are the paper's (seed 001, III).

    The TrainingJob's defaults differ: see :class:`faasopt.spec.Admm`.
    """

    l1: float = 1.0
    """lambda1, weight of ||z||_1 in h."""
    l2: float = 0.0
    """lambda2, weight of ||z||^2 / 2 in h."""
    rho: float = 1.0
    """rho_0, the initial penalty of every block."""
    penalty: Penalty = Penalty.PAPER
    """The penalty rule."""
    relaxation: float = 1.0
    """alpha in [1, 1.9]; 1 is plain ADMM."""
    max_iterations: int = 100
    """K, the most rounds; each round is one broadcast and one gather."""
    stopping: Stopping = Stopping.ABSOLUTE
    """Which residual test ends the run."""
    primal_tolerance: float = 0.02
    """eps_r of ``absolute`` stopping: stop when r <= eps_r and s <= eps_s."""
    dual_tolerance: float = 0.02
    """eps_s, see primal_tolerance."""
    absolute_tolerance: float = 1e-6
    """eps_abs of ``relative`` stopping (per coordinate)."""
    relative_tolerance: float = 1e-4
    """eps_rel of ``relative`` stopping."""
    local: LocalSolverSettings = field(default_factory=LocalSolverSettings)
    """The worker's x-step solver; its gradient_tolerance is the loosest a schedule may use."""
    tolerance_schedule: Schedule = Schedule.FIXED
    """How the x-step's gradient tolerance follows the residuals."""
    schedule_factor: float = 1.0
    """c of the ``residuals`` schedule."""

    def __post_init__(self) -> None:
        low, high = RELAXATION_RANGE
        if not low <= self.relaxation <= high:
            raise ValueError(f"relaxation must be in [{low}, {high}], got {self.relaxation}")
        if not RHO_MIN <= self.rho <= RHO_MAX:
            raise ValueError(f"rho must be in [{RHO_MIN:g}, {RHO_MAX:g}], got {self.rho}")
        if not self.schedule_factor > 0:
            raise ValueError(f"schedule_factor must be > 0, got {self.schedule_factor}")


def soft_threshold(a: np.ndarray, b: float) -> np.ndarray:
    """S(a; b) = sign(a) max(|a| - b, 0), element-wise: the prox of b ||.||_1."""
    return np.sign(a) * np.maximum(np.abs(a) - b, 0.0)


def z_step(omega: np.ndarray, rho: np.ndarray, l1: float, l2: float) -> np.ndarray:
    r"""Coordinator update :math:`z = \arg\min_z h(z) + \sum_b \tfrac{\rho_b}{2}\|z - \omega_b\|^2`.

    ``omega`` has shape (B, d), ``rho`` shape (B,). The closed form is
    :math:`z = S(\sum_b \rho_b \omega_b; \lambda_1) / (\sum_b \rho_b + \lambda_2)`; for one rho and
    :math:`\lambda_2 = 0` this is the paper's :math:`S(\bar\omega; \lambda_1 / (B \rho))`. Summed
    in block order, so the result does not depend on which worker sent which block.
    """
    return soft_threshold(rho @ omega, l1) / (math.fsum(rho) + l2)


def regularizer(z: np.ndarray, l1: float, l2: float) -> float:
    """h(z) = l1 ||z||_1 + l2/2 ||z||^2."""
    return float(l1 * np.abs(z).sum() + 0.5 * l2 * (z @ z))


def relaxed(x: np.ndarray, z: np.ndarray, alpha: float) -> np.ndarray:
    """x-hat = alpha x + (1 - alpha) z (Boyd et al. 3.4.3); x itself when alpha = 1."""
    return x if alpha == 1.0 else alpha * x + (1.0 - alpha) * z


def dual_update(u, x, z, z_u, rho_u, rho, alpha: float):
    """Algorithm 2, lines 5-6, relaxed: u_b + x-hat_b - z_k, then rescaled from rho_u to rho.

    ``x`` is relaxed against ``z_u``, the z of the round that produced it. The dual step belongs
    to the round that made ``x`` and so is taken at its penalty ``rho_u``; only then is u_b
    rescaled (Boyd et al. 3.4.1): lambda_b = rho u_b gains rho_u (x-hat_b - z_k), whatever the new
    rho. Works on one block (d,) with scalar penalties, or on a stack (B, d) with penalties of
    shape (B, 1). Workers and the coordinator both call it, with the same inputs, so the
    coordinator's copy of every u_b is the worker's to the last bit.
    """
    return (u + (relaxed(x, z_u, alpha) - z)) * (rho_u / rho)


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
    z_u: np.ndarray,
    rho: float,
    rho_u: float,
    alpha: float,
    settings: LocalSolverSettings,
) -> BlockUpdate:
    """One block's part of round k (Algorithm 2, lines 5-7).

    ``u`` is scaled for penalty ``rho_u`` and still lacks the dual step of the round that made
    ``x`` (from ``z_u``, that round's z). ``settings`` carry this round's gradient tolerance.
    ``loss_at_z`` is f_b(z_k), so the coordinator can report the objective at z_k. The paper's
    worker also forms omega_b and q_b; here the coordinator does, from x_b and its own exact copy
    of u_b (see :class:`Consensus`).
    """
    u = dual_update(u, x, z, z_u, rho_u, rho, alpha)
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
    """The penalty used in this round: rho_k, or the mean of the rho_b when they differ."""
    gradient_evaluations: int
    """Local gradient evaluations of all blocks in this round."""
    block_gradient_evaluations: tuple[int, ...] = ()
    """Per block, in block order."""
    solver_iterations: tuple[int, ...] = ()
    """Local solver iterations per block, in block order."""
    gradient_tolerance: float | None = None
    """The largest x-step gradient tolerance of the round."""
    rho_blocks: tuple[float, ...] = ()
    """rho_b per block, when they differ (per-block penalty rules); else empty."""


@dataclass
class ConsensusState:
    """Everything a run needs to go on exactly: what a checkpoint holds and a fresh worker gets.

    Arrays: ``z``, ``z_u`` (d,); ``x``, ``u`` (B, d); ``rho``, ``rho_u``, ``tolerance`` (B,).
    ``u`` is scaled for ``rho_u`` and still lacks the dual step from ``z_u`` (the z that made x)
    to ``z`` (see :func:`dual_update`).
    """

    z: np.ndarray
    z_u: np.ndarray
    x: np.ndarray
    u: np.ndarray
    rho: np.ndarray
    rho_u: np.ndarray
    tolerance: np.ndarray
    """The x-step gradient tolerance of each block for the next round."""
    rho_changes: int = 0
    spectral: SpectralMemory | None = None


class Consensus:
    """The coordinator's state and z-step, free of I/O (Algorithm 1).

    Workers send their new x_b; the coordinator applies the workers' own dual update
    (:func:`dual_update`, same inputs, same arithmetic) to its copy of every u_b, then forms
    omega_b and q_b = ||x_b - z_k||^2 itself. So it always holds every block's exact state, and
    any block can be handed to a fresh, stateless worker with nothing lost but the round in
    flight.

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
        zeros = np.zeros(n_features)
        rho = np.full(n_blocks, settings.rho)
        self.state = ConsensusState(
            z=zeros,
            z_u=zeros.copy(),
            x=np.zeros((n_blocks, n_features)),
            u=np.zeros((n_blocks, n_features)),
            rho=rho,
            rho_u=rho.copy(),
            tolerance=np.full(n_blocks, settings.local.gradient_tolerance),
        )
        self.status: Status | None = None
        self.history: list[RoundRecord] = []

    @property
    def z(self) -> np.ndarray:
        """z_k, the consensus broadcast in the next round."""
        return self.state.z

    @property
    def x(self) -> np.ndarray:
        return self.state.x

    @property
    def u(self) -> np.ndarray:
        return self.state.u

    @property
    def rho(self) -> np.ndarray:
        """rho_b of the next round, shape (B,)."""
        return self.state.rho

    @property
    def rho_changes(self) -> int:
        """Rounds after which some rho_b changed."""
        return self.state.rho_changes

    @property
    def done(self) -> bool:
        return self.status is not None

    def local_settings(self, block: int) -> LocalSolverSettings:
        """Block ``block``'s x-step settings for the next round (this round's tolerance)."""
        return with_tolerance(self.settings.local, float(self.state.tolerance[block]))

    def restore(self, history: list[RoundRecord], state: ConsensusState) -> None:
        """Continue from a saved state (a checkpoint taken after ``len(history)`` rounds)."""
        if state.x.shape != self.state.x.shape or state.rho.shape != self.state.rho.shape:
            raise ValueError(f"state of shape {state.x.shape} for a run of shape {self.x.shape}")
        self.history = list(history)
        self.iteration = len(history)
        self.state = state

    def reduce(
        self,
        x: np.ndarray,
        loss_at_z: Sequence[float],
        gradient_evaluations: Sequence[int],
        solver_iterations: Sequence[int] = (),
    ) -> RoundRecord:
        """Finish round k from every block's new x_b, given in block order.

        ``x`` has shape (B, d); the sequences have length B. Summing in block order makes the
        result independent of which worker computed which block.
        """
        s, st = self.settings, self.state
        if x.shape != st.u.shape:
            raise ValueError(f"x must have shape {st.u.shape}, got {x.shape}")
        alpha, rho, B = s.relaxation, st.rho, self.n_blocks
        r = st.x - st.z
        q = np.einsum("bd,bd->b", r, r)
        primal_scale = max(float(np.linalg.norm(st.x)), math.sqrt(B) * float(np.linalg.norm(st.z)))
        u = dual_update(st.u, st.x, st.z, st.z_u, st.rho_u[:, None], rho[:, None], alpha)
        x = np.array(x)
        x_hat = relaxed(x, st.z, alpha)
        z_new = z_step(x_hat + u, rho, s.l1, s.l2)
        step = float(np.linalg.norm(z_new - st.z))
        rho_rms = math.sqrt(math.fsum(rho * rho) / B)
        residuals = Residuals(
            primal=math.sqrt(math.fsum(q)),
            dual=rho_rms * step,
            primal_scale=primal_scale,
            dual_scale=float(np.linalg.norm(rho[:, None] * u)) / math.sqrt(B),
        )
        spectral_now = None
        if s.penalty is Penalty.SPECTRAL:  # the blocks' gradients and duals, unscaled
            spectral_now = SpectralMemory(
                iteration=self.iteration,
                x=x,
                grad=rho[:, None] * (st.z - x - u),
                z=z_new,
                lam=rho[:, None] * (u + x_hat - z_new),
            )
        evaluations = tuple(int(e) for e in gradient_evaluations)
        record = RoundRecord(
            iteration=self.iteration,
            objective=math.fsum(loss_at_z) + regularizer(st.z, s.l1, s.l2),
            primal_residual=residuals.primal,
            dual_residual=residuals.dual,
            rho=float(rho[0]) if np.all(rho == rho[0]) else float(np.mean(rho)),
            gradient_evaluations=sum(evaluations),
            block_gradient_evaluations=evaluations,
            solver_iterations=tuple(int(i) for i in solver_iterations),
            gradient_tolerance=float(np.max(st.tolerance)),
            rho_blocks=() if np.all(rho == rho[0]) else tuple(map(float, rho)),
        )
        self.history.append(record)
        self.state = ConsensusState(
            z=z_new,
            z_u=st.z,
            x=x,
            u=u,
            rho=rho,
            rho_u=rho,
            tolerance=st.tolerance,
            rho_changes=st.rho_changes,
            spectral=st.spectral,
        )
        self.iteration += 1
        if self.iteration > 1 and self._converged(residuals):  # round 0 measures only the start
            self.status = Status.CONVERGED
        elif self.iteration >= s.max_iterations:
            self.status = Status.MAX_ITERATIONS
        else:
            self._next_round(residuals, step, spectral_now)
        return record

    def stop(self) -> None:
        """End the run as converged on the caller's own test (a benchmark's objective gap)."""
        self.status = Status.CONVERGED

    def _converged(self, res: Residuals) -> bool:
        s = self.settings
        if s.stopping is Stopping.ABSOLUTE:
            return res.primal <= s.primal_tolerance and res.dual <= s.dual_tolerance
        B, d = self.state.x.shape
        floor = math.sqrt(B * d) * s.absolute_tolerance
        eps_pri = floor + s.relative_tolerance * res.primal_scale
        eps_dual = floor + s.relative_tolerance * res.dual_scale * math.sqrt(B)
        return res.primal <= eps_pri and math.sqrt(B) * res.dual <= eps_dual

    def _next_round(self, res: Residuals, step: float, spectral_now: SpectralMemory | None) -> None:
        """rho of the next round (the rule) and the blocks' x-step tolerances (the schedule)."""
        s, st = self.settings, self.state
        rho = st.rho
        if s.penalty is Penalty.PAPER:
            rho = paper_rule(rho, res)
        elif s.penalty is Penalty.BALANCED:
            rho = balanced_rule(rho, res)
        elif s.penalty is Penalty.SPECTRAL and spectral_now is not None:
            memory = st.spectral
            if memory is None:
                st.spectral = spectral_now
            elif spectral_now.iteration - memory.iteration >= SPECTRAL_EVERY:
                rho = spectral_rule(rho, self.iteration, memory, spectral_now)
                st.spectral = spectral_now
        st.rho_changes += int(np.any(rho != st.rho))
        st.rho = rho
        if s.tolerance_schedule is Schedule.RESIDUALS:
            st.tolerance = next_tolerances(
                st.tolerance,
                rho,
                res.primal,
                step,
                self.iteration,
                s.local.gradient_tolerance,
                s.schedule_factor,
            )


def with_tolerance(local: LocalSolverSettings, tolerance: float) -> LocalSolverSettings:
    """``local`` with another gradient tolerance (a round's scheduled one)."""
    if tolerance == local.gradient_tolerance:
        return local
    return dataclasses.replace(local, gradient_tolerance=tolerance)


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


def run_round(blocks: Sequence, state: Consensus) -> RoundRecord:
    """One round over ``blocks`` in this process, each block from the coordinator's own state,
    as a fresh worker would start it."""
    st, alpha = state.state, state.settings.relaxation
    updates = [
        block_step(
            b.A,
            b.y,
            st.x[i],
            st.u[i],
            st.z,
            st.z_u,
            float(st.rho[i]),
            float(st.rho_u[i]),
            alpha,
            state.local_settings(i),
        )
        for i, b in enumerate(blocks)
    ]
    return state.reduce(
        np.stack([up.x for up in updates]),
        [up.loss_at_z for up in updates],
        [up.gradient_evaluations for up in updates],
        [up.solver_iterations for up in updates],
    )


def reference_admm(
    blocks: Sequence,
    settings: AdmmSettings,
    stop_when: Callable[[RoundRecord], bool] | None = None,
) -> AdmmResult:
    """Plain in-process consensus ADMM over ``blocks`` (objects with ``A`` and ``y``).

    The twin that distributed runs are checked against: same functions, one process, no I/O.
    ``stop_when``, if given, ends the run (as converged) after the first round it accepts, e.g.
    when a benchmark's objective gap is reached.
    """
    state = Consensus(settings, len(blocks), blocks[0].A.shape[1])
    while not state.done:
        record = run_round(blocks, state)
        if stop_when is not None and not state.done and stop_when(record):
            state.stop()
    losses = [logistic_loss(b.A, b.y, state.z) for b in blocks]
    return AdmmResult(
        z=state.z,
        status=state.status,
        objective=final_objective(losses, state.z, settings),
        history=state.history,
        x=state.x,
        u=state.u,
    )
