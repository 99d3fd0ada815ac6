"""Scale-in and cost on real runs: real worker processes, a real nats-server.

Evicting a worker moves its blocks, with their exact state, to the survivors, so the iterates of
a run that shrinks are those of a run that does not, to the last bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import yaml
from conftest import BASE_MANIFEST, merge

import faasopt
from faasopt import scalein

JOB = {
    "spec": {
        "problem": {"data": {"synthetic": {"samples": 4000, "features": 300, "density": 0.02}}},
        "algorithm": {
            "admm": {"maxIterations": 40, "primalTolerance": 1e-6, "dualTolerance": 1e-6}
        },
        "workers": {"count": 4},
    }
}
FAST = {"intervalSeconds": 0.05, "deltaSeconds": 0.05, "minWorkers": 2}
"""A scheduling interval that fits a run of a few seconds; never fewer than 2 workers."""


def run(manifest, scale_in=None, budget=None):
    patch = {"spec": {**JOB["spec"], "scaleIn": scale_in or {"policy": "none"}}}
    if budget is not None:
        patch["spec"]["budget"] = {"dollars": budget}
    return faasopt.run(manifest(patch), quiet_workers=True)


@pytest.fixture(scope="module")
def unshrunk(tmp_path_factory):
    path = tmp_path_factory.mktemp("none") / "job.yaml"
    path.write_text(yaml.safe_dump(merge(BASE_MANIFEST, JOB)))
    return faasopt.run(path, quiet_workers=True)


def _objectives(result) -> list[float]:
    return [entry["objective"] for entry in result.report["trace"]]


@pytest.mark.parametrize(
    "policy",
    [
        {"policy": "auto", "rule": "mlless", **FAST},
        {"policy": "idle", "idleShare": 0.01, "windowRounds": 2, **FAST},
    ],
    ids=["auto", "idle"],
)
def test_a_shrinking_pool_keeps_the_iterates(manifest, unshrunk, policy):
    result = run(manifest, policy)
    report = result.report
    assert _objectives(result) == _objectives(unshrunk)  # bit for bit
    np.testing.assert_array_equal(result.solution, unshrunk.solution)
    workers = [entry["workers"] for entry in report["trace"]]
    assert workers[0] == 4 and workers[-1] < 4 and min(workers) >= 2
    assert workers == sorted(workers, reverse=True)
    evicted = [c for c in report["coldStarts"] if (c["ended"] or "").startswith("evicted")]
    assert len(evicted) == report["scaleIn"]["evictions"] == 4 - workers[-1]
    decisions = report["scaleIn"]["decisions"]
    assert report["scaleIn"]["policy"] == policy["policy"]
    evictions = [d for d in decisions if d["action"] == "evict"]
    # every round but the last is decided on, while the next runs; the round run beside an
    # eviction's decision only for the guards (its pool is gone once that one is carried out)
    assert [d["iteration"] for d in decisions] == list(range(report["iterations"] - 1))
    changing = {d["iteration"] for d in decisions if d["reason"] == "PoolChanging"}
    assert changing == {d["iteration"] + 1 for d in evictions}
    assert sorted(d["victim"] for d in evictions) == sorted(c["worker"] for c in evicted)
    traced = [e["scaleIn"] for e in report["trace"] if e["scaleIn"]]
    assert traced == decisions


def test_the_bill_adds_up_and_grows_round_by_round(unshrunk):
    report = unshrunk.report
    parts = sum(report["dollarsPerWorker"].values()) + report["alwaysOnDollars"]
    assert report["costDollars"] == pytest.approx(parts, rel=1e-12) and parts > 0
    assert set(report["dollarsPerWorker"]) == {"w0", "w1", "w2", "w3"}
    assert report["perfPerDollar"] == pytest.approx(
        1 / (report["wallSeconds"] * report["costDollars"])
    )
    spent = [entry["costDollars"] for entry in report["trace"]]
    assert spent == sorted(spent) and 0 < spent[-1] <= report["costDollars"]
    assert report["scaleIn"] == {"policy": "none", "evictions": 0, "decisions": []}


def test_a_budget_stops_the_job_and_keeps_the_last_solution(manifest, unshrunk):
    budget = unshrunk.report["trace"][0]["costDollars"] / 2  # spent before the first round ends
    result = run(manifest, budget=budget)
    report = result.report
    assert report["status"] == "failed" and report["error"].startswith("BudgetExceeded:")
    assert 1 <= report["iterations"] < unshrunk.report["iterations"]
    # decided on the round before the last, while the last ran; carried out after it
    assert report["trace"][-2]["scaleIn"]["action"] == "stop"
    assert report["trace"][-1]["scaleIn"] is None
    assert np.count_nonzero(result.solution) > 0
    assert all(math.isfinite(e["objective"]) for e in report["trace"])


def test_one_decision_evicts_several_workers(manifest, unshrunk, monkeypatch):
    """A decision that names two victims (the ``model`` rule's kind) empties two workers at once;
    the iterates do not change."""
    decide = scalein.decide

    def two_at_once(history, settings, *args):
        decision = decide(history, settings, *args)
        now = history[-1]
        if now.iteration != 5 or len(now.workers) != 4:
            return decision
        victims = tuple(scalein.idle_order(history, settings.window_rounds)[:2])
        return scalein.Decision(
            now.iteration,
            now.wall_seconds,
            4,
            scalein.Action.EVICT,
            scalein.Reason.MODEL_SHRINK,
            state=decision.state,
            victims=victims,
        )

    monkeypatch.setattr(scalein, "decide", two_at_once)
    result = run(manifest, {"policy": "auto", **FAST})
    report = result.report
    assert _objectives(result) == _objectives(unshrunk)  # bit for bit
    np.testing.assert_array_equal(result.solution, unshrunk.solution)
    workers = [entry["workers"] for entry in report["trace"]]
    assert workers[:7] == [4] * 7 and set(workers[7:]) == {2}  # carried out after round 6
    evicted = sorted(c["worker"] for c in report["coldStarts"] if c["ended"])
    decision = next(d for d in report["scaleIn"]["decisions"] if d["action"] == "evict")
    assert decision["iteration"] == 5 and sorted(decision["victims"]) == evicted
    assert report["scaleIn"]["evictions"] == 2


def test_a_stop_decided_beside_the_last_round_is_not_carried_out(manifest, unshrunk, monkeypatch):
    """The decision on a round is carried out after the next one: a stop decided on the second
    to last round, while the last ran, comes too late to matter, and the job converges as it
    would have."""
    decide = scalein.decide
    last = unshrunk.report["iterations"] - 1

    def stop_late(history, settings, *args):
        decision = decide(history, settings, *args)
        if history[-1].iteration != last - 1:
            return decision
        return dataclasses.replace(
            decision, action=scalein.Action.STOP, reason=scalein.Reason.BUDGET_EXCEEDED
        )

    monkeypatch.setattr(scalein, "decide", stop_late)
    result = run(manifest, {"policy": "idle", "idleShare": 0.99})  # never evicts here
    assert result.report["status"] == unshrunk.report["status"]
    assert _objectives(result) == _objectives(unshrunk)
    assert result.report["trace"][-2]["scaleIn"]["action"] == "stop"
