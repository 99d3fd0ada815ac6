"""k-means by EM over blocks against scikit-learn, and k-means++ by a seeded reduction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from faasopt.solvers.kmeans import (
    ClusterStats,
    Criterion,
    KMeansSettings,
    Lloyd,
    Status,
    candidate_block_step,
    choose_center,
    cluster_stats,
    kmeans_plus_plus,
    reference_kmeans,
)

K = 8


@pytest.fixture(scope="module")
def points():
    X, _ = make_blobs(n_samples=3000, n_features=5, centers=K, cluster_std=2.0, random_state=2)
    return X


@pytest.mark.parametrize("sparse", [False, True])
def test_kmeans_matches_scikit_learns_inertia_from_the_same_start(points, sparse):
    blocks = [sp.csr_matrix(b) if sparse else b for b in np.array_split(points, 4)]
    start = kmeans_plus_plus(blocks, K, seed=3)
    ours = reference_kmeans(blocks, KMeansSettings(k=K, tolerance=0.0), start)
    theirs = KMeans(n_clusters=K, init=start, n_init=1, algorithm="lloyd", tol=0.0).fit(points)
    gap = ours.inertia / theirs.inertia_ - 1
    print(f"inertia {ours.inertia:.6f} vs scikit-learn {theirs.inertia_:.6f}: gap {gap:.1e}")
    assert ours.status is Status.CONVERGED
    assert abs(gap) < 0.01
    assert len(ours.history) == pytest.approx(theirs.n_iter_, abs=1)
    np.testing.assert_allclose(
        ours.centroids[np.lexsort(ours.centroids.T)],
        theirs.cluster_centers_[np.lexsort(theirs.cluster_centers_.T)],
        rtol=1e-9,
    )
    inertias = [r.inertia for r in ours.history]
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(inertias))


def test_the_result_does_not_depend_on_how_rows_are_cut_into_blocks(points):
    start = points[:K].copy()
    settings = KMeansSettings(k=K, tolerance=0.0)
    one = reference_kmeans([points], settings, start)
    four = reference_kmeans(np.array_split(points, 4), settings, start)
    np.testing.assert_allclose(four.centroids, one.centroids, rtol=1e-12)
    assert four.inertia == pytest.approx(one.inertia, rel=1e-12)


def test_kmeans_plus_plus_draws_rows_with_probability_d_squared():
    rows = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    blocks = [rows[:2], rows[2:3], rows[3:]]
    first = np.array([[0.0]])
    d2 = (rows[:, 0] - 0.0) ** 2
    draws = 4000
    counts = np.zeros(5)
    for seed in range(draws):
        messages = [candidate_block_step(A, first, seed, b) for b, A in enumerate(blocks)]
        chosen = choose_center(messages, seed, 1)
        counts[int(np.flatnonzero(rows[:, 0] == chosen[0])[0])] += 1
    np.testing.assert_allclose(counts / draws, d2 / d2.sum(), atol=0.03)
    assert counts[0] == 0  # a chosen centroid is never drawn again


def test_kmeans_plus_plus_is_seeded_and_refuses_too_few_distinct_rows(points):
    blocks = np.array_split(points, 3)
    np.testing.assert_array_equal(kmeans_plus_plus(blocks, K, 5), kmeans_plus_plus(blocks, K, 5))
    assert not np.array_equal(kmeans_plus_plus(blocks, K, 5), kmeans_plus_plus(blocks, K, 6))
    with pytest.raises(ValueError, match="distinct rows"):
        kmeans_plus_plus([np.ones((4, 2)), np.ones((3, 2))], 2, 0)


def test_an_empty_cluster_keeps_its_centroid():
    A = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0]])
    start = np.array([[0.0, 0.5], [10.0, 10.0], [100.0, 100.0]])
    lloyd = Lloyd(KMeansSettings(k=3), start)
    record = lloyd.reduce([cluster_stats(A, lloyd.centroids, 0)])
    assert record.empty_clusters == 1
    np.testing.assert_array_equal(lloyd.centroids, start)
    assert record.inertia == pytest.approx(0.5)
    assert lloyd.status is Status.CONVERGED  # nothing moved


def test_stopping_on_the_relative_change_of_the_inertia(points):
    blocks = np.array_split(points, 2)
    start = points[:K].copy()
    loose = reference_kmeans(
        blocks, KMeansSettings(k=K, tolerance=1e-2, criterion=Criterion.INERTIA), start
    )
    tight = reference_kmeans(blocks, KMeansSettings(k=K, tolerance=0.0), start)
    assert loose.status is Status.CONVERGED
    assert 2 <= len(loose.history) < len(tight.history)
    a, b = loose.history[-2].inertia, loose.history[-1].inertia
    assert a - b <= 1e-2 * a
    capped = reference_kmeans(blocks, KMeansSettings(k=K, tolerance=0.0, max_iterations=2), start)
    assert capped.status is Status.MAX_ITERATIONS and len(capped.history) == 2


def test_statistics_must_come_in_block_order(points):
    lloyd = Lloyd(KMeansSettings(k=2), points[:2].copy())
    stats = [cluster_stats(b, lloyd.centroids, i) for i, b in enumerate(np.array_split(points, 2))]
    with pytest.raises(ValueError, match="block order"):
        lloyd.reduce(stats[::-1])
    assert isinstance(stats[0], ClusterStats) and stats[0].counts.sum() == 1500
