"""GA-SGD, MA-SGD (with ISP), PMF and k-means through a real nats-server and real worker
processes, checked against the in-process references and scikit-learn (issue #10)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    GA,
    MA,
    kill_workers,
    kmeans_patch,
    liblinear,
    losses,
    merge,
    objective,
    pmf_patch,
    sgd_patch,
    sgd_reference,
    worker_processes,
)
from prometheus_client import CollectorRegistry

import faasopt
from faasopt.coordinator import CoordinatorSettings
from faasopt.data import load_blocks
from faasopt.data.source import holdout_ratings
from faasopt.plan import plan_job
from faasopt.solvers.kmeans import kmeans_plus_plus, reference_kmeans
from faasopt.solvers.pmf import PmfProblem, rmse
from faasopt.spec import TrainingJob


def _sgd_job(manifest, sgd: dict, **workers) -> TrainingJob:
    return TrainingJob.from_yaml(manifest(sgd_patch(sgd, **workers)))


@pytest.mark.parametrize("sgd", [GA, MA], ids=["GA-SGD", "MA-SGD"])
def test_sgd_equals_its_reference_and_reaches_liblinear_within_1_percent(manifest, sgd):
    job = _sgd_job(manifest, sgd)
    result = faasopt.run(job, quiet_workers=True)
    reference, blocks = sgd_reference(job)
    assert result.report["algorithm"] == "sgd"
    assert result.report["status"] == "maxEpochs" and result.converged  # the budget is the goal
    assert losses(result) == [r.loss for r in reference.history]  # step by step, bit for bit
    np.testing.assert_array_equal(result.solution, reference.x)
    assert result.objective == pytest.approx(reference.objective, rel=1e-12)
    A = sp.vstack([b.A for b in blocks]).tocsr()
    y = np.concatenate([b.y for b in blocks])
    best = objective(A, y, liblinear(A, y, 1.0), 1.0)
    assert best <= result.objective <= 1.01 * best
    trace = result.report["trace"]
    assert trace[-1]["epochs"] == pytest.approx(20.0)
    assert all(len(e["perWorker"]) == 2 for e in trace)


def test_isp_at_v_0_is_bsp_and_at_v_0_7_sends_fewer_bytes_to_the_threshold(manifest):
    runs, references, registries = {}, {}, {}
    for v in (0.0, 0.7):
        sgd = {**MA, "significance": v, "stop": {"lossThreshold": 0.45, "maxEpochs": 40.0}}
        job = _sgd_job(manifest, sgd)
        registries[v] = CollectorRegistry()
        runs[v] = faasopt.run(job, quiet_workers=True, metrics_registry=registries[v])
        references[v], _ = sgd_reference(job)
    for v, run in runs.items():
        assert run.report["status"] == "lossThreshold", v
        assert losses(run) == [r.loss for r in references[v].history], v
        np.testing.assert_array_equal(run.solution, references[v].x)
    isp, bsp = runs[0.7].report, runs[0.0].report
    assert bsp["entriesSent"] == sum(r.entries_sent for r in references[0.0].history)
    assert isp["bytesSent"] < 0.5 * bsp["bytesSent"]
    assert isp["wireBytes"] < bsp["wireBytes"]
    for v, run in runs.items():  # the same bytes in Prometheus, with and without the filter
        labels = {"namespace": "default", "job": "test", "platform": "local"}
        sent = registries[v].get_sample_value("faasopt_job_model_bytes_total", labels)
        dense = registries[v].get_sample_value("faasopt_job_model_dense_bytes_total", labels)
        assert (sent, dense) == (run.report["bytesSent"], run.report["denseBytes"])


def test_ga_sgd_survives_a_killed_worker_with_the_same_iterates(manifest):
    job = _sgd_job(manifest, {**GA, "stop": {"maxEpochs": 6.0}})

    def on_round(report):
        if report.record.iteration == 20:
            kill_workers(["w1"])

    killed = faasopt.run(job, quiet_workers=True, on_round=on_round)
    reference, _ = sgd_reference(job)
    assert killed.report["replacements"] == 1
    assert losses(killed) == [r.loss for r in reference.history]
    np.testing.assert_array_equal(killed.solution, reference.x)


def test_pmf_recovers_a_low_rank_matrix_to_the_noise_level(manifest):
    ratings = {"users": 60, "items": 50, "rank": 3, "ratings": 4000, "noise": 0.1, "seed": 5,
               "holdout": 500}  # fmt: skip
    job = TrainingJob.from_yaml(manifest(pmf_patch(ratings, rank=3, batch=100, epochs=60.0)))
    result = faasopt.run(job, quiet_workers=True)
    plan = plan_job(job)
    problem = PmfProblem(**plan.problem["pmf"])
    test = rmse(problem, result.solution, holdout_ratings(plan.source))
    assert result.report["testRmse"] == pytest.approx(test, rel=1e-12)
    assert test < 0.15  # the noise is 0.1; the mean rating alone gives about 1
    per_round = [e["testRmse"] for e in result.report["trace"]]  # at each round's start
    assert per_round[0] > 0.9 and per_round[-1] < 0.16 and min(per_round) < 2 * test


def test_kmeans_equals_its_reference_and_scikit_learn_from_the_same_start(manifest):
    from sklearn.cluster import KMeans

    job = TrainingJob.from_yaml(manifest(kmeans_patch()))
    result = faasopt.run(job, quiet_workers=True)
    plan = plan_job(job)
    blocks = [b.A for b in load_blocks(plan.source, range(4), 4)]
    reference = reference_kmeans(blocks, plan.settings)
    assert result.report["status"] == "converged" and result.report["converged"]
    traced = sum(t["compute"] for e in result.report["trace"] for t in e["perWorker"].values())
    assert result.report["computeSeconds"] > traced  # the seeding rounds' compute counts too
    np.testing.assert_array_equal(result.solution, reference.centroids)
    assert result.objective == pytest.approx(reference.inertia, rel=1e-12)
    assert [e["objective"] for e in result.report["trace"]] == [
        r.inertia for r in reference.history
    ]
    start = kmeans_plus_plus(blocks, 6, 3)
    X = np.vstack([np.asarray(b.todense()) if sp.issparse(b) else b for b in blocks])
    sk = KMeans(6, init=start, n_init=1, algorithm="lloyd", tol=0.0).fit(X)
    assert result.objective == pytest.approx(sk.inertia_, rel=0.01)


def test_ma_sgd_rotation_moves_each_blocks_state_exactly(manifest):
    """A worker near its time limit hands its blocks' optimizer states and unsent updates over
    with its last answer: the run is the reference's, bit for bit, through the rotations."""
    sgd = {**MA, "significance": 0.7, "stop": {"maxEpochs": 3.0}}
    job = _sgd_job(manifest, sgd, timeLimitSeconds=5.0)
    result = faasopt.run(job, quiet_workers=True, on_round=lambda report: time.sleep(0.4))
    reference, _ = sgd_reference(job)
    assert result.report["rotations"] >= 2 and result.report["replacements"] == 0
    assert losses(result) == [r.loss for r in reference.history]
    np.testing.assert_array_equal(result.solution, reference.x)


@pytest.mark.parametrize("sgd", [GA, MA], ids=["GA-SGD", "MA-SGD"])
def test_scale_in_moves_sgd_blocks_with_their_exact_state(manifest, sgd):
    """Evicted workers' blocks move to the survivors; under MA each evicted worker first answers
    one more round with its blocks' optimizer states and unsent updates (``round.v1`` ``leave``):
    the run is the reference's, bit for bit, on a pool that shrinks."""
    scale_in = {"policy": "idle", "idleShare": 0.01, "windowRounds": 2, "minWorkers": 2,
                "intervalSeconds": 0.05, "deltaSeconds": 0.05}  # fmt: skip
    patch = merge(sgd_patch({**sgd, "significance": 0.7} if sgd is MA else sgd, count=4),
                  {"spec": {"scaleIn": scale_in}})  # fmt: skip
    job = TrainingJob.from_yaml(manifest(patch))
    result = faasopt.run(job, quiet_workers=True)
    reference, _ = sgd_reference(job)
    report = result.report
    assert report["scaleIn"]["evictions"] >= 1
    evicted = [c for c in report["coldStarts"] if (c["ended"] or "").startswith("evicted")]
    assert len(evicted) == report["scaleIn"]["evictions"] and report["replacements"] == 0
    workers = [len(e["perWorker"]) for e in report["trace"]]
    assert workers[0] == 4 and workers[-1] == 4 - len(evicted) >= 2
    assert losses(result) == [r.loss for r in reference.history]
    np.testing.assert_array_equal(result.solution, reference.x)


def test_auto_scale_in_on_sgd_evicts_after_the_knee_and_keeps_the_loss(manifest):
    """MLLess's scheduler on GA-SGD (its own setting): no eviction before the knee of the
    minibatch-loss curve, evictions after it, and the loss sequence of the reference (the
    iterates do not depend on the pool), so well within the tolerance S of the full pool's."""
    scale_in = {"policy": "auto", "rule": "mlless", "minWorkers": 2,
                "intervalSeconds": 0.05, "deltaSeconds": 0.05}  # fmt: skip
    patch = merge(sgd_patch(GA, count=4), {"spec": {"scaleIn": scale_in}})
    job = TrainingJob.from_yaml(manifest(patch))
    result = faasopt.run(job, quiet_workers=True)
    reference, _ = sgd_reference(job)
    decisions = result.report["scaleIn"]["decisions"]
    evictions = [d for d in decisions if d["action"] == "evict"]
    assert evictions and result.report["scaleIn"]["evictions"] == len(evictions)
    knee = min(d["kneeIteration"] for d in decisions if d["kneeIteration"] is not None)
    assert all(d["iteration"] >= knee for d in evictions)
    assert [len(e["perWorker"]) for e in result.report["trace"]][-1] < 4
    assert losses(result) == [r.loss for r in reference.history]


def test_a_ga_sgd_straggler_is_raced_by_a_copy_and_nothing_changes(manifest):
    """GA-SGD's blocks keep nothing on their workers, so a copy can answer for a paused one."""
    job = TrainingJob.from_yaml(
        manifest(merge(sgd_patch({**GA, "stop": {"maxEpochs": 2.0}}, count=2),
                       {"spec": {"workers": {"straggler": {"policy": "speculate",
                                                          "minSeconds": 0.3}}}}))
    )  # fmt: skip
    settings = CoordinatorSettings(heartbeat_timeout_seconds=60, presumed_dead_seconds=60)

    def on_round(report):
        if report.record.iteration == 4:
            w1 = worker_processes()["w1"]
            w1.suspend()
            threading.Timer(3.0, lambda: w1.is_running() and w1.resume()).start()

    result = faasopt.run(job, quiet_workers=True, settings=settings, on_round=on_round)
    reference, _ = sgd_reference(job)
    assert result.report["stragglers"] == {"speculated": 1, "copiesWon": 1}
    assert losses(result) == [r.loss for r in reference.history]
    np.testing.assert_array_equal(result.solution, reference.x)
