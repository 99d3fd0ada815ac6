"""The worker's x-step: logistic loss, the L-BFGS and FISTA local solvers, stopping and counts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

import faasopt.solvers.local as local
from faasopt.solvers.local import LocalResult, LocalSolverSettings, solve_x_step
from faasopt.solvers.logistic import logistic_loss, logistic_loss_grad

METHODS = ("lbfgs", "fista")


def make_problem(n: int = 400, d: int = 80, density: float = 0.05, seed: int = 0):
    """A small random sparse block (CSR, N(0, 1) values) with +-1 labels, and a prox center v."""
    rng = np.random.default_rng(seed)
    A = sp.random(
        n, d, density=density, format="csr", random_state=rng, data_rvs=rng.standard_normal
    )
    y = rng.choice([-1.0, 1.0], size=n)
    v = rng.normal(0.0, 0.5, size=d)
    return A, y, v


def augmented(A, y, v, rho, x):
    """F(x) = f(x) + rho/2 ||x - v||^2 and its gradient, straight from the definitions."""
    f, g = logistic_loss_grad(A, y, x)
    return f + 0.5 * rho * float((x - v) @ (x - v)), g + rho * (x - v)


def reference_minimizer(A, y, v, rho):
    """The augmented problem solved to machine precision by damped Newton (dense, independent)."""
    dense = A.toarray()
    x = np.zeros(A.shape[1])
    for _ in range(100):
        value, g = augmented(A, y, v, rho, x)
        if np.linalg.norm(g) < 1e-11:
            break
        s = 1.0 / (1.0 + np.exp(-y * (dense @ x)))  # the curvature of row i is s_i (1 - s_i)
        H = dense.T @ ((s * (1.0 - s))[:, None] * dense) + rho * np.eye(A.shape[1])
        step, t = np.linalg.solve(H, g), 1.0
        while augmented(A, y, v, rho, x - t * step)[0] > value - 0.25 * t * (g @ step):
            t *= 0.5
        x = x - t * step
    assert np.linalg.norm(augmented(A, y, v, rho, x)[1]) < 1e-10
    return x


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module")
def optimum(problem):
    A, y, v = problem
    return reference_minimizer(A, y, v, 0.5)


# ---------------------------------------------------------------- the loss


def test_loss_is_the_sum_of_per_sample_logistic_losses(problem):
    A, y, _ = problem
    x = np.random.default_rng(1).normal(size=A.shape[1])
    naive = np.sum(np.log1p(np.exp(-y * (A.toarray() @ x))))
    assert logistic_loss(A, y, x) == pytest.approx(naive, rel=1e-13)
    assert logistic_loss_grad(A, y, x)[0] == pytest.approx(naive, rel=1e-13)
    assert logistic_loss(A, y, np.zeros(A.shape[1])) == pytest.approx(A.shape[0] * np.log(2.0))


def test_gradient_matches_central_finite_differences(problem):
    A, y, _ = problem
    d = A.shape[1]
    x = np.random.default_rng(2).normal(scale=0.5, size=d)
    _, g = logistic_loss_grad(A, y, x)
    h = 1e-6
    fd = np.array(
        [
            (logistic_loss(A, y, x + h * e) - logistic_loss(A, y, x - h * e)) / (2 * h)
            for e in np.eye(d)
        ]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)


def test_huge_margins_give_finite_exact_asymptotics():
    # One feature, x = 1: the margins are y_i * a_i = +1e4, -1e4, +800, -800, 0.
    a = np.array([1e4, 1e4, 800.0, 800.0, 0.0])
    y = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    A = sp.csr_matrix(a[:, None])
    x = np.ones(1)
    # log(1 + exp(-m)) -> max(-m, 0); exp(-800) and exp(-1e4) vanish in double precision.
    expected = 1e4 + 800.0 + np.log(2.0)
    value, grad = logistic_loss_grad(A, y, x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == expected
    assert logistic_loss(A, y, x) == expected
    # Gradient: -y_i a_i sigmoid(-m_i) = 0 for the large positive margins, -y_i a_i for the
    # negative ones, and -a_i / 2 at m = 0.
    assert grad[0] == 1e4 + 800.0
    # A margin of -1e4 on its own: value exactly 1e4, gradient exactly -y a.
    one = sp.csr_matrix(np.array([[1e4]]))
    assert logistic_loss_grad(one, np.array([-1.0]), x) == (1e4, pytest.approx(np.array([1e4])))
    assert logistic_loss_grad(one, np.array([1.0]), x)[0] == 0.0


def test_loss_rejects_mismatched_shapes(problem):
    A, y, _ = problem
    with pytest.raises(ValueError, match="x must have shape"):
        logistic_loss(A, y, np.zeros(A.shape[1] + 1))
    with pytest.raises(ValueError, match="y must have shape"):
        logistic_loss_grad(A, y[:, None], np.zeros(A.shape[1]))


# ---------------------------------------------------------------- the solvers


@pytest.mark.parametrize("method", METHODS)
def test_both_solvers_reach_the_minimizer_of_the_augmented_problem(problem, optimum, method):
    A, y, v = problem
    rho, eps_g = 0.5, 1e-6
    settings = LocalSolverSettings(
        method=method, gradient_tolerance=eps_g, relative_improvement=0.0, max_iterations=5000
    )
    res = solve_x_step(A, y, v, rho, np.zeros(A.shape[1]), settings)
    assert isinstance(res, LocalResult)
    assert res.converged
    # F is rho-strongly convex: ||x - x*|| <= ||g(x)|| / rho.
    assert np.linalg.norm(res.x - optimum) <= 2 * eps_g / rho
    assert res.loss == pytest.approx(logistic_loss(A, y, res.x), rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps_g", [1e-1, 1e-3])
def test_reported_convergence_by_the_gradient_test_holds_at_the_returned_point(
    problem, method, eps_g
):
    A, y, v = problem
    rho = 0.5
    # eps_f = 0: only the gradient test can end the solve (or F no longer changing at all).
    settings = LocalSolverSettings(
        method=method, gradient_tolerance=eps_g, relative_improvement=0.0
    )
    res = solve_x_step(A, y, v, rho, np.zeros(A.shape[1]), settings)
    assert res.converged
    assert res.iterations >= 1
    assert np.linalg.norm(augmented(A, y, v, rho, res.x)[1]) <= eps_g


def test_fista_ripples_do_not_end_the_solve():
    # Small rho: FISTA is far from monotone here, yet the paper's defaults must carry it to eps_g.
    A, y, v = make_problem(n=600, d=120, density=0.05, seed=3)
    rho, eps_g = 0.05, 1e-2
    res = solve_x_step(A, y, v, rho, np.zeros(A.shape[1]), LocalSolverSettings(method="fista"))
    assert res.converged
    assert np.linalg.norm(augmented(A, y, v, rho, res.x)[1]) <= eps_g


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k_w", [1, 5, 17])
def test_huge_eps_f_stops_after_exactly_k_w_iterations(problem, method, k_w):
    A, y, v = problem
    settings = LocalSolverSettings(
        method=method, gradient_tolerance=0.0, relative_improvement=1e300, min_iterations=k_w
    )
    res = solve_x_step(A, y, v, 0.5, np.zeros(A.shape[1]), settings)
    assert res.converged
    assert res.iterations == k_w


def test_fista_runs_at_least_k_w_iterations_even_from_the_optimum(problem, optimum):
    A, y, v = problem
    settings = LocalSolverSettings(method="fista", min_iterations=50)
    res = solve_x_step(A, y, v, 0.5, optimum, settings)
    assert res.iterations >= 50
    assert res.converged
    assert np.linalg.norm(res.x - optimum) < 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_k_w_zero_returns_a_start_point_that_passes_after_one_evaluation(problem, optimum, method):
    A, y, v = problem
    settings = LocalSolverSettings(method=method, min_iterations=0)
    res = solve_x_step(A, y, v, 0.5, optimum, settings)
    assert (res.iterations, res.gradient_evaluations, res.converged) == (0, 1, True)
    np.testing.assert_array_equal(res.x, optimum)


def test_lbfgs_warm_start_from_the_optimum_is_nearly_free(problem, optimum):
    A, y, v = problem
    settings = LocalSolverSettings(method="lbfgs")  # paper defaults: eps_g = 1e-2, K_w = 1
    cold = solve_x_step(A, y, v, 0.5, np.zeros(A.shape[1]), settings)
    assert cold.converged and cold.gradient_evaluations >= 10
    # The ADMM situation: warm start from the previous answer to (nearly) the same subproblem.
    for x0 in (optimum, cold.x):
        warm = solve_x_step(A, y, v, 0.5, x0, settings)
        assert warm.converged
        assert warm.iterations == 1  # K_w = 1 forces one step
        assert warm.gradient_evaluations <= 4
    assert solve_x_step(A, y, v, 0.5, optimum, replace(settings, min_iterations=0)).iterations == 0


@pytest.mark.parametrize("method", METHODS)
def test_max_iterations_caps_the_solve_and_is_not_convergence(problem, method):
    A, y, v = problem
    settings = LocalSolverSettings(
        method=method, gradient_tolerance=0.0, relative_improvement=0.0, max_iterations=3
    )
    res = solve_x_step(A, y, v, 0.5, np.zeros(A.shape[1]), settings)
    assert res.iterations == 3
    assert not res.converged
    assert res.loss == pytest.approx(logistic_loss(A, y, res.x), rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_unreachable_tolerances_still_end_near_the_optimum(problem, optimum, method):
    # eps_g = eps_f = 0: only F not changing at all, scipy giving up, or the cap can end the solve;
    # FISTA's backtracking must not loop when rounding hides the decrease near the optimum.
    A, y, v = problem
    settings = LocalSolverSettings(
        method=method, gradient_tolerance=0.0, relative_improvement=0.0, max_iterations=3000
    )
    res = solve_x_step(A, y, v, 0.5, np.zeros(A.shape[1]), settings)
    assert np.all(np.isfinite(res.x))
    # F resolves x only to about sqrt(machine eps): judge the value, and x loosely.
    best = augmented(A, y, v, 0.5, optimum)[0]
    assert augmented(A, y, v, 0.5, res.x)[0] - best <= 1e-12 * best
    assert np.linalg.norm(res.x - optimum) < 1e-5


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k_w", [0, 1, 50])
def test_work_counts_agree_with_a_counting_wrapper(problem, monkeypatch, method, k_w):
    A, y, v = problem
    calls = {"grad": 0, "loss": 0}

    def counted_grad(*args):
        calls["grad"] += 1
        return logistic_loss_grad(*args)

    def counted_loss(*args):
        calls["loss"] += 1
        return logistic_loss(*args)

    monkeypatch.setattr(local, "logistic_loss_grad", counted_grad)
    monkeypatch.setattr(local, "logistic_loss", counted_loss)
    settings = LocalSolverSettings(method=method, gradient_tolerance=1e-4, min_iterations=k_w)
    res = solve_x_step(A, y, v, 0.5, np.zeros(A.shape[1]), settings)
    assert res.gradient_evaluations == calls["grad"] > 0
    # FISTA spends one extra mat-vec on its Lipschitz probe A @ g, counted with the trials.
    probe = 1 if method == "fista" else 0
    assert res.function_evaluations == calls["loss"] + probe
    if method == "fista":
        # one gradient per step (at y_k), plus the one at y_{k+1} if the gradient test ended it
        assert res.gradient_evaluations in (res.iterations, res.iterations + 1)
        assert calls["loss"] >= res.iterations  # at least one backtracking trial per step


@pytest.mark.parametrize("method", METHODS)
def test_solve_keeps_no_state_and_leaves_inputs_alone(problem, method):
    A, y, v = problem
    x0 = np.random.default_rng(4).normal(size=A.shape[1])
    x0_copy, v_copy = x0.copy(), v.copy()
    settings = LocalSolverSettings(method=method)
    first = solve_x_step(A, y, v, 0.5, x0, settings)
    second = solve_x_step(A, y, v, 0.5, x0, settings)
    np.testing.assert_array_equal(x0, x0_copy)
    np.testing.assert_array_equal(v, v_copy)
    np.testing.assert_array_equal(first.x, second.x)
    assert first.gradient_evaluations == second.gradient_evaluations
    assert first.x is not x0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "newton"}, "method"),
        ({"gradient_tolerance": -1.0}, "gradient_tolerance"),
        ({"relative_improvement": float("nan")}, "relative_improvement"),
        ({"min_iterations": -1}, "min_iterations"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"min_iterations": 20, "max_iterations": 10}, "must not exceed"),
    ],
)
def test_settings_reject_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalSolverSettings(**kwargs)


def test_solve_rejects_bad_rho_and_shapes(problem):
    A, y, v = problem
    x0 = np.zeros(A.shape[1])
    with pytest.raises(ValueError, match="rho"):
        solve_x_step(A, y, v, 0.0, x0, LocalSolverSettings())
    with pytest.raises(ValueError, match="shapes"):
        solve_x_step(A, y, v[:-1], 1.0, x0, LocalSolverSettings())
