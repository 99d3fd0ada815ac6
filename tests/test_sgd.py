"""Minibatch SGD over blocks: optimizers, schedules, sampling, stop rules, GA-SGD and MA-SGD
against scikit-learn's optimum, and runs that do not depend on which worker holds which block."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import liblinear, objective

from faasopt.data import Block, block_bounds, synthetic_blocks
from faasopt.solvers.sgd import (
    GradientAveraging,
    LogisticProblem,
    Method,
    ModelAveraging,
    OptimizerSettings,
    RateSchedule,
    SgdRecord,
    SgdSettings,
    StopReason,
    StopRule,
    Variant,
    descend,
    final_model,
    gradient_block_step,
    initial_block_state,
    initial_optimizer_state,
    learning_rate,
    minibatch,
    model_block_step,
    reference_sgd,
    stop_reason,
)

SAMPLES, FEATURES, BLOCKS = 4000, 40, 4


@pytest.fixture(scope="module")
def data():
    blocks = synthetic_blocks(SAMPLES, FEATURES, 0.25, 5, range(BLOCKS), BLOCKS)
    A = sp.vstack([b.A for b in blocks]).tocsr()
    y = np.concatenate([b.y for b in blocks])
    return blocks, A, y


@pytest.fixture(scope="module")
def optimum(data):
    """F at liblinear's solution, per l1 (computed once: it is the slow part)."""
    _, A, y = data
    found: dict[float, float] = {}

    def best(l1: float) -> float:
        if l1 not in found:
            found[l1] = objective(A, y, liblinear(A, y, l1), l1)  # C = 1 / l1: the same F
        return found[l1]

    return best


def _quadratic(l1=0.0, l2=0.0, n_rows=1):
    return LogisticProblem(n_params=3, n_rows=n_rows, l1=l1, l2=l2)


def test_optimizer_steps_follow_their_formulas():
    x, g = np.array([1.0, -2.0, 0.5]), np.array([0.3, -0.1, 2.0])
    problem = _quadratic()
    for method, expected in [
        (Method.SGD, x - 0.1 * g),
        (Method.MOMENTUM, x - 0.1 * g),  # m = g on the first step
        (Method.NESTEROV, x - 0.1 * (g + 0.9 * g)),
        (Method.ADAM, x - 0.1 * g / (np.abs(g) + 1e-8)),  # bias-corrected m/sqrt(v) = sign(g)
    ]:
        settings = OptimizerSettings(method=method, learning_rate=0.1)
        state = initial_optimizer_state(settings, 3)
        new, state, eta = descend(problem, settings, state, x, g)
        np.testing.assert_allclose(new, expected, rtol=1e-12)
        assert (state.t, eta) == (1, 0.1)
    settings = OptimizerSettings(method=Method.MOMENTUM, learning_rate=0.1, momentum=0.5)
    state = initial_optimizer_state(settings, 3)
    x1, state, _ = descend(problem, settings, state, x, g)
    x2, state, _ = descend(problem, settings, state, x1, g)
    np.testing.assert_allclose(x2, x1 - 0.1 * (0.5 * g + g))
    np.testing.assert_allclose(state.m, 1.5 * g)


def test_l1_prox_and_l2_scale_with_the_rows():
    problem = _quadratic(l1=4.0, l2=2.0, n_rows=2)
    settings = OptimizerSettings(learning_rate=0.5)
    x = np.array([1.0, -0.2, 0.1])
    new, _, _ = descend(problem, settings, initial_optimizer_state(settings, 3), x, np.zeros(3))
    shrunk = x - 0.5 * (2.0 / 2) * x  # the l2 term is lambda2 / N x
    np.testing.assert_allclose(new, np.sign(shrunk) * np.maximum(np.abs(shrunk) - 0.5 * 2.0, 0))
    assert new[1] == 0.0 and new[2] == 0.0


def test_learning_rate_schedules():
    def rate(schedule, t, **kw):
        return learning_rate(OptimizerSettings(learning_rate=0.8, schedule=schedule, **kw), t)

    assert rate(RateSchedule.CONSTANT, 99) == 0.8
    steps = [rate(RateSchedule.STEP, t, decay_every=10, decay_factor=0.5) for t in (0, 9, 10, 25)]
    assert steps == [0.8, 0.8, 0.4, 0.2]
    assert rate(RateSchedule.INVERSE_SQRT, 30, decay_every=10) == pytest.approx(0.8 / 2)
    assert rate(RateSchedule.COSINE, 0, horizon=100) == 0.8
    assert rate(RateSchedule.COSINE, 50, horizon=100) == pytest.approx(0.4)
    assert rate(RateSchedule.COSINE, 500, horizon=100) == 0.0


def test_minibatches_cover_each_row_once_per_epoch_and_depend_on_seed_block_and_step():
    rows, batch = 103, 25  # 5 minibatches an epoch, the last of 3 rows
    epoch0 = [minibatch(rows, batch, 7, 2, s) for s in range(5)]
    assert [b.size for b in epoch0] == [25, 25, 25, 25, 3]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(rows))
    epoch1 = np.concatenate([minibatch(rows, batch, 7, 2, s) for s in range(5, 10)])
    assert sorted(epoch1.tolist()) == list(range(rows))
    assert not np.array_equal(epoch1[:25], epoch0[0])  # a new order every epoch
    np.testing.assert_array_equal(minibatch(rows, batch, 7, 2, 6), minibatch(rows, batch, 7, 2, 6))
    assert not np.array_equal(minibatch(rows, batch, 7, 3, 0), epoch0[0])  # per block
    assert not np.array_equal(minibatch(rows, batch, 8, 2, 0), epoch0[0])  # per seed


CASES = {
    "GA sgd": (Variant.GRADIENT_AVERAGING, Method.SGD, 1.0, None),
    "GA momentum": (Variant.GRADIENT_AVERAGING, Method.MOMENTUM, 0.1, None),
    "GA adam": (Variant.GRADIENT_AVERAGING, Method.ADAM, 0.05, None),
    "MA sgd": (Variant.MODEL_AVERAGING, Method.SGD, 0.5, 8),
    "MA nesterov": (Variant.MODEL_AVERAGING, Method.NESTEROV, 0.05, None),
}


@pytest.mark.parametrize("l1", [1.0, 30.0])
@pytest.mark.parametrize("case", list(CASES))
def test_sgd_reaches_scikit_learns_optimum_within_one_percent(data, optimum, case, l1):
    blocks, A, y = data
    variant, method, rate, sync = CASES[case]
    best = optimum(l1)
    settings = SgdSettings(
        variant=variant,
        optimizer=OptimizerSettings(
            method=method, learning_rate=rate, schedule=RateSchedule.INVERSE_SQRT, decay_every=32
        ),
        batch_size=32,
        sync_every=sync,
        seed=1,
        stop=StopRule(max_epochs=10),
    )
    result = reference_sgd(LogisticProblem(FEATURES, SAMPLES, l1=l1), blocks, settings)
    gap = (objective(A, y, result.x, l1) - best) / best
    print(
        f"{case} l1={l1}: objective {result.objective:.4f} vs liblinear {best:.4f}, gap {gap:.2e}"
    )
    assert result.status is StopReason.MAX_EPOCHS
    assert result.objective == pytest.approx(objective(A, y, result.x, l1), rel=1e-12)
    assert 0 <= gap < 0.01 or abs(gap) < 1e-9


def test_l2_reaches_scikit_learns_optimum(data):
    from sklearn.linear_model import LogisticRegression

    blocks, A, y = data
    l2 = 50.0  # sklearn: C sum(loss) + ||w||^2 / 2, so C = 1 / l2
    w = LogisticRegression(C=1 / l2, fit_intercept=False, tol=1e-10, max_iter=1000).fit(A, y).coef_
    w = w.ravel()

    def F(x):
        return objective(A, y, x, 0.0) + l2 / 2 * float(x @ x)

    settings = SgdSettings(
        optimizer=OptimizerSettings(
            method=Method.MOMENTUM,
            learning_rate=0.1,
            schedule=RateSchedule.INVERSE_SQRT,
            decay_every=32,
        ),
        batch_size=32,
        seed=2,
    )
    result = reference_sgd(LogisticProblem(FEATURES, SAMPLES, l2=l2), blocks, settings)
    assert result.objective == pytest.approx(F(result.x), rel=1e-12)
    assert (F(result.x) - F(w)) / F(w) < 0.01


def test_model_averaging_averages_the_blocks_local_models(data):
    blocks, _, _ = data
    problem = LogisticProblem(FEATURES, SAMPLES, l1=1.0)
    settings = SgdSettings(variant=Variant.MODEL_AVERAGING, batch_size=50, sync_every=3, seed=4)
    x = np.random.default_rng(0).normal(size=FEATURES)
    coordinator = ModelAveraging(problem, settings, [problem.rows(b) for b in blocks])
    coordinator.x = x
    local_models = []
    for b, block in enumerate(blocks):  # three plain proximal SGD steps from x, by hand
        local = x
        for step in range(3):
            rows = minibatch(block.A.shape[0], 50, 4, b, 3 + step)  # round 1
            _, grad = problem.loss_grad(block, local, rows)
            local = local - 0.1 * grad / rows.size
            local = np.sign(local) * np.maximum(np.abs(local) - 0.1 / SAMPLES, 0.0)
        local_models.append(local)
    coordinator.round = 1
    messages = [
        model_block_step(
            problem, block, b, x, initial_block_state(settings, FEATURES), 1, settings, BLOCKS
        )[0]
        for b, block in enumerate(blocks)
    ]
    record = coordinator.reduce(messages)
    np.testing.assert_allclose(coordinator.x, np.mean(local_models, axis=0), rtol=1e-12, atol=1e-15)
    assert record.epochs == pytest.approx(2 * 3 / math.ceil(1000 / 50))
    assert record.entries_sent == BLOCKS * FEATURES


def _run_on_workers(problem, blocks, settings, placements, rounds):
    """Rounds of MA-SGD (or GA-SGD) where ``placements[k]`` lists, per worker, the blocks it
    holds in round k; each worker computes its blocks in its own order, the block states move
    with the blocks, and the coordinator gathers the messages and sorts them by block."""
    rows = [problem.rows(b) for b in blocks]
    ma = settings.variant is Variant.MODEL_AVERAGING
    coordinator = (ModelAveraging if ma else GradientAveraging)(problem, settings, rows)
    states = {b: initial_block_state(settings, problem.n_params) for b in range(len(blocks))}
    models = []
    for k in range(rounds):
        messages = []
        for worker_blocks in placements[k % len(placements)]:
            for b in worker_blocks:
                if ma:
                    message, states[b] = model_block_step(
                        problem, blocks[b], b, coordinator.x, states[b], k, settings, len(blocks)
                    )
                else:
                    message = gradient_block_step(problem, blocks[b], b, coordinator.x, k, settings)
                messages.append(message)
        coordinator.reduce(sorted(messages, key=lambda m: m.block))
        models.append(coordinator.x.copy())
    return models, final_model(coordinator.x, [states[b] for b in range(len(blocks))])


@pytest.mark.parametrize(
    "variant, method, significance",
    [
        (Variant.GRADIENT_AVERAGING, Method.ADAM, 0.0),
        (Variant.MODEL_AVERAGING, Method.NESTEROV, 0.0),
        (Variant.MODEL_AVERAGING, Method.ADAM, 0.7),
    ],
)
def test_the_run_does_not_depend_on_which_worker_holds_which_block(
    data, variant, method, significance
):
    blocks, _, _ = data
    problem = LogisticProblem(FEATURES, SAMPLES, l1=1.0)
    settings = SgdSettings(
        variant=variant,
        optimizer=OptimizerSettings(method=method, learning_rate=0.05),
        batch_size=64,
        sync_every=2 if variant is Variant.MODEL_AVERAGING else None,
        significance=significance,
        seed=3,
    )
    one_each = [[[0], [1], [2], [3]]]
    # two workers, then one evicted (its blocks move, states and all), then another grouping
    moving = [[[3, 1], [0, 2]], [[2, 0, 3, 1]], [[1], [3, 0, 2]]]
    models_a, final_a = _run_on_workers(problem, blocks, settings, one_each, 9)
    models_b, final_b = _run_on_workers(problem, blocks, settings, moving, 9)
    for a, b in zip(models_a, models_b, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(final_a, final_b)


def _record(loss, epochs=0.1, seconds=None):
    return SgdRecord(0, loss, epochs, 0.1, 0, 0, 0, seconds)


def test_loss_threshold_must_hold_for_consecutive_rounds():
    rule = StopRule(loss_threshold=0.5, hold_rounds=3, max_epochs=None)
    history = [_record(x) for x in (0.9, 0.4, 0.45, 0.6, 0.5, 0.3, 0.2)]
    reasons = [stop_reason(history[: i + 1], rule) for i in range(len(history))]
    assert reasons == [None] * 6 + [StopReason.LOSS_THRESHOLD]  # 0.6 broke the first run
    assert stop_reason([], rule) is None


def test_epoch_and_time_budgets_stop_a_run():
    assert (
        stop_reason([_record(1.0, epochs=2.0)], StopRule(max_epochs=2.0)) is StopReason.MAX_EPOCHS
    )
    assert stop_reason([_record(1.0, epochs=1.9)], StopRule(max_epochs=2.0)) is None
    timed = StopRule(max_epochs=None, max_seconds=30.0)
    assert stop_reason([_record(1.0, seconds=31.0)], timed) is StopReason.MAX_SECONDS
    assert stop_reason([_record(1.0, seconds=29.0)], timed) is None
    assert stop_reason([_record(1.0)], timed) is None  # no clock, no time rule


def test_a_coordinator_stops_on_the_loss_threshold(data):
    blocks, _, _ = data
    problem = LogisticProblem(FEATURES, SAMPLES, l1=1.0)
    settings = SgdSettings(
        optimizer=OptimizerSettings(method=Method.ADAM, learning_rate=0.05),
        batch_size=64,
        stop=StopRule(loss_threshold=0.35, hold_rounds=5, max_epochs=20),
    )
    result = reference_sgd(problem, blocks, settings)
    assert result.status is StopReason.LOSS_THRESHOLD
    assert all(r.loss <= 0.35 for r in result.history[-5:])
    assert result.history[-1].epochs < 20


def test_settings_name_what_does_not_make_sense():
    with pytest.raises(ValueError, match="modelAveraging"):
        SgdSettings(significance=0.7)
    with pytest.raises(ValueError, match="sync_every needs variant modelAveraging"):
        SgdSettings(sync_every=4)
    with pytest.raises(ValueError, match="batch_size"):
        SgdSettings(batch_size=0)
    with pytest.raises(ValueError, match="beta2"):
        OptimizerSettings(beta2=1.0)
    assert SgdSettings(variant=Variant.MODEL_AVERAGING).local_steps(1000) == 8  # one epoch
    assert dataclasses.replace(SgdSettings(), batch_size=10).local_steps(1000) == 1


def test_messages_must_come_in_block_order(data):
    blocks, _, _ = data
    problem = LogisticProblem(FEATURES, SAMPLES)
    settings = SgdSettings()
    coordinator = GradientAveraging(problem, settings, [1000] * BLOCKS)
    messages = [
        gradient_block_step(problem, b, i, coordinator.x, 0, settings) for i, b in enumerate(blocks)
    ]
    with pytest.raises(ValueError, match="block order"):
        coordinator.reduce(messages[::-1])


@pytest.mark.parametrize("method, rate", [(Method.MOMENTUM, 0.1), (Method.ADAM, 0.05)])
def test_gradient_averaging_finds_the_support_of_a_sparse_l1_solution(method, rate):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(SAMPLES, FEATURES))
    truth = np.zeros(FEATURES)
    truth[:5] = [2.0, -1.5, 1.0, -1.0, 0.5]
    y = np.where(rng.random(SAMPLES) < 1 / (1 + np.exp(-A @ truth)), 1.0, -1.0)
    bounds = block_bounds(SAMPLES, BLOCKS)
    blocks = [
        Block(b, sp.csr_matrix(A[bounds[b] : bounds[b + 1]]), y[bounds[b] : bounds[b + 1]])
        for b in range(BLOCKS)
    ]
    l1, A = 60.0, sp.csr_matrix(A)
    reference = liblinear(A, y, l1)
    settings = SgdSettings(
        optimizer=OptimizerSettings(
            method=method, learning_rate=rate, schedule=RateSchedule.INVERSE_SQRT, decay_every=32
        ),
        batch_size=32,
        seed=1,
    )
    result = reference_sgd(LogisticProblem(FEATURES, SAMPLES, l1=l1), blocks, settings)
    best = objective(A, y, reference, l1)
    assert np.flatnonzero(reference).tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(np.flatnonzero(result.x), np.flatnonzero(reference))
    assert (result.objective - best) / best < 1e-3
