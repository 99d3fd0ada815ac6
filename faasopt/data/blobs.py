"""Seeded Gaussian clusters ("blobs") for k-means, generated per block.

``centers`` centers in ``features`` dimensions are drawn uniformly from the box [-10, 10]^d (as
scikit-learn's ``make_blobs``) from ``(seed, CENTERS_STREAM)`` alone, so every block shares them.
Block b of B has the rows ``block_bounds(samples, B)`` gives it and is drawn from
``(seed, POINTS_STREAM, b)`` alone, in this order: each row's cluster (uniform over the centers),
then its offset from the center, N(0, spread^2) per coordinate. So, as with the paper's synthetic
data, which worker generates which block changes nothing.

The rows are dense data carried in a CSR matrix (a :class:`faasopt.data.Block`); ``y`` holds each
row's true cluster id as a float (0 .. centers - 1), for checking a clustering: k-means ignores it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from faasopt.data.blocks import Block, _count, block_range
from faasopt.errors import DataError

__all__ = ["CENTER_BOX", "Blobs"]

CENTERS_STREAM = 0x424C_0001
"""Tags in the generators' seeds: the centers and the blocks' points apart from each other and
from the other generators (numpy's SeedSequence ignores trailing zeros, so each has its tag)."""
POINTS_STREAM = 0x424C_0002
CENTER_BOX = (-10.0, 10.0)
"""Where the centers lie, per coordinate (scikit-learn's ``make_blobs`` default)."""


@dataclass(frozen=True)
class Blobs:
    """``samples`` rows around ``centers`` Gaussian centers in ``features`` dimensions."""

    samples: int
    """N, rows of all blocks together."""
    features: int
    """d, columns."""
    centers: int
    """Clusters drawn (k-means' k need not equal it)."""
    spread: float = 1.0
    """Standard deviation of every coordinate around its center."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "features", "centers"):
            if _count(getattr(self, name), name) < 1:
                raise DataError(f"expected at least 1 {name}, got {getattr(self, name)}")
        if isinstance(self.spread, bool) or not isinstance(self.spread, int | float | np.floating):
            raise DataError(f"expected a numeric spread, got {self.spread!r}")
        if not (math.isfinite(self.spread) and self.spread > 0):
            raise DataError(f"expected a finite spread > 0, got {self.spread}")
        if _count(self.seed, "seed") < 0:
            raise DataError(f"expected a non-negative seed, got {self.seed}")

    def center_points(self) -> np.ndarray:
        """The true centers, shape (centers, features), the same for every block."""
        rng = np.random.default_rng([self.seed, CENTERS_STREAM])
        return rng.uniform(*CENTER_BOX, (self.centers, self.features))

    def block(self, block: int, blocks: int) -> Block:
        """Block ``block`` of ``blocks``: rows in CSR, ``y`` the true cluster id of each row."""
        start, stop = block_range(self.samples, blocks, block)
        n = stop - start
        rng = np.random.default_rng([self.seed, POINTS_STREAM, int(block)])
        labels = rng.integers(0, self.centers, n)
        rows = self.center_points()[labels] + rng.normal(0.0, self.spread, (n, self.features))
        return Block(index=int(block), A=sp.csr_matrix(rows), y=labels.astype(np.float64))

    def blocks(self, block_ids: Sequence[int], blocks: int) -> list[Block]:
        """The blocks ``block_ids`` (in that order) of ``blocks``; see :meth:`block`."""
        return [self.block(b, blocks) for b in block_ids]
