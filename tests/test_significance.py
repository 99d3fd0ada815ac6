"""MLLess's ISP significance filter: the rule, v = 0 is BSP bit for bit, and v = 0.7 sends less
yet reaches the same loss threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faasopt.data.ratings import SyntheticRatings
from faasopt.solvers.pmf import PmfProblem
from faasopt.solvers.sgd import (
    Method,
    ModelAveraging,
    OptimizerSettings,
    SgdSettings,
    StopReason,
    StopRule,
    Variant,
    descend,
    final_model,
    initial_block_state,
    initial_optimizer_state,
    minibatch,
    model_block_step,
    reference_sgd,
)
from faasopt.solvers.significance import (
    SparseUpdate,
    apply_updates,
    filter_update,
    flush,
    significance_threshold,
)

BLOCKS = 4


@pytest.fixture(scope="module")
def ratings():
    generator = SyntheticRatings(users=80, items=60, rank=3, ratings=3000, noise=0.1, seed=3)
    blocks = [generator.block(b, BLOCKS) for b in range(BLOCKS)]
    return PmfProblem(80, 60, 3, 3000, l2=0.05, seed=1), blocks


def test_an_entry_goes_when_its_accumulated_update_is_large_relative_to_its_weight():
    assert significance_threshold(0.7, 0) == 0.7
    assert significance_threshold(0.7, 3) == pytest.approx(0.35)
    acc = np.array([0.0, 0.2, 0.0, 0.0, 1e-3])
    update = np.array([0.1, 0.1, 0.0, 2.0, 0.0])
    replica = np.array([1.0, 1.0, 0.0, 0.0, 5.0])
    # |acc'/w| = 0.1, 0.3, 0/0, 2/0, 2e-4 against v_3 = 0.35 / 2 = 0.175
    message, left = filter_update(acc, update, replica, 0.35, 3)
    assert message.indices.tolist() == [1, 3]  # w = 0: any nonzero update goes, a zero one never
    np.testing.assert_array_equal(message.values, [0.2 + 0.1, 2.0])
    np.testing.assert_array_equal(left, [0.1, 0.0, 0.0, 0.0, 1e-3])  # the rest keeps accumulating
    assert message.nbytes == 2 * (4 + 8)
    np.testing.assert_array_equal(acc, [0.0, 0.2, 0.0, 0.0, 1e-3])  # inputs untouched


def test_a_message_is_counted_dense_when_that_is_smaller():
    full = SparseUpdate(np.arange(10, dtype=np.int32), np.ones(10), 10)
    assert full.nbytes == 80
    with pytest.raises(ValueError, match="lie in"):
        SparseUpdate(np.array([3, 12], dtype=np.int32), np.ones(2), 10)
    with pytest.raises(ValueError, match="increasing"):
        SparseUpdate(np.array([3, 3], dtype=np.int32), np.ones(2), 10)


def test_with_v_zero_every_nonzero_update_goes_and_nothing_stays():
    rng = np.random.default_rng(0)
    update = rng.normal(size=50)
    update[::7] = 0.0
    message, left = filter_update(np.zeros(50), update, rng.normal(size=50), 0.0, 0)
    np.testing.assert_array_equal(message.indices, np.flatnonzero(update))
    np.testing.assert_array_equal(left, np.zeros(50))
    np.testing.assert_array_equal(apply_updates(np.zeros(50), [message]), update)


def test_flush_and_apply_updates_keep_every_update():
    x = np.array([1.0, 2.0, 3.0])
    acc = np.array([0.5, 0.0, -1.0])
    assert flush(acc).indices.tolist() == [0, 2]
    one = SparseUpdate(np.array([0, 2], dtype=np.int32), np.array([0.1, 0.2]), 3)
    two = SparseUpdate(np.array([2], dtype=np.int32), np.array([0.3]), 3)
    np.testing.assert_array_equal(apply_updates(x, [one, two, flush(acc)]), [1.6, 2.0, 2.5])
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])


def _bsp_models(problem, blocks, settings, rounds):
    """Plain BSP model averaging, dense and without any filter: every round each block takes its
    local steps from the shared x with its own optimizer, and x moves by the blocks' mean step,
    added in block order."""
    x = problem.initial_model()
    optimizers = [initial_optimizer_state(settings.optimizer, problem.n_params) for _ in blocks]
    models = []
    for k in range(rounds):
        total = x.copy()
        for b, block in enumerate(blocks):
            local = x
            for j in range(settings.sync_every):
                rows = minibatch(
                    problem.rows(block),
                    settings.batch_size,
                    settings.seed,
                    b,
                    k * settings.sync_every + j,
                )
                _, grad = problem.loss_grad(block, local, rows)
                local, optimizers[b], _ = descend(
                    problem, settings.optimizer, optimizers[b], local, grad / rows.size
                )
            total += (local - x) / len(blocks)
        x = total
        models.append(x)
    return models


@pytest.mark.parametrize("method", [Method.NESTEROV, Method.ADAM])
def test_isp_with_v_zero_is_bsp_step_by_step(ratings, method):
    problem, blocks = ratings
    settings = SgdSettings(
        variant=Variant.MODEL_AVERAGING,
        optimizer=OptimizerSettings(method=method, learning_rate=0.05),
        batch_size=32,
        sync_every=2,
        significance=0.0,
    )
    rounds = 40
    coordinator = ModelAveraging(problem, settings, [b.size for b in blocks])
    states = [initial_block_state(settings, problem.n_params) for _ in blocks]
    for k, expected in enumerate(_bsp_models(problem, blocks, settings, rounds)):
        steps = [
            model_block_step(problem, blk, b, coordinator.x, states[b], k, settings, BLOCKS)
            for b, blk in enumerate(blocks)
        ]
        states = [s for _, s in steps]
        coordinator.reduce([m for m, _ in steps])
        np.testing.assert_array_equal(coordinator.x, expected)
        assert all(not s.accumulator.any() for s in states)
    np.testing.assert_array_equal(final_model(coordinator.x, states), coordinator.x)


def test_isp_at_v_07_sends_less_and_still_reaches_the_loss_threshold(ratings):
    problem, blocks = ratings
    threshold = 0.02  # half the squared error per rating: RMSE 0.2, twice the noise
    runs = {}
    for v in (0.0, 0.7):
        settings = SgdSettings(
            variant=Variant.MODEL_AVERAGING,
            optimizer=OptimizerSettings(method=Method.NESTEROV, learning_rate=0.1),
            batch_size=32,
            sync_every=1,  # MLLess: exchange every step
            significance=v,
            seed=2,
            stop=StopRule(loss_threshold=threshold, hold_rounds=10, max_epochs=100),
        )
        runs[v] = reference_sgd(problem, blocks, settings)
    bsp, isp = runs[0.0], runs[0.7]
    sent = {v: sum(r.bytes_sent for r in run.history) for v, run in runs.items()}
    entries = {v: sum(r.entries_sent for r in run.history) for v, run in runs.items()}
    print(
        f"BSP {len(bsp.history)} rounds {sent[0.0]} B; ISP v=0.7 {len(isp.history)} rounds "
        f"{sent[0.7]} B ({sent[0.7] / sent[0.0]:.3f} of BSP, {entries[0.7] / entries[0.0]:.3f} of "
        f"the entries; dense would be {sum(r.dense_bytes for r in isp.history)} B)"
    )
    assert bsp.status is StopReason.LOSS_THRESHOLD and isp.status is StopReason.LOSS_THRESHOLD
    assert all(r.loss <= threshold for r in isp.history[-10:])
    per_round = {v: sent[v] / len(run.history) for v, run in runs.items()}
    assert per_round[0.7] < 0.5 * per_round[0.0]
    assert sent[0.7] < 0.5 * sent[0.0]
    assert math.isfinite(isp.objective) and isp.objective < 1.5 * bsp.objective
