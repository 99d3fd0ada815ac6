"""The ``model`` rule of ``auto`` on made-up histories: a world whose rounds take a fixed part,
a per-answer part and the busiest worker's compute, and whose evictions move blocks as the
coordinator moves them; every projection checked against figures worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from faasopt.cost import Rates
from faasopt.scalein import (
    Action,
    Decision,
    Observation,
    PolicyState,
    Reason,
    ScaleInSettings,
    Spend,
    Tracker,
    choose_pool,
    decide,
    fit_round_model,
    move_blocks,
)

FIXED, ANSWER = 0.2, 0.1
"""The world's round: FIXED + ANSWER x workers + the busiest worker's compute (seconds)."""
COSTS = {f"w{i}": (1.0 if i < 4 else 0.5) for i in range(8)}
"""One block per worker at the start; the last four blocks cost half."""
RATES = Rates(fixed=0.0, per_worker=1.0)


class World:
    """A pool whose blocks have fixed costs; evictions move blocks to the survivors holding the
    fewest (ties by name), as the coordinator does."""

    def __init__(self, costs=COSTS):
        self.blocks = {name: [cost] for name, cost in costs.items()}
        self.wall = 0.0

    def round(self, k: int, objective: float) -> Observation:
        compute = {n: sum(b) for n, b in self.blocks.items()}
        busiest = max(compute.values())
        self.wall += FIXED + ANSWER * len(compute) + busiest
        # answers taken in one after another, ANSWER apart, after the busiest is done
        order = sorted(compute, key=lambda n: (compute[n], n))
        delay = {n: busiest + FIXED + ANSWER * j for j, n in enumerate(order)}
        seconds = FIXED + ANSWER * len(compute) + busiest
        return Observation(
            iteration=k,
            objective=objective,
            wall_seconds=self.wall,
            workers=tuple(sorted(compute)),
            compute=compute,
            idle={n: seconds - compute[n] for n in compute},
            communication={n: delay[n] - compute[n] for n in compute},
            blocks={n: len(b) for n, b in self.blocks.items()},
        )

    def evict(self, victims):
        gone = {v: self.blocks.pop(v) for v in victims}
        for victim in victims:
            for cost in gone[victim]:
                name = min(self.blocks, key=lambda n: (len(self.blocks[n]), n))
                self.blocks[name].append(cost)


def objective(k: int) -> float:
    return 10.0 / (5.0 + k) + 1.0


def play(settings, rounds=80, max_victims=None, world=None):
    """One decision per round with R = the rounds still to play; evictions carried out."""
    world = world or World()
    history, decisions, state = [], [], None
    for k in range(rounds):
        history.append(world.round(k, objective(k)))
        spend = Spend(dollars=float(k), rates=RATES, remaining_iterations=rounds - k - 1)
        decision = decide(history, settings, state, spend, max_victims)
        decisions.append(decision)
        state = decision.state
        if decision.action is Action.EVICT:
            world.evict(decision.victims)
    return history, decisions


MODEL = ScaleInSettings(policy="auto", interval_seconds=5.0, min_workers=2)


def steady(rounds=4, world=None) -> list[Observation]:
    world = world or World()
    return [world.round(k, objective(k)) for k in range(rounds)]


# --- the round-time model -----------------------------------------------------------------------


def test_round_model_splits_a_round_into_overhead_and_the_busiest_workers_compute():
    model = fit_round_model(steady())
    assert model is not None and model.rounds == 3  # the first round is left out
    assert model.overhead_seconds == pytest.approx(FIXED + ANSWER * 8)
    assert model.answer_seconds == pytest.approx(ANSWER)
    assert model.compute == pytest.approx(COSTS) and model.blocks == dict.fromkeys(COSTS, 1)
    assert model.after(())[0] == pytest.approx(FIXED + ANSWER * 8 + 1.0)
    # the four cheap blocks go to w0..w3 (fewest blocks, ties by name): 1.5 s each
    assert model.after(("w4", "w5", "w6", "w7")) == (pytest.approx(FIXED + 0.4 + 1.5), 2)
    # two victims: their blocks go to w0 and w1
    assert model.after(("w7", "w6")) == (pytest.approx(FIXED + 0.6 + 1.5), 2)


def test_round_model_predicts_the_worlds_next_pool():
    world = World()
    history = steady(world=world)
    predicted, _ = fit_round_model(history).after(("w4", "w5", "w6", "w7"))
    world.evict(("w4", "w5", "w6", "w7"))
    before = world.wall
    world.round(4, objective(4))
    assert world.wall - before == pytest.approx(predicted)


def test_round_model_skips_the_handover_round_and_needs_a_steady_one():
    world = World()
    history = steady(world=world)
    world.evict(("w7",))
    history.append(world.round(4, objective(4)))
    assert fit_round_model(history) is None  # only the handover round of the new pool
    history.append(world.round(5, objective(5)))
    model = fit_round_model(history)
    assert model.rounds == 1 and model.blocks["w0"] == 2 and "w7" not in model.compute


def test_without_delays_the_overhead_is_taken_as_fixed():
    bare = [
        Observation(o.iteration, o.objective, o.wall_seconds, o.workers, o.compute, o.idle)
        for o in steady()
    ]
    model = fit_round_model(bare)
    assert model.answer_seconds == 0.0 and model.blocks == dict.fromkeys(COSTS, 1)
    assert model.after(("w7",))[0] == pytest.approx(FIXED + 0.8 + 1.5)  # conservative


def test_blocks_move_victim_by_victim_to_the_fewest_ties_by_name():
    assert move_blocks({"a": 1, "b": 2, "c": 1, "d": 3}, ["d"]) == {"a": 3, "b": 2, "c": 2}
    assert move_blocks({"a": 1, "b": 1, "c": 1, "d": 1}, ["c", "a"]) == {"b": 2, "d": 2}


# --- the projections --------------------------------------------------------------------------


def test_every_pool_size_is_projected_to_convergence():
    history = steady()
    model = fit_round_model(history)
    now = history[-1].wall_seconds
    spend = Spend(dollars=10.0, rates=RATES, remaining_iterations=10)
    candidates = choose_pool(history, MODEL, PolicyState(), spend, model)
    assert [c.workers for c in candidates] == list(range(8, 1, -1))  # down to minWorkers
    keep, four = candidates[0], candidates[4]
    assert keep.victims == () and keep.handover_seconds == 0.0 and keep.allowed
    assert keep.round_seconds == pytest.approx(2.0)
    assert keep.seconds == pytest.approx(now + 20.0) and keep.dollars == pytest.approx(170.0)
    assert keep.slowdown == pytest.approx(0.0)
    # the most idle leave first (the cheap blocks' holders), ties by name
    assert four.victims == ("w4", "w5", "w6", "w7") and four.most_blocks == 2
    assert four.round_seconds == pytest.approx(2.1)
    assert four.handover_seconds == pytest.approx(2.1)  # no handover seen yet: one round
    assert four.seconds == pytest.approx(now + 2.1 + 21.0)
    assert four.dollars == pytest.approx(10.0 + 4 * 23.1)
    assert four.perf_per_dollar == pytest.approx(1 / ((now + 23.1) * 102.4))
    assert four.slowdown == pytest.approx((now + 23.1) / (now + 20.0) - 1)
    assert four.allowed is (four.slowdown <= MODEL.max_slowdown)
    assert all(c.s_delta is None for c in candidates)  # no curve (3) given


def test_the_time_bound_forbids_pools_that_project_too_slow():
    history = steady()
    model = fit_round_model(history)
    spend = Spend(dollars=10.0, rates=RATES, remaining_iterations=10)
    strict = ScaleInSettings(policy="auto", min_workers=2, max_slowdown=0.0)
    candidates = choose_pool(history, strict, PolicyState(), spend, model)
    assert candidates[0].allowed and not any(c.allowed for c in candidates[1:])


# --- the rule -----------------------------------------------------------------------------------


def test_model_rule_never_evicts_before_the_knee():
    _history, decisions = play(MODEL)
    declared = next(i for i, d in enumerate(decisions) if d.state.knee_iteration is not None)
    assert declared > 5
    assert all(d.action is Action.KEEP for d in decisions[:declared])
    assert all(d.reason is Reason.BEFORE_KNEE for d in decisions[:declared])


def test_model_rule_evicts_several_workers_in_one_decision():
    history, decisions = play(MODEL)
    evictions = [d for d in decisions if d.action is Action.EVICT]
    first = evictions[0]
    assert first.reason is Reason.MODEL_SHRINK
    assert first.iteration >= first.state.knee_iteration
    # the four cheap blocks' holders leave together: four fewer answers, 0.5 s more compute
    assert first.victims == ("w4", "w5", "w6", "w7") and first.victim == "w4"
    assert first.figures.target_workers == 4
    chosen = next(c for c in first.figures.candidates if c.workers == 4)
    assert chosen.allowed and first.figures.s_delta == chosen.s_delta
    best = max(c.perf_per_dollar for c in first.figures.candidates if c.allowed)
    assert chosen.perf_per_dollar == best
    sizes = [len(o.workers) for o in history]
    assert sizes[first.iteration + 1] == 4 and min(sizes) >= MODEL.min_workers


def test_model_rule_never_goes_below_min_workers():
    floor = ScaleInSettings(policy="auto", interval_seconds=0.0, min_workers=6)
    history, decisions = play(floor)
    sizes = [len(o.workers) for o in history]
    assert min(sizes) == 6
    assert all(len(d.victims) <= d.workers - 6 for d in decisions if d.action is Action.EVICT)


def test_model_rule_honours_the_interval():
    _history, decisions = play(ScaleInSettings(policy="auto", interval_seconds=1e9, min_workers=2))
    assert sum(d.action is Action.EVICT for d in decisions) == 1
    assert any(d.reason is Reason.INTERVAL for d in decisions)


def test_one_victim_per_decision_when_the_caller_evicts_one():
    _history, decisions = play(
        ScaleInSettings(policy="auto", interval_seconds=0.0, min_workers=2), max_victims=1
    )
    evictions = [d for d in decisions if d.action is Action.EVICT]
    assert evictions and all(len(d.victims) == 1 for d in evictions)
    assert evictions[0].figures.target_workers < evictions[0].workers - 1


def test_model_rule_keeps_when_the_rest_of_the_job_is_unknown():
    history = steady(rounds=30)
    state = PolicyState(knee_iteration=5, reference=None, reference_step_seconds=2.0)
    first = decide(history, MODEL, state)  # no knee curve: before the knee
    assert first.reason is Reason.BEFORE_KNEE
    _h, decisions = play(MODEL, rounds=40)
    knee_state = next(d.state for d in decisions if d.state.reference is not None)
    unknown = decide(history, MODEL, knee_state, Spend(1.0, RATES, remaining_iterations=None))
    assert unknown.action is Action.KEEP and unknown.reason is Reason.REMAINING_UNKNOWN


def test_model_rule_keeps_when_no_smaller_pool_pays():
    # every block costs the same and answers are free: a smaller pool is slower per dollar saved
    costs = dict.fromkeys(COSTS, 1.0)
    world = World(costs)
    settings = ScaleInSettings(policy="auto", interval_seconds=0.0, min_workers=2)
    global ANSWER
    saved, ANSWER = ANSWER, 0.0
    try:
        _h, decisions = play(settings, world=world)
    finally:
        ANSWER = saved
    after = [d for d in decisions if d.state.knee_iteration is not None and d.figures.candidates]
    assert after and all(d.action is Action.KEEP for d in after)
    assert all(d.reason is Reason.MODEL_KEEP for d in after)


def test_model_decisions_carry_their_candidates_as_json():
    _history, decisions = play(MODEL)
    evicted = next(d for d in decisions if d.action is Action.EVICT)
    entry = json.loads(json.dumps(evicted.to_dict()))
    assert entry["victims"] == list(evicted.victims) and entry["victim"] == evicted.victims[0]
    assert entry["targetWorkers"] == 4 and entry["reason"] == "ModelShrink"
    assert entry["roundModel"]["answerSeconds"] == pytest.approx(ANSWER)
    assert [c["workers"] for c in entry["candidates"]] == list(range(8, 1, -1))
    assert all(math.isfinite(c["perfPerDollar"]) for c in entry["candidates"])
    kept = next(d for d in decisions if d.reason is Reason.INTERVAL)
    assert kept.to_dict()["victims"] == [] and kept.victim is None


def test_a_decision_with_one_victim_is_the_old_decision():
    old = Decision(3, 1.0, 4, Action.EVICT, Reason.GAP_UNDER_THRESHOLD, victim="w2")
    assert old.victims == ("w2",)
    new = Decision(3, 1.0, 4, Action.EVICT, Reason.MODEL_SHRINK, victims=("w2", "w3"))
    assert new.victim == "w2"


def test_the_tracker_names_one_victim_unless_told_otherwise():
    settings = ScaleInSettings(policy="auto", interval_seconds=0.0, min_workers=2)
    for cap, most in ((1, 1), (None, 8)):
        tracker, world = Tracker(settings, max_victims=cap), World()
        assert Tracker(settings).max_victims == 1
        for k in range(60):
            spend = Spend(dollars=float(k), rates=RATES, remaining_iterations=60 - k)
            decision = tracker.after_round(world.round(k, objective(k)), spend)
            if decision.action is Action.EVICT:
                world.evict(decision.victims)
        victims = [len(d.victims) for d in tracker.decisions if d.action is Action.EVICT]
        assert victims and max(victims) <= most
        assert tracker.to_report()["evictions"] == sum(victims) == 8 - len(world.blocks)


def test_defaults_of_the_model_rule():
    s = ScaleInSettings()
    assert (s.rule, s.max_slowdown) == ("model", 0.10)


def test_after_an_eviction_the_slowdown_is_against_the_initial_pool_kept():
    world = World()
    history = steady(world=world)  # rounds 0-3 with 8 workers, 2.0 s each
    before = history[-1].wall_seconds
    world.evict(("w4", "w5", "w6", "w7"))
    history += [world.round(k, objective(k)) for k in range(4, 8)]  # 4 rounds of 2.1 s
    model = fit_round_model(history)
    assert model.overhead_seconds == pytest.approx(FIXED + ANSWER * 4)
    assert model.block_seconds("w0") == pytest.approx(0.75)  # a 1.0 and a 0.5 block
    spend = Spend(dollars=10.0, rates=RATES, remaining_iterations=10)
    keep = choose_pool(history, MODEL, PolicyState(), spend, model)[0]
    # the initial pool: one (costliest, 0.75 s) block each and the 4 leavers' answers back
    initial_round = FIXED + ANSWER * 4 + 0.75 + ANSWER * 4
    reference = before + (4 + 10) * initial_round
    assert keep.round_seconds == pytest.approx(2.1)
    assert keep.slowdown == pytest.approx((history[-1].wall_seconds + 21.0) / reference - 1)
    # a past handover is measured: the round after the eviction took as long as the others
    assert choose_pool(history, MODEL, PolicyState(), spend, model)[1].handover_seconds == 0.0
