r"""MLLess's ISP significance filter (seed 002, Section 4.1): send only the updates that matter.

Each sender keeps, per parameter f, an accumulator :math:`\delta_f` of the updates it applied to
its own replica but has not sent yet. After a step at (communication) step t it sends entry f only
when

.. math::

    \left| \delta_f / w_f \right| > v_t, \qquad v_t = v / \sqrt{t + 1},

where :math:`w` is its replica after the step; a sent entry's accumulator restarts at 0, an unsent
one keeps accumulating. The paper writes :math:`v / \sqrt{t}` with t counted from 1; MLLess's
reference code counts from 0 and uses :math:`v / \sqrt{t + 1}`, as here (v = 0.7 in the paper's
runs).

:math:`w_f = 0`: the reference code divides in C (``cdivision``), so :math:`|\delta_f / 0| = \infty`
sends any nonzero :math:`\delta_f`, and :math:`0 / 0` is NaN, which compares false: a zero
accumulator is never sent. The same IEEE arithmetic is used here.

With v = 0 the test is :math:`\delta_f \ne 0`: every nonzero update is sent in the step that made
it and every accumulator is 0 afterwards, so ISP reduces exactly to BSP (the paper's corollary,
Appendix A); the tests check the model sequences are equal bit for bit.

Messages are sparse: sorted int32 indices (int64 for models of 2**31 entries or more) and float64
values, so an entry costs 12 bytes against 8 in a dense vector; a message with more than 2/3 of
the entries is cheaper sent dense, and :attr:`SparseUpdate.nbytes` counts it so. For PMF the
model is the flat vector of both factor matrices, so an entry is one (row, factor) pair, as in
MLLess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SparseUpdate",
    "apply_updates",
    "dense_nbytes",
    "filter_update",
    "flush",
    "significance_threshold",
]


@dataclass(frozen=True, eq=False)
class SparseUpdate:
    """Entries ``values`` at ``indices`` (sorted, distinct) of a vector of ``size`` entries."""

    indices: np.ndarray
    values: np.ndarray
    size: int

    def __post_init__(self) -> None:
        if self.indices.shape != self.values.shape or self.indices.ndim != 1:
            raise ValueError(
                f"indices and values must be 1-d of one shape, got {self.indices.shape} "
                f"and {self.values.shape}"
            )
        if np.any(np.diff(self.indices) <= 0):  # duplicates would be added once, not twice
            raise ValueError("indices must be strictly increasing")
        if self.indices.size and not (self.indices[0] >= 0 and self.indices[-1] < self.size):
            raise ValueError(f"indices must lie in [0, {self.size})")

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: the indices and values, or the dense vector when that is smaller
        (more than 2/3 of the entries present), as a sender should encode it."""
        return min(int(self.indices.nbytes + self.values.nbytes), dense_nbytes(self.size))


def dense_nbytes(size: int) -> int:
    """Bytes of the same update sent dense (float64), the BSP baseline."""
    return 8 * size


def _sparse(acc: np.ndarray, mask: np.ndarray) -> SparseUpdate:
    index_type = np.int32 if acc.size < 2**31 else np.int64
    indices = np.flatnonzero(mask).astype(index_type)
    return SparseUpdate(indices=indices, values=acc[indices], size=acc.size)


def significance_threshold(v: float, t: int) -> float:
    """v_t = v / sqrt(t + 1), the threshold at step t (counted from 0, as MLLess's code)."""
    return v / math.sqrt(t + 1)


def filter_update(
    accumulator: np.ndarray, update: np.ndarray, replica: np.ndarray, v: float, t: int
) -> tuple[SparseUpdate, np.ndarray]:
    r"""Add ``update`` to the accumulator and split off the significant entries.

    Parameters
    ----------
    accumulator : ndarray, shape (d,)
        :math:`\delta`, the unsent updates so far.
    update : ndarray, shape (d,)
        This step's update of the sender's replica.
    replica : ndarray, shape (d,)
        :math:`w`, the sender's replica after the update.
    v, t : float, int
        The threshold and the step: entries with :math:`|\delta_f / w_f| > v / \sqrt{t+1}` go.

    Returns
    -------
    message : SparseUpdate
        The significant entries of :math:`\delta + u`.
    accumulator : ndarray, shape (d,)
        A new array: :math:`\delta + u` with the sent entries set to 0.
    """
    acc = accumulator + update
    with np.errstate(divide="ignore", invalid="ignore"):
        mask = np.abs(acc / replica) > significance_threshold(v, t)
    message = _sparse(acc, mask)
    acc[mask] = 0.0
    return message, acc


def flush(accumulator: np.ndarray) -> SparseUpdate:
    """Every nonzero unsent entry, whatever its significance: a block's last word.

    Sent when a run ends, so the final model holds every update ever made, and never a replica.
    """
    return _sparse(accumulator, accumulator != 0.0)


def apply_updates(x: np.ndarray, updates: Sequence[SparseUpdate]) -> np.ndarray:
    """``x`` plus the updates, added one after another in the given (block) order.

    Each entry of the result is ``x_f`` plus its values in that order, so the result does not
    depend on who sent which update; with dense updates of every entry it equals
    ``x + u_1 + ... + u_B`` to the last bit. Returns a new array.
    """
    out = np.array(x, dtype=np.float64, copy=True)
    for update in updates:
        if update.size != out.size:
            raise ValueError(f"update of size {update.size} for a model of size {out.size}")
        out[update.indices] += update.values
    return out
