"""The paper's generator (seed 001, Section III), per block: determinism, structure, statistics."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from faasopt.data import Block, block_bounds, load_blocks, source_shape, synthetic_block
from faasopt.data import synthetic_blocks as gen_blocks
from faasopt.data.synthetic import nonzeros_per_row
from faasopt.errors import DataError

ALPHA = 1e-4  # significance level of the (seeded, hence deterministic) statistical tests


def assert_same(a: Block, b: Block) -> None:
    assert a.index == b.index
    assert a.A.shape == b.A.shape
    np.testing.assert_array_equal(a.A.indptr, b.A.indptr)
    np.testing.assert_array_equal(a.A.indices, b.A.indices)
    np.testing.assert_array_equal(a.A.data, b.A.data)
    np.testing.assert_array_equal(a.y, b.y)


def digest(block: Block) -> str:
    h = hashlib.sha256()
    for array in (block.A.indptr, block.A.indices, block.A.data, block.y):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


# --- block_bounds -----------------------------------------------------------------------------


@given(n=st.integers(1, 10_000), b=st.integers(1, 64))
def test_block_bounds_match_array_split(n: int, b: int) -> None:
    if b > n:
        with pytest.raises(DataError):
            block_bounds(n, b)
        return
    bounds = block_bounds(n, b)
    assert bounds.dtype == np.int64 and bounds.shape == (b + 1,)
    sizes = [len(part) for part in np.array_split(np.arange(n), b)]
    np.testing.assert_array_equal(np.diff(bounds), sizes)
    assert bounds[0] == 0 and bounds[-1] == n


def test_block_bounds_examples_and_errors() -> None:
    np.testing.assert_array_equal(block_bounds(10, 3), [0, 4, 7, 10])
    np.testing.assert_array_equal(block_bounds(600_000, 16), np.arange(17) * 37_500)
    for n, b in [(3, 4), (5, 0), (5, -1), (0, 1)]:
        with pytest.raises(DataError):
            block_bounds(n, b)
    with pytest.raises(DataError):
        block_bounds(10, 2.0)  # type: ignore[arg-type]


# --- determinism ------------------------------------------------------------------------------

ARGS = dict(samples=1003, features=300, density=0.02, seed=11)


def test_block_same_whatever_order_or_grouping() -> None:
    in_order = gen_blocks(**ARGS, block_ids=range(4), blocks=4)
    backwards = gen_blocks(**ARGS, block_ids=[3, 2, 1, 0], blocks=4)
    grouped = gen_blocks(**ARGS, block_ids=[2, 0], blocks=4) + gen_blocks(
        **ARGS, block_ids=[3, 1], blocks=4
    )
    by_id = {b.index: b for b in backwards}
    for block in in_order:
        assert_same(block, by_id[block.index])
        assert_same(block, synthetic_block(**ARGS, block=block.index, blocks=4))
    assert [b.index for b in grouped] == [2, 0, 3, 1]
    for block in grouped:
        assert_same(block, in_order[block.index])
    # The union is the data set: its rows are the blocks' rows, in block order.
    A = sp.vstack([b.A for b in in_order]).tocsr()
    bounds = block_bounds(ARGS["samples"], 4)
    assert A.shape == (ARGS["samples"], ARGS["features"])
    for b, block in enumerate(in_order):
        assert (A[bounds[b] : bounds[b + 1]] != block.A).nnz == 0


def test_blocks_are_the_same_in_another_process() -> None:
    code = (
        "import hashlib, numpy as np\n"
        "from faasopt.data import synthetic_blocks\n"
        "for b in synthetic_blocks(1003, 300, 0.02, 11, [3, 1, 2, 0], 4):\n"
        "    h = hashlib.sha256()\n"
        "    for a in (b.A.indptr, b.A.indices, b.A.data, b.y):\n"
        "        h.update(np.ascontiguousarray(a).tobytes())\n"
        "    print(b.index, h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    theirs = dict(line.split() for line in out.splitlines())
    ours = {str(b.index): digest(b) for b in gen_blocks(**ARGS, block_ids=range(4), blocks=4)}
    assert theirs == ours


def test_seed_and_block_change_the_data() -> None:
    a = synthetic_block(**ARGS, block=0, blocks=4)
    other_seed = synthetic_block(**{**ARGS, "seed": 12}, block=0, blocks=4)
    other_block = synthetic_block(**ARGS, block=1, blocks=4)
    assert digest(a) != digest(other_seed)
    assert not np.array_equal(a.A.data[:100], other_seed.A.data[:100])
    assert not np.array_equal(a.A.data[:100], other_block.A.data[:100])


def test_changing_blocks_changes_the_cut_and_the_draw_but_not_the_per_block_rule() -> None:
    # A block depends only on (seed, block index, its row count, features, density): block 2 of
    # 4 blocks of 100 rows and block 2 of 8 blocks of 200 rows are both 25 rows from rng([seed, 2]).
    small = synthetic_block(100, 50, 0.1, 5, block=2, blocks=4)
    large = synthetic_block(200, 50, 0.1, 5, block=2, blocks=8)
    assert small.A.shape == large.A.shape == (25, 50)
    assert_same(small, large)
    # So another block count gives another draw of the same distribution, not a re-cut: the
    # union has the same shape, but different rows.
    four = sp.vstack([b.A for b in gen_blocks(1000, 50, 0.1, 5, range(4), 4)]).tocsr()
    five = sp.vstack([b.A for b in gen_blocks(1000, 50, 0.1, 5, range(5), 5)]).tocsr()
    assert four.shape == five.shape and four.nnz == five.nnz
    assert (four != five).nnz > 0


# --- structure --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "density", "k"),
    [
        (300, 0.02, 6),
        (10_000, 0.001, 10),
        (50, 1e-6, 1),
        (20, 0.5, 10),
        (20, 0.75, 15),
        (7, 1.0, 7),
    ],
)
def test_rows_have_k_distinct_sorted_indices(features: int, density: float, k: int) -> None:
    assert nonzeros_per_row(features, density) == k
    for b in range(3):
        block = synthetic_block(1000, features, density, 3, block=b, blocks=3)
        rows = int(block_bounds(1000, 3)[b + 1] - block_bounds(1000, 3)[b])
        A = block.A
        assert isinstance(A, sp.csr_matrix)
        assert A.shape == (rows, features) and A.dtype == np.float64
        assert block.y.shape == (rows,) and block.y.dtype == np.float64
        assert set(np.unique(block.y)) <= {-1.0, 1.0}
        A.check_format(full_check=True)
        np.testing.assert_array_equal(np.diff(A.indptr), k)
        cols = A.indices.reshape(rows, k)
        assert (np.diff(cols, axis=1) > 0).all()  # distinct and sorted
        assert cols.min() >= 0 and cols.max() < features
        assert block.nbytes == (A.data.nbytes + A.indices.nbytes + A.indptr.nbytes + block.y.nbytes)


def test_paper_instance_block_shape() -> None:
    block = synthetic_block(600_000, 10_000, 0.001, 0, block=15, blocks=16)
    assert block.A.shape == (37_500, 10_000)
    assert block.A.nnz == 375_000


def test_invalid_parameters_raise_data_error() -> None:
    good = dict(samples=10, features=5, density=0.5, seed=0, block=0, blocks=2)
    for change in [
        {"density": 0.0},
        {"density": 1.5},
        {"density": float("nan")},
        {"density": "0.1"},
        {"seed": -1},
        {"samples": 0},
        {"features": 0},
        {"block": 2},
        {"block": -1},
        {"blocks": 11},
        {"samples": 10.0},
    ]:
        with pytest.raises(DataError):
            synthetic_block(**{**good, **change})


# --- statistics (fixed seeds, so deterministic; bounds sized for the sampling error) -----------


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """Values of 40 000 rows of 10 nonzeros, as a (rows, 10) array, and the labels."""
    blocks = gen_blocks(40_000, 1_000, 0.01, 2024, range(4), 4)
    values = np.concatenate([b.A.data for b in blocks]).reshape(-1, 10)
    return values, np.concatenate([b.y for b in blocks])


def z_score(x: np.ndarray, expected: float) -> float:
    """z of the mean of i.i.d. ``x`` against ``expected``, with the sample standard error."""
    return float((x.mean() - expected) / (x.std(ddof=1) / np.sqrt(x.size)))


def test_labels_are_balanced(sample: tuple[np.ndarray, np.ndarray]) -> None:
    _, y = sample
    assert stats.binomtest(int((y > 0).sum()), y.size, 0.5).pvalue > ALPHA


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_values_are_normal_around_a_per_row_uniform_mean(
    sample: tuple[np.ndarray, np.ndarray], sign: float
) -> None:
    values, y = sample
    rows = values[y == sign] * sign  # mirror negative rows: nu ~ U[0, 1] for both
    k = rows.shape[1]
    z_bound = stats.norm.isf(ALPHA / 2)
    # mean 1/2: the row means are i.i.d. with mean E[nu] = 1/2
    row_means = rows.mean(axis=1)
    assert abs(z_score(row_means, 0.5)) < z_bound
    # variance 1 + 1/12 about the known mean: per-row mean squares are i.i.d.
    assert abs(z_score(((rows - 0.5) ** 2).mean(axis=1), 1 + 1 / 12)) < z_bound
    # unit noise within a row: the within-row sample variance has mean 1
    assert abs(z_score(rows.var(axis=1, ddof=1), 1.0)) < z_bound
    # nu is drawn once per row, not per value: row means vary by Var(nu) + 1/k = 1/12 + 1/k
    # (a per-value nu would give (1 + 1/12) / k = 0.108 instead of 0.183)
    assert abs(z_score((row_means - 0.5) ** 2, 1 / 12 + 1 / k)) < z_bound
    # one value per row (independent across rows) follows N(0, 1) + U[0, 1]

    def cdf(x: np.ndarray) -> np.ndarray:
        def g(t: np.ndarray) -> np.ndarray:
            return t * stats.norm.cdf(t) + stats.norm.pdf(t)

        return g(x) - g(x - 1.0)

    assert stats.kstest(rows[:, 0], cdf).pvalue > ALPHA


def test_feature_indices_are_uniform() -> None:
    blocks = gen_blocks(20_000, 50, 0.1, 99, range(4), 4)
    counts = np.bincount(np.concatenate([b.A.indices for b in blocks]), minlength=50)
    assert counts.sum() == 20_000 * 5
    assert stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize(("features", "k"), [(6, 2), (6, 3), (6, 4), (6, 5)])
def test_index_subsets_are_uniform(features: int, k: int) -> None:
    # k <= d/2 redraws duplicates, k > d/2 samples the complement: both must give every
    # k-subset the same probability.
    block = synthetic_block(30_000, features, k / features, 7, block=0, blocks=1)
    subsets = [tuple(r) for r in block.A.indices.reshape(-1, k)]
    index = {s: i for i, s in enumerate(itertools.combinations(range(features), k))}
    counts = np.bincount([index[s] for s in subsets], minlength=len(index))
    assert counts.min() > 0
    assert stats.chisquare(counts).pvalue > ALPHA


# --- the payload's data source ----------------------------------------------------------------


def test_synthetic_source() -> None:
    source = {"synthetic": {"samples": 1003, "features": 300, "density": 0.02, "seed": 11}}
    assert source_shape(source) == (1003, 300)
    loaded = load_blocks(source, [1, 3], 4)
    assert [b.index for b in loaded] == [1, 3]
    assert_same(loaded[0], synthetic_block(**ARGS, block=1, blocks=4))
    assert_same(loaded[1], synthetic_block(**ARGS, block=3, blocks=4))
