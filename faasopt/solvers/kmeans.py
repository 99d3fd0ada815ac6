r"""k-means by EM (Lloyd's algorithm) over data blocks, with a k-means++ start by seeded reduction.

Minimizes the inertia :math:`I(C) = \sum_i \min_j \|a_i - c_j\|^2` over k centroids C (k, d), the
rows :math:`a_i` cut into B blocks (LambdaML's KM, seed 003, trained by EM with one reduction per
round). Round t, with :math:`C_t` broadcast:

- each block b assigns its rows to their nearest centroid (E-step) and sends, per centroid j, the
  sum :math:`S_{bj}` of its rows and their count :math:`n_{bj}`, and its inertia :math:`I_b`;
- the coordinator sums them in block order (so the result does not depend on which worker holds
  which block), records :math:`I(C_t) = \sum_b I_b` and sets
  :math:`c_j \leftarrow \sum_b S_{bj} / \sum_b n_{bj}` (M-step).

**Empty clusters** (:math:`\sum_b n_{bj} = 0`) keep their centroid: the rule costs no extra
round and keeps the run deterministic; scikit-learn instead moves them to far points, so from a
start that empties a cluster the two differ (the record counts empty clusters).

**Stopping**: ``centroids`` stops when :math:`\|C_{t+1} - C_t\|_F \le \epsilon \|C_t\|_F`,
``inertia`` when :math:`I(C_{t-1}) - I(C_t) \le \epsilon I(C_{t-1})`; or after
``max_iterations`` rounds. (scikit-learn's ``tol`` compares the squared shift with the data's
variance instead.) Lloyd's iteration never raises the inertia, so both are well defined.

**k-means++** (Arthur & Vassilvitskii 2007), distributed as k rounds of D² sampling: in round j,
with the centroids :math:`c_1 .. c_j` chosen so far broadcast, block b computes
:math:`D^2(a) = \min_{l \le j} \|a - c_l\|^2` for its rows, draws one candidate row with
probability :math:`D^2(a) / W_b` from ``(seed, block, j)`` and sends it with
:math:`W_b = \sum_{a \in b} D^2(a)`. The coordinator draws block b with probability
:math:`W_b / \sum W` from ``(seed, j)`` and takes its candidate: row a is chosen with probability
:math:`D^2(a) / \sum W`, exactly k-means++. The first round draws uniformly (weights = rows).
Messages are one row and a number per block; blocks keep nothing between rounds. scikit-learn's
default is the greedy variant (several candidates per round, the best kept), not this one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import scipy.sparse as sp

__all__ = [
    "CandidateMessage",
    "ClusterStats",
    "Criterion",
    "KMeansRecord",
    "KMeansResult",
    "KMeansSettings",
    "Lloyd",
    "Status",
    "candidate_block_step",
    "choose_center",
    "cluster_stats",
    "kmeans_plus_plus",
    "reference_kmeans",
]

CANDIDATE_STREAM = 0x4B4D_0001
"""Tags in the seeds of the blocks' candidate draws and the coordinator's choice (numpy's
SeedSequence ignores trailing zeros, so the two need different tags, not different lengths)."""
CHOICE_STREAM = 0x4B4D_0002


class Criterion(StrEnum):
    """What the relative tolerance is tested on."""

    CENTROIDS = "centroids"
    INERTIA = "inertia"


class Status(StrEnum):
    CONVERGED = "converged"
    MAX_ITERATIONS = "maxIterations"


@dataclass(frozen=True)
class KMeansSettings:
    """A k-means run."""

    k: int
    """Clusters."""
    max_iterations: int = 300
    """Rounds at most (scikit-learn's default)."""
    tolerance: float = 1e-4
    """epsilon of the relative change (dimensionless); 0 runs until nothing moves."""
    criterion: Criterion = Criterion.CENTROIDS
    seed: int = 0
    """Seed of the k-means++ start."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_iterations < 1:
            raise ValueError("k and max_iterations must be >= 1")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")


def _squared_distances(A, centroids: np.ndarray) -> np.ndarray:
    """(n, k) squared distances of the rows of A (dense or sparse) to the centroids, >= 0."""
    if sp.issparse(A):
        norms = np.asarray(A.multiply(A).sum(axis=1)).ravel()
    else:
        norms = np.einsum("nd,nd->n", A, A)
    cross = np.asarray(A @ centroids.T)
    d2 = norms[:, None] - 2.0 * cross + np.einsum("kd,kd->k", centroids, centroids)[None, :]
    return np.maximum(d2, 0.0)


@dataclass(frozen=True, eq=False)
class ClusterStats:
    """A block's E-step: per-centroid sums (k, d) and counts (k,) of its rows, and its inertia."""

    block: int
    sums: np.ndarray
    counts: np.ndarray
    inertia: float


def cluster_stats(A, centroids: np.ndarray, block: int) -> ClusterStats:
    """Worker side of a round: assign block ``block``'s rows ``A`` (n, d) to the centroids."""
    d2 = _squared_distances(A, centroids)
    labels = np.argmin(d2, axis=1)
    k, n = centroids.shape[0], labels.size
    indicator = sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
    sums = indicator @ A
    return ClusterStats(
        block=block,
        sums=sums.toarray() if sp.issparse(sums) else np.asarray(sums),
        counts=np.bincount(labels, minlength=k),
        inertia=math.fsum(d2[np.arange(n), labels]),
    )


@dataclass(frozen=True)
class KMeansRecord:
    """The coordinator's view of round t."""

    iteration: int
    inertia: float
    """I(C_t), at the centroids broadcast for this round."""
    change: float
    """||C_{t+1} - C_t||_F / ||C_t||_F (absolute when C_t = 0)."""
    empty_clusters: int


class Lloyd:
    """Coordinator of k-means: the centroids and the M-step, free of I/O.

    ``centroids`` (k, d) is all the state a run needs: any block can go to any worker.
    """

    def __init__(self, settings: KMeansSettings, centroids: np.ndarray) -> None:
        if centroids.ndim != 2 or centroids.shape[0] != settings.k:
            raise ValueError(f"expected {settings.k} initial centroids, got {centroids.shape}")
        self.settings = settings
        self.centroids = np.array(centroids, dtype=np.float64)
        self.history: list[KMeansRecord] = []
        self.status: Status | None = None

    @property
    def done(self) -> bool:
        return self.status is not None

    def reduce(self, stats: Sequence[ClusterStats]) -> KMeansRecord:
        """Finish the round from every block's statistics, given in block order."""
        if [s.block for s in stats] != list(range(len(stats))):
            raise ValueError("expected the blocks' statistics in block order 0..B-1")
        sums = np.zeros_like(self.centroids)
        counts = np.zeros(self.settings.k, dtype=np.int64)
        for s in stats:
            sums += s.sums
            counts += s.counts
        filled = counts > 0
        new = self.centroids.copy()
        new[filled] = sums[filled] / counts[filled, None]
        step = float(np.linalg.norm(new - self.centroids))
        scale = float(np.linalg.norm(self.centroids))
        record = KMeansRecord(
            iteration=len(self.history),
            inertia=math.fsum(s.inertia for s in stats),
            change=step / scale if scale > 0 else step,
            empty_clusters=int((~filled).sum()),
        )
        self.history.append(record)
        self.centroids = new
        if self._converged():
            self.status = Status.CONVERGED
        elif len(self.history) >= self.settings.max_iterations:
            self.status = Status.MAX_ITERATIONS
        return record

    def _converged(self) -> bool:
        s, last = self.settings, self.history[-1]
        if s.criterion is Criterion.CENTROIDS:
            return last.change <= s.tolerance
        if len(self.history) < 2:
            return False
        before = self.history[-2].inertia
        return before - last.inertia <= s.tolerance * before


@dataclass(frozen=True, eq=False)
class CandidateMessage:
    """A block's k-means++ round: its total D² weight and one row drawn by D² (None if 0)."""

    block: int
    weight: float
    candidate: np.ndarray | None


def candidate_block_step(A, centers: np.ndarray, seed: int, block: int) -> CandidateMessage:
    """Worker side of k-means++ round j = len(centers): draw a candidate from block ``block``.

    ``centers`` (j, d) are the centroids chosen so far; with none, rows are drawn uniformly and
    the weight is the row count.
    """
    n = A.shape[0]
    rng = np.random.default_rng([seed, CANDIDATE_STREAM, len(centers), block])
    weights = np.ones(n) if len(centers) == 0 else _squared_distances(A, centers).min(axis=1)
    total = math.fsum(weights)
    if total == 0.0:
        return CandidateMessage(block=block, weight=0.0, candidate=None)
    row = A[int(rng.choice(n, p=weights / weights.sum()))]
    candidate = row.toarray().ravel() if sp.issparse(row) else np.array(row, dtype=np.float64)
    return CandidateMessage(block=block, weight=total, candidate=candidate)


def choose_center(messages: Sequence[CandidateMessage], seed: int, round_: int) -> np.ndarray:
    """Coordinator side of k-means++ round ``round_``: one block's candidate, drawn by weight.

    Raises ValueError when every weight is 0 (fewer distinct rows than k).
    """
    if [m.block for m in messages] != list(range(len(messages))):
        raise ValueError("expected the blocks' candidates in block order 0..B-1")
    cumulative = np.cumsum([m.weight for m in messages])
    if cumulative[-1] <= 0.0:
        raise ValueError(f"the data has only {round_} distinct rows: cannot seed more centroids")
    draw = np.random.default_rng([seed, CHOICE_STREAM, round_]).random() * cumulative[-1]
    chosen = messages[int(np.searchsorted(cumulative, draw, side="right"))]
    return chosen.candidate


def kmeans_plus_plus(blocks: Sequence, k: int, seed: int) -> np.ndarray:
    """k-means++ centroids (k, d) of the rows of ``blocks`` (arrays or sparse matrices), by the
    same round functions a distributed run uses."""
    centers = np.zeros((0, blocks[0].shape[1]))
    for j in range(k):
        messages = [candidate_block_step(A, centers, seed, b) for b, A in enumerate(blocks)]
        centers = np.vstack([centers, choose_center(messages, seed, j)])
    return centers


@dataclass
class KMeansResult:
    centroids: np.ndarray
    inertia: float
    """I at the returned centroids (one more E-step, as scikit-learn reports it)."""
    status: Status
    history: list[KMeansRecord]


def reference_kmeans(
    blocks: Sequence, settings: KMeansSettings, centroids: np.ndarray | None = None
) -> KMeansResult:
    """Lloyd's k-means over ``blocks`` in one process, from ``centroids`` or k-means++."""
    if centroids is None:
        centroids = kmeans_plus_plus(blocks, settings.k, settings.seed)
    lloyd = Lloyd(settings, centroids)
    while not lloyd.done:
        lloyd.reduce([cluster_stats(A, lloyd.centroids, b) for b, A in enumerate(blocks)])
    final = [cluster_stats(A, lloyd.centroids, b) for b, A in enumerate(blocks)]
    return KMeansResult(
        centroids=lloyd.centroids,
        inertia=math.fsum(s.inertia for s in final),
        status=lloyd.status,
        history=lloyd.history,
    )
