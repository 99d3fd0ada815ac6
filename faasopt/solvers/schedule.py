r"""Inexact x-steps: the local solver's gradient tolerance of each round, tied to the residuals.

Early rounds move z far, so solving the x-step exactly there is wasted work; late rounds need
accurate x-steps, or the residuals stall at the solver's error. With ``residuals``, the tolerance
of block b for round k+1 is

.. math::

    \epsilon_b^{k+1} = c\, \rho_b \min\left(r_k / \sqrt{B},\ \|z_{k+1} - z_k\|\right),

the gradient that moves :math:`x_b` by at most c times the smaller of the per-block primal
residual and the last step of z (the x-step is :math:`\rho_b`-strongly convex, so
:math:`\|x_b - x_b^\star\| \le \|g\| / \rho_b`); it scales with the data like the gradient does.
Three bounds keep it sound:

- it never exceeds the configured ``gradient_tolerance`` :math:`\epsilon_g` (the loosest solve);
- it never exceeds :math:`\epsilon_g (k + 1)^{-1.1}`, a summable sequence, so the x-step errors
  are summable whatever the residuals do, which keeps inexact ADMM convergent (Eckstein and
  Bertsekas, Math. Programming 55, 1992, Theorem 8);
- it shrinks by at most ``MAX_TIGHTENING`` per round: after round one the step of z can be tiny
  (z starts at 0 and the soft threshold may keep it there) and would make round two needlessly
  exact.

``fixed`` keeps :math:`\epsilon_g` in every round (the paper).
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np

MAX_TIGHTENING = 10.0
"""The most a block's tolerance may shrink from one round to the next."""
ENVELOPE_POWER = 1.1
"""p of the summable envelope eps_g (k + 1)^-p."""


class Schedule(StrEnum):
    """How the x-step's gradient tolerance changes between rounds."""

    FIXED = "fixed"
    """The configured gradient tolerance in every round (the paper)."""
    RESIDUALS = "residuals"
    """Tied to the residuals: loose early, tight late, with a summable envelope."""


def next_tolerances(
    previous: np.ndarray,
    rho: np.ndarray,
    primal: float,
    z_step_norm: float,
    iteration: int,
    cap: float,
    factor: float,
) -> np.ndarray:
    """The blocks' gradient tolerances for round ``iteration`` (shape (B,), like ``rho``).

    ``primal`` is r of the round just finished, ``z_step_norm`` is ||z_{k+1} - z_k||, ``cap`` is
    the configured gradient tolerance, ``factor`` is c.
    """
    target = factor * rho * min(primal / math.sqrt(rho.size), z_step_norm)
    envelope = cap * (iteration + 1.0) ** -ENVELOPE_POWER
    return np.minimum(np.maximum(target, previous / MAX_TIGHTENING), min(cap, envelope))
