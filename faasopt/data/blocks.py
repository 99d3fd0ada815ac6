"""Data blocks: the unit the ADMM variables live on and workers hold.

The data set of N rows is cut once into B contiguous blocks of rows (DESIGN.md, "Blocks, not
workers"); a worker is only a placement of one or more blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from faasopt.errors import DataError


@dataclass(frozen=True, eq=False)
class Block:
    """One block of the data set: rows ``A`` (sparse CSR, float64) and labels ``y`` in {-1, +1}.

    Compared by identity (``eq=False``): comparing arrays element-wise is the caller's business.
    """

    index: int
    A: sp.csr_matrix
    y: np.ndarray
    fetched_bytes: int = 0
    """Bytes read from the data's store to load this block (0 for generated data)."""

    def __post_init__(self) -> None:
        if not sp.issparse(self.A) or self.A.format != "csr":
            raise DataError(f"expected a CSR matrix for block {self.index}, got {type(self.A)}")
        if self.y.ndim != 1 or self.y.shape[0] != self.A.shape[0]:
            raise DataError(
                f"expected {self.A.shape[0]} labels for block {self.index}, "
                f"got shape {self.y.shape}"
            )

    @property
    def nbytes(self) -> int:
        """Bytes of the CSR data, indices, indptr and the labels, for memory accounting."""
        return int(
            self.A.data.nbytes + self.A.indices.nbytes + self.A.indptr.nbytes + self.y.nbytes
        )


def _count(value: object, name: str) -> int:
    """``value`` as a Python int, or a DataError if it is not an integer (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(f"expected an integer {name}, got {value!r}")
    return int(value)


def block_bounds(n_rows: int, n_blocks: int) -> np.ndarray:
    """Row offsets of ``n_blocks`` contiguous blocks of ``n_rows`` rows.

    Block ``b`` is rows ``[bounds[b], bounds[b + 1])``. Sizes differ by at most one, larger blocks
    first (as ``np.array_split``), so every block is non-empty.

    Returns
    -------
    numpy.ndarray
        int64 array of shape ``(n_blocks + 1,)`` from 0 to ``n_rows``.

    Raises
    ------
    DataError
        If ``n_blocks < 1`` or ``n_blocks > n_rows``.
    """
    n_rows = _count(n_rows, "row count")
    n_blocks = _count(n_blocks, "block count")
    if n_blocks < 1:
        raise DataError(f"expected at least 1 block, got {n_blocks}")
    if n_blocks > n_rows:
        raise DataError(f"expected at most {n_rows} blocks (one row each), got {n_blocks}")
    base, extra = divmod(n_rows, n_blocks)
    sizes = np.full(n_blocks, base, dtype=np.int64)
    sizes[:extra] += 1
    bounds = np.zeros(n_blocks + 1, dtype=np.int64)
    np.cumsum(sizes, out=bounds[1:])
    return bounds


def block_range(n_rows: int, n_blocks: int, block: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of block ``block``; DataError unless ``0 <= block < n_blocks``."""
    bounds = block_bounds(n_rows, n_blocks)
    block = _count(block, "block index")
    if not 0 <= block < n_blocks:
        raise DataError(f"expected a block index in [0, {n_blocks}), got {block}")
    return int(bounds[block]), int(bounds[block + 1])
