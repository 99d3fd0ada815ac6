"""Probabilistic matrix factorization: ratings data, the gradient, and recovery of a synthetic
low-rank matrix down to the noise level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faasopt.data.ratings import Ratings, SyntheticRatings, ratings_blocks, read_ratings
from faasopt.errors import DataError
from faasopt.solvers.pmf import PmfProblem, rmse
from faasopt.solvers.sgd import (
    Method,
    OptimizerSettings,
    SgdSettings,
    StopRule,
    Variant,
    reference_sgd,
)

NOISE, BLOCKS = 0.1, 4
GENERATOR = SyntheticRatings(users=80, items=60, rank=3, ratings=6000, noise=NOISE, seed=3)


def test_the_gradient_is_the_derivative_of_the_loss():
    problem = PmfProblem(6, 5, 2, 30, offset=0.5, seed=4)
    data = SyntheticRatings(6, 5, 2, 30, 0.1, 1).block(0, 1)
    x = problem.initial_model() * 5
    rows = np.arange(0, 30, 2)
    value, grad = problem.loss_grad(data, x, rows)
    sub = data.take(0, rows)
    assert value == pytest.approx(problem.loss(sub, x), rel=1e-12)
    h = 1e-6
    numeric = [
        (problem.loss(sub, x + h * e) - problem.loss(sub, x - h * e)) / (2 * h)
        for e in np.eye(problem.n_params)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    U, V = problem.factors(x)
    assert U.shape == (6, 2) and V.shape == (5, 2)
    assert U[3, 1] == x[3 * 2 + 1] and V[2, 0] == x[6 * 2 + 2 * 2]  # entry = (row, factor)


@pytest.mark.parametrize(
    "variant, method, rate, sync",
    [
        (Variant.GRADIENT_AVERAGING, Method.NESTEROV, 0.2, None),  # MLLess's optimizer for PMF
        (Variant.MODEL_AVERAGING, Method.SGD, 2.0, None),  # LambdaML: average once an epoch
    ],
)
def test_pmf_recovers_a_low_rank_matrix_down_to_the_noise(variant, method, rate, sync):
    blocks = [GENERATOR.block(b, BLOCKS) for b in range(BLOCKS)]
    test = GENERATOR.holdout(1000)
    U, V = GENERATOR.factors()
    problem = PmfProblem(80, 60, 3, 6000, l2=0.05, seed=1)
    before = rmse(problem, problem.initial_model(), test)
    settings = SgdSettings(
        variant=variant,
        optimizer=OptimizerSettings(method=method, learning_rate=rate),
        batch_size=32,
        sync_every=sync,
        seed=1,
        stop=StopRule(max_epochs=30),
    )
    result = reference_sgd(problem, blocks, settings)
    after = rmse(problem, result.x, test)
    oracle = rmse(problem, np.concatenate([U.ravel(), V.ravel()]), test)  # the true factors
    print(f"{variant} {method}: test RMSE {before:.3f} -> {after:.4f}; true factors {oracle:.4f}")
    assert before > 0.9
    assert after < 1.1 * NOISE
    assert after < 1.1 * oracle


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ratings.txt"
    path.write_text(text)
    return path


def test_a_ratings_file_reads_in_movielens_formats(tmp_path):
    path = _write(
        tmp_path,
        "# user item rating\n0 1 4.5\n\n2\t0\t3\t881250949\n1,2,1.0\n3::1::5::978300760\n",
    )
    ratings = read_ratings(path)
    assert ratings.users.tolist() == [0, 2, 1, 3]
    assert ratings.items.tolist() == [1, 0, 2, 1]
    assert ratings.values.tolist() == [4.5, 3.0, 1.0, 5.0]
    assert (ratings.n_users, ratings.n_items) == (4, 3)


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("0 1 4\n0 1\n", 2, "fields"),
        ("0 1 4\n1 x 4\n", 2, "integer ids"),
        ("-1 1 4\n", 1, "non-negative"),
        ("0 1 nan\n", 1, "finite"),
        ("0 1 4 5 6\n", 1, "fields"),
    ],
)
def test_a_bad_line_is_a_data_error_at_file_and_line(tmp_path, text, line, reason):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=reason) as caught:
        read_ratings(path)
    assert (caught.value.path, caught.value.line) == (str(path), line)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_an_empty_ratings_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="at least one rating"):
        read_ratings(_write(tmp_path, "# nothing\n"))


def test_ratings_cut_into_blocks_keep_every_rating():
    ratings = GENERATOR.block(0, 1)
    for seed in (None, 5):
        blocks = ratings_blocks(ratings, 3, seed=seed)
        assert [b.size for b in blocks] == [2000, 2000, 2000]
        assert [b.index for b in blocks] == [0, 1, 2]
        joined = np.concatenate([b.values for b in blocks])
        np.testing.assert_array_equal(np.sort(joined), np.sort(ratings.values))
    np.testing.assert_array_equal(ratings_blocks(ratings, 3)[1].values, ratings.values[2000:4000])


def test_synthetic_blocks_depend_on_seed_and_block_only():
    one = GENERATOR.block(2, BLOCKS)
    again = SyntheticRatings(80, 60, 3, 6000, NOISE, 3).block(2, BLOCKS)
    np.testing.assert_array_equal(one.values, again.values)
    assert one.size == 1500 and one.index == 2
    assert not np.array_equal(GENERATOR.block(1, BLOCKS).users, one.users)
    U, V = GENERATOR.factors()
    residual = one.values - np.einsum("nk,nk->n", U[one.users], V[one.items])
    assert np.std(residual) == pytest.approx(NOISE, rel=0.1)
    assert np.var(U @ V.T) == pytest.approx(1.0, rel=0.5)
    with pytest.raises(DataError, match="ids"):
        Ratings(0, np.array([80]), np.array([0]), np.array([1.0]), 80, 60)
