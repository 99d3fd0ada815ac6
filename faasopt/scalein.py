r"""Scale-in policies: pure functions from an observed history to a decision.

The coordinator appends one :class:`Observation` per round and calls :func:`decide`, which
returns a :class:`Decision`: keep, evict one named worker, or stop. The decision calls nothing;
the coordinator carries it out. What a later decision depends on (the knee, the reference curve)
travels in :attr:`Decision.state`, which the coordinator hands back on the next call: the
policies keep no hidden state, and replaying a history replays its decisions. Every decision,
taken or not, carries its figures (:class:`Figures`) for the report.

Policies (``docs/scale-in.md`` says more):

``none``
    Always keep.
``auto``
    MLLess's scale-in scheduler (seed 002, Sec. 4.2). Find the knee of the objective; fit the
    reference curve (2) :math:`L_P(t) = 1 / (\theta_0 t^{\theta_1} + \theta_2) + \theta_3` once
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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import pairwise
from typing import Any, Literal, Protocol

import numpy as np
from scipy.optimize import least_squares, nnls
from scipy.signal import lfilter

from faasopt.cost import Rates

PolicyName = Literal["none", "auto", "idle"]


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

    @classmethod
    def of_round(
        cls, iteration: int, objective: float, wall_seconds: float, timings: Mapping[str, _Timing]
    ) -> Observation:
        """From a round's per-worker timings (anything with ``compute`` and ``idle``)."""
        return cls(
            iteration=iteration,
            objective=objective,
            wall_seconds=wall_seconds,
            workers=tuple(sorted(timings)),
            compute={name: t.compute for name, t in timings.items()},
            idle={name: t.idle for name, t in timings.items()},
        )


@dataclass(frozen=True)
class ScaleInSettings:
    """The ``scaleIn`` settings; defaults are the paper's where it has one (seed 002, 6.2)."""

    policy: PolicyName = "none"
    interval_seconds: float = 20.0
    """The scheduling interval T: at most one eviction per T seconds of wall time."""
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
    """Spent so far plus the projected cost to converge with the current pool."""
    projected_seconds: float | None = None
    """Projected wall time at convergence with the current pool."""


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
    """The worker to evict (EVICT only)."""
    figures: Figures = field(default_factory=Figures)
    state: PolicyState = field(default_factory=PolicyState)

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
        }


def decide(
    history: Sequence[Observation],
    settings: ScaleInSettings,
    state: PolicyState | None = None,
    spend: Spend | None = None,
) -> Decision:
    """The decision after the last round of ``history`` (oldest first, at least one round).

    In order: the knee is tracked (``auto``); the budget guard may stop the job or shrink the
    pool; the deadline guard likewise; then the policy decides. Evictions of any origin are at
    most one per ``interval_seconds`` and never go below ``min_workers``.
    """
    if not history:
        raise ValueError("decide needs at least one observed round")
    state = state or PolicyState()
    if settings.policy == "auto":
        state = _track_knee(history, settings, state)
    steps = fit_step_model(history)
    guards = _guard_figures(history, spend, steps, state)
    return (
        _budget_guard(history, settings, state, spend, steps, guards)
        or _deadline_guard(history, settings, state, steps, guards)
        or _POLICIES[settings.policy](history, settings, state, steps, guards)
    )


def _decision(
    history: Sequence[Observation],
    action: Action,
    reason: Reason,
    state: PolicyState,
    figures: Figures,
    victim: str | None = None,
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
        victim=victim,
        figures=figures,
        state=state,
    )


def _evict(
    history: Sequence[Observation],
    settings: ScaleInSettings,
    state: PolicyState,
    figures: Figures,
    reason: Reason,
) -> Decision:
    """Evict the victim for ``reason``, unless the interval or ``min_workers`` forbids it."""
    now = history[-1]
    if len(now.workers) <= settings.min_workers:
        return _decision(history, Action.KEEP, Reason.MIN_WORKERS, state, figures)
    last = state.last_eviction_seconds
    if last is not None and now.wall_seconds - last < settings.interval_seconds:
        return _decision(history, Action.KEEP, Reason.INTERVAL, state, figures)
    victim = most_idle(history, settings.window_rounds)
    return _decision(history, Action.EVICT, reason, state, figures, victim)


# --- the policies ----------------------------------------------------------------------------


def _none(history, settings, state, steps, guards) -> Decision:
    return _decision(history, Action.KEEP, Reason.POLICY_NONE, state, guards)


def _auto(history, settings, state, steps, guards) -> Decision:
    """MLLess's rule: after the knee, evict while s_Delta < S (seed 002, eq. 1)."""
    if state.reference is None or state.reference_step_seconds is None or steps is None:
        return _decision(history, Action.KEEP, Reason.BEFORE_KNEE, state, guards)
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


def _idle(history, settings, state, steps, guards) -> Decision:
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


def _smaller_step(steps: StepModel, workers: int) -> float:
    """The round time with one worker fewer; the current one while only one size was seen.

    With one pool size the model's slope is not identified; past the knee the rounds are
    overhead-bound, so a smaller pool is assumed no slower until the fit can say.
    """
    return steps.seconds(workers - 1 if len(steps.workers) > 1 else workers)


def _projected_dollars(spend: Spend, workers: int, step_seconds: float) -> float:
    """Spent so far plus the pool's rate over the remaining rounds."""
    return spend.dollars + spend.rates.at(workers) * spend.remaining_iterations * step_seconds


def _budget_guard(history, settings, state, spend, steps, guards) -> Decision | None:
    """Stop when the budget is spent; shrink, or stop, when converging would overspend it."""
    budget = settings.budget_dollars
    if budget is None or spend is None:
        return None
    if spend.dollars >= budget:
        return _decision(history, Action.STOP, Reason.BUDGET_EXCEEDED, state, guards)
    if guards.projected_dollars is None or guards.projected_dollars <= budget:
        return None
    workers = len(history[-1].workers)
    smaller = _projected_dollars(spend, workers - 1, _smaller_step(steps, workers))
    if workers > settings.min_workers and smaller < guards.projected_dollars:
        return _evict(history, settings, state, guards, Reason.BUDGET_SHRINK)
    return _decision(history, Action.STOP, Reason.BUDGET_EXCEEDED, state, guards)


def _deadline_guard(history, settings, state, steps, guards) -> Decision | None:
    """Stop before a round that cannot end by the deadline; shrink when that is faster.

    Stopping earlier would not meet a deadline that is projected to be missed, only lose
    rounds; so the guard stops only when the next round cannot finish in time.
    """
    deadline = settings.deadline_seconds
    if deadline is None or steps is None:
        return None
    now = history[-1]
    workers = len(now.workers)
    if now.wall_seconds + steps.seconds(workers) > deadline:
        return _decision(history, Action.STOP, Reason.DEADLINE_EXCEEDED, state, guards)
    late = guards.projected_seconds is not None and guards.projected_seconds > deadline
    if late and _smaller_step(steps, workers) < steps.seconds(workers):
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
    steps = fit_step_model(history)
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


def _segment_start(history: Sequence[Observation], knee_iteration: int | None) -> int:
    """Index of the first round after both the knee and the last change of pool size."""
    start = 0
    for i in range(1, len(history)):
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


def fit_step_model(history: Sequence[Observation]) -> StepModel | None:
    """Fit :class:`StepModel` to the (pool size, round time) pairs of ``history``.

    A round's time is the wall time between its end and the previous round's end; the first
    round and each round whose pool size differs from the previous one (a handover) are left
    out. None until one pair exists.
    """
    pairs = [
        (len(b.workers), b.wall_seconds - a.wall_seconds)
        for a, b in pairwise(history)
        if len(a.workers) == len(b.workers)
    ]
    if not pairs:
        return None
    w, d = np.array(pairs, dtype=float).T
    coefficients, _ = nnls(np.column_stack([np.ones_like(w), w - 1, w, 1 / w]), d)
    return StepModel(tuple(float(c) for c in coefficients), tuple(sorted({int(x) for x in w})))


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
    start = max(_segment_start(history, None), len(history) - window_rounds)
    window = history[start:]

    def share(name: str) -> float:
        idle = sum(o.idle.get(name, 0.0) for o in window)
        busy = idle + sum(o.compute.get(name, 0.0) for o in window)
        return idle / busy if busy > 0 else 0.0

    return max(sorted(history[-1].workers), key=share)


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
    if v.size < 3 or np.any(v <= 0):
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

    @property
    def active(self) -> bool:
        """Whether anything decides: a policy other than none, or a guard."""
        s = self.settings
        return s.policy != "none" or s.budget_dollars is not None or s.deadline_seconds is not None

    def after_round(self, observation: Observation, spend: Spend | None = None) -> Decision:
        """Observe a finished round and decide."""
        self.observations.append(observation)
        previous = self.decisions[-1].state if self.decisions else None
        decision = decide(self.observations, self.settings, previous, spend)
        self.decisions.append(decision)
        return decision

    def to_report(self) -> dict[str, Any]:
        """The report's ``scaleIn`` section: the policy, evictions and every decision."""
        return {
            "policy": self.settings.policy,
            "evictions": sum(d.action is Action.EVICT for d in self.decisions),
            "decisions": [d.to_dict() for d in self.decisions],
        }
