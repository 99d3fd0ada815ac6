"""Blocks, not workers, for every penalty rule: real workers over a real nats-server give the
in-process reference's iterates whatever the worker count, per-block penalties, over-relaxation
and scheduled x-step tolerances included."""

from __future__ import annotations

import numpy as np
import pytest

import faasopt
from faasopt.data import synthetic_blocks
from faasopt.solvers.admm import reference_admm
from faasopt.spec import TrainingJob

SYN = {"samples": 2000, "features": 60, "density": 0.06, "seed": 13}
RULES = {
    "paper": {"penalty": "paper", "relaxation": 1.0, "localSolver": {"toleranceSchedule": "fixed"}},
    "fixed+relaxed": {"penalty": "fixed", "relaxation": 1.5},
    "balanced": {"penalty": "balanced"},
    "spectral": {},  # the defaults: spectral, relaxation 1.8, scheduled tolerances
}


def _trace(result) -> list[float]:
    return [entry["objective"] for entry in result.report["trace"]]


@pytest.mark.parametrize("rule", list(RULES))
def test_same_iterates_for_1_and_4_workers_as_the_reference(manifest, rule):
    admm = {**RULES[rule], "maxIterations": 12, "primalTolerance": 1e-9, "dualTolerance": 1e-9}
    patch = {
        "spec": {
            "problem": {"data": {"synthetic": SYN}},
            "algorithm": {"admm": admm},
            "workers": {"count": 4, "blocks": 4},
        }
    }
    job = TrainingJob.from_yaml(manifest(patch))
    runs = {w: faasopt.run(job, workers=w, quiet_workers=True) for w in (1, 4)}
    reference = reference_admm(synthetic_blocks(**SYN, block_ids=range(4), blocks=4),
                               job.admm_settings())  # fmt: skip
    expected = [r.objective for r in reference.history]
    assert _trace(runs[1]) == _trace(runs[4]) == expected
    assert np.array_equal(runs[1].solution, reference.z)
    assert np.array_equal(runs[4].solution, reference.z)
    trace = runs[4].report["trace"]
    assert all(len(e["solverIterations"]) == len(e["blockGradientEvaluations"]) == 4 for e in trace)
    if rule == "spectral":
        assert any(e["rhoBlocks"] for e in trace)  # per-block penalties did differ
