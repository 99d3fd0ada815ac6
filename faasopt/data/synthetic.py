"""The paper's random l1-logistic-regression instance (seed 001, Section III), generated per block.

Section III follows Koh, Kim and Boyd (JMLR 2007): each sample is positive or negative with
probability 1/2; its nonzero features sit at indices drawn uniformly without replacement, and
their values are drawn independently from N(nu, 1) with nu ~ U[0, 1] for a positive sample and
nu ~ U[-1, 0] for a negative one. Neither the paper nor its earlier draft (000) says how often
nu is drawn; we draw it once per sample (row), which makes the sign of a row's mean carry its
label, so every feature is equally informative and the l1 solution is dense, as DESIGN.md
measured on the paper's instance.

Block ``b`` of ``B`` is generated alone from ``np.random.default_rng([seed, b])``, as the paper's
workers generate their own data: for a fixed ``B`` the union of the blocks is the same data set
whichever process generates which block, in whatever order or grouping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from faasopt.data.blocks import Block, _count, block_range
from faasopt.errors import DataError


def nonzeros_per_row(features: int, density: float) -> int:
    """Nonzeros of every row: ``max(1, round(density * features))`` (ties to even)."""
    return max(1, round(density * features))


def _check(samples: int, features: int, density: float, seed: int) -> tuple[int, int, float, int]:
    samples = _count(samples, "sample count")
    features = _count(features, "feature count")
    seed = _count(seed, "seed")
    if samples < 1:
        raise DataError(f"expected at least 1 sample, got {samples}")
    if features < 1:
        raise DataError(f"expected at least 1 feature, got {features}")
    if not features < 2**31:
        raise DataError(f"expected fewer than 2**31 features, got {features}")
    if seed < 0:
        raise DataError(f"expected a non-negative seed, got {seed}")
    if isinstance(density, bool) or not isinstance(density, int | float | np.floating):
        raise DataError(f"expected a numeric density, got {density!r}")
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise DataError(f"expected a density in (0, 1], got {density}")
    return samples, features, density, seed


def _distinct_sorted(rng: np.random.Generator, n: int, k: int, d: int) -> np.ndarray:
    """``(n, k)`` int32 array whose rows are uniform k-subsets of ``range(d)``, sorted ascending.

    For ``k <= d/2`` draw with replacement, then redraw only the duplicated slots (the rows that
    have any) until every row is distinct; each round keeps a row's distinct values and redraws
    the rest uniformly, a procedure symmetric under relabelling the features, so the resulting
    subset is uniform. A redrawn slot collides with probability below ``k/d <= 1/2``, so the
    rounds shrink geometrically (on the paper's instance 0.45 % of the rows need one).
    For ``k > d/2`` sample the ``d - k`` excluded indices that way and take the complement.
    """
    if k == d:
        return np.broadcast_to(np.arange(d, dtype=np.int32), (n, d)).copy()
    if 2 * k > d:
        excluded = _distinct_sorted(rng, n, d - k, d)
        keep = np.ones((n, d), dtype=bool)
        keep[np.arange(n)[:, None], excluded] = False
        return np.nonzero(keep)[1].astype(np.int32).reshape(n, k)
    idx = rng.integers(0, d, size=(n, k), dtype=np.int32)
    idx.sort(axis=1)
    rows = np.flatnonzero((idx[:, 1:] == idx[:, :-1]).any(axis=1))
    while rows.size:
        sub = idx[rows]
        dup = np.zeros(sub.shape, dtype=bool)
        dup[:, 1:] = sub[:, 1:] == sub[:, :-1]
        sub[dup] = rng.integers(0, d, size=int(dup.sum()), dtype=np.int32)
        sub.sort(axis=1)
        idx[rows] = sub
        still = (sub[:, 1:] == sub[:, :-1]).any(axis=1)
        rows = rows[still]
    return idx


def synthetic_block(
    samples: int, features: int, density: float, seed: int, block: int, blocks: int
) -> Block:
    """Generate block ``block`` of the paper's instance of ``samples`` rows cut into ``blocks``.

    The block has the rows ``block_bounds(samples, blocks)`` gives it and is drawn from
    ``np.random.default_rng([seed, block])`` alone, in this order: labels (+1 or -1, probability
    1/2 each), one ``nu`` per row (``U[0, 1]`` for a positive row, ``U[-1, 0]`` for a negative one),
    the values ``N(nu, 1)``, then the ``k = max(1, round(density * features))`` feature indices of
    each row, uniform without replacement and sorted in the CSR row.

    A block therefore depends only on ``(seed, block, its row count, features, density)``: the
    worker count and placement never change it, but changing ``blocks`` changes the row counts and
    which generator draws which rows, so it yields another draw from the same distribution, not
    the same data set cut differently.

    Raises
    ------
    DataError
        On a non-positive size, a density outside (0, 1], a negative seed or a bad block index.
    """
    samples, features, density, seed = _check(samples, features, density, seed)
    start, stop = block_range(samples, blocks, block)
    n, k = stop - start, nonzeros_per_row(features, density)
    rng = np.random.default_rng([seed, int(block)])
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    nu = y * rng.random(n)
    values = rng.standard_normal((n, k))
    values += nu[:, None]
    indices = _distinct_sorted(rng, n, k, features)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int32 if n * k < 2**31 else np.int64)
    A = sp.csr_matrix((values.ravel(), indices.ravel(), indptr), shape=(n, features), copy=False)
    A.has_sorted_indices = True
    return Block(index=int(block), A=A, y=y)


def synthetic_blocks(
    samples: int,
    features: int,
    density: float,
    seed: int,
    block_ids: Sequence[int],
    blocks: int,
) -> list[Block]:
    """Generate the blocks ``block_ids`` (in that order) of the instance; see `synthetic_block`."""
    return [synthetic_block(samples, features, density, seed, b, blocks) for b in block_ids]
