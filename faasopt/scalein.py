r"""Scale-in policies: pure functions from an observed history to a decision.

The coordinator appends one :class:`Observation` per round and calls :func:`decide`, which
returns a :class:`Decision`: keep, evict named workers (one, or several under the ``model``
rule), or stop. The decision calls nothing;
the coordinator carries it out. What a later decision depends on (the knee, the reference curve)
travels in :attr:`Decision.state`, which the coordinator hands back on the next call: the
policies keep no hidden state, and replaying a history replays its decisions. Every decision,
taken or not, carries its figures (:class:`Figures`) for the report.

Policies (``docs/scale-in.md`` says more):

``none``
    Always keep.
``auto``
    MLLess's knee detection (seed 002, Sec. 4.2), then one of two rules. ``rule="model"``
    (default): the pool size of highest projected Perf/$ within ``max_slowdown`` of the initial
    pool's projected solve time, several victims in one decision (:func:`choose_pool`,
    :class:`RoundModel`). ``rule="mlless"``: MLLess's scheduler. Find the knee of the
    objective; fit the reference curve (2)
    :math:`L_P(t) = 1 / (\theta_0 t^{\theta_1} + \theta_2) + \theta_3` once
    there and the current curve (3) :math:`\ell_p(t) = 1 / (\theta_0 t^2 + \theta_1 t +
    \theta_2) + \theta_3` on the rounds since the last eviction; model the step time as
    :math:`d(w) = c_0 + (w-1) c_1 + w c_2 + c_3 / w` (MLLess's model plus a compute term, see
    :class:`StepModel`); evict one worker per scheduling interval while

    .. math::

        s_\Delta(t) = \frac{\ell_p(t + \lfloor \Delta / d_p \rfloor)
                            - L_P(t + \lfloor \Delta / d_P \rfloor)}
                           {|L_P(t + \lfloor \Delta / d_P \rfloor)|} < S.

``idle``
    Evict when the pool's idle share over a window exceeds a threshold (seed 001, Fig. 5).

Whatever the policy, a budget guard and a deadline guard come first (:func:`decide`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import pairwise
from statistics import median
from typing import Any, Literal, Protocol

import numpy as np
from scipy.optimize import least_squares, nnls
from scipy.signal import lfilter

from faasopt.cost import Rates

PolicyName = Literal["none", "auto", "idle"]
RuleName = Literal["model", "mlless"]


class _Timing(Protocol):
    compute: float
    idle: float


@dataclass(frozen=True)
class Observation:
    """One finished round as the policies see it; times in seconds."""

    iteration: int
    objective: float
    wall_seconds: float
    """Since the start of the solve, when the round ended."""
    workers: tuple[str, ...]
    """The workers active in this round."""
    compute: Mapping[str, float]
    """Per worker: from receiving z_k to sending its results (seed 001, Sec. II-B)."""
    idle: Mapping[str, float]
    """Per worker: from its previous send to receiving z_k."""
    communication: Mapping[str, float] = field(default_factory=dict)
    """Per worker: the delay from the broadcast to the coordinator taking its answer in, less
    its compute (seed 001); empty when not measured."""
    blocks: Mapping[str, int] = field(default_factory=dict)
    """Per worker: how many blocks it held in this round. Empty when the caller does not say:
    the policies then assume the first observed pool held one block each (B = W, the default)."""

    @classmethod
    def of_round(
        cls,
        iteration: int,
        objective: float,
        wall_seconds: float,
        timings: Mapping[str, _Timing],
        blocks: Mapping[str, int] | None = None,
    ) -> Observation:
        """From a round's per-worker timings (anything with ``compute`` and ``idle``, and
        ``communication`` if measured) and, optionally, the number of blocks each worker held."""
        communication = {name: getattr(t, "communication", None) for name, t in timings.items()}
        return cls(
            iteration=iteration,
            objective=objective,
            wall_seconds=wall_seconds,
            workers=tuple(sorted(timings)),
            compute={name: t.compute for name, t in timings.items()},
            idle={name: t.idle for name, t in timings.items()},
            communication={n: c for n, c in communication.items() if c is not None},
            blocks=dict(blocks or {}),
        )


@dataclass(frozen=True)
class ScaleInSettings:
    """The ``scaleIn`` settings; defaults are the paper's where it has one (seed 002, 6.2)."""

    policy: PolicyName = "none"
    rule: RuleName = "model"
    """How ``auto`` decides after the knee. ``model``: the pool size that maximizes the
    projected Perf/$ of the job, within ``max_slowdown`` of the full pool's projected time and
    under the loss-gap rule, several victims at once (:func:`choose_pool`). ``mlless``: MLLess's
    rule as the paper states it, one worker per interval while s_Delta < S."""
    interval_seconds: float = 20.0
    """The scheduling interval T: at most one eviction decision per T seconds of wall time
    (MLLess's rule: one worker; the ``model`` rule: one decision, which may name several)."""
    delta_seconds: float = 10.0
    """The horizon Delta of s_Delta, <= T (the paper: T / 2)."""
    threshold: float = 0.15
    """S: evict while the projected relative loss gap stays under it."""
    knee_tolerance: float = 0.01
    """The knee: the smoothed normalized objective falls by less than this per round, where
    normalized means (F_k - F_min) / (F_0 - F_min), a share of the decrease so far."""
    knee_patience: int = 5
    """Checks (rounds) the knee candidate must hold before it is declared."""
    ewma_span: int = 20
    """Span of the forward and backward EWMAs that smooth the objective for the knee."""
    min_workers: int = 1
    """No policy or guard ever shrinks the pool below this."""
    min_fit_points: int = 5
    """Rounds needed to fit the current curve (3) since the knee or the last eviction."""
    idle_share: float = 0.5
    """``idle`` evicts when idle / (idle + compute) of the pool exceeds this (Fig. 5: past it,
    idle time beats compute)."""
    window_rounds: int = 10
    """Rounds over which the idle share and the victim rule look back."""
    max_slowdown: float = 0.10
    """The ``model`` rule's bound on time: the projected solve time with the chosen pool is at
    most (1 + this) times the projected solve time had the initial pool been kept (MLLess's LR
    runs: Perf/$ up 1.4-1.5x with the time within 10 %)."""
    budget_dollars: float | None = None
    """The job's budget; None: no budget guard."""
    deadline_seconds: float | None = None
    """The solve's deadline on the observations' clock; None: no deadline guard."""


@dataclass(frozen=True)
class Spend:
    """What the budget and deadline guards need besides the history (all optional upstream)."""

    dollars: float
    """Spent so far (cost model)."""
    rates: Rates
    """$/s of a pool as a function of its size (:func:`faasopt.cost.rates`)."""
    remaining_iterations: float | None = None
    """Rounds still needed to converge (:func:`rounds_to_tolerance`); None: unknown."""


class Action(StrEnum):
    KEEP = "keep"
    EVICT = "evict"
    STOP = "stop"


class Reason(StrEnum):
    """Why a decision was taken: a CamelCase word, as Kubernetes condition reasons are."""

    POLICY_NONE = "PolicyNone"
    POOL_CHANGING = "PoolChanging"
    """The pool has changed since the round (a decision carried out after it evicted, victims
    still handing their blocks back): only a guard's stop is weighed, not the gone workers."""
    INTERVAL = "Interval"
    """An eviction is wanted but the last one is younger than the scheduling interval."""
    MIN_WORKERS = "MinWorkers"
    BEFORE_KNEE = "BeforeKnee"
    TOO_FEW_POINTS = "TooFewPoints"
    FIT_FAILED = "FitFailed"
    GAP_UNDER_THRESHOLD = "GapUnderThreshold"
    GAP_OVER_THRESHOLD = "GapOverThreshold"
    IDLE_UNDER_THRESHOLD = "IdleUnderThreshold"
    IDLE_OVER_THRESHOLD = "IdleOverThreshold"
    MODEL_SHRINK = "ModelShrink"
    """The ``model`` rule: a smaller pool projects a higher Perf/$ within the time bound."""
    MODEL_KEEP = "ModelKeep"
    """The ``model`` rule: no smaller pool projects a higher Perf/$ within the time bound."""
    REMAINING_UNKNOWN = "RemainingUnknown"
    """The ``model`` rule cannot project the rounds still needed (residuals not falling)."""
    BUDGET_SHRINK = "BudgetShrink"
    BUDGET_EXCEEDED = "BudgetExceeded"
    DEADLINE_SHRINK = "DeadlineShrink"
    DEADLINE_EXCEEDED = "DeadlineExceeded"


@dataclass(frozen=True)
class Curve:
    """A fitted loss curve: ``objective(t) = scale * model(t; coefficients)``, t in rounds."""

    equation: Literal[2, 3]
    """Seed 002's equation: (2) the reference curve, (3) the slow-convergence curve."""
    coefficients: tuple[float, float, float, float]
    """theta_0..theta_3, all >= 0."""
    scale: float
    """The first objective: the curves are fitted to F / F_0, which leaves s_Delta unchanged."""

    def __call__(self, t: float) -> float:
        return self.scale * float(_model(self.equation, self.coefficients, np.float64(t)))

    def to_dict(self) -> dict[str, Any]:
        return {"equation": self.equation, "theta": list(self.coefficients), "scale": self.scale}


def _model(equation: Literal[2, 3], theta: Sequence[float], t: np.ndarray) -> np.ndarray:
    """Curve (2) or (3) at rounds ``t``, on the scale F / F_0; inf where it has a pole."""
    a, b, c, d = theta
    denominator = a * t**b + c if equation == 2 else (a * t + b) * t + c
    with np.errstate(divide="ignore"):
        return np.where(denominator > 0, 1.0 / denominator, np.inf) + d


@dataclass(frozen=True)
class StepModel:
    """Round time d(w) = c0 + (w - 1) c1 + w c2 + c3 / w, fitted by non-negative least squares.

    With c3 = 0 this is MLLess's model, which never decreases with w: right for SGD with a
    fixed batch per worker, wrong for ADMM, where every round solves all B blocks and w
    workers share them. c3 / w is that shared compute. Only c0 - c1, c1 + c2 and c3 are
    identified by data; predictions are. ``workers`` lists the pool sizes observed: a
    prediction outside them is a guess, and with a single size the slope is not identified.
    """

    coefficients: tuple[float, float, float, float]
    workers: tuple[int, ...]

    def seconds(self, workers: int) -> float:
        c0, c1, c2, c3 = self.coefficients
        return c0 + (workers - 1) * c1 + workers * c2 + c3 / workers


@dataclass(frozen=True)
class RoundModel:
    """The ``model`` rule's round time: the overhead plus the busiest worker's compute.

    Every round solves all B blocks, so the worker with the most work sets the compute part;
    the rest (broadcast, answers through the hub, the coordinator's queue, the reduce) is the
    overhead. Both come from the last rounds of the current pool: each worker's compute is its
    median over them, and the overhead is the median of the round time less the slowest
    worker's compute. A pool without some workers is predicted by moving the leavers' blocks
    as the coordinator does (:func:`move_blocks`), each block costing its holder's compute per
    block, and adding them to the receivers' compute; the overhead shrinks by
    ``answer_seconds`` per leaver, the coordinator's time to take in one answer, measured as the
    lower quartile of the spacing between consecutive answers taken in (a busy queue that
    serves one at a time spaces them by its service time; 0 when the answers' delays are not
    measured). The receivers' longer answers (more blocks on their links) are not in it
    (optimistic by a link time per moved block). The next decision refits on the rounds the new
    pool really took.
    """

    overhead_seconds: float
    compute: Mapping[str, float]
    """Per worker: median compute seconds over the rounds fitted on."""
    blocks: Mapping[str, int]
    """Per worker: blocks held."""
    rounds: int
    """Rounds it was fitted on."""
    answer_seconds: float = 0.0
    """The coordinator's time per answer taken in (see above)."""

    def block_seconds(self, name: str) -> float:
        """Compute seconds of one of ``name``'s blocks (its compute shared by its blocks)."""
        return self.compute[name] / max(self.blocks[name], 1)

    def after(self, victims: Sequence[str]) -> tuple[float, int]:
        """Predicted round time and the busiest worker's blocks once ``victims`` left."""
        gone = set(victims)
        load = {n: c for n, c in self.compute.items() if n not in gone}
        heap = [(b, n) for n, b in self.blocks.items() if n not in gone]
        heapq.heapify(heap)  # (blocks held, name): the coordinator's receiver first
        for victim in victims:
            cost = self.block_seconds(victim)
            for _ in range(self.blocks[victim]):
                held, name = heap[0]
                load[name] += cost
                heapq.heapreplace(heap, (held + 1, name))
        overhead = max(self.overhead_seconds - self.answer_seconds * len(gone), 0.0)
        return overhead + max(load.values()), max(b for b, _ in heap)

    def seconds(self, most_blocks: int) -> float:
        """Round time when the busiest worker holds ``most_blocks`` of the costliest blocks."""
        costliest = max(self.block_seconds(n) for n in self.compute)
        return self.overhead_seconds + costliest * most_blocks

    def to_dict(self) -> dict[str, Any]:
        return {
            "overheadSeconds": self.overhead_seconds,
            "computeSeconds": dict(sorted(self.compute.items())),
            "blocks": dict(sorted(self.blocks.items())),
            "rounds": self.rounds,
            "answerSeconds": self.answer_seconds,
        }


@dataclass(frozen=True)
class Candidate:
    """A pool size the ``model`` rule weighed, with its projections to convergence."""

    workers: int
    victims: tuple[str, ...]
    """Who would leave (the victim rule's order)."""
    most_blocks: int
    """Blocks of the busiest worker once the victims' blocks moved (the coordinator's rule)."""
    round_seconds: float
    """Predicted round time (today's compute: x-steps that get cheaper later make it a little
    pessimistic)."""
    handover_seconds: float
    """Predicted extra time of the round after the eviction (survivors load the moved blocks)."""
    seconds: float
    """Projected solve time at convergence."""
    dollars: float
    """Projected dollars at convergence (spent so far plus the rest)."""
    perf_per_dollar: float
    """1 / (seconds x dollars)."""
    slowdown: float
    """seconds over the projected solve time with the initial pool kept, less 1."""
    s_delta: float | None
    """Seed 002's loss gap with this pool's round time (None: curve (3) not fitted)."""
    allowed: bool
    """Within ``max_slowdown`` and under S."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "victims": list(self.victims),
            "mostBlocks": self.most_blocks,
            "roundSeconds": self.round_seconds,
            "handoverSeconds": self.handover_seconds,
            "seconds": self.seconds,
            "dollars": self.dollars,
            "perfPerDollar": self.perf_per_dollar,
            "slowdown": self.slowdown,
            "sDelta": self.s_delta,
            "allowed": self.allowed,
        }


@dataclass(frozen=True)
class RoundTimes:
    """Round times by pool size, what :class:`StepModel` is fitted on, folded in round by round:
    a decision then costs the same at round 10 and at round 10 000 (refitting on the whole
    history cost the coordinator 0.2 ms a round at 250 rounds, growing with every round)."""

    observed: int = 0
    """Observations of the history folded in."""
    by_pool: tuple[tuple[int, int, float], ...] = ()
    """(pool size, rounds, their total seconds), by pool size. A round's time is the wall time
    since the previous round's end; the first round and each round whose pool size differs
    from the previous one (a handover) are left out."""

    def folded(self, history: Sequence[Observation]) -> RoundTimes:
        """With the rounds of ``history`` past those already folded in (all of them when
        ``history`` is shorter than what was folded: not the same history)."""
        start = self.observed if self.observed <= len(history) else 0
        table = {w: (n, total) for w, n, total in self.by_pool} if start else {}
        for a, b in pairwise(history[max(start - 1, 0) :]):
            if len(a.workers) == len(b.workers):
                n, total = table.get(len(b.workers), (0, 0.0))
                table[len(b.workers)] = (n + 1, total + b.wall_seconds - a.wall_seconds)
        by_pool = tuple(sorted((w, n, total) for w, (n, total) in table.items()))
        return RoundTimes(len(history), by_pool)

    def model(self) -> StepModel | None:
        """:class:`StepModel` fitted to every round folded in; None before the first."""
        if not self.by_pool:
            return None
        w, n, total = np.array(self.by_pool, dtype=float).T
        # least squares over the rounds = over each size's mean round, weighted by its count
        root = np.sqrt(n)
        design = np.column_stack([np.ones_like(w), w - 1, w, 1 / w]) * root[:, None]
        coefficients, _ = nnls(design, total / n * root)
        return StepModel(tuple(float(c) for c in coefficients), tuple(int(x) for x in w))


@dataclass(frozen=True)
class PolicyState:
    """What a decision hands to the next one (start from ``PolicyState()``)."""

    knee_candidate: int | None = None
    """The iteration the knee would be at, from the last check."""
    knee_streak: int = 0
    """Consecutive checks the candidate held (did not move later)."""
    knee_iteration: int | None = None
    """Declared once the streak reached the patience; then fixed."""
    reference: Curve | None = None
    """Curve (2), fitted once when the knee was declared."""
    reference_step_seconds: float | None = None
    """d_P: the step time with the initial pool, fixed at the knee."""
    last_eviction_seconds: float | None = None
    """Wall time of the last eviction decided."""
    round_times: RoundTimes = field(default_factory=RoundTimes)
    """The rounds observed so far, for :class:`StepModel`."""


@dataclass(frozen=True)
class Figures:
    """The numbers behind a decision; None where the policy did not compute one."""

    s_delta: float | None = None
    knee_iteration: int | None = None
    reference: Curve | None = None
    current: Curve | None = None
    reference_step_seconds: float | None = None
    """d_P."""
    current_step_seconds: float | None = None
    """d_p, with the current pool."""
    smaller_pool_step_seconds: float | None = None
    """Predicted round time with one worker fewer."""
    reference_loss: float | None = None
    """L_P(t + floor(Delta / d_P))."""
    current_loss: float | None = None
    """l_p(t + floor(Delta / d_p))."""
    idle_share: float | None = None
    """Of the whole pool over the window."""
    projected_dollars: float | None = None
    """Spent so far plus the projected cost to converge with the current pool (with a budget
    or deadline guard)."""
    projected_seconds: float | None = None
    """Projected wall time at convergence with the current pool (likewise)."""
    target_workers: int | None = None
    """The ``model`` rule: the pool size it chose (the current one when it keeps)."""
    round_model: RoundModel | None = None
    """The ``model`` rule: the round-time model behind its projections."""
    candidates: tuple[Candidate, ...] = ()
    """The ``model`` rule: every pool size it weighed, with its projections."""


@dataclass(frozen=True)
class Decision:
    """Keep, evict ``victim`` or stop, after the round ``iteration``; why; and the figures."""

    iteration: int
    wall_seconds: float
    workers: int
    """Pool size when decided."""
    action: Action
    reason: Reason
    victim: str | None = None
    """The (first) worker to evict (EVICT only): ``victims[0]``."""
    figures: Figures = field(default_factory=Figures)
    state: PolicyState = field(default_factory=PolicyState)
    victims: tuple[str, ...] = ()
    """Every worker to evict (EVICT only), in the victim rule's order; one unless the ``model``
    rule shrinks the pool by several in one decision. A caller that can evict only one worker
    per decision passes ``max_victims=1`` to :func:`decide` (or :class:`Tracker`)."""

    def __post_init__(self) -> None:
        if self.victims and self.victim is None:
            object.__setattr__(self, "victim", self.victims[0])
        elif self.victim is not None and not self.victims:
            object.__setattr__(self, "victims", (self.victim,))

    def to_dict(self) -> dict[str, Any]:
        """The report's entry for this decision (camelCase, as the report)."""
        f = self.figures
        return {
            "iteration": self.iteration,
            "wallSeconds": self.wall_seconds,
            "workers": self.workers,
            "action": self.action.value,
            "reason": self.reason.value,
            "victim": self.victim,
            "victims": list(self.victims),
            "targetWorkers": f.target_workers,
            "sDelta": f.s_delta,
            "kneeIteration": f.knee_iteration,
            "referenceCurve": f.reference.to_dict() if f.reference else None,
            "currentCurve": f.current.to_dict() if f.current else None,
            "referenceStepSeconds": f.reference_step_seconds,
            "currentStepSeconds": f.current_step_seconds,
            "smallerPoolStepSeconds": f.smaller_pool_step_seconds,
            "referenceLoss": f.reference_loss,
            "currentLoss": f.current_loss,
            "idleShare": f.idle_share,
            "projectedDollars": f.projected_dollars,
            "projectedSeconds": f.projected_seconds,
            "roundModel": f.round_model.to_dict() if f.round_model else None,
            "candidates": [c.to_dict() for c in f.candidates],
        }


def decide(
    history: Sequence[Observation],
    settings: ScaleInSettings,
    state: PolicyState | None = None,
    spend: Spend | None = None,
    max_victims: int | None = None,
    ahead: int = 0,
    stale: bool = False,
) -> Decision:
    """The decision after the last round of ``history`` (oldest first, at least one round).

    In order: the knee is tracked (``auto``); the budget guard may stop the job or shrink the
    pool; the deadline guard likewise; then the policy decides. Eviction decisions of any origin
    are at most one per ``interval_seconds`` and never go below ``min_workers``. Only the
    ``model`` rule of ``auto`` names several victims; ``max_victims`` caps how many (1 for a
    caller that evicts one worker per decision; None: no cap). ``state`` is the previous
    decision's, taken on a shorter prefix of the same ``history`` (None: the first decision).
    ``ahead``: rounds that will have run when the decision is carried out (1 for a caller that
    decides while the next round runs); the guards stop that much earlier. ``stale``: the pool
    has changed since the last round (:attr:`Reason.POOL_CHANGING`): the knee is still tracked
    and a guard may still stop the job, but nothing is evicted.
    """
    if not history:
        raise ValueError("decide needs at least one observed round")
    if max_victims is not None and max_victims < 1:
        raise ValueError(f"max_victims must be >= 1 or None, got {max_victims}")
    state = state or PolicyState()
    state = replace(state, round_times=state.round_times.folded(history))
    if settings.policy == "auto":
        state = _track_knee(history, settings, state)
    steps = state.round_times.model() if _uses_step_model(settings) else None
    guards = _guard_figures(history, spend, steps, state)
    guarded = _budget_guard(history, settings, state, spend, steps, guards, ahead)
    guarded = guarded or _deadline_guard(history, settings, state, steps, guards, ahead)
    if stale:
        if guarded is not None and guarded.action is Action.STOP:
            return guarded
        return _decision(history, Action.KEEP, Reason.POOL_CHANGING, state, guards)
    return guarded or _POLICIES[settings.policy](
        history, settings, state, steps, guards, spend=spend, max_victims=max_victims
    )


def _uses_step_model(settings: ScaleInSettings) -> bool:
    """Whether a decision uses :class:`StepModel` (the guards, and the projections they
    report; MLLess's rule): fitting it costs the coordinator tens of microseconds every round."""
    guarded = settings.budget_dollars is not None or settings.deadline_seconds is not None
    return guarded or (settings.policy == "auto" and settings.rule == "mlless")


def _decision(
    history: Sequence[Observation],
    action: Action,
    reason: Reason,
    state: PolicyState,
    figures: Figures,
    victims: Sequence[str] = (),
) -> Decision:
    now = history[-1]
    if action is Action.EVICT:
        state = replace(state, last_eviction_seconds=now.wall_seconds)
    return Decision(
        iteration=now.iteration,
        wall_seconds=now.wall_seconds,
        workers=len(now.workers),
        action=action,
        reason=reason,
        figures=figures,
        state=state,
        victims=tuple(victims),
    )


def _evict(
    history: Sequence[Observation],
    settings: ScaleInSettings,
    state: PolicyState,
    figures: Figures,
    reason: Reason,
    victims: Sequence[str] | None = None,
) -> Decision:
    """Evict ``victims`` (default: the one the victim rule names) for ``reason``, unless the
    interval or ``min_workers`` forbids it; never below ``min_workers``."""
    now = history[-1]
    if len(now.workers) <= settings.min_workers:
        return _decision(history, Action.KEEP, Reason.MIN_WORKERS, state, figures)
    if _too_soon(now, settings, state):
        return _decision(history, Action.KEEP, Reason.INTERVAL, state, figures)
    if victims is None:
        victims = (most_idle(history, settings.window_rounds),)
    victims = tuple(victims)[: len(now.workers) - settings.min_workers]
    return _decision(history, Action.EVICT, reason, state, figures, victims)


def _too_soon(now: Observation, settings: ScaleInSettings, state: PolicyState) -> bool:
    """Whether the last eviction was less than ``interval_seconds`` ago (one per interval)."""
    last = state.last_eviction_seconds
    return last is not None and now.wall_seconds - last < settings.interval_seconds


# --- the policies ----------------------------------------------------------------------------


def _none(history, settings, state, steps, guards, **_) -> Decision:
    return _decision(history, Action.KEEP, Reason.POLICY_NONE, state, guards)


def _auto(history, settings, state, steps, guards, spend=None, max_victims=None) -> Decision:
    """After the knee: the ``model`` rule (:func:`_model_rule`) or MLLess's (:func:`_mlless`)."""
    if state.reference is None or state.reference_step_seconds is None:
        return _decision(history, Action.KEEP, Reason.BEFORE_KNEE, state, guards)
    if settings.rule == "model":
        return _model_rule(history, settings, state, guards, spend, max_victims)
    return _mlless(history, settings, state, steps, guards)


def _mlless(history, settings, state, steps, guards) -> Decision:
    """MLLess's rule: after the knee, evict while s_Delta < S (seed 002, eq. 1)."""
    now = history[-1]
    segment = history[_segment_start(history, state.knee_iteration) :]
    workers = len(now.workers)
    d_big = state.reference_step_seconds
    d_small = steps.seconds(workers)
    figures = replace(
        guards,
        reference=state.reference,
        reference_step_seconds=d_big,
        current_step_seconds=d_small,
        smaller_pool_step_seconds=_smaller_step(steps, workers),
    )
    if workers <= settings.min_workers:
        return _decision(history, Action.KEEP, Reason.MIN_WORKERS, state, figures)
    if _too_soon(now, settings, state):  # before the fit: it costs milliseconds every round
        return _decision(history, Action.KEEP, Reason.INTERVAL, state, figures)
    if len(segment) < settings.min_fit_points:
        return _decision(history, Action.KEEP, Reason.TOO_FEW_POINTS, state, figures)
    current = fit_curve(segment, history[0], equation=3)
    if current is None or d_big <= 0 or d_small <= 0:
        return _decision(history, Action.KEEP, Reason.FIT_FAILED, state, figures)
    t = _step(now, history[0])
    reference_loss = state.reference(t + math.floor(settings.delta_seconds / d_big))
    current_loss = current(t + math.floor(settings.delta_seconds / d_small))
    gap = (current_loss - reference_loss) / abs(reference_loss)
    figures = replace(
        figures,
        current=current,
        reference_loss=reference_loss,
        current_loss=current_loss,
        s_delta=gap,
    )
    if not gap < settings.threshold:  # a NaN gap keeps the pool too
        return _decision(history, Action.KEEP, Reason.GAP_OVER_THRESHOLD, state, figures)
    return _evict(history, settings, state, figures, Reason.GAP_UNDER_THRESHOLD)


MIN_GAIN = 0.01
"""The ``model`` rule shrinks only for a projected Perf/$ gain above 1 %: the projections are
not exact, and a handover is not free."""
ROUND_MODEL_ROUNDS = 3
"""Rounds of the current pool the round-time model is fitted on (the latest; x-steps get
cheaper as the iterates settle, so older rounds would overstate the compute)."""


def _model_rule(history, settings, state, guards, spend, max_victims) -> Decision:
    """After the knee: shrink to the pool size that maximizes the projected Perf/$ of the job,
    within ``max_slowdown`` of the initial pool's projected time and under the loss-gap rule,
    all victims in one decision (:func:`choose_pool`)."""
    now = history[-1]
    workers = len(now.workers)
    figures = replace(
        guards,
        reference=state.reference,
        reference_step_seconds=state.reference_step_seconds,
        target_workers=workers,
    )
    if workers <= settings.min_workers:
        return _decision(history, Action.KEEP, Reason.MIN_WORKERS, state, figures)
    if _too_soon(now, settings, state):
        return _decision(history, Action.KEEP, Reason.INTERVAL, state, figures)
    model = fit_round_model(history)
    if model is None:
        return _decision(history, Action.KEEP, Reason.TOO_FEW_POINTS, state, figures)
    figures = replace(figures, round_model=model, current_step_seconds=model.after(())[0])
    if spend is None or spend.remaining_iterations is None:
        return _decision(history, Action.KEEP, Reason.REMAINING_UNKNOWN, state, figures)
    current = None
    candidates = choose_pool(history, settings, state, spend, model)
    chosen = _best(candidates)
    segment = history[_segment_start(history, state.knee_iteration, by_pool=False) :]
    if chosen is not candidates[0] and len(segment) >= settings.min_fit_points:
        # the loss-gap rule, only when a smaller pool is wanted (curve (3) costs a fit)
        current = fit_curve(segment, history[0], equation=3)
        candidates = choose_pool(history, settings, state, spend, model, current)
        chosen = _best(candidates)
    keep = candidates[0]  # the current pool
    figures = replace(
        figures,
        current=current,
        target_workers=chosen.workers,
        candidates=tuple(candidates),
        s_delta=chosen.s_delta,
        smaller_pool_step_seconds=chosen.round_seconds if chosen is not keep else None,
    )
    if chosen is keep:
        return _decision(history, Action.KEEP, Reason.MODEL_KEEP, state, figures)
    victims = chosen.victims[:max_victims] if max_victims is not None else chosen.victims
    return _evict(history, settings, state, figures, Reason.MODEL_SHRINK, victims)


def _best(candidates: Sequence[Candidate]) -> Candidate:
    """The allowed candidate of highest projected Perf/$ (ties: the larger pool), if it beats
    the current pool (``candidates[0]``) by more than ``MIN_GAIN``; else the current pool."""
    keep = candidates[0]
    best = max((c for c in candidates if c.allowed), key=lambda c: (c.perf_per_dollar, c.workers))
    return best if best.perf_per_dollar > (1 + MIN_GAIN) * keep.perf_per_dollar else keep


def choose_pool(
    history: Sequence[Observation],
    settings: ScaleInSettings,
    state: PolicyState,
    spend: Spend,
    model: RoundModel,
    current: Curve | None = None,
) -> list[Candidate]:
    """Every pool size from the current one (first) down to ``min_workers``, projected.

    With R = ``spend.remaining_iterations`` rounds to go, a pool of w' after evicting the w - w'
    most idle workers (their blocks moved as the coordinator moves them) projects

    - round time d(w') = :class:`RoundModel` at its busiest worker's blocks;
    - handover h: the largest extra time a past handover took in this run, or, before the first,
      one round d(w') (the survivors load the moved blocks before their next x-steps);
    - solve time T(w') = now + h + R d(w'), dollars $(w') = spent + rate(w') (h + R d(w'));
    - Perf/$ = 1 / (T(w') $(w')) and the slowdown T(w') / T_P - 1, where T_P is the projected
      solve time had the initial pool been kept: the time of the last round before the first
      eviction plus every round since and to go at d(initial pool);
    - with ``current`` (curve (3)), seed 002's loss gap with d(w') as the current step time.

    A candidate is allowed when its slowdown is at most ``max_slowdown`` and its loss gap (when
    known) under ``threshold``; the current pool always is.
    """
    now = history[-1]
    remaining = max(spend.remaining_iterations or 0.0, 0.0)
    order = idle_order(history, settings.window_rounds)
    initial_most = max(_blocks(history[0], history).values())
    left = len(history[0].workers) - len(now.workers)  # their answers, back on the overhead
    initial_round = model.seconds(initial_most) + model.answer_seconds * max(left, 0)
    reference_end = _reference_end(history, initial_round, remaining)
    handover = _past_handover(history, model)
    t = _step(now, history[0])
    d_big = state.reference_step_seconds
    reference_loss = None
    if current is not None and state.reference is not None and d_big and d_big > 0:
        reference_loss = state.reference(t + math.floor(settings.delta_seconds / d_big))
    out = []
    for n in range(0, len(now.workers) - settings.min_workers + 1):
        victims = order[:n]
        d, most = model.after(victims)
        h = 0.0 if n == 0 else (handover if handover is not None else d)
        seconds = now.wall_seconds + h + remaining * d
        dollars = spend.dollars + spend.rates.at(len(now.workers) - n) * (h + remaining * d)
        gap = None
        if reference_loss is not None and d > 0:
            loss = current(t + math.floor(settings.delta_seconds / d))
            gap = (loss - reference_loss) / abs(reference_loss)
        slowdown = seconds / reference_end - 1 if reference_end > 0 else math.inf
        allowed = n == 0 or (
            slowdown <= settings.max_slowdown and (gap is None or gap < settings.threshold)
        )
        out.append(
            Candidate(
                workers=len(now.workers) - n,
                victims=tuple(victims),
                most_blocks=most,
                round_seconds=d,
                handover_seconds=h,
                seconds=seconds,
                dollars=dollars,
                perf_per_dollar=perf_per_dollar(seconds, dollars),
                slowdown=slowdown,
                s_delta=gap,
                allowed=allowed,
            )
        )
    return out


def perf_per_dollar(seconds: float, dollars: float) -> float:
    """1 / (seconds x dollars); inf when free."""
    product = seconds * dollars
    return 1.0 / product if product > 0 else math.inf


def _reference_end(history, initial_round: float, remaining: float) -> float:
    """Projected solve time had the initial pool been kept: the wall time of the last round
    before the first change of pool size (or now), then every later round at ``initial_round``."""
    first = len(history[0].workers)
    changed = next((i for i, o in enumerate(history) if len(o.workers) != first), None)
    if changed is None:
        return history[-1].wall_seconds + remaining * initial_round
    before = history[changed - 1].wall_seconds
    return before + (len(history) - changed + remaining) * initial_round


def _past_handover(history, model: RoundModel) -> float | None:
    """The largest extra time of a handover round seen (its time less the next round's), or
    None before the first handover has a steady round after it."""
    extra = None
    for i in range(1, len(history) - 1):
        a, b, c = history[i - 1], history[i], history[i + 1]
        if len(a.workers) != len(b.workers) and len(b.workers) == len(c.workers):
            stall = (b.wall_seconds - a.wall_seconds) - (c.wall_seconds - b.wall_seconds)
            extra = max(extra or 0.0, stall)
    return extra


def fit_round_model(
    history: Sequence[Observation], rounds: int = ROUND_MODEL_ROUNDS
) -> RoundModel | None:
    """:class:`RoundModel` from the last ``rounds`` steady rounds of the current pool (not the
    first round of the solve, not the handover round after a change); None if there are none."""
    start = max(_segment_start(history, None) + 1, 1)
    steady = [
        history[i - 1 : i + 1] for i in range(max(start, len(history) - rounds), len(history))
    ]
    now = history[-1]
    if not steady or not now.workers:
        return None
    overheads = [
        max(b.wall_seconds - a.wall_seconds - max(b.compute.values(), default=0.0), 0.0)
        for a, b in steady
    ]
    compute = {n: median([b.compute.get(n, 0.0) for _, b in steady]) for n in now.workers}
    spacing = [_answer_spacing(b) for _, b in steady]
    known = [x for x in spacing if x is not None]
    return RoundModel(
        median(overheads),
        compute,
        _blocks(now, history),
        len(steady),
        answer_seconds=median(known) if known else 0.0,
    )


def _answer_spacing(o: Observation) -> float | None:
    """Lower quartile of the spacing between consecutive answers taken in, in one round (delay
    from the broadcast = compute + communication); None without the delays of 3 workers."""
    if len(o.communication) < 3 or set(o.communication) != set(o.compute):
        return None
    delays = sorted(o.compute[n] + o.communication[n] for n in o.compute)
    gaps = sorted(b - a for a, b in pairwise(delays))
    at = 0.25 * (len(gaps) - 1)  # the lower quartile, interpolated as numpy's percentile
    low = math.floor(at)
    high = min(low + 1, len(gaps) - 1)
    return gaps[low] + (gaps[high] - gaps[low]) * (at - low)


def move_blocks(blocks: Mapping[str, int], victims: Sequence[str]) -> dict[str, int]:
    """Blocks per survivor once ``victims`` left: each victim's blocks, victim by victim and block
    by block, go to the survivor holding the fewest (ties by name), as the coordinator moves
    them."""
    left = {n: b for n, b in blocks.items() if n not in set(victims)}
    for victim in victims:
        for _ in range(blocks[victim]):
            name = min(left, key=lambda n: (left[n], n))
            left[name] += 1
    return left


def _blocks(observation: Observation, history: Sequence[Observation]) -> dict[str, int]:
    """Blocks per worker in ``observation``; when not reported, the first pool's size in
    blocks (one each) spread over the workers as the coordinator spreads them."""
    if observation.blocks:
        return {n: observation.blocks.get(n, 1) for n in observation.workers}
    total = len(history[0].workers)
    w = len(observation.workers)
    return {n: total // w + (i < total % w) for i, n in enumerate(observation.workers)}


def idle_order(history: Sequence[Observation], window_rounds: int) -> list[str]:
    """The active workers in the victim rule's order (:func:`most_idle`): most idle first,
    ties by name."""
    start = max(_segment_start(history, None), len(history) - window_rounds)
    window = history[start:]

    def share(name: str) -> float:
        idle = sum(o.idle.get(name, 0.0) for o in window)
        busy = idle + sum(o.compute.get(name, 0.0) for o in window)
        return idle / busy if busy > 0 else 0.0

    return sorted(sorted(history[-1].workers), key=share, reverse=True)


def _idle(history, settings, state, steps, guards, **_) -> Decision:
    """Evict while the pool waits more than it computes (seed 001, Fig. 5)."""
    window = history[-settings.window_rounds :]
    steady = len(history) - _segment_start(history, None) >= settings.window_rounds
    share = idle_share(window) if steady else None
    figures = replace(guards, idle_share=share)
    if share is None:
        return _decision(history, Action.KEEP, Reason.TOO_FEW_POINTS, state, figures)
    if share <= settings.idle_share:
        return _decision(history, Action.KEEP, Reason.IDLE_UNDER_THRESHOLD, state, figures)
    return _evict(history, settings, state, figures, Reason.IDLE_OVER_THRESHOLD)


_POLICIES = {"none": _none, "auto": _auto, "idle": _idle}


# --- the guards ------------------------------------------------------------------------------


def _guard_figures(history, spend, steps, state) -> Figures:
    """Projected dollars and finish time with the current pool, when they can be projected."""
    if spend is None or spend.remaining_iterations is None or steps is None:
        return Figures(knee_iteration=state.knee_iteration)
    workers = len(history[-1].workers)
    step = steps.seconds(workers)
    return Figures(
        knee_iteration=state.knee_iteration,
        projected_dollars=_projected_dollars(spend, workers, step),
        projected_seconds=history[-1].wall_seconds + spend.remaining_iterations * step,
    )


def _smaller_step(steps: StepModel, workers: int) -> float | None:
    """The round time with one worker fewer; the current one while only one size was seen;
    None for a pool of one.

    With one pool size the model's slope is not identified; past the knee the rounds are
    overhead-bound, so a smaller pool is assumed no slower until the fit can say.
    """
    if workers <= 1:
        return None
    return steps.seconds(workers - 1 if len(steps.workers) > 1 else workers)


def _projected_dollars(spend: Spend, workers: int, step_seconds: float) -> float:
    """Spent so far plus the pool's rate over the remaining rounds."""
    return spend.dollars + spend.rates.at(workers) * spend.remaining_iterations * step_seconds


def _budget_guard(history, settings, state, spend, steps, guards, ahead=0) -> Decision | None:
    """Stop when the budget is spent (by the time the decision is carried out, ``ahead``
    rounds later); shrink, or stop, when converging would overspend it."""
    budget = settings.budget_dollars
    if budget is None or spend is None:
        return None
    workers = len(history[-1].workers)
    in_flight = ahead * spend.rates.at(workers) * steps.seconds(workers) if steps else 0.0
    if spend.dollars + in_flight >= budget:
        return _decision(history, Action.STOP, Reason.BUDGET_EXCEEDED, state, guards)
    if guards.projected_dollars is None or guards.projected_dollars <= budget:
        return None
    step = _smaller_step(steps, workers)
    cheaper = step is not None and (
        _projected_dollars(spend, workers - 1, step) < guards.projected_dollars
    )
    if workers > settings.min_workers and cheaper:
        return _evict(history, settings, state, guards, Reason.BUDGET_SHRINK)
    return _decision(history, Action.STOP, Reason.BUDGET_EXCEEDED, state, guards)


def _deadline_guard(history, settings, state, steps, guards, ahead=0) -> Decision | None:
    """Stop before a round that cannot end by the deadline; shrink when that is faster.

    Stopping earlier would not meet a deadline that is projected to be missed, only lose
    rounds; so the guard stops only when the first round the decision can still spare (the
    next, or ``ahead`` rounds later) cannot finish in time.
    """
    deadline = settings.deadline_seconds
    if deadline is None or steps is None:
        return None
    now = history[-1]
    workers = len(now.workers)
    if now.wall_seconds + (1 + ahead) * steps.seconds(workers) > deadline:
        return _decision(history, Action.STOP, Reason.DEADLINE_EXCEEDED, state, guards)
    late = guards.projected_seconds is not None and guards.projected_seconds > deadline
    smaller = _smaller_step(steps, workers)
    if late and smaller is not None and smaller < steps.seconds(workers):
        decision = _evict(history, settings, state, guards, Reason.DEADLINE_SHRINK)
        return decision if decision.action is Action.EVICT else None
    return None


# --- the pieces ------------------------------------------------------------------------------


def ewma(values: np.ndarray, span: int) -> np.ndarray:
    """Forward-backward exponentially weighted moving average (pandas' ``ewm(span).mean()``,
    ``adjust=True``, taken both ways and averaged): smooth, without lag in the interior."""
    alpha = 2.0 / (span + 1.0)
    decay = [1.0, alpha - 1.0]

    def forward(x: np.ndarray) -> np.ndarray:
        return lfilter([1.0], decay, x) / lfilter([1.0], decay, np.ones_like(x))

    return (forward(values) + forward(values[::-1])[::-1]) / 2.0


def knee_candidate(objectives: Sequence[float], tolerance: float, span: int) -> int | None:
    """Index of the round where the objective's smoothed normalized slope rose above
    ``-tolerance`` for good (the start of the final run above it), or None.

    The objective is normalized to (F_k - F_min) / (F_0 - F_min), the share of the decrease
    so far still ahead, so the slope reads "share of the decrease per round" whatever the
    problem's scale or offset. The normalized objective is smoothed, then differenced.
    """
    f = np.asarray(objectives, dtype=float)
    if f.size < 3 or not f[0] - f.min() > 0:
        return None
    drop = f[0] - f.min()
    slope = np.diff(ewma((f - f.min()) / drop, span))
    above = slope > -tolerance
    if not above[-1]:
        return None
    below = np.flatnonzero(~above)
    return int(below[-1]) + 2 if below.size else 1  # slope i joins rounds i and i + 1


def _track_knee(history, settings, state: PolicyState) -> PolicyState:
    """One knee check: update the candidate and its streak; declare it and fit curve (2)."""
    if state.knee_iteration is not None:
        return state
    index = knee_candidate(
        [o.objective for o in history], settings.knee_tolerance, settings.ewma_span
    )
    if index is None:
        return replace(state, knee_candidate=None, knee_streak=0)
    candidate = history[index].iteration
    held = state.knee_candidate is not None and candidate <= state.knee_candidate
    state = replace(
        state, knee_candidate=candidate, knee_streak=state.knee_streak + 1 if held else 1
    )
    if state.knee_streak < settings.knee_patience:
        return state
    reference = fit_curve(history, history[0], equation=2)
    steps = state.round_times.model()
    if reference is None or steps is None:
        return state
    return replace(
        state,
        knee_iteration=candidate,
        reference=reference,
        reference_step_seconds=steps.seconds(len(history[0].workers)),
    )


def _step(observation: Observation, first: Observation) -> int:
    """The curves' time t: rounds since the first observed one, from 1."""
    return observation.iteration - first.iteration + 1


def _segment_start(
    history: Sequence[Observation], knee_iteration: int | None, by_pool: bool = True
) -> int:
    """Index of the first round after both the knee and the last change of pool size
    (``by_pool=False``: after the knee only)."""
    start = 0
    for i in range(1, len(history) if by_pool else 0):
        if len(history[i].workers) != len(history[i - 1].workers):
            start = i
    if knee_iteration is not None:
        while start < len(history) and history[start].iteration < knee_iteration:
            start += 1
    return start


def fit_curve(
    segment: Sequence[Observation], first: Observation, equation: Literal[2, 3]
) -> Curve | None:
    """Fit seed 002's curve (2) or (3) to the objectives of ``segment``; None if it fails.

    Bounded least squares (all coefficients >= 0) on F / F_0 against t (rounds since
    ``first``, from 1); the residual of the i-th point is weighted by i, so later points count
    more (MLLess weights by sigma = 1 / i). The objective must be positive.
    """
    scale = first.objective
    t = np.array([_step(o, first) for o in segment], dtype=float)
    y = np.array([o.objective for o in segment], dtype=float) / scale
    if not scale > 0 or t.size < 4 or not np.all(np.isfinite(y)) or y.min() <= 0:
        return None
    weights = np.arange(1, t.size + 1) / t.size
    floor = max(y.min() - 0.1 * (y.max() - y.min()), 1e-9)
    first_gap, last_gap = max(y[0] - floor, 1e-9), max(y[-1] - floor, 1e-9)
    if equation == 2:
        x0 = [(1 / last_gap - 1 / first_gap) / max(t[-1] - t[0], 1.0), 1.0, 1 / first_gap]
    else:
        slope = (1 / last_gap - 1 / first_gap) / max(t[-1] - t[0], 1.0)
        x0 = [1e-9, slope, 1 / first_gap - slope * t[0]]
    x0 = np.maximum([*x0, floor], 1e-9)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return weights * (_model(equation, theta, t) - y)

    def jacobian(theta: np.ndarray) -> np.ndarray:
        a, b, c, _ = theta
        if equation == 2:
            power = t**b
            inner = np.column_stack([power, a * power * np.log(t), np.ones_like(t)])
            denominator = a * power + c
        else:
            inner = np.column_stack([t**2, t, np.ones_like(t)])
            denominator = (a * t + b) * t + c
        outer = -inner / denominator[:, None] ** 2
        return weights[:, None] * np.column_stack([outer, np.ones_like(t)])

    try:
        fit = least_squares(
            residuals,
            x0,
            jac=jacobian,
            bounds=(0.0, np.inf),
            x_scale="jac",
            max_nfev=200,
            ftol=1e-6,
            xtol=1e-6,
            gtol=1e-6,
        )
    except ValueError:
        return None
    if fit.status < 0 or not np.all(np.isfinite(fit.x)):  # status 0: out of evaluations, kept
        return None
    return Curve(equation, tuple(float(v) for v in fit.x), float(scale))


def idle_share(window: Sequence[Observation]) -> float | None:
    """idle / (idle + compute) of all workers over ``window``; None if nothing was measured."""
    idle = sum(sum(o.idle.values()) for o in window)
    busy = idle + sum(sum(o.compute.values()) for o in window)
    return idle / busy if busy > 0 else None


def most_idle(history: Sequence[Observation], window_rounds: int) -> str:
    """The victim: the active worker with the largest idle share over the last rounds.

    Only the rounds of the current pool size count (at most ``window_rounds``); a worker absent
    from some of them counts over the rounds it was in. Ties go to the name that sorts first.
    The most idle worker waits longest at the barrier, so the pool misses it least.
    """
    return idle_order(history, window_rounds)[0]


def rounds_to_tolerance(
    values: Sequence[float], tolerance: float, window: int = 10
) -> float | None:
    """Rounds until ``values`` (a residual, one per round) fall under ``tolerance``, projected
    by a log-linear fit over the last ``window`` rounds; None when not falling or too short.

    For ADMM, the remaining rounds are the larger projection of the primal and dual residuals.
    """
    v = np.asarray(values[-window:], dtype=float)
    if v.size and v[-1] <= tolerance:
        return 0.0
    if v.size < 3 or np.any(v <= 0) or tolerance <= 0:  # a log-linear fit never reaches 0
        return None
    slope = np.polyfit(np.arange(v.size), np.log(v), 1)[0]
    if slope >= 0:
        return None
    return float(math.log(tolerance / v[-1]) / slope)


def remaining_rounds(
    primal: Sequence[float], dual: Sequence[float], primal_tolerance: float, dual_tolerance: float
) -> float | None:
    """ADMM's rounds still to go: the later of the two residuals' projections (None: unknown)."""
    rounds = (
        rounds_to_tolerance(primal, primal_tolerance),
        rounds_to_tolerance(dual, dual_tolerance),
    )
    return None if None in rounds else max(rounds)


@dataclass
class Tracker:
    """One run's scale-in: every observed round and every decision, for the coordinator and the
    simulated platform alike (the policies themselves stay pure)."""

    settings: ScaleInSettings
    observations: list[Observation] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    max_victims: int | None = 1
    """Victims one decision may name (:func:`decide`); 1 for a caller that evicts one worker per
    decision (as MLLess evicts), None: no cap (the coordinator and the simulated platform)."""
    ahead: int = 0
    """Rounds between the observed round and carrying out its decision (:func:`decide`): 1 for
    the coordinator and the simulated platform, which decide while the next round runs."""

    @property
    def active(self) -> bool:
        """Whether anything decides: a policy other than none, or a guard."""
        s = self.settings
        return s.policy != "none" or s.budget_dollars is not None or s.deadline_seconds is not None

    def after_round(
        self, observation: Observation, spend: Spend | None = None, stale: bool = False
    ) -> Decision:
        """Observe a finished round and decide (``stale``: see :func:`decide`)."""
        self.observations.append(observation)
        previous = self.decisions[-1].state if self.decisions else None
        decision = decide(
            self.observations,
            self.settings,
            previous,
            spend,
            self.max_victims,
            self.ahead,
            stale,
        )
        self.decisions.append(decision)
        return decision

    def to_report(self, retired: Collection[str] | None = None) -> dict[str, Any]:
        """The report's ``scaleIn`` section: the policy, evictions and every decision.

        ``retired``: the workers the caller really evicted. A decision's victims may not all
        leave (the job ended before it was carried out, a victim left for another reason
        first); each decision then lists those that did (``retired``: each to the last decision
        that named it) and ``evictions`` counts them. None: every victim named left.
        """
        named = {v: i for i, d in enumerate(self.decisions) for v in d.victims}
        gone = set(named) if retired is None else set(retired) & set(named)
        entries = []
        for i, d in enumerate(self.decisions):
            entry = d.to_dict()
            entry["retired"] = [v for v in d.victims if v in gone and named[v] == i]
            entries.append(entry)
        return {"policy": self.settings.policy, "evictions": len(gone), "decisions": entries}
