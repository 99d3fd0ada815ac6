"""What several benchmarks share (imported by name: bench/ is on the path of a bench run)."""

from __future__ import annotations

import time
import warnings

import numpy as np


def liblinear(A, y: np.ndarray, l1: float) -> tuple[np.ndarray, float]:
    """scikit-learn's liblinear L1 logistic regression with faasopt's objective (C = 1 / l1, no
    intercept), solved tight (tol 1e-10, at most 1000 outer iterations, where its objective stops
    changing): the optimum and the seconds it took."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(
        l1_ratio=1,
        solver="liblinear",
        C=1.0 / l1,
        fit_intercept=False,
        tol=1e-10,
        max_iter=1000,
        random_state=0,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        x = model.fit(A, y).coef_.ravel()
    return x, time.perf_counter() - started


MLLESS_SGD = {
    "variant": "modelAveraging",
    "optimizer": {"method": "adam", "learningRate": 0.05},
    "batchSize": 1000,
    "syncEvery": 1,
    "significance": 0.7,
}
"""MLLess's LR training (seed 002, Table 1: Adam, ISP v = 0.7) as faasopt's MA-SGD (``spec.algorithm
.sgd`` without its stop rule): one local step of 1000 rows a block a round."""
