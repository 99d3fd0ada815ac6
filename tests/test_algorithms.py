"""The drivers and runners of faasopt.algorithms in one process, through the real wire format:
blocks moved between workers mid-run, remaining-round projections, malformed answers."""

from __future__ import annotations

import numpy as np
import pytest

from faasopt import protocol as p
from faasopt.algorithms import driver_for, runner_for
from faasopt.algorithms.sgd import problem_from_wire
from faasopt.data import load_blocks
from faasopt.errors import DataError, ProtocolError
from faasopt.payload import WorkerPayload
from faasopt.plan import plan_job
from faasopt.solvers.kmeans import reference_kmeans
from faasopt.solvers.sgd import reference_sgd
from faasopt.spec import TrainingJob

JOB = "default/test"
SYN = {"samples": 1200, "features": 30, "density": 0.2, "seed": 2}
MA_ISP = {
    "variant": "modelAveraging",
    "optimizer": {"method": "adam", "learningRate": 0.05},
    "batchSize": 32,
    "syncEvery": 2,
    "significance": 0.7,
    "stop": {"maxEpochs": 4.0},
}


def _plan(manifest, algorithm: dict, problem: dict | None = None):
    patch = {
        "spec": {
            "problem": problem or {"data": {"synthetic": SYN}},
            "algorithm": algorithm,
            "workers": {"count": 2, "blocks": 4},
        }
    }
    return plan_job(TrainingJob.from_yaml(manifest(patch)))


def _wire(message):
    """``message`` after encoding and decoding, as it crosses NATS."""
    decoder = p.Decoder(JOB, set(p.KINDS))
    (decoded,) = [decoder.feed(f) for f in p.encode(message, JOB, "x", 1, 1 << 20)]
    assert decoded is not None, decoder.rejected
    return decoded


def _runner(plan, name: str, blocks: tuple[int, ...]):
    payload = WorkerPayload(
        "default", "test", name, blocks, plan.n_blocks, "nats://x", plan.source,
        algorithm=plan.worker_algorithm,
    )  # fmt: skip
    data = dict(zip(blocks, load_blocks(plan.source, blocks, plan.n_blocks), strict=True))
    return runner_for(payload, data)


def _drive(plan, placements: dict[int, dict[str, tuple[int, ...]]]):
    """Run the plan's driver to the end with in-process runners; before round k in
    ``placements``, the workers leave (handing their states back) and new ones take the blocks
    as given. Returns the driver."""
    driver = driver_for(plan)
    runners: dict = {}
    leaving: set[str] = set()

    def place(assignment):
        for name, blocks in assignment.items():
            runners[name] = _runner(plan, name, blocks)
            runners[name].take(_wire(driver.assignment(name, "", blocks)))

    place(placements[0])
    while not driver.done:
        if driver.iteration in placements and driver.iteration > 0:
            for name in leaving:
                del runners[name]
            place(placements[driver.iteration])
        broadcast = _wire(driver.broadcast())
        leaving = {n for n in runners if driver.iteration + 1 in placements}
        for name, runner in runners.items():
            fields = runner.step(broadcast)
            timing = {"compute_seconds": 0.0, "idle_seconds": 0.0}
            driver.take(_wire(runner.answer(fields, name in leaving, **timing)))
        driver.reduce(0.0)
    return driver


def test_ma_sgd_blocks_move_between_workers_with_their_exact_state(manifest):
    plan = _plan(manifest, {"sgd": MA_ISP})
    moves = {
        0: {"a": (0, 1), "b": (2, 3)},
        5: {"c": (0, 3), "d": (1, 2)},  # every block changes worker
        11: {"e": (0, 1, 2, 3)},
    }
    driver = _drive(plan, moves)
    blocks = load_blocks(plan.source, range(4), 4)
    reference = reference_sgd(problem_from_wire(plan.problem), blocks, plan.settings)
    assert [r.loss for r in driver.history] == [r.loss for r in reference.history]
    np.testing.assert_array_equal(driver.model, reference.x)  # after the flush round
    assert not driver.states  # every state handed back was handed on


def test_kmeans_seeds_then_lloyd_whatever_the_placement(manifest):
    blobs = {"samples": 900, "features": 3, "centers": 4, "seed": 1}
    problem = {"loss": "kmeans", "l1": None, "kmeans": {"k": 4},
               "data": {"synthetic": None, "blobs": blobs}}  # fmt: skip
    plan = _plan(manifest, {"kmeans": {"seed": 5}}, problem)
    assert plan.description == "kmeans on 900 rows x 3 features"
    driver = _drive(plan, {0: {"a": (0, 1, 2), "b": (3,)}, 2: {"c": (3, 1), "d": (0, 2)}})
    reference = reference_kmeans(
        [b.A for b in load_blocks(plan.source, range(4), 4)], plan.settings
    )
    np.testing.assert_array_equal(driver.model, reference.centroids)
    assert driver.iteration == 4 + len(reference.history)  # k seeding rounds, then Lloyd's
    assert driver.remaining_rounds() == 0.0  # the last change is within the tolerance


def test_remaining_rounds_follow_the_epoch_budget(manifest):
    ga = {"optimizer": {"method": "adam", "learningRate": 0.05}, "batchSize": 60,
          "stop": {"maxEpochs": 2.0}}  # fmt: skip
    plan = _plan(manifest, {"sgd": ga})  # 300 rows a block: 5 rounds an epoch, 10 in all
    driver = driver_for(plan)
    assert driver.remaining_rounds() is None
    runner = _runner(plan, "a", (0, 1, 2, 3))
    runner.take(_wire(driver.assignment("a", "", (0, 1, 2, 3))))
    for done in range(1, 4):
        fields = runner.step(_wire(driver.broadcast()))
        driver.take(runner.answer(fields, False, compute_seconds=0.0, idle_seconds=0.0))
        driver.reduce(0.0)
        assert driver.remaining_rounds() == pytest.approx(10 - done)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"width": 4, "scalars": (0.5, 64.0, 0.0, 0.0)}, "bad-shape"),  # MA's width under GA
        ({"sizes": (3,), "values": np.zeros(3)}, "bad-shape"),  # not a gradient of d = 30
    ],
)
def test_a_malformed_answer_is_refused_with_its_reason(manifest, change, reason):
    plan = _plan(manifest, {"sgd": {"stop": {"maxEpochs": 1.0}}})
    driver = driver_for(plan)
    driver.broadcast()
    good = {"worker": "a", "iteration": 0, "blocks": (0,), "width": 2, "scalars": (0.5, 64.0),
            "sizes": (30,), "values": np.zeros(30), "compute_seconds": 0.0,
            "idle_seconds": 0.0}  # fmt: skip
    driver.take(p.Answer(**good))
    with pytest.raises(ProtocolError) as refused:
        driver.take(p.Answer(**{**good, **change}))
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("scalars", "values", "reason"),
    [
        ((0.5, 32.0, 0.05, 1.0), [1.5, 2.0], "bad-update"),  # a fractional index
        ((0.5, 32.0, 0.05, 1.0), [99.0, 2.0], "bad-update"),  # an index out of d = 30
        ((0.5, 32.0, 0.05, 1.0), [1.0, 2.0, 3.0], "bad-update"),  # indices without values
        ((0.5, 32.0, 0.05, 0.0), [1.0, 2.0], "bad-update"),  # dense, but not of size d
        ((0.5, 32.0, 0.05, 0.5), [1.0, 2.0], "bad-field"),  # neither sparse nor dense
        ((0.5, 0.0, 0.05, 1.0), [1.0, 2.0], "bad-field"),  # no rows
        ((0.5, 2.5, 0.05, 1.0), [1.0, 2.0], "bad-field"),  # half a row
    ],
)
def test_a_malformed_ma_update_is_refused_whole_and_changes_nothing(
    manifest, scalars, values, reason
):
    plan = _plan(manifest, {"sgd": MA_ISP})
    driver = driver_for(plan)
    driver.broadcast()
    good = (0.5, 32.0, 0.05, 1.0)
    answer = p.Answer(
        "a", 0, (0, 1), 4, good + scalars, (2, len(values)), 0.0, 0.0, np.array([1.0, 2.0, *values])
    )
    with pytest.raises(ProtocolError) as refused:
        driver.take(answer)
    assert refused.value.reason == reason
    assert driver._answers == {}  # not even block 0's part was kept


@pytest.mark.parametrize(
    ("scalars", "values"),
    [((2.0, 0.0), []), ((-1.0, 1.0), [0.0] * 3), ((0.0, 1.0), [0.0] * 3), ((2.0, 1.0), [0.0])],
    ids=["weight-without-row", "negative-weight", "row-without-weight", "short-row"],
)
def test_a_malformed_k_means_candidate_is_refused(manifest, scalars, values):
    blobs = {"samples": 90, "features": 3, "centers": 2, "seed": 1}
    problem = {"loss": "kmeans", "l1": None, "kmeans": {"k": 2},
               "data": {"synthetic": None, "blobs": blobs}}  # fmt: skip
    driver = driver_for(_plan(manifest, {"kmeans": {}}, problem))
    driver.broadcast()
    with pytest.raises(ProtocolError) as refused:
        driver.take(p.Answer("a", 0, (0,), 2, scalars, (len(values),), 0.0, 0.0, np.array(values)))
    assert refused.value.reason == "bad-field"


def test_k_means_on_fewer_distinct_rows_than_k_ends_with_a_data_error(manifest, tmp_path):
    (tmp_path / "two.svm").write_text("".join(f"+1 1:{i % 2}.5\n" for i in range(40)))
    problem = {"loss": "kmeans", "l1": None, "kmeans": {"k": 3},
               "data": {"synthetic": None, "libsvm": {"uri": "two.svm"}}}  # fmt: skip
    plan = _plan(manifest, {"kmeans": {}}, problem)
    with pytest.raises(DataError, match="k = 3: the data has only 2 distinct rows"):
        _drive(plan, {0: {"a": (0, 1, 2, 3)}})


def test_a_malformed_handover_is_refused_by_the_worker_and_changes_nothing(manifest):
    plan = _plan(manifest, {"sgd": MA_ISP})
    runner = _runner(plan, "a", (0, 1))
    driver = driver_for(plan)
    runner.take(_wire(driver.assignment("a", "", (0, 1))))
    before = {b: s.accumulator.copy() for b, s in runner.states.items()}
    bad = p.Handover("a", (0, 1), (0, 5), np.ones(5))  # block 1: 5 numbers, not a state
    with pytest.raises(ProtocolError) as refused:
        runner.take(bad)
    assert refused.value.reason == "bad-shape"
    assert all(np.array_equal(runner.states[b].accumulator, before[b]) for b in (0, 1))
    assert not runner.fits(np.zeros(29)) and runner.fits(np.zeros(30))
