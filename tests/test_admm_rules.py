"""Penalty rules, over-relaxation, inexact x-steps and relative stopping: their invariants, and
convergence to scikit-learn's solution for every rule and option."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import liblinear, objective

from faasopt import checkpoint
from faasopt.algorithms.admm import consensus_snapshot, consensus_state
from faasopt.data import Block, synthetic_blocks
from faasopt.solvers.admm import (
    RHO_MAX,
    RHO_MIN,
    AdmmSettings,
    Consensus,
    Penalty,
    Schedule,
    Status,
    Stopping,
    dual_update,
    reference_admm,
    run_round,
)
from faasopt.solvers.local import LocalSolverSettings
from faasopt.solvers.penalty import (
    BALANCE_TAU_MAX,
    SPECTRAL_BOUND,
    Residuals,
    SpectralMemory,
    balanced_rule,
    spectral_rule,
)
from faasopt.solvers.schedule import MAX_TIGHTENING, next_tolerances

FAST = dict(
    penalty=Penalty.SPECTRAL,
    relaxation=1.8,
    tolerance_schedule=Schedule.RESIDUALS,
    local=LocalSolverSettings(gradient_tolerance=1.0),
)
"""The spec's default configuration."""
TIGHT = dict(stopping=Stopping.RELATIVE, absolute_tolerance=1e-9, relative_tolerance=1e-7)


def _blocks(samples=1600, features=60, density=0.06, seed=4, blocks=4, scale=1.0):
    parts = synthetic_blocks(samples, features, density, seed, range(blocks), blocks)
    if scale != 1.0:
        parts = [Block(b.index, (b.A * scale).tocsr(), b.y) for b in parts]
    A = sp.vstack([b.A for b in parts]).tocsr()
    return parts, A, np.concatenate([b.y for b in parts])


# --- invariants ------------------------------------------------------------------------------


def test_relaxation_outside_its_range_is_refused():
    for alpha in (0.99, 1.91):
        with pytest.raises(ValueError, match="relaxation"):
            AdmmSettings(relaxation=alpha)
    assert AdmmSettings(relaxation=1.9).relaxation == 1.9


def test_u_is_rescaled_so_the_unscaled_dual_keeps_its_meaning():
    """lambda = rho u gains rho_u (x-hat - z) in the step, whatever the new rho."""
    rng = np.random.default_rng(0)
    u, x, z, z_u = rng.normal(size=(4, 5))
    for rho_u, rho, alpha in ((1.0, 2.0, 1.0), (3.0, 0.5, 1.8)):
        x_hat = alpha * x + (1 - alpha) * z_u
        got = rho * dual_update(u, x, z, z_u, rho_u, rho, alpha)
        np.testing.assert_allclose(got, rho_u * (u + x_hat - z), rtol=1e-14)


def test_balanced_rule_moves_by_at_most_tau_max_toward_balance():
    rho = np.full(3, 2.0)
    res = Residuals(primal=100.0, dual=1.0, primal_scale=1.0, dual_scale=1.0)
    assert np.all(balanced_rule(rho, res) == 2.0 * BALANCE_TAU_MAX)
    gentle = Residuals(primal=3.0, dual=1.0, primal_scale=1.0, dual_scale=1.0)
    np.testing.assert_allclose(balanced_rule(rho, gentle), 2.0 * np.sqrt(3.0))
    low = Residuals(primal=1.0, dual=100.0, primal_scale=1.0, dual_scale=1.0)
    assert np.all(balanced_rule(rho, low) == 2.0 / BALANCE_TAU_MAX)
    start = Residuals(primal=0.0, dual=5.0, primal_scale=0.0, dual_scale=0.0)
    assert np.all(balanced_rule(rho, start) == rho)
    assert np.all(balanced_rule(np.full(3, RHO_MAX), res) == RHO_MAX)
    assert np.all(balanced_rule(np.full(3, RHO_MIN), low) == RHO_MIN)


def _memory(iteration, x, grad, z, lam):
    return SpectralMemory(
        iteration, np.asarray(x), np.asarray(grad), np.asarray(z), np.asarray(lam)
    )


def test_spectral_rule_finds_each_blocks_curvature():
    """Quadratic blocks with curvatures a_b and a regularizer of curvature beta: rho_b becomes
    sqrt(a_b beta) (ACADMM's estimate), per block."""
    rng = np.random.default_rng(1)
    a, beta = np.array([1.0, 4.0, 25.0]), 9.0
    dx, dz = rng.normal(size=(3, 6)), rng.normal(size=6)
    zero = np.zeros((3, 6))
    before = _memory(0, zero, zero, np.zeros(6), zero)
    after = _memory(2, dx, a[:, None] * dx, dz, beta * np.tile(dz, (3, 1)))
    rho = spectral_rule(np.ones(3), 2, before, after)
    np.testing.assert_allclose(rho, np.sqrt(a * beta), rtol=1e-12)


def test_spectral_rule_keeps_rho_without_correlation_and_bounds_late_changes():
    rng = np.random.default_rng(2)
    dx = rng.normal(size=(2, 50))
    other = rng.normal(size=50)
    orthogonal = np.stack([other - (other @ dx[0]) / (dx[0] @ dx[0]) * dx[0], -dx[1]])  # 0, -1
    zero = np.zeros((2, 50))
    before = _memory(0, zero, zero, np.zeros(50), zero)
    uncorrelated = _memory(2, dx, orthogonal, np.zeros(50), zero)
    assert np.all(spectral_rule(np.full(2, 3.0), 2, before, uncorrelated) == 3.0)
    late = 10 * int(np.sqrt(SPECTRAL_BOUND))  # the bound 1 + C / k^2 is 1.01 here
    steep = _memory(late, dx, 1e4 * dx, np.zeros(50), zero)
    rho = spectral_rule(np.ones(2), late, before, steep)
    np.testing.assert_allclose(rho, 1.0 + SPECTRAL_BOUND / late**2)


@pytest.mark.parametrize("penalty", list(Penalty))
def test_rho_stays_within_its_bounds_on_badly_scaled_data(penalty):
    parts, _, _ = _blocks(scale=1e3)
    settings = AdmmSettings(penalty=penalty, relaxation=1.8, max_iterations=40, **TIGHT)
    result = reference_admm(parts, settings)
    for record in result.history:
        for rho in record.rho_blocks or (record.rho,):
            assert RHO_MIN <= rho <= RHO_MAX


def test_schedule_is_loose_early_tight_late_and_bounded():
    previous = np.array([1.0, 1.0])
    rho = np.array([1.0, 4.0])
    tol = next_tolerances(previous, rho, primal=100.0, z_step_norm=50.0, iteration=1, cap=1.0,
                          factor=1.0)  # fmt: skip
    assert np.all(tol <= 1.0 * 2.0**-1.1)  # the summable envelope
    tiny = next_tolerances(previous, rho, primal=0.0, z_step_norm=0.0, iteration=1, cap=1.0,
                           factor=1.0)  # fmt: skip
    assert np.all(tiny == previous / MAX_TIGHTENING)
    parts, _, _ = _blocks()
    result = reference_admm(parts, AdmmSettings(**FAST, **TIGHT, max_iterations=200))
    tolerances = [r.gradient_tolerance for r in result.history]
    assert tolerances[0] == 1.0 and tolerances[-1] < 1e-3
    assert all(len(r.solver_iterations) == len(r.block_gradient_evaluations) == 4
               for r in result.history)  # fmt: skip


def test_no_round_zero_convergence_when_z_stays_at_zero():
    """Round 0 compares x = 0 with z = 0; a strong lambda1 keeps z at 0: that is no optimum."""
    parts, A, y = _blocks()
    l1 = 0.7 * float(np.abs(A.T @ y).max()) / 2.0
    result = reference_admm(parts, AdmmSettings(l1=l1, **FAST))
    assert result.converged and result.iterations > 1


# --- convergence against scikit-learn ---------------------------------------------------------

CASES = {
    "fixed": dict(penalty=Penalty.FIXED),
    "paper+relaxed": dict(penalty=Penalty.PAPER, relaxation=1.5),
    "balanced+relaxed+scheduled": {**FAST, "penalty": Penalty.BALANCED},
    "spectral": dict(penalty=Penalty.SPECTRAL),
    "spectral+relaxed+scheduled": FAST,
    "spectral+fista": dict(penalty=Penalty.SPECTRAL, local=LocalSolverSettings(method="fista")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_rule_reaches_liblinears_objective(case):
    parts, A, y = _blocks()
    best = objective(A, y, liblinear(A, y, 1.0), 1.0)
    result = reference_admm(parts, AdmmSettings(**CASES[case], **TIGHT, max_iterations=1500))
    assert result.converged
    assert objective(A, y, result.z, 1.0) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize(
    ("scale", "share"), [(1e3, 1.0), (1.0, 0.9)], ids=["features-x1e3", "strong-l1"]
)
def test_the_default_is_robust_without_tuning(scale, share):
    """Badly scaled features, and a lambda1 that leaves few nonzeros, with the spec's default
    settings (only the stopping rule made tight and scale-free)."""
    parts, A, y = _blocks(samples=2000, features=200, density=0.03, scale=scale)
    l1 = share * float(np.abs(A.T @ y).max()) / 2.0 if share < 1.0 else 1.0
    x_ref = liblinear(A, y, l1)
    if share < 1.0:
        assert np.count_nonzero(x_ref) < 0.05 * A.shape[1]
    result = reference_admm(parts, AdmmSettings(l1=l1, **FAST, **TIGHT, max_iterations=500))
    assert result.converged
    best = objective(A, y, x_ref, l1)
    assert objective(A, y, result.z, l1) == pytest.approx(best, rel=1e-6)


def test_relative_stopping_ends_earlier_when_looser():
    parts, _, _ = _blocks()
    loose = dataclasses.replace(AdmmSettings(**FAST), stopping=Stopping.RELATIVE,
                                relative_tolerance=1e-2, absolute_tolerance=0.0)  # fmt: skip
    tight = dataclasses.replace(loose, relative_tolerance=1e-5)
    a, b = reference_admm(parts, loose), reference_admm(parts, tight)
    assert a.converged and b.converged and 1 < a.iterations < b.iterations


# --- the coordinator's state: per-block penalties, relaxation memory, spectral memory ---------


def test_a_checkpointed_state_continues_bit_for_bit():
    parts, _, _ = _blocks()
    settings = AdmmSettings(**FAST, max_iterations=14, primal_tolerance=1e-12, dual_tolerance=1e-12)
    whole = reference_admm(parts, settings)
    assert len({r.rho_blocks for r in whole.history}) > 2  # the penalties differ per block

    first = Consensus(settings, 4, 60)
    for _ in range(7):
        run_round(parts, first)
    snapshot = consensus_snapshot(first.state)
    cp = checkpoint.Checkpoint("ns/job", "f", first.iteration, snapshot, rounds=[])
    saved = consensus_state(checkpoint.decode(checkpoint.encode(cp), "ns/job", "f").state)
    assert saved.spectral is not None
    resumed = Consensus(settings, 4, 60)
    resumed.restore(first.history, saved)
    while not resumed.done:
        run_round(parts, resumed)
    assert resumed.status is Status.MAX_ITERATIONS
    assert [r.objective for r in resumed.history] == [r.objective for r in whole.history]
    assert np.array_equal(resumed.z, whole.z)
