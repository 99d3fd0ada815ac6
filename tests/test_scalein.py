"""Scale-in policies on made-up histories: objective curves a / (b + k) + c, with or without
noise, pools whose rounds take d(w) seconds, and a loop that carries the evictions out."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from faasopt.coordinator import WorkerTiming
from faasopt.cost import Rates
from faasopt.scalein import (
    Action,
    Decision,
    Observation,
    PolicyState,
    Reason,
    RoundTimes,
    ScaleInSettings,
    Spend,
    Tracker,
    decide,
    ewma,
    fit_curve,
    knee_candidate,
    most_idle,
    rounds_to_tolerance,
)

POOL = tuple(f"w{i:02d}" for i in range(8))


def curve(a: float = 10.0, b: float = 5.0, c: float = 1.0) -> Callable[[int], float]:
    return lambda k: a / (b + k) + c


HYPERBOLA = curve()


def true_knee(b: float, tolerance: float) -> int:
    """First round whose drop is under ``tolerance`` of the decrease so far, for a / (b + k) + c."""
    k = 1
    while (1 / (b + k - 1) - 1 / (b + k)) / (1 / b - 1 / (b + k)) >= tolerance:
        k += 1
    return k


def observation(
    k: int, objective: float, wall: float, pool: tuple[str, ...], compute=None, idle=None
) -> Observation:
    compute = compute or {name: 0.3 + 0.01 * i for i, name in enumerate(pool)}
    idle = idle or {name: 0.2 for name in pool}
    return Observation(k, objective, wall, tuple(pool), compute, idle)


def run(
    settings: ScaleInSettings,
    rounds: int = 120,
    objective: Callable[[int], float] = HYPERBOLA,
    noise: float = 0.0,
    step: Callable[[int], float] = lambda w: 0.5 + 0.1 * w,
    pool: tuple[str, ...] = POOL,
    seed: int = 0,
) -> tuple[list[Observation], list[Decision]]:
    """Play a job: one decision per round, evictions applied before the next round."""
    rng = np.random.default_rng(seed)
    history: list[Observation] = []
    decisions: list[Decision] = []
    active, wall, state = list(pool), 0.0, None
    for k in range(rounds):
        wall += step(len(active))
        value = objective(k) * (1 + noise * rng.standard_normal())
        compute = {name: 0.3 + 0.01 * i for i, name in enumerate(active)}
        idle = {name: step(len(active)) - compute[name] for name in active}
        history.append(Observation(k, value, wall, tuple(active), compute, idle))
        decision = decide(history, settings, state)
        decisions.append(decision)
        state = decision.state
        if decision.action is Action.EVICT:
            active.remove(decision.victim)
    return history, decisions


AUTO = ScaleInSettings(
    policy="auto", rule="mlless", interval_seconds=5.0, delta_seconds=2.5, min_workers=2
)
"""MLLess's rule (seed 002, eq. 1), one worker per interval."""


# --- smoothing and the knee --------------------------------------------------------------------


def test_ewma_is_the_mean_of_pandas_forward_and_backward_averages():
    x = np.array([4.0, 1.0, 3.0, 2.0, 8.0])
    alpha = 2 / (3 + 1)

    def forward(v):  # pandas ewm(span=3, adjust=True).mean(), written out
        w = (1 - alpha) ** np.arange(len(v))
        return np.array([np.dot(w[: i + 1], v[i::-1]) / w[: i + 1].sum() for i in range(len(v))])

    expected = (forward(x) + forward(x[::-1])[::-1]) / 2
    np.testing.assert_allclose(ewma(x, 3), expected, rtol=1e-12)


@pytest.mark.parametrize(("b", "noise"), [(5.0, 0.0), (5.0, 0.002), (2.0, 0.0), (10.0, 0.003)])
def test_knee_is_found_where_the_curve_flattens(b, noise):
    _history, decisions = run(AUTO, rounds=60, objective=curve(b=b), noise=noise)
    knee = decisions[-1].state.knee_iteration
    assert knee is not None
    assert abs(knee - true_knee(b, AUTO.knee_tolerance)) <= 2


def test_knee_does_not_depend_on_the_objectives_scale_or_offset():
    k = np.arange(60)
    small = 10 / (5 + k) + 1
    large = 3e5 + 1e6 * small
    index = knee_candidate(small, 0.01, 20)
    assert index is not None
    assert knee_candidate(large, 0.01, 20) == index


def test_no_knee_while_the_objective_still_falls_fast():
    k = np.arange(15)
    assert knee_candidate(10 / (5 + k) + 1, 0.01, 20) is None
    assert knee_candidate([1.0, 1.0, 1.0, 1.0], 0.01, 20) is None  # no decrease: no scale


def test_the_knee_must_hold_for_patience_checks():
    _history, decisions = run(AUTO, rounds=60)
    declared = next(i for i, d in enumerate(decisions) if d.state.knee_iteration is not None)
    streaks = [d.state.knee_streak for d in decisions[declared - AUTO.knee_patience + 1 : declared]]
    assert streaks == list(range(1, AUTO.knee_patience))
    assert decisions[declared].state.knee_streak == AUTO.knee_patience


# --- auto ------------------------------------------------------------------------------------


def test_auto_evicts_nobody_before_the_knee_and_someone_after():
    _history, decisions = run(AUTO)
    declared = next(i for i, d in enumerate(decisions) if d.state.knee_iteration is not None)
    before = decisions[:declared]
    assert before and all(d.action is Action.KEEP for d in before)
    assert all(d.reason is Reason.BEFORE_KNEE for d in before)
    evictions = [d for d in decisions if d.action is Action.EVICT]
    assert evictions and evictions[0].iteration >= decisions[declared].iteration
    assert evictions[0].figures.s_delta is not None and evictions[0].figures.s_delta < 0.15


def test_auto_never_goes_below_min_workers():
    settings = ScaleInSettings(
        policy="auto", rule="mlless", interval_seconds=2.0, delta_seconds=1.0, min_workers=3
    )
    history, decisions = run(settings, rounds=150)
    sizes = [len(o.workers) for o in history]
    assert min(sizes) == 3 and sizes[-1] == 3
    assert sizes[0] == len(POOL)
    assert decisions[-1].action is Action.KEEP and decisions[-1].reason is Reason.MIN_WORKERS


def test_auto_keeps_a_pool_of_one_worker():
    """MLLess's rule down to one worker (minWorkers 1): no smaller pool to price, no error."""
    settings = ScaleInSettings(
        policy="auto", rule="mlless", interval_seconds=2.0, delta_seconds=1.0, min_workers=1
    )
    history, decisions = run(settings, rounds=250)
    assert len(history[-1].workers) == 1
    assert decisions[-1].reason is Reason.MIN_WORKERS
    assert decisions[-1].figures.smaller_pool_step_seconds is None


def test_auto_evicts_at_most_once_per_interval():
    _history, decisions = run(AUTO, rounds=150)
    times = [d.wall_seconds for d in decisions if d.action is Action.EVICT]
    assert len(times) >= 3
    assert min(np.diff(times)) >= AUTO.interval_seconds
    waits = [d for d in decisions if d.reason is Reason.INTERVAL]
    assert waits and all(d.figures.current is None for d in waits)  # no fit while it must wait


def _after_knee(
    jump: float, knee: int = 30, rounds: int = 42
) -> tuple[list[Observation], PolicyState]:
    """A history whose objective is multiplied by ``jump`` from the knee on, and the state of
    a policy that fitted the reference curve (2) at the knee on the rounds before it."""
    f, wall, history = curve(), 0.0, []
    for k in range(rounds):
        wall += 1.3
        history.append(observation(k, f(k) * (jump if k >= knee else 1.0), wall, POOL))
    reference = fit_curve(history[:knee], history[0], equation=2)
    assert reference is not None
    state = PolicyState(knee_iteration=knee, reference=reference, reference_step_seconds=1.3)
    return history, state


def test_auto_evicts_when_the_projected_gap_is_under_s():
    history, state = _after_knee(jump=1.0)
    decision = decide(history, AUTO, state)
    assert decision.action is Action.EVICT and decision.reason is Reason.GAP_UNDER_THRESHOLD
    f = decision.figures
    assert abs(f.s_delta) < 0.01  # same curve, same step time: the fits agree
    t = history[-1].iteration + 1 + math.floor(AUTO.delta_seconds / 1.3)
    assert f.reference_loss == pytest.approx(curve()(t - 1), rel=1e-3)
    assert f.current_step_seconds == pytest.approx(1.3) and f.reference_step_seconds == 1.3
    assert f.s_delta == pytest.approx((f.current_loss - f.reference_loss) / f.reference_loss)
    assert decision.state.last_eviction_seconds == history[-1].wall_seconds


def test_auto_keeps_the_pool_when_the_projected_gap_is_over_s():
    history, state = _after_knee(jump=1.3)
    decision = decide(history, AUTO, state)
    assert decision.action is Action.KEEP and decision.reason is Reason.GAP_OVER_THRESHOLD
    assert decision.figures.s_delta == pytest.approx(0.3, abs=0.03)
    assert decision.state.last_eviction_seconds is None


def test_the_first_eviction_after_the_knee_is_not_unconditional():
    """MLLess's code evicts at the knee unconditionally; here a bad gap keeps the pool."""

    never = ScaleInSettings(
        policy="auto", rule="mlless", interval_seconds=5.0, delta_seconds=2.5, threshold=-0.05
    )
    history, decisions = run(never, rounds=80)  # S < 0: fewer workers must be 5 % ahead
    assert any(d.state.knee_iteration is not None for d in decisions)
    assert all(d.action is Action.KEEP for d in decisions)
    assert len(history[-1].workers) == len(POOL)


def test_auto_waits_for_enough_rounds_since_the_last_eviction():
    history, state = _after_knee(jump=1.0)
    pool = POOL[:-1]
    wall = history[-1].wall_seconds
    history += [observation(42 + i, curve()(42 + i), wall + 1.2 * (i + 1), pool) for i in range(3)]
    state = PolicyState(**{**state.__dict__, "last_eviction_seconds": wall - 100})
    decision = decide(history, AUTO, state)
    assert decision.reason is Reason.TOO_FEW_POINTS and decision.action is Action.KEEP


# --- the victim ---------------------------------------------------------------------------------


def test_the_victim_is_the_most_idle_worker_over_the_window():
    pool = ("a", "b", "c")
    history = [
        observation(
            k, 1.0, k + 1.0, pool, {"a": 1.0, "b": 0.5, "c": 0.9}, {"a": 0.0, "b": 0.5, "c": 0.1}
        )
        for k in range(10)
    ]
    assert most_idle(history, 10) == "b"
    # the last round alone would say c; the window says b
    history.append(
        observation(
            10, 1.0, 11.0, pool, {"a": 1.0, "b": 1.0, "c": 0.0}, {"a": 0.0, "b": 0.0, "c": 1.0}
        )
    )
    assert most_idle(history, 10) == "b"
    assert most_idle(history, 1) == "c"


def test_victim_ties_go_to_the_name_that_sorts_first():
    pool = ("w2", "w1", "w3")
    history = [observation(0, 1.0, 1.0, pool, {n: 0.5 for n in pool}, {n: 0.5 for n in pool})]
    assert most_idle(history, 10) == "w1"


def test_the_victim_window_counts_only_the_current_pool():
    big, small = ("a", "b", "c"), ("a", "b")
    history = [
        observation(
            k, 1.0, k + 1.0, big, {"a": 0.1, "b": 0.9, "c": 0.9}, {"a": 0.9, "b": 0.1, "c": 0.1}
        )
        for k in range(5)
    ]
    history += [
        observation(5 + k, 1.0, 6.0 + k, small, {"a": 0.9, "b": 0.5}, {"a": 0.1, "b": 0.5})
        for k in range(2)
    ]
    assert most_idle(history, 10) == "b"


# --- idle --------------------------------------------------------------------------------------

IDLE = ScaleInSettings(policy="idle", idle_share=0.5, window_rounds=4, interval_seconds=5.0)


def _idle_history(
    idle: float, compute: float, rounds: int = 4, pool=("a", "b", "c")
) -> list[Observation]:
    return [
        observation(k, 1.0, k + 1.0, pool, {n: compute for n in pool}, {n: idle for n in pool})
        for k in range(rounds)
    ]


def test_idle_policy_evicts_above_the_threshold():
    decision = decide(_idle_history(idle=0.6, compute=0.4), IDLE)
    assert decision.action is Action.EVICT and decision.reason is Reason.IDLE_OVER_THRESHOLD
    assert decision.victim == "a"
    assert decision.figures.idle_share == pytest.approx(0.6)


def test_idle_policy_keeps_below_the_threshold():
    decision = decide(_idle_history(idle=0.4, compute=0.6), IDLE)
    assert decision.action is Action.KEEP and decision.reason is Reason.IDLE_UNDER_THRESHOLD
    assert decision.figures.idle_share == pytest.approx(0.4)


def test_idle_policy_waits_for_a_full_window_of_the_current_pool():
    history = _idle_history(idle=0.9, compute=0.1, rounds=3)
    assert decide(history, IDLE).reason is Reason.TOO_FEW_POINTS
    history = _idle_history(idle=0.9, compute=0.1, rounds=6)
    history += _idle_history(idle=0.9, compute=0.1, rounds=2, pool=("a", "b"))
    assert decide(history, IDLE).reason is Reason.TOO_FEW_POINTS


def test_idle_policy_respects_min_workers_and_the_interval():
    history = _idle_history(idle=0.9, compute=0.1, pool=("a", "b"))
    floor = ScaleInSettings(policy="idle", window_rounds=4, min_workers=2)
    assert decide(history, floor).reason is Reason.MIN_WORKERS
    recent = PolicyState(last_eviction_seconds=history[-1].wall_seconds - 1.0)
    assert decide(history, IDLE, recent).reason is Reason.INTERVAL


def test_policy_none_always_keeps():
    history = _idle_history(idle=0.99, compute=0.01, rounds=30)
    decision = decide(history, ScaleInSettings())
    assert decision.action is Action.KEEP and decision.reason is Reason.POLICY_NONE


# --- budget and deadline ---------------------------------------------------------------------

RATES = Rates(fixed=0.001, per_worker=0.01)


def _steady(
    pool: tuple[str, ...], step: float, rounds: int = 5, start: float = 0.0
) -> list[Observation]:
    return [observation(k, 1.0, start + step * (k + 1), pool) for k in range(rounds)]


def test_budget_guard_shrinks_the_pool_then_stops_at_min_workers():
    settings = ScaleInSettings(policy="none", budget_dollars=1.0, min_workers=2)
    # 3 workers, 1 s rounds, 0.5 $ spent, 20 rounds to go: 0.5 + 20 x 1 x 0.031 = 1.12 $ > 1 $
    history = _steady(("a", "b", "c"), step=1.0)
    spend = Spend(dollars=0.5, rates=RATES, remaining_iterations=20)
    shrink = decide(history, settings, spend=spend)
    assert shrink.action is Action.EVICT and shrink.reason is Reason.BUDGET_SHRINK
    assert shrink.figures.projected_dollars == pytest.approx(0.5 + 20 * 0.031)
    # 2 workers at the floor, the projection still over the budget: stop, keep the best so far
    history += _steady(("a", "b"), step=1.0, start=history[-1].wall_seconds)
    spend = Spend(dollars=0.6, rates=RATES, remaining_iterations=25)
    stop = decide(history, settings, shrink.state, spend)
    assert stop.action is Action.STOP and stop.reason is Reason.BUDGET_EXCEEDED
    assert stop.figures.projected_dollars == pytest.approx(0.6 + 25 * 0.021)


def test_budget_guard_stays_out_while_the_projection_fits_and_stops_once_spent():
    settings = ScaleInSettings(policy="none", budget_dollars=1.0)
    history = _steady(("a", "b", "c"), step=1.0)
    fits = decide(history, settings, spend=Spend(0.5, RATES, remaining_iterations=10))
    assert fits.reason is Reason.POLICY_NONE
    assert fits.figures.projected_dollars == pytest.approx(0.81)
    spent = decide(history, settings, spend=Spend(1.0, RATES, remaining_iterations=None))
    assert spent.action is Action.STOP and spent.reason is Reason.BUDGET_EXCEEDED


def test_budget_guard_stops_when_a_smaller_pool_would_cost_more():
    settings = ScaleInSettings(policy="none", budget_dollars=1.0)
    # rounds: 1 s with 3 workers, 2 s with 2: a smaller pool is slower and dearer
    history = _steady(("a", "b", "c"), step=1.0) + _steady(("a", "b"), step=2.0, start=5.0)
    history += _steady(("a", "b", "c"), step=1.0, start=15.0)  # (made up: a worker came back)
    decision = decide(history, settings, spend=Spend(0.5, RATES, remaining_iterations=20))
    assert decision.action is Action.STOP and decision.reason is Reason.BUDGET_EXCEEDED


def test_deadline_guard_stops_before_a_round_that_cannot_finish():
    history = _steady(("a", "b"), step=2.0)  # wall 10 s, rounds of 2 s
    settings = ScaleInSettings(deadline_seconds=11.0)
    decision = decide(history, settings)
    assert decision.action is Action.STOP and decision.reason is Reason.DEADLINE_EXCEEDED
    assert decide(history, ScaleInSettings(deadline_seconds=12.5)).action is Action.KEEP


def test_guards_decided_while_a_round_runs_look_one_round_further():
    """A decision carried out after the round in flight (``ahead=1``) stops a round earlier:
    the round in flight ends, and is paid, whatever it says."""
    history = _steady(("a", "b"), step=2.0)  # wall 10 s, rounds of 2 s
    settings = ScaleInSettings(deadline_seconds=12.5)
    assert decide(history, settings).action is Action.KEEP
    late = decide(history, settings, ahead=1)
    assert late.action is Action.STOP and late.reason is Reason.DEADLINE_EXCEEDED
    # 2 workers: 0.021 $/s, 2 s rounds: 0.042 $ a round; 0.97 $ spent of a 1 $ budget
    settings = ScaleInSettings(budget_dollars=1.0)
    spend = Spend(dollars=0.97, rates=RATES, remaining_iterations=None)
    assert decide(history, settings, spend=spend).action is Action.KEEP
    over = decide(history, settings, spend=spend, ahead=1)
    assert over.action is Action.STOP and over.reason is Reason.BUDGET_EXCEEDED


def test_a_round_of_a_changed_pool_is_decided_on_for_the_guards_only():
    """``stale``: the pool has changed since the round; its workers are not weighed (no
    eviction), but a guard still stops the job."""
    settings = ScaleInSettings(policy="idle", idle_share=0.1, window_rounds=2)
    history = _steady(("a", "b", "c"), step=1.0)  # idle 0.2 of 0.5-ish: over 0.1
    assert decide(history, settings).action is Action.EVICT
    kept = decide(history, settings, stale=True)
    assert kept.action is Action.KEEP and kept.reason is Reason.POOL_CHANGING
    budget = replace(settings, budget_dollars=1.0)
    spent = Spend(dollars=1.0, rates=RATES, remaining_iterations=None)
    stop = decide(history, budget, spend=spent, stale=True)
    assert stop.action is Action.STOP and stop.reason is Reason.BUDGET_EXCEEDED
    tracker = Tracker(settings)
    for o in history[:-1]:
        tracker.after_round(o)
    assert tracker.after_round(history[-1], stale=True).reason is Reason.POOL_CHANGING
    assert len(tracker.decisions) == len(tracker.observations) == len(history)


def test_the_report_counts_the_evictions_carried_out():
    """A decision's victims that did not leave (the job ended first) are not counted."""
    tracker = Tracker(ScaleInSettings(policy="idle", idle_share=0.1, window_rounds=2))
    history = _steady(("a", "b", "c"), step=1.0)
    decisions = [tracker.after_round(o) for o in history]
    victims = [v for d in decisions for v in d.victims]
    assert victims and tracker.to_report()["evictions"] == len(victims)
    report = tracker.to_report(retired=victims[:1])
    assert report["evictions"] == 1
    assert [v for d in report["decisions"] for v in d["retired"]] == victims[:1]


def test_deadline_guard_shrinks_when_a_smaller_pool_is_faster():
    # rounds of 1.2 s with 4 workers, 1.0 s with 3: fewer workers, less overhead
    history = _steady(("a", "b", "c", "d"), step=1.2) + _steady(
        ("a", "b", "c"), step=1.0, start=6.0
    )
    settings = ScaleInSettings(deadline_seconds=30.0, interval_seconds=1.0)
    spend = Spend(0.0, RATES, remaining_iterations=30)  # 11 s + 30 x 1 s > 30 s
    decision = decide(history, settings, spend=spend)
    assert decision.action is Action.EVICT and decision.reason is Reason.DEADLINE_SHRINK
    assert decision.figures.projected_seconds == pytest.approx(11.0 + 30 * 1.0)
    assert decision.figures.smaller_pool_step_seconds is None  # not a policy figure


def test_an_observation_is_made_from_a_rounds_timings():
    timings = {
        "w1": WorkerTiming(compute=0.5, idle=0.2, communication=0.1),
        "w0": WorkerTiming(0.4, 0.3, 0.1),
    }
    o = Observation.of_round(7, 12.5, 3.25, timings)
    assert (o.iteration, o.objective, o.wall_seconds, o.workers) == (7, 12.5, 3.25, ("w0", "w1"))
    assert o.compute == {"w0": 0.4, "w1": 0.5} and o.idle == {"w0": 0.3, "w1": 0.2}


# --- the pieces -------------------------------------------------------------------------------


def test_step_model_fits_round_times_by_pool_size():
    history = _steady(POOL, step=1.3, rounds=6) + _steady(POOL[:6], step=1.1, rounds=6, start=7.8)
    history += _steady(POOL[:4], step=0.9, rounds=6, start=14.4)
    model = RoundTimes().folded(history).model()
    assert model is not None and model.workers == (4, 6, 8)
    assert all(c >= 0 for c in model.coefficients)
    assert model.seconds(8) == pytest.approx(1.3) and model.seconds(2) == pytest.approx(0.7)
    assert RoundTimes().folded(history[:1]).model() is None


def test_step_model_sees_compute_shared_by_the_pool():
    """ADMM: all blocks every round, so d(w) = fixed + overhead x w + compute / w."""

    def d(w: int) -> float:
        return 0.2 + 0.05 * w + 4.0 / w

    history, start = [], 0.0
    for w in (8, 6, 4):
        history += _steady(POOL[:w], step=d(w), rounds=4, start=start)
        start = history[-1].wall_seconds
    model = RoundTimes().folded(history).model()
    assert model is not None
    assert model.seconds(2) == pytest.approx(d(2), rel=1e-6)
    assert model.seconds(3) > model.seconds(4)  # MLLess's model (c3 = 0) cannot say this


def test_reference_curve_recovers_a_hyperbola():
    history = [observation(k, curve()(k), k + 1.0, POOL) for k in range(30)]
    fitted = fit_curve(history, history[0], equation=2)
    assert fitted is not None and all(c >= 0 for c in fitted.coefficients)
    for t in (10, 30, 60):  # t counts rounds from 1
        assert fitted(t) == pytest.approx(curve()(t - 1), rel=2e-3)


def test_rounds_to_tolerance_extrapolates_a_geometric_residual():
    residuals = [0.5**k for k in range(10)]
    assert rounds_to_tolerance(residuals, 0.5**14) == pytest.approx(5.0)
    assert rounds_to_tolerance(residuals, 1.0) == 0.0
    assert rounds_to_tolerance([1.0, 2.0, 3.0], 0.1) is None
    assert rounds_to_tolerance([1.0, 0.5], 0.1) is None
    assert rounds_to_tolerance(residuals, 0.0) is None  # k-means run to a fixed point


def test_every_decision_carries_its_figures_as_json():
    history, decisions = run(AUTO, rounds=60)
    evicted = next(d for d in decisions if d.action is Action.EVICT)
    entry = json.loads(json.dumps(evicted.to_dict()))
    assert entry["action"] == "evict" and entry["reason"] == "GapUnderThreshold"
    assert entry["victim"] == evicted.victim and entry["workers"] == len(POOL)
    assert entry["kneeIteration"] == evicted.state.knee_iteration
    assert entry["referenceCurve"]["equation"] == 2 and entry["currentCurve"]["equation"] == 3
    assert len(entry["referenceCurve"]["theta"]) == 4
    assert entry["currentCurve"]["scale"] == history[0].objective
    for key in (
        "sDelta",
        "referenceStepSeconds",
        "currentStepSeconds",
        "referenceLoss",
        "currentLoss",
    ):
        assert isinstance(entry[key], float)


def test_settings_defaults_are_the_papers():
    s = ScaleInSettings()
    assert (s.policy, s.interval_seconds, s.delta_seconds, s.threshold) == (
        "none",
        20.0,
        10.0,
        0.15,
    )
    assert (s.knee_patience, s.ewma_span, s.knee_tolerance) == (5, 20, 0.01)
    assert (s.min_workers, s.min_fit_points, s.idle_share, s.window_rounds) == (1, 5, 0.5, 10)
    assert s.budget_dollars is None and s.deadline_seconds is None
