r"""Penalty rules of consensus ADMM: how :math:`\rho_b` (one per block) changes between rounds.

Every rule returns the penalties of the next round, clamped to ``[RHO_MIN, RHO_MAX]``; the caller
rescales each scaled dual variable :math:`u_b` by :math:`\rho_b^{old} / \rho_b^{new}` so that
:math:`\lambda_b = \rho_b u_b` keeps its meaning.

- ``paper`` (seed 001, after Boyd et al. 2011, Sec. 3.4.1): one rho for all blocks, x2 when
  ``r > 10 s``, x0.5 when ``s > 10 r``, on the paper's absolute residuals.
- ``fixed``: rho never changes.
- ``balanced``: residual balancing on *normalized* residuals with an adaptive factor (Wohlberg,
  "ADMM penalty parameter selection by residual balancing", arXiv:1704.06209, 2017): when
  ``r_n > mu s_n`` multiply by ``tau = min(sqrt(r_n / s_n), tau_max)``, when ``s_n > mu r_n``
  divide by ``min(sqrt(s_n / r_n), tau_max)``. Normalized residuals make the rule invariant to
  the scale of the data, and the gentle ``mu = 2``, ``tau_max = 2`` keep it from oscillating.
- ``spectral``: adaptive consensus ADMM (ACADMM; Xu, Taylor, Li, Figueiredo, Yuan, Goldstein,
  "Adaptive consensus ADMM for distributed optimization", ICML 2017), the per-block form of the
  spectral penalty of AADMM (Xu, Figueiredo, Goldstein, AISTATS 2017). Every ``T_f`` rounds each
  block estimates the local curvature of its loss, :math:`\hat\alpha_b`, from the change of
  :math:`x_b` and of its gradient :math:`\hat\lambda_b`, and the curvature of the regularizer seen
  by the block, :math:`\hat\beta_b`, from the change of :math:`z` and of :math:`\lambda_b`
  (Barzilai-Borwein "steepest descent" and "minimum gradient" estimates, combined as in the
  papers), and sets :math:`\rho_b = \sqrt{\hat\alpha_b \hat\beta_b}`; an estimate is used only when
  its pair is correlated (cosine above ``eps_cor``); and the change of :math:`\rho_b` in round k is
  bounded by the factor :math:`1 + C_{cg} / k^2`, which makes the changes summable (their
  convergence guarantee).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

RHO_MIN = 1e-6
"""Smallest penalty any rule may reach (a guard-rail; the paper's rule has none)."""
RHO_MAX = 1e6
"""Largest penalty any rule may reach."""

BALANCE_MU = 2.0
"""``balanced``: act when one normalized residual exceeds the other by this factor."""
BALANCE_TAU_MAX = 2.0
"""``balanced``: the largest factor of one change."""
SPECTRAL_EVERY = 2
"""``spectral``: T_f, rounds between two estimates (the papers' choice)."""
SPECTRAL_CORRELATION = 0.2
"""``spectral``: eps_cor, the least cosine of a (change of point, change of gradient) pair."""
SPECTRAL_BOUND = 1e10
"""``spectral``: C_cg, round k may change rho_b by at most the factor 1 + C_cg / k^2."""


class Penalty(StrEnum):
    """How the penalties rho_b change between rounds."""

    PAPER = "paper"
    """Seed 001 (after Boyd et al. 3.4.1): x2 if r > 10 s, x0.5 if s > 10 r."""
    FIXED = "fixed"
    """rho never changes."""
    BALANCED = "balanced"
    """Residual balancing on normalized residuals (Wohlberg 2017), mu = 2, tau <= 2."""
    SPECTRAL = "spectral"
    """Per-block spectral penalties of adaptive consensus ADMM (Xu et al., ICML 2017)."""


@dataclass(frozen=True)
class Residuals:
    """The residuals of one round, absolute (the paper's) and normalized (Boyd's 3.3.1 scales)."""

    primal: float
    """r = sqrt(sum_b ||x_b - z||^2)."""
    dual: float
    """s = rms_b(rho_b) ||z_{k+1} - z_k||, the paper's (rho ||dz|| when all rho_b are equal)."""
    primal_scale: float
    """max(||x||, sqrt(B) ||z||): r / primal_scale is the normalized primal residual."""
    dual_scale: float
    """||(rho_b u_b)_b|| / sqrt(B): s / dual_scale is the normalized dual residual."""


@dataclass
class SpectralMemory:
    """What the spectral rule remembers from its last estimate (round ``iteration``).

    ``x`` (B, d) the blocks' x_b, ``grad`` (B, d) the gradients lambda-hat_b of the blocks' losses
    there, ``z`` (d,) the consensus and ``lam`` (B, d) the unscaled duals rho_b u_b after it.
    """

    iteration: int
    x: np.ndarray
    grad: np.ndarray
    z: np.ndarray
    lam: np.ndarray


def clamp(rho: np.ndarray) -> np.ndarray:
    return np.clip(rho, RHO_MIN, RHO_MAX)


def paper_rule(rho: np.ndarray, res: Residuals) -> np.ndarray:
    """x2 if r > 10 s, x0.5 if s > 10 r (the same factor for every block)."""
    if res.primal > 10.0 * res.dual:
        return clamp(2.0 * rho)
    if res.dual > 10.0 * res.primal:
        return clamp(0.5 * rho)
    return rho


def balanced_rule(rho: np.ndarray, res: Residuals) -> np.ndarray:
    """Wohlberg's residual balancing with adaptive tau on normalized residuals."""
    if min(res.primal_scale, res.dual_scale, res.primal, res.dual) <= 0.0:
        return rho  # round 0 (x = z = u = 0): nothing to balance yet
    r = res.primal / res.primal_scale
    s = res.dual / res.dual_scale
    if r > BALANCE_MU * s:
        return clamp(rho * min(np.sqrt(r / s), BALANCE_TAU_MAX))
    if s > BALANCE_MU * r:
        return clamp(rho / min(np.sqrt(s / r), BALANCE_TAU_MAX))
    return rho


def _curvature(dx: np.ndarray, dg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (block): the hybrid spectral curvature estimate and the cosine of (dx, dg).

    With SD = <dg, dg> / <dx, dg> and MG = <dx, dg> / <dx, dx> (Barzilai-Borwein), the estimate is
    MG if 2 MG > SD, else SD - MG / 2 (AADMM's hybrid rule). Rows with <dx, dg> <= 0 get
    cosine 0, so they are never used.
    """
    xg = np.einsum("bd,bd->b", dx, dg)
    xx = np.einsum("bd,bd->b", dx, dx)
    gg = np.einsum("bd,bd->b", dg, dg)
    positive = (xg > 0) & (xx > 0) & (gg > 0)
    safe = np.where(positive, xg, 1.0)
    sd = np.where(positive, gg / safe, 0.0)
    mg = np.where(positive, safe / np.where(positive, xx, 1.0), 0.0)
    estimate = np.where(2.0 * mg > sd, mg, sd - 0.5 * mg)
    cosine = np.where(positive, safe / np.sqrt(np.where(positive, xx * gg, 1.0)), 0.0)
    return estimate, cosine


def spectral_rule(
    rho: np.ndarray, iteration: int, memory: SpectralMemory, now: SpectralMemory
) -> np.ndarray:
    """ACADMM's per-block penalties from the changes since ``memory`` (Xu et al. 2017).

    ``now`` holds the same quantities as ``memory`` for round ``iteration``.
    """
    alpha, alpha_cor = _curvature(now.x - memory.x, now.grad - memory.grad)
    dz = np.broadcast_to(now.z - memory.z, now.lam.shape)
    beta, beta_cor = _curvature(dz, now.lam - memory.lam)
    a_ok, b_ok = alpha_cor > SPECTRAL_CORRELATION, beta_cor > SPECTRAL_CORRELATION
    both = np.sqrt(np.where(a_ok & b_ok, alpha * beta, 1.0))
    estimate = np.where(a_ok & b_ok, both, np.where(a_ok, alpha, np.where(b_ok, beta, rho)))
    bound = 1.0 + SPECTRAL_BOUND / max(iteration, 1) ** 2
    return clamp(np.clip(estimate, rho / bound, rho * bound))
