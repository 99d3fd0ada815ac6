r"""Probabilistic matrix factorization (Salakhutdinov & Mnih 2007), as MLLess trains it (seed 002).

Ratings :math:`R_{ij}` observed at pairs :math:`(i, j) \in \Omega`, cut into B blocks, are fitted
by user factors U (users x r) and item factors V (items x r):

.. math::

    F(U, V) = \sum_b \sum_{(i, j) \in \Omega_b} \tfrac12 (R_{ij} - c - \langle U_i, V_j \rangle)^2
              + \tfrac{\lambda}{2} (\|U\|_F^2 + \|V\|_F^2),

the MAP estimate of PMF with Gaussian priors (:math:`\lambda = \sigma^2 / \sigma_U^2`, one prior
for both), c a constant offset (e.g. the mean rating; 0 by default). The model is the flat vector
``x = [U.ravel(), V.ravel()]``, so entry ``f = i r + k`` is (user i, factor k) and
``users r + j r + k`` is (item j, factor k): the optimizers, GA-SGD, MA-SGD and the significance
filter of :mod:`faasopt.solvers.sgd` work on it unchanged, and ISP filters per (row, factor) as
MLLess does. :class:`PmfProblem` is a :class:`faasopt.solvers.sgd.Problem` (``l2`` is lambda).

The gradient of a minibatch's loss is :math:`\nabla_U = E V`, :math:`\nabla_V = E^T U` with E the
sparse matrix of the residuals :math:`e_{ij} = c + \langle U_i, V_j \rangle - R_{ij}` (repeated
pairs add up), two sparse products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["PmfProblem", "rmse"]

INIT_STREAM = 0x504D_4600
"""Tag in the initial factors' seed, apart from the data generators' streams."""


@dataclass(frozen=True)
class PmfProblem:
    """Rank-``rank`` factorization of a ``n_users`` x ``n_items`` ratings matrix.

    The data of a block is anything with int arrays ``users``, ``items`` and float ``values``, such
    as a :class:`faasopt.data.ratings.Ratings` (not imported: solvers import only solvers).
    """

    n_users: int
    n_items: int
    rank: int
    n_rows: int
    """N, the ratings of all blocks together (the 1/N of the SGD step)."""
    l2: float = 0.05
    """lambda, the weight of the factors' squared norms (per rating 0.05 / N: light)."""
    offset: float = 0.0
    """c, added to every prediction (the mean rating makes the factors fit the deviations)."""
    seed: int = 0
    """Seed of the initial factors."""
    init_scale: float = 0.1
    """Standard deviation of the initial factors: MLLess's N(0, 0.1). Not 0: U = V = 0 is a
    saddle point where every gradient vanishes."""
    l1 = 0.0
    """No l1 term (a class constant: the SGD step reads it)."""

    @property
    def n_params(self) -> int:
        return (self.n_users + self.n_items) * self.rank

    def factors(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """U (users, rank) and V (items, rank), views of ``x``."""
        if x.shape != (self.n_params,):
            raise ValueError(f"x must have shape ({self.n_params},), got {x.shape}")
        split = self.n_users * self.rank
        return x[:split].reshape(self.n_users, self.rank), x[split:].reshape(
            self.n_items, self.rank
        )

    def initial_model(self) -> np.ndarray:
        return np.random.default_rng([self.seed, INIT_STREAM]).normal(
            0.0, self.init_scale, self.n_params
        )

    def predict(self, x: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """c + <U_i, V_j> for each pair."""
        U, V = self.factors(x)
        return self.offset + np.einsum("nk,nk->n", U[users], V[items])

    def rows(self, data: Any) -> int:
        return data.size

    def loss_grad(self, data: Any, x: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
        """Half the squared residuals of the ratings ``rows``, summed, and their gradient."""
        users, items = data.users[rows], data.items[rows]
        e = self.predict(x, users, items) - data.values[rows]
        U, V = self.factors(x)
        E = sp.csr_matrix((e, (users, items)), shape=(self.n_users, self.n_items))
        grad = np.concatenate([(E @ V).ravel(), (E.T @ U).ravel()])
        return 0.5 * float(e @ e), grad

    def loss(self, data: Any, x: np.ndarray) -> float:
        e = self.predict(x, data.users, data.items) - data.values
        return 0.5 * float(e @ e)


def rmse(problem: PmfProblem, x: np.ndarray, ratings: Any) -> float:
    """Root mean squared error of the model's predictions of ``ratings``."""
    e = problem.predict(x, ratings.users, ratings.items) - ratings.values
    return float(np.sqrt(np.mean(e * e)))
