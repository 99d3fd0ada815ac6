"""The simulated platform: the real math and protocol on a virtual clock, checked against local runs."""

from __future__ import annotations

import dataclasses
from itertools import pairwise

import numpy as np
import pytest

import faasopt
from faasopt import protocol as p
from faasopt.plan import plan_job
from faasopt.queueing import first_come_first_served, processor_sharing
from faasopt.scalein import Action, Reason, ScaleInSettings, Tracker
from faasopt.scaling import PAPER_ADMM
from faasopt.sim import (
    LAMBDA,
    SimSettings,
    load_data,
    plan_job_workers,
    simulate,
)
from faasopt.spec import TrainingJob

SIM_ONLY_KEYS = {"predicted", "simulation"}
"""What a simulated report adds to a real run's keys: the model's own figures."""


def _job(manifest, synthetic: dict, admm: dict | None = PAPER_ADMM, **workers) -> TrainingJob:
    """A job of the paper's ADMM by default (one rho, one x-step tolerance for all blocks), so
    that the figures checked here do not move with the spec's defaults; None: the defaults."""
    spec = {
        "problem": {"data": {"synthetic": synthetic}},
        "algorithm": {"admm": admm or {}},
        "workers": workers,
    }
    return TrainingJob.from_yaml(manifest({"spec": spec}))


def _objectives(report: dict) -> list[float]:
    return [entry["objective"] for entry in report["trace"]]


@pytest.mark.parametrize("workers", [2, 4])
def test_sim_reproduces_a_local_run(manifest, workers):
    """Same iterates to the last bit and the same report keys. Its predicted round time against
    the measured one is a measurement, not a test: bench/sim_vs_local.py."""
    synthetic = {"samples": 60000, "features": 2000, "density": 0.005, "seed": 7}
    job = _job(manifest, synthetic, None, count=4)  # the spec's defaults: per-block rho_b
    local = faasopt.run(job, workers=workers, quiet_workers=True)
    sim = simulate(plan_job(job, workers))

    assert local.converged and sim.converged
    assert _objectives(sim.report) == _objectives(local.report)
    assert sim.objective == local.objective
    np.testing.assert_array_equal(sim.solution, local.solution)

    assert set(sim.report) - set(local.report) == SIM_ONLY_KEYS
    assert set(local.report) <= set(sim.report)
    for real, simulated in zip(local.report["trace"], sim.report["trace"], strict=True):
        assert set(simulated) == set(real)
        assert set(simulated["perWorker"]) == set(real["perWorker"])
    assert sim.report["platform"] == "sim" and sim.report["predicted"] is True


def test_bytes_counted_are_the_encoded_frames(manifest):
    """Every message goes through the real encoder: chunked when over max_payload."""
    job = _job(manifest, {"samples": 2000, "features": 300, "density": 0.02, "seed": 3}, count=2)
    plan = plan_job(job)
    settings = SimSettings(max_payload=2048)  # z of 300 doubles is 2400 bytes: chunks
    result = simulate(plan, settings)
    key = p.Subjects(plan.namespace, plan.name).key
    iterates = [m for m in result.messages if m.kind == p.Iterate.KIND]
    assert len(iterates) == result.iterations
    for m, entry in zip(iterates, result.report["trace"], strict=True):
        rho = tuple(entry["rhoBlocks"]) or (entry["rho"],) * plan.n_blocks
        tolerance = (entry["gradientTolerance"],) * plan.n_blocks
        message = p.Iterate(m.iteration, rho, tolerance, np.zeros(plan.features))
        frames = p.encode(message, key, "coordinator", m.msg_id, settings.max_payload)
        assert m.frames == tuple(map(len, frames)) and len(frames) > 1
        assert m.copies == 2
    results = [m for m in result.messages if m.kind == p.Result.KIND]
    assert len(results) == 2 * result.iterations
    assert all(m.bytes > 8 * plan.features for m in results)  # one block's x_b, plus headers
    traffic = result.report["simulation"]["messages"]
    assert traffic["bytes"] == sum(m.bytes for m in result.messages)
    assert traffic["byKind"][p.Iterate.KIND]["delivered"] == 2 * sum(m.bytes for m in iterates)


def test_auto_scale_in_evicts_after_the_knee_and_keeps_the_iterates(manifest):
    job = _job(
        manifest,
        {"samples": 4000, "features": 200, "density": 0.02, "seed": 3},
        {**PAPER_ADMM, "primalTolerance": 1e-4, "dualTolerance": 1e-4},
        count=8,
    )
    plan = plan_job(job)
    data = load_data(plan)
    none = simulate(plan, data=data)
    auto = simulate(
        plan,
        scale_in=ScaleInSettings(policy="auto", rule="mlless", interval_seconds=0.0, min_workers=2),
        data=data,
    )
    assert auto.objective == pytest.approx(none.objective, rel=1e-9, abs=0)
    assert _objectives(auto.report) == _objectives(none.report)

    workers = [entry["workers"] for entry in auto.report["trace"]]
    # how far it shrinks follows the measured CPU times (the projected step times): not fixed
    assert workers[0] == 8 and 2 <= workers[-1] < 8
    assert all(a >= b for a, b in pairwise(workers))
    evictions = [d for d in auto.decisions if d.action is Action.EVICT]
    knee = evictions[0].figures.knee_iteration
    assert knee is not None and evictions[0].iteration >= knee
    assert all(d.reason.value == "BeforeKnee" for d in auto.decisions if d.iteration < knee)
    assert auto.report["scaleIn"]["evictions"] == len(evictions) == 8 - workers[-1]
    # every round but the last is decided on; the round run beside an eviction's decision only
    # for the guards (its pool is gone once the decision is carried out after it)
    decisions = auto.report["scaleIn"]["decisions"]
    assert [d["iteration"] for d in decisions] == list(range(auto.iterations - 1))
    changing = {d["iteration"] for d in decisions if d["reason"] == "PoolChanging"}
    assert changing == {d.iteration + 1 for d in evictions}
    ended = [c for c in auto.report["coldStarts"] if c["ended"]]
    assert [c["worker"] for c in ended] == sorted(d.victim for d in evictions)
    assert auto.report["costDollars"] < none.report["costDollars"]


def test_budget_guard_stops_the_run_with_its_reason(manifest):
    job = _job(manifest, {"samples": 2000, "features": 100, "density": 0.05, "seed": 1}, count=4)
    plan = plan_job(job)
    data = load_data(plan)
    free = simulate(plan, LAMBDA, data=data)
    budget = free.report["costDollars"] / 2
    capped = simulate(plan, LAMBDA, ScaleInSettings(budget_dollars=budget), data=data)
    assert capped.report["status"] == "failed"
    assert capped.report["error"].startswith("BudgetExceeded")
    assert 0 < capped.iterations < free.iterations
    assert capped.decisions[-1].action is Action.STOP


def test_64_workers_on_a_small_problem(manifest):
    job = _job(
        manifest,
        {"samples": 6400, "features": 100, "density": 0.05, "seed": 5},
        count=64,
        memoryMB=2048,
    )
    result = simulate(job, LAMBDA)
    report = result.report
    assert report["converged"] and report["workers"] == 64 and report["blocks"] == 64
    assert all(len(entry["perWorker"]) == 64 for entry in report["trace"])
    assert len(report["coldStarts"]) == 64 and len(report["responsiveness"]) == 64
    timings = [t for entry in report["trace"] for t in entry["perWorker"].values()]
    assert min(t["communication"] for t in timings) >= LAMBDA.latency_seconds
    assert min(t["idle"] for t in timings) > 0
    assert 0 < report["efficiency"] <= 1
    assert report["costDollars"] > 0 and report["perfPerDollar"] > 0


def test_workers_are_placement_the_iterates_do_not_depend_on_them(manifest):
    job = _job(manifest, {"samples": 2000, "features": 100, "density": 0.05, "seed": 1}, count=8)
    plan = plan_job(job)
    data = load_data(plan)
    runs = [simulate(plan_job_workers(plan, w), LAMBDA, data=data) for w in (1, 3, 8)]
    assert all(_objectives(r.report) == _objectives(runs[0].report) for r in runs)
    assert [r.report["workers"] for r in runs] == [1, 3, 8]


def test_lambda_cpu_follows_memory():
    assert LAMBDA.speed_factor(1769) == 1.0
    assert LAMBDA.speed_factor(4096) == 1.0  # the x-steps use one thread
    assert LAMBDA.speed_factor(512) == pytest.approx(1769 / 512)
    assert SimSettings().speed_factor(128) == 1.0
    assert dataclasses.replace(LAMBDA, cpu_slowdown=2.0).speed_factor(1769) == 2.0


def test_processor_sharing():
    assert processor_sharing({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}, None) == {
        "a": 1.0,
        "b": 1.0,
    }
    assert processor_sharing({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}, 1) == {
        "a": 2.0,
        "b": 2.0,
    }
    ends = processor_sharing({"a": 0.0, "b": 0.5}, {"a": 1.0, "b": 1.0}, 1)
    assert ends == pytest.approx({"a": 1.5, "b": 2.0})
    ends = processor_sharing({"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 1.0, "b": 1.0, "c": 2.0}, 2)
    assert ends == pytest.approx({"a": 1.5, "b": 1.5, "c": 2.5})


def test_first_come_first_served():
    out = first_come_first_served({"b": 1.0, "a": 0.0, "c": 1.0}, {"a": 2.0, "b": 1.0, "c": 1.0})
    assert out == {"a": (0.0, 2.0), "b": (2.0, 3.0), "c": (3.0, 4.0)}
    assert first_come_first_served({"a": 0.0}, {"a": 1.0}, free_at=5.0) == {"a": (5.0, 6.0)}


def test_model_rule_evicts_several_workers_at_once_and_keeps_the_iterates(manifest):
    """Tiny blocks on Lambda with a slow coordinator (1 ms to take a message in): the rounds are
    overhead-bound (one answer per worker to take in), so a smaller pool pays, and one decision
    names several victims."""
    job = _job(
        manifest,
        {"samples": 1600, "features": 100, "density": 0.05, "seed": 4},
        {**PAPER_ADMM, "primalTolerance": 1e-5, "dualTolerance": 1e-5},
        count=16,
    )
    plan = plan_job(job)
    data = load_data(plan)
    shared: dict = {}
    # all invoked at once, so that a bill's length is its worker's lifetime alone
    slow = dataclasses.replace(LAMBDA, message_overhead_seconds=1e-3, invoke_interval_seconds=0.0)
    none = simulate(plan, slow, data=data, cpu_seconds=shared)
    settings = ScaleInSettings(policy="auto", interval_seconds=0.0, min_workers=3)
    auto = simulate(plan, slow, settings, data=data, cpu_seconds=shared)
    assert _objectives(auto.report) == _objectives(none.report)
    np.testing.assert_array_equal(auto.solution, none.solution)

    evictions = [d for d in auto.decisions if d.action is Action.EVICT]
    assert evictions and max(len(d.victims) for d in evictions) >= 2
    first = evictions[0]
    assert first.reason.value == "ModelShrink" and first.iteration >= first.state.knee_iteration
    assert all(d.reason.value == "BeforeKnee" for d in auto.decisions if d.iteration < 5)
    workers = [entry["workers"] for entry in auto.report["trace"]]
    assert workers[0] == 16 and min(workers) >= 3 and workers[-1] < 16
    assert all(a >= b for a, b in pairwise(workers))
    # decided while the next round ran, carried out after it
    assert workers[first.iteration + 1] == 16
    assert workers[first.iteration + 2] == 16 - len(first.victims)
    victims = [v for d in evictions for v in d.victims]
    ended = [c["worker"] for c in auto.report["coldStarts"] if c["ended"]]
    assert sorted(ended) == sorted(victims) and len(set(victims)) == len(victims)
    assert auto.report["scaleIn"]["evictions"] == len(victims) == 16 - workers[-1]
    # a victim is billed until its eviction: less than any worker that stayed to the end
    bill = auto.report["dollarsPerWorker"]
    stayed = min(bill[w] for w in bill if w not in victims)
    assert max(bill[v] for v in victims) < stayed
    assert auto.report["costDollars"] < none.report["costDollars"]


class _StopAt(Tracker):
    """Stops the job on the decision about round ``at``; keeps otherwise."""

    def __init__(self, at: int) -> None:
        super().__init__(ScaleInSettings(), ahead=1)
        self.at = at

    @property
    def active(self) -> bool:
        return True

    def after_round(self, observation, spend=None, stale=False):
        decision = super().after_round(observation, spend, stale)
        if observation.iteration == self.at:
            decision = dataclasses.replace(
                decision, action=Action.STOP, reason=Reason.BUDGET_EXCEEDED
            )
            self.decisions[-1] = decision
        return decision


def test_a_decision_is_carried_out_after_the_round_that_ran_beside_it(manifest):
    """A stop decided on round k ends the job after round k + 1; one decided on the second to
    last round, beside the last, is not carried out: the job converges."""
    job = _job(manifest, {"samples": 2000, "features": 100, "density": 0.05, "seed": 1}, count=4)
    plan = plan_job(job)
    data = load_data(plan)
    shared: dict = {}
    free = simulate(plan, LAMBDA, data=data, cpu_seconds=shared)
    last = free.iterations - 1
    late = simulate(plan, LAMBDA, data=data, cpu_seconds=shared, tracker=_StopAt(last - 1))
    assert late.report["status"] == "converged" and late.objective == free.objective
    early = simulate(plan, LAMBDA, data=data, cpu_seconds=shared, tracker=_StopAt(last - 2))
    assert early.report["status"] == "failed" and early.iterations == last
    assert early.report["trace"][-2]["scaleIn"]["action"] == "stop"


def test_runs_sharing_cpu_seconds_share_their_clock(manifest):
    job = _job(manifest, {"samples": 2000, "features": 100, "density": 0.05, "seed": 1}, count=4)
    plan = plan_job(job)
    data = load_data(plan)
    shared: dict = {}
    first = simulate(plan, LAMBDA, data=data, cpu_seconds=shared)
    second = simulate(plan, LAMBDA, data=data, cpu_seconds=shared)
    compute = [
        [{n: t["compute"] for n, t in e["perWorker"].items()} for e in r.report["trace"]]
        for r in (first, second)
    ]
    assert compute[0] == compute[1]  # the x-steps' clock is shared; the decisions' own is not
    kinds = {key[0] for key in shared}
    assert kinds == {"step", "reduce", "loss", "encode", "decode"}
    rounds = first.report["iterations"]
    assert sum(key[0] == "step" for key in shared) == rounds * plan.n_blocks
