"""GA-SGD, MA-SGD with ISP, PMF and k-means on the simulated platform: the runners a real worker
runs, on a virtual clock, so the iterates are a local run's and the in-process reference's."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from conftest import GA, MA, kmeans_patch, losses, merge, pmf_patch, sgd_patch, sgd_reference

import faasopt
from faasopt import protocol as p
from faasopt.data import load_blocks
from faasopt.plan import plan_job
from faasopt.scalein import Action, ScaleInSettings
from faasopt.sim import LAMBDA, load_data, simulate
from faasopt.solvers.kmeans import reference_kmeans
from faasopt.spec import TrainingJob

SIM_ONLY_KEYS = {"predicted", "simulation"}


def _job(manifest, patch: dict) -> TrainingJob:
    return TrainingJob.from_yaml(manifest(merge(patch, {"spec": {"workers": {"platform": "sim"}}})))


def test_ma_sgd_with_isp_on_sim_is_the_local_run(manifest):
    """The same manifest on ``local`` (processes, NATS) and on ``sim``: the same minibatch
    losses and model to the last bit, and the same report but for the model's own figures."""
    sgd = {**MA, "significance": 0.7, "stop": {"maxEpochs": 4.0}}
    job = TrainingJob.from_yaml(manifest(sgd_patch(sgd)))
    local = faasopt.run(job, quiet_workers=True)
    sim = simulate(plan_job(job))
    assert losses(sim) == losses(local) and len(losses(sim)) == 24
    np.testing.assert_array_equal(sim.solution, local.solution)
    assert sim.objective == local.objective
    assert set(sim.report) - set(local.report) == SIM_ONLY_KEYS
    for key in ("bytesSent", "denseBytes", "entriesSent", "wireBytes", "status", "converged"):
        assert sim.report[key] == local.report[key], key
    # every message of the run crossed the real encoder: rounds, answers, handovers, finals
    kinds = sim.report["simulation"]["messages"]["byKind"]
    assert {p.Round.KIND, p.Answer.KIND, p.Handover.KIND, p.Final.KIND} <= set(kinds)
    assert kinds[p.Round.KIND]["messages"] == 24 + 1  # and the flush round (MA)


@pytest.mark.parametrize("sgd", [GA, MA], ids=["GA-SGD", "MA-SGD"])
def test_sgd_on_sim_equals_its_reference(manifest, sgd):
    job = _job(manifest, sgd_patch({**sgd, "stop": {"maxEpochs": 5.0}}))
    result = faasopt.run(job)
    reference, _ = sgd_reference(job)
    assert result.report["predicted"] and result.report["platform"] == "sim"
    assert losses(result) == [r.loss for r in reference.history]
    np.testing.assert_array_equal(result.solution, reference.x)
    assert result.objective == pytest.approx(reference.objective, rel=1e-12)
    trace = result.report["trace"]
    assert all(e["workers"] == 2 and len(e["perWorker"]) == 2 for e in trace)
    assert all(t["compute"] > 0 for e in trace for t in e["perWorker"].values())
    assert result.report["costDollars"] > 0


def test_pmf_on_sim_reports_the_test_rmse(manifest):
    ratings = {"users": 40, "items": 30, "rank": 2, "ratings": 1500, "noise": 0.1, "seed": 5,
               "holdout": 200}  # fmt: skip
    job = _job(manifest, pmf_patch(ratings, rank=2, batch=50, epochs=10.0))
    result = faasopt.run(job)
    reference, _ = sgd_reference(job)
    assert losses(result) == [r.loss for r in reference.history]
    np.testing.assert_array_equal(result.solution, reference.x)
    per_round = [e["testRmse"] for e in result.report["trace"]]
    assert per_round[0] > per_round[-1] and result.report["testRmse"] < per_round[0]


def test_kmeans_on_sim_equals_its_reference(manifest):
    job = _job(manifest, kmeans_patch())
    result = faasopt.run(job)
    plan = plan_job(job)
    reference = reference_kmeans(
        [b.A for b in load_blocks(plan.source, range(4), 4)], plan.settings
    )
    assert result.report["status"] == "converged"
    np.testing.assert_array_equal(result.solution, reference.centroids)
    assert losses(result) == [r.inertia for r in reference.history]
    assert result.objective == pytest.approx(reference.inertia, rel=1e-12)
    # the 6 seeding rounds are not in the trace, but their messages and compute are counted
    rounds = result.report["simulation"]["messages"]["byKind"][p.Round.KIND]["messages"]
    assert rounds == 6 + len(reference.history)
    assert result.report["computeSeconds"] > _traced_compute(result.report)


def _traced_compute(report: dict) -> float:
    return sum(t["compute"] for e in report["trace"] for t in e["perWorker"].values())


def test_ma_sgd_scale_in_on_sim_hands_the_states_back(manifest):
    """Evicted MA workers are named in the next round's ``leave``, answer with their blocks'
    optimizer states and unsent updates, then go: the iterates are the reference's, bit for
    bit, on a pool that shrinks (a lost state would change them)."""
    sgd = {**MA, "significance": 0.7, "stop": {"maxEpochs": 6.0}}
    scale_in = {"policy": "idle", "idleShare": 0.01, "windowRounds": 2, "minWorkers": 2,
                "intervalSeconds": 1e-3, "deltaSeconds": 1e-3}  # fmt: skip
    job = _job(manifest, merge(sgd_patch(sgd, count=4, blocks=8), {"spec": {"scaleIn": scale_in}}))
    result = faasopt.run(job)
    reference, _ = sgd_reference(job)
    assert losses(result) == [r.loss for r in reference.history]
    np.testing.assert_array_equal(result.solution, reference.x)
    report = result.report
    workers = [e["workers"] for e in report["trace"]]
    assert workers[0] == 4 and workers[-1] == 2 and all(a >= b for a, b in pairwise(workers))
    assert report["scaleIn"]["evictions"] == 2
    handovers = report["simulation"]["messages"]["byKind"][p.Handover.KIND]["messages"]
    assert handovers > 4  # the start's, then the moved blocks'


def test_auto_scale_in_of_ga_sgd_on_lambda_saves_dollars_with_the_same_iterates(manifest):
    """On Lambda's model, rounds of small minibatches are overhead-bound: the model rule shrinks
    the pool after the knee, and the run costs less for the same losses."""
    job = TrainingJob.from_yaml(
        manifest(
            sgd_patch({**GA, "batchSize": 16, "stop": {"maxEpochs": 20.0}}, count=16, blocks=16)
        )
    )
    plan = plan_job(job)
    data, shared = load_data(plan), {}
    none = simulate(plan, LAMBDA, data=data, cpu_seconds=shared)
    settings = ScaleInSettings(policy="auto", interval_seconds=1e-3, min_workers=2)
    auto = simulate(plan, LAMBDA, settings, data=data, cpu_seconds=shared)
    assert losses(auto) == losses(none)
    np.testing.assert_array_equal(auto.solution, none.solution)
    evictions = [d for d in auto.decisions if d.action is Action.EVICT]
    assert evictions and all(d.iteration >= d.state.knee_iteration for d in evictions)
    assert auto.report["trace"][-1]["workers"] < 16
    assert auto.report["costDollars"] < none.report["costDollars"]


def test_a_worker_holds_thousands_of_blocks(manifest):
    """Per-block numbers travel in the payload, not in the 64 KiB header: one worker answers
    for 2000 blocks (k-means, whose steps are cheap), and the run equals its reference."""
    patch = merge(
        kmeans_patch(),
        {"spec": {"problem": {"data": {"blobs": {"samples": 6000}}},
                  "algorithm": {"kmeans": {"maxIterations": 3}},
                  "workers": {"count": 1, "blocks": 2000}}},
    )  # fmt: skip
    job = _job(manifest, patch)
    result = faasopt.run(job)
    plan = plan_job(job)
    blocks = [b.A for b in load_blocks(plan.source, range(2000), 2000)]
    reference = reference_kmeans(blocks, plan.settings)
    assert result.report["error"] is None and result.report["messagesRejected"] == {}
    np.testing.assert_array_equal(result.solution, reference.centroids)
