"""Local solvers of consensus ADMM: the worker's x-step of one data block.

Each round a worker solves, for each block ``b`` it holds (seed 001, eq. 5 and Algorithm 2, line 7),

    x_b = argmin_x  F(x),   F(x) = f_b(x) + rho/2 ||x - v||_2^2,   v = z_k - u_b,

where ``f_b`` is the block's summed logistic loss (:func:`faasopt.solvers.logistic.logistic_loss`).
``F`` is smooth and ``rho``-strongly convex; its gradient is ``g(x) = grad f_b(x) + rho (x - v)``.
The solve is warm-started from the previous ``x_b`` and keeps no memory between calls (workers are
stateless), so quasi-Newton pairs and Lipschitz estimates start afresh every round.

Two methods share one stopping rule (seed 001, Section III): stop at inner iteration ``k`` when

    ||g_k||_2 <= eps_g   or   |F_{k-1} - F_k| / |F_{k-1}| <= eps_f,

but never before ``K_w`` iterations (``max_iterations`` caps the solve regardless). The paper
writes the second test without the absolute value; for a monotone method (L-BFGS with its line
search) the two agree, but FISTA is not monotone, and read literally the test would end FISTA at the
first step that raises ``F``: on a block of the paper's instance that stops it with ``||g|| ~ 6``
instead of ``1e-2``. So the test asks that ``F`` stopped *changing*, what ``eps_f = 1e-12`` is for.

- ``"lbfgs"`` (the default): scipy's L-BFGS-B, warm-started. Fast.
- ``"fista"``: FISTA with backtracking (Beck & Teboulle 2009), the paper's solver.

The unit of work is a *gradient evaluation*: one call of ``logistic_loss_grad`` on the block (two
sparse mat-vecs). Function-only evaluations (one mat-vec, about half a gradient) are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from faasopt.solvers.logistic import logistic_loss, logistic_loss_grad

__all__ = ["LocalResult", "LocalSolverSettings", "solve_x_step"]

_METHODS = ("lbfgs", "fista")

# FISTA's backtracking factor eta > 1 (Beck & Teboulle 2009 leave it free; 2 is the usual choice).
_BACKTRACKING_FACTOR = 2.0


@dataclass(frozen=True)
class LocalSolverSettings:
    """How a worker solves its x-step; the names follow seed 001, Section III.

    Attributes
    ----------
    method : str
        ``"lbfgs"`` (fast default: warm-started L-BFGS-B) or ``"fista"`` (the paper's solver:
        FISTA with backtracking).
    gradient_tolerance : float
        ``eps_g`` (units of the gradient of the summed loss): stop when ``||g||_2 <= eps_g``, with
        ``g`` the gradient of the augmented loss ``F``. The paper uses ``1e-2``.
    relative_improvement : float
        ``eps_f`` (dimensionless): stop when ``|F_{k-1} - F_k| / |F_{k-1}| <= eps_f``, ``F`` the
        augmented loss at consecutive iterates. The paper uses ``1e-12``.
    min_iterations : int
        ``K_w``: never stop on a tolerance before this many inner iterations. The paper runs
        ``K_w = 1`` (uneven load across workers) and ``K_w = 50`` (even load). ``0`` lets a point
        that already passes the gradient test return after one gradient evaluation.
    max_iterations : int
        Safety cap on inner iterations; a solve ended by it reports ``converged=False``.
    """

    method: str = "lbfgs"
    gradient_tolerance: float = 1e-2
    relative_improvement: float = 1e-12
    min_iterations: int = 1
    max_iterations: int = 1000

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        if not self.gradient_tolerance >= 0.0:
            raise ValueError(f"gradient_tolerance must be >= 0, got {self.gradient_tolerance}")
        if not self.relative_improvement >= 0.0:
            raise ValueError(f"relative_improvement must be >= 0, got {self.relative_improvement}")
        if self.min_iterations < 0:
            raise ValueError(f"min_iterations must be >= 0, got {self.min_iterations}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if self.min_iterations > self.max_iterations:
            raise ValueError(
                f"min_iterations ({self.min_iterations}) must not exceed "
                f"max_iterations ({self.max_iterations})"
            )


@dataclass(frozen=True)
class LocalResult:
    """The outcome of one x-step.

    Attributes
    ----------
    x : ndarray, shape (d,)
        The approximate minimizer of ``F``.
    iterations : int
        Inner iterations taken (L-BFGS-B iterations, or FISTA steps ``x_{k-1} -> x_k``).
    gradient_evaluations : int
        Calls of ``logistic_loss_grad`` on the block: the unit of work (two sparse mat-vecs each).
    loss : float
        ``f_b(x)``, the logistic loss alone at ``x`` (no prox term); taken from the last evaluation
        when it was at ``x``, else computed (and counted in ``function_evaluations``).
    converged : bool
        A stopping test ended the solve, not ``max_iterations``.
    function_evaluations : int
        Sparse mat-vecs spent outside ``logistic_loss_grad``: function-only ``logistic_loss`` calls
        (FISTA's backtracking trials, a final loss) and FISTA's one Lipschitz probe ``A @ g``. Each
        costs about half a gradient evaluation. 0 for L-BFGS unless the final loss is recomputed.
    """

    x: np.ndarray
    iterations: int
    gradient_evaluations: int
    loss: float
    converged: bool
    function_evaluations: int = 0


def solve_x_step(
    A: sp.csr_matrix,
    y: np.ndarray,
    v: np.ndarray,
    rho: float,
    x0: np.ndarray,
    settings: LocalSolverSettings,
) -> LocalResult:
    """Solve ``argmin_x f(x) + rho/2 ||x - v||_2^2`` for one block, warm-started from ``x0``.

    Parameters
    ----------
    A : sparse matrix, shape (n, d)
        The block's samples (CSR).
    y : ndarray, shape (n,)
        Labels in ``{-1, +1}``.
    v : ndarray, shape (d,)
        Prox center; ADMM passes ``v = z_k - u_b``.
    rho : float
        Penalty ``rho_k > 0``.
    x0 : ndarray, shape (d,)
        Starting point, the block's previous ``x_b``. Not modified.
    settings : LocalSolverSettings
        Method and stopping rule.

    Returns
    -------
    LocalResult
        The minimizer and the work spent. No state survives the call.
    """
    n, d = A.shape
    y = np.asarray(y, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    x0 = np.array(x0, dtype=np.float64)  # a copy: the caller's x_b is never touched
    if y.shape != (n,) or v.shape != (d,) or x0.shape != (d,):
        raise ValueError(
            f"shapes must be y ({n},), v ({d},), x0 ({d},) for A {A.shape}; "
            f"got y {y.shape}, v {v.shape}, x0 {x0.shape}"
        )
    if not (np.isfinite(rho) and rho > 0.0):
        raise ValueError(f"rho must be finite and > 0, got {rho}")
    rho = float(rho)
    if settings.method == "fista":
        return _solve_fista(A, y, v, rho, x0, settings)
    return _solve_lbfgs(A, y, v, rho, x0, settings)


class _AugmentedLoss:
    """``F(x) = f(x) + rho/2 ||x - v||^2`` and its gradient for scipy, counting evaluations.

    Remembers the last point it evaluated (a copy), so a repeated request for the same ``x`` is
    answered without a new evaluation, and the caller can read ``f``, ``F`` and ``g`` there.
    """

    def __init__(self, A: sp.csr_matrix, y: np.ndarray, v: np.ndarray, rho: float) -> None:
        self.A, self.y, self.v, self.rho = A, y, v, rho
        self.evaluations = 0
        self.x: np.ndarray | None = None
        self.loss = np.nan
        self.value = np.nan
        self.grad = np.empty(0)

    def holds(self, x: np.ndarray) -> bool:
        """Whether the last evaluation was at ``x``."""
        return self.x is not None and np.array_equal(x, self.x)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        if not self.holds(x):
            f, grad = logistic_loss_grad(self.A, self.y, x)
            self.evaluations += 1
            r = x - self.v
            grad = grad + self.rho * r  # a new array: never write into what the loss returned
            self.x = np.array(x, dtype=np.float64)
            self.loss = f
            self.value = f + 0.5 * self.rho * float(r @ r)
            self.grad = grad
        return self.value, self.grad


def _solve_lbfgs(
    A: sp.csr_matrix,
    y: np.ndarray,
    v: np.ndarray,
    rho: float,
    x0: np.ndarray,
    settings: LocalSolverSettings,
) -> LocalResult:
    """L-BFGS-B (no bounds) on ``F``, with the paper's stopping rule applied exactly.

    scipy's own tests differ from the paper's: its gradient test uses the infinity norm of the
    projected gradient (``max_i |g_i| <= gtol``, up to ``sqrt(d)`` times looser than the 2-norm)
    and its decrease test divides by ``max(|F_k|, |F_{k+1}|, 1)``. So both are switched off
    (``gtol = 0``, ``ftol = 0``: they fire only on an exactly zero gradient or no decrease at all)
    and the paper's tests run exactly, in a callback after each iteration, on the gradient scipy
    has just evaluated at the new iterate (remembered by the counting wrapper, so testing costs no
    evaluation); the callback raises ``StopIteration`` to stop.

    ``K_w``: the callback never stops before ``K_w`` iterations, and ``maxiter`` is the cap. scipy
    can still end earlier on its own when it can make no progress at all (zero gradient, no
    decrease, or a failed line search, e.g. from an optimum with ``K_w = 50``); such an end counts
    as converged when a test holds at the final point. The start point is evaluated before scipy
    starts (scipy's own first request reuses it); with ``K_w = 0`` it is tested there.

    Each iteration costs one gradient evaluation plus any extra line-search trials (scipy's line
    search needs the gradient at every trial). From a start whose gradient is already tiny, the
    first trial step has length 1 (L-BFGS-B scales its first direction to unit norm), so a few
    trials are spent shrinking it.
    """
    eps_g, eps_f = settings.gradient_tolerance, settings.relative_improvement
    k_w = settings.min_iterations
    fun = _AugmentedLoss(A, y, v, rho)

    F0, g0 = fun(x0)
    if k_w == 0 and float(np.linalg.norm(g0)) <= eps_g:
        return LocalResult(x0, 0, fun.evaluations, fun.loss, True)

    state: dict[str, Any] = {"k": 0, "previous": F0, "stopped": False}

    # scipy passes an OptimizeResult (x, fun) only to a parameter named ``intermediate_result``.
    def callback(intermediate_result: Any) -> None:
        state["k"] += 1
        x_k, value = intermediate_result.x, float(intermediate_result.fun)
        previous, state["previous"] = state["previous"], value
        if state["k"] < k_w:
            return
        _, g = fun(x_k)  # remembered: scipy's last evaluation is at the accepted iterate
        if float(np.linalg.norm(g)) <= eps_g or abs(previous - value) <= eps_f * abs(previous):
            state["stopped"] = True
            raise StopIteration

    from scipy.optimize import minimize  # here, not at the top: the coordinator never needs it

    res = minimize(
        fun,  # scipy's first request, at x0, is answered from the evaluation above
        x0,
        jac=True,
        method="L-BFGS-B",
        callback=callback,
        options={
            "maxiter": settings.max_iterations,
            "maxfun": max(15000, 100 * settings.max_iterations),
            "gtol": 0.0,
            "ftol": 0.0,
        },
    )
    x = np.asarray(res.x, dtype=np.float64)
    converged = bool(state["stopped"])
    function_evaluations = 0
    if fun.holds(x):
        loss = fun.loss
        if not converged and res.nit < settings.max_iterations:
            # scipy ended on its own (no progress possible): judge the final point by the rule.
            converged = res.status == 0 or float(np.linalg.norm(fun.grad)) <= eps_g
    else:
        loss = logistic_loss(A, y, x)
        function_evaluations += 1
        converged = converged or res.status == 0
    return LocalResult(x, int(res.nit), fun.evaluations, loss, converged, function_evaluations)


def _solve_fista(
    A: sp.csr_matrix,
    y: np.ndarray,
    v: np.ndarray,
    rho: float,
    x0: np.ndarray,
    settings: LocalSolverSettings,
) -> LocalResult:
    """FISTA with backtracking (Beck & Teboulle 2009) on the smooth ``F``, as in seed 001.

    With no nonsmooth term the prox step is the gradient step ``p_L(y) = y - g(y)/L``. Starting
    from ``y_1 = x_0``, ``t_1 = 1``, iteration ``k`` finds the smallest ``L = eta^i L_{k-1}`` with

        F(p_L(y_k)) <= F(y_k) - ||g(y_k)||^2 / (2 L),

    sets ``x_k = p_L(y_k)``, ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2`` and
    ``y_{k+1} = x_k + (t_k - 1)/t_{k+1} (x_k - x_{k-1})``; ``eta = 2``.

    Work per iteration: one gradient evaluation at ``y_k`` and one function-only evaluation
    (``logistic_loss``) per backtracking trial. Stopping (seed 001, Section III), never before
    ``K_w`` steps:

    - gradient test on ``g(y_k)``, the gradient FISTA evaluates anyway: if ``||g(y_k)||_2 <= eps_g``
      the solve returns ``y_k`` itself, so the returned point always satisfies the test;
    - change test after the step: ``|F(x_{k-1}) - F(x_k)| <= eps_f |F(x_{k-1})|`` returns ``x_k``
      (the value comes from the accepted backtracking trial, so the test costs nothing). The
      absolute value keeps FISTA's normal ripples (it is not monotone) from ending the solve.

    Lipschitz estimate, with no memory between calls: ``L_0 = rho + ||A g_0||^2 / (4 ||g_0||^2)``,
    with ``g_0 = g(x_0)``: since the logistic curvature is at most ``1/4`` per row, this bounds the
    curvature of ``F`` along the first step, so the first trial is accepted; it costs one mat-vec
    (counted as a function evaluation). Backtracking then raises ``L`` when needed, never beyond the
    global bound ``L_max = rho + ||A||_F^2 / 4 >= rho + ||A||_2^2 / 4``: at ``L_max`` the descent
    inequality holds in exact arithmetic, so a step is accepted there even if rounding in ``F``
    (a sum of ``n`` terms) makes the test fail near the optimum.
    """
    eps_g, eps_f = settings.gradient_tolerance, settings.relative_improvement
    k_w, k_max = settings.min_iterations, settings.max_iterations

    def augmented(x: np.ndarray, f: float) -> float:
        r = x - v
        return f + 0.5 * rho * float(r @ r)

    def value_and_gradient(x: np.ndarray) -> tuple[float, float, np.ndarray]:
        f, grad = logistic_loss_grad(A, y, x)
        return f, augmented(x, f), grad + rho * (x - v)

    gradient_evaluations, function_evaluations = 1, 0
    f_y, F_y, g = value_and_gradient(x0)
    gg = float(g @ g)

    L_max = rho + 0.25 * float(A.multiply(A).sum())  # ||A||_F^2 without scipy.sparse.linalg
    if gg > 0.0 and (k_w > 0 or np.sqrt(gg) > eps_g):
        Ag = A @ g
        function_evaluations += 1
        L = min(rho + 0.25 * float(Ag @ Ag) / gg, L_max)
    else:
        L = rho

    x_prev, F_x = x0, F_y  # x_0, with y_1 = x_0
    y_k, t = x0, 1.0
    k = 0
    while True:
        if k >= k_w and np.sqrt(gg) <= eps_g:
            return LocalResult(y_k, k, gradient_evaluations, f_y, True, function_evaluations)

        while True:  # backtracking on L
            p = y_k - g / L
            f_p = logistic_loss(A, y, p)
            function_evaluations += 1
            F_p = augmented(p, f_p)
            if F_p <= F_y - 0.5 * gg / L or L_max <= L:
                break
            L = min(_BACKTRACKING_FACTOR * L, L_max)
        k += 1

        if k >= k_w and abs(F_x - F_p) <= eps_f * abs(F_x):
            return LocalResult(p, k, gradient_evaluations, f_p, True, function_evaluations)
        if k >= k_max:
            return LocalResult(p, k, gradient_evaluations, f_p, False, function_evaluations)

        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y_k = p + ((t - 1.0) / t_next) * (p - x_prev)
        x_prev, F_x, t = p, F_p, t_next
        f_y, F_y, g = value_and_gradient(y_k)
        gradient_evaluations += 1
        gg = float(g @ g)
