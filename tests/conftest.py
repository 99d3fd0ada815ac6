"""Shared fixtures: a real nats-server, manifests written to disk, and reference solutions."""

from __future__ import annotations

import os

# As in workers (faasopt.worker.WORKER_ENV), before numpy loads BLAS: one thread makes the
# in-process reference solves several times faster.
os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

import copy
import json
import signal
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from faasopt.algorithms.sgd import problem_from_wire
from faasopt.data import load_blocks
from faasopt.payload import PAYLOAD_ENV
from faasopt.plan import plan_job
from faasopt.platforms.nats_server import NatsServer
from faasopt.solvers.sgd import reference_sgd

BASE_MANIFEST: dict[str, Any] = {
    "apiVersion": "faasopt.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "test"},
    "spec": {
        "problem": {
            "l1": 1.0,
            "data": {"synthetic": {"samples": 2000, "features": 200, "density": 0.02, "seed": 3}},
        },
        "workers": {"count": 2},
    },
}


def merge(base: dict, patch: dict) -> dict:
    """Deep merge; a value of None in ``patch`` deletes the key."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture
def manifest(tmp_path: Path):
    """Write a manifest (the base one, deep-merged with a patch) and return its path."""

    def write(patch: dict | None = None, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merge(BASE_MANIFEST, patch or {})))
        return path

    return write


@pytest.fixture(scope="module")
def nats_server():
    """A real nats-server on a free loopback port, for one test module."""
    with NatsServer() as server:
        yield server


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Every test must leave no child process behind (workers, nats-server)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    leftovers = [
        p for p in psutil.Process().children(recursive=True) if p.pid not in before and _alive(p)
    ]
    for p in leftovers:
        p.kill()
    assert not leftovers, f"processes left behind: {[p.cmdline() for p in leftovers]}"


def worker_processes() -> dict[str, psutil.Process]:
    """This process's worker processes, by worker name."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            payload = child.environ().get(PAYLOAD_ENV)
        except psutil.Error:
            continue
        if payload:
            found[json.loads(payload)["worker"]] = child
    return found


def kill_workers(names, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` (default: kill -9) to the named worker processes."""
    workers = worker_processes()
    for name in names:
        os.kill(workers[name].pid, sig)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def objective(A, y, x: np.ndarray, l1: float) -> float:
    """sum_i log(1 + exp(-y_i a_i.x)) + l1 ||x||_1, the one formula both sides are scored by."""
    return float(np.logaddexp(0.0, -y * (A @ x)).sum() + l1 * np.abs(x).sum())


def liblinear(A, y, l1: float, tol: float = 1e-10) -> np.ndarray:
    """scikit-learn's liblinear L1 logistic regression: C = 1 / l1, no intercept.

    At tol 1e-10 liblinear's own test often never passes although its objective stopped changing
    in the 15th digit; 1000 outer iterations cap it (measured: same objective as 10 000).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(
        l1_ratio=1,
        solver="liblinear",
        C=1.0 / l1,
        fit_intercept=False,
        tol=tol,
        max_iter=1000,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(A, y).coef_.ravel()


# --- SGD and k-means jobs shared by the real runs and the simulated ones ----------------------

SYN = {"samples": 3000, "features": 120, "density": 0.05, "seed": 21}
GA = {
    "variant": "gradientAveraging",
    "optimizer": {"method": "adam", "learningRate": 0.05, "schedule": "inverseSqrt",
                  "decayEvery": 12},
    "batchSize": 64,
    "stop": {"maxEpochs": 20.0},
}  # fmt: skip
MA = {
    "variant": "modelAveraging",
    "optimizer": {"method": "adam", "learningRate": 0.05, "schedule": "inverseSqrt",
                  "decayEvery": 12},
    "batchSize": 64,
    "syncEvery": 2,
    "stop": {"maxEpochs": 20.0},
}  # fmt: skip
BLOBS = {"samples": 2400, "features": 5, "centers": 6, "spread": 1.5, "seed": 4}


def sgd_patch(sgd: dict, **workers) -> dict:
    """A manifest patch: SGD logistic regression on SYN, 4 blocks on 2 workers by default."""
    workers = {"count": 2, "blocks": 4, **workers}
    return {
        "spec": {
            "problem": {"data": {"synthetic": SYN}},
            "algorithm": {"sgd": sgd},
            "workers": workers,
        }
    }


def pmf_patch(ratings: dict, rank: int, batch: int, epochs: float) -> dict:
    """A manifest patch: PMF of ``syntheticRatings`` by GA-SGD (Nesterov), 4 blocks on 2 workers."""
    return {
        "spec": {
            "problem": {"loss": "pmf", "l1": None, "pmf": {"rank": rank, "regularization": 0.5},
                        "data": {"synthetic": None, "syntheticRatings": ratings}},
            "algorithm": {"sgd": {"variant": "gradientAveraging", "batchSize": batch,
                                  "optimizer": {"method": "nesterov", "learningRate": 0.5},
                                  "stop": {"maxEpochs": epochs}}},
            "workers": {"count": 2, "blocks": 4},
        }
    }  # fmt: skip


def kmeans_patch() -> dict:
    """A manifest patch: k-means (k = 6) of BLOBS to a fixed point, 4 blocks on 2 workers."""
    return {
        "spec": {
            "problem": {"loss": "kmeans", "l1": None, "kmeans": {"k": 6},
                        "data": {"synthetic": None, "blobs": BLOBS}},
            "algorithm": {"kmeans": {"tolerance": 0.0, "seed": 3}},
            "workers": {"count": 2, "blocks": 4},
        }
    }  # fmt: skip


def sgd_reference(job):
    """The in-process reference run of an SGD job (``reference_sgd``), and its blocks."""
    plan = plan_job(job)
    blocks = load_blocks(plan.source, range(plan.n_blocks), plan.n_blocks)
    return reference_sgd(problem_from_wire(plan.problem), blocks, plan.settings), blocks


def losses(result) -> list[float]:
    """The objective of each round of a run's trace."""
    return [entry["objective"] for entry in result.report["trace"]]
