"""What several benchmarks share (imported by name: bench/ is on the path of a bench run)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy

ROOT = Path(__file__).resolve().parent.parent


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


def machine() -> dict[str, Any]:
    """Where and when a bench ran: the date, the CPUs and their load, the library versions and
    the commit (with whether the working tree differed from it)."""
    import sklearn

    import faasopt

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except OSError:
        commit, dirty = None, None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "usableCpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadAverage": list(os.getloadavg()),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "faasopt": str(Path(faasopt.__file__).parent),
        "commit": commit,
        "workingTreeModified": dirty,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
