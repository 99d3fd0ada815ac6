"""The algorithms a job can run, each as two halves over the same runtime.

A **driver** is the coordinator's half: it builds each round's broadcast, takes every worker's
answer for its blocks, reduces them in block order, says when the run is done, and hands any
block's state to the worker that takes it over (start, replacement, rotation, scale-in): it holds
every block's exact state itself (ADMM, GA-SGD, k-means), or gets it back from a worker that
leaves alive (MA-SGD, whose block states stay on their workers between rounds).

A **runner** is the worker's half: it takes the state of its blocks, computes their part of a
round, and evaluates its blocks' losses at the end. The coordinator (:mod:`faasopt.coordinator`)
and the worker (:mod:`faasopt.worker`) only move messages, time them and keep the pool alive,
whatever the algorithm.

ADMM (seed 001) speaks its own messages (``iterate``, ``result``, ``assign``); SGD and k-means
speak the generic ``round``, ``answer`` and ``handover`` (:mod:`faasopt.protocol`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from faasopt.algorithms.admm import AdmmDriver, AdmmRunner
from faasopt.algorithms.base import Driver, Runner, StepRecord
from faasopt.algorithms.kmeans import KMeansDriver, KMeansRunner
from faasopt.algorithms.sgd import SgdDriver, SgdRunner

if TYPE_CHECKING:
    from faasopt.payload import WorkerPayload
    from faasopt.plan import JobPlan

__all__ = ["Driver", "Runner", "StepRecord", "driver_for", "runner_for"]

DRIVERS = {"admm": AdmmDriver, "sgd": SgdDriver, "kmeans": KMeansDriver}


def driver_for(plan: JobPlan) -> Driver:
    """The coordinator's half of the plan's algorithm."""
    return DRIVERS[plan.algorithm](plan)


def runner_for(payload: WorkerPayload, data: Mapping[int, Any]) -> Runner:
    """The worker's half of the algorithm its payload names (``{}``: ADMM, whose settings come
    with each assignment)."""
    if not payload.algorithm:
        return AdmmRunner(payload, data)
    ((name, wire),) = payload.algorithm.items()
    runners = {"sgd": SgdRunner, "kmeans": KMeansRunner}
    return runners[name](payload, data, wire)
