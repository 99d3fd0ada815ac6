"""The consensus ADMM math: z-step, penalty rule, and the reference against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import liblinear, objective

from faasopt.data import synthetic_blocks
from faasopt.solvers.admm import (
    RHO_MAX,
    AdmmSettings,
    Consensus,
    Status,
    block_step,
    reference_admm,
    soft_threshold,
    z_step,
)
from faasopt.solvers.local import LocalSolverSettings
from faasopt.solvers.penalty import Residuals, paper_rule

TIGHT = dict(
    primal_tolerance=1e-7,
    dual_tolerance=1e-7,
    max_iterations=2000,
    local=LocalSolverSettings(gradient_tolerance=1e-9, relative_improvement=0.0),
)


def _problem(samples=1500, features=80, density=0.05, seed=11, blocks=4):
    parts = synthetic_blocks(samples, features, density, seed, range(blocks), blocks)
    import scipy.sparse as sp

    A = sp.vstack([b.A for b in parts]).tocsr()
    y = np.concatenate([b.y for b in parts])
    return parts, A, y


def test_z_step_minimizes_h_plus_quadratic():
    rng = np.random.default_rng(0)
    omega, rho, l1, l2 = rng.normal(size=(4, 7)) * 3, np.array([0.7, 0.2, 1.5, 0.7]), 1.3, 0.4
    z = z_step(omega, rho, l1, l2)
    grid = np.linspace(-10, 10, 200_001)
    for j in range(7):  # a separable 1-d problem per coordinate: brute force it
        f = l1 * np.abs(grid) + l2 / 2 * grid**2
        f = f + sum(rho[b] / 2 * (grid - omega[b, j]) ** 2 for b in range(4))
        assert z[j] == pytest.approx(grid[np.argmin(f)], abs=2e-4)


def test_z_step_with_one_rho_is_the_papers_soft_threshold():
    omega = np.random.default_rng(1).normal(size=(4, 9)) * 3
    z = z_step(omega, np.full(4, 0.5), 1.0, 0.0)
    np.testing.assert_allclose(z, soft_threshold(omega.mean(axis=0), 1.0 / (4 * 0.5)))


def _residuals(primal: float, dual: float) -> Residuals:
    return Residuals(primal, dual, primal_scale=1.0, dual_scale=1.0)


def test_paper_penalty_rule_and_clamp():
    one = np.ones(3)
    assert np.all(paper_rule(one, _residuals(11.0, 1.0)) == 2.0)
    assert np.all(paper_rule(one, _residuals(1.0, 11.0)) == 0.5)
    assert np.all(paper_rule(one, _residuals(5.0, 1.0)) == 1.0)
    assert np.all(paper_rule(RHO_MAX * one, _residuals(100.0, 1.0)) == RHO_MAX)


def test_reference_matches_liblinear_tightly():
    parts, A, y = _problem()
    result = reference_admm(parts, AdmmSettings(l1=1.0, **TIGHT))
    assert result.status is Status.CONVERGED
    best = objective(A, y, liblinear(A, y, 1.0), 1.0)
    assert objective(A, y, result.z, 1.0) == pytest.approx(best, rel=1e-6)
    assert result.objective == pytest.approx(objective(A, y, result.z, 1.0), rel=1e-12)


@pytest.mark.parametrize("method", ["lbfgs", "fista"])
def test_reference_at_paper_tolerances(method):
    parts, A, y = _problem(samples=3000, features=150, seed=5)
    settings = AdmmSettings(l1=1.0, local=LocalSolverSettings(method=method))
    result = reference_admm(parts, settings)
    assert result.converged
    assert result.history[-1].primal_residual <= 0.02
    assert result.history[-1].dual_residual <= 0.02
    best = objective(A, y, liblinear(A, y, 1.0), 1.0)
    assert objective(A, y, result.z, 1.0) == pytest.approx(best, rel=1e-3)


def test_l2_term_is_in_the_objective():
    parts, A, y = _problem(samples=800, features=40)
    l2 = 5.0
    result = reference_admm(parts, AdmmSettings(l1=0.5, l2=l2, **TIGHT))
    z = result.z
    # optimality: 0 in grad f(z) + l2 z + l1 d|z|
    m = y * (A @ z)
    grad = A.T @ (-y / (1.0 + np.exp(m))) + l2 * z
    on = z != 0
    assert np.allclose(grad[on], -0.5 * np.sign(z[on]), atol=1e-4)
    assert np.all(np.abs(grad[~on]) <= 0.5 + 1e-4)


def test_consensus_holds_every_blocks_exact_state():
    """Workers that keep their state and a coordinator that only sees x_b agree to the last bit,
    so a block handed to a fresh worker continues exactly."""
    parts, _, _ = _problem(samples=600, features=30)
    settings = AdmmSettings(l1=1.0, max_iterations=12, primal_tolerance=1e-12, dual_tolerance=1e-12)
    state = Consensus(settings, len(parts), 30)
    x, u, rho_u = np.zeros((4, 30)), np.zeros((4, 30)), np.full(4, settings.rho)  # the workers'
    z_u = np.zeros(30)
    while not state.done:
        ups = [
            block_step(
                b.A, b.y, x[i], u[i], state.z, z_u, state.rho[i], rho_u[i], 1.0, settings.local
            )
            for i, b in enumerate(parts)
        ]
        rho_u, z_u = state.rho, state.z
        x, u = np.stack([up.x for up in ups]), np.stack([up.u for up in ups])
        state.reduce(x, [0.0] * 4, [0] * 4)
        assert np.array_equal(state.u, u) and np.array_equal(state.x, x)
    assert state.status is Status.MAX_ITERATIONS and state.rho_changes > 0


def test_rho_changes_rescale_u():
    """With u rescaled by rho_k / rho_k+1, the paper's instance shape converges; rho moves."""
    parts, _, _ = _problem(samples=2000, features=100, seed=2)
    result = reference_admm(parts, AdmmSettings(l1=1.0))
    rhos = {r.rho for r in result.history}
    assert len(rhos) > 1 and result.converged


def test_fista_and_lbfgs_reach_the_same_optimum():
    parts, _, _ = _problem(samples=1200, features=60, seed=8)
    tight = dict(primal_tolerance=1e-7, dual_tolerance=1e-7, max_iterations=3000)
    z = {
        method: reference_admm(
            parts,
            AdmmSettings(
                l1=1.0,
                local=LocalSolverSettings(
                    method=method, gradient_tolerance=1e-9, relative_improvement=0.0
                ),
                **tight,
            ),
        )
        for method in ("lbfgs", "fista")
    }
    assert z["lbfgs"].converged and z["fista"].converged
    assert z["fista"].objective == pytest.approx(z["lbfgs"].objective, rel=1e-9)
    np.testing.assert_allclose(z["fista"].z, z["lbfgs"].z, atol=1e-5)
