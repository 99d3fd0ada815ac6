"""Rotation before the time limit (issue #5, item 1): a worker near its ``timeLimitSeconds``
leaves at a round boundary, and a successor takes over its blocks with their exact state. Real
worker processes, a real nats-server; the iterates are those of the run without rotation."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from test_faults import PATCH, _objectives, undisturbed  # noqa: F401  (the module's fixture)

import faasopt
from faasopt.worker import ROTATION_MIN_MARGIN_SECONDS, _State, _time_left

WORKERS = 2
ROTATING = {
    "spec": {
        **PATCH["spec"],
        # the 3 blocks of the run without rotation on 2 workers (fewer processes on 2 cores);
        # a worker lives 5 s, less LEAVE_MARGIN_SECONDS: 3 s before it must have left
        "workers": {"count": WORKERS, "blocks": 3, "timeLimitSeconds": 5.0},
    }
}
ROUND_PAUSE_SECONDS = 0.4
"""The test's on_round holds the coordinator this long after each round: the job's 19 rounds
then take about 8 s, so each worker's short life spans a few rounds and ends several times."""


def _pause(report) -> None:
    time.sleep(ROUND_PAUSE_SECONDS)


def test_rotation_preserves_iterates_and_is_counted(manifest, undisturbed):  # noqa: F811
    registry = CollectorRegistry()
    result = faasopt.run(
        manifest(ROTATING), on_round=_pause, quiet_workers=True, metrics_registry=registry
    )
    assert result.converged
    assert _objectives(result) == _objectives(undisturbed)  # bit for bit
    assert np.array_equal(result.solution, undisturbed.solution)

    report = result.report
    starts = {c["worker"]: c for c in report["coldStarts"]}
    rotated = [c for c in report["coldStarts"] if (c["ended"] or "").startswith("rotated")]
    assert report["rotations"] == len(rotated) >= 2 * WORKERS
    assert report["replacements"] == 0
    per_worker = Counter(c["worker"].split("-")[0] for c in rotated)
    assert set(per_worker) == {"w0", "w1"} and min(per_worker.values()) >= 2
    for gone in rotated:  # each names the successor that took over, which measured its start
        successor = starts[gone["ended"].rsplit("; ", 1)[1].removesuffix(" took over")]
        assert successor["rotates"] == gone["worker"]
        assert successor["blocks"] == gone["blocks"]
        assert successor["seconds"] > 0 and successor["loadSeconds"] > 0
    assert all("-t" in name for name in report["trace"][-1]["perWorker"])

    counted = {
        sample.name: sample.value for family in registry.collect() for sample in family.samples
    }
    assert counted["faasopt_worker_rotations_total"] == report["rotations"]
    assert counted["faasopt_worker_replacements_total"] == 0


def test_a_worker_stays_while_twice_its_slowest_round_is_left():
    state = _State(data={}, runner=None, instance="9f3c2a", leave_at=10.0)
    # first round: 0.1 s of x-steps, so the margin is the least one
    stay = _time_left(state, received=0.0, finished=0.1, now=9.0)
    assert stay == {
        "leaving": False,
        "seconds_left": pytest.approx(1.0 - ROTATION_MIN_MARGIN_SECONDS),
    }
    # the next broadcast came 0.6 s after the first: a round is 0.6 s, the margin 1.2 s
    assert _time_left(state, received=0.6, finished=0.7, now=9.1) == {
        "leaving": True,
        "seconds_left": 0.0,
    }
    assert _time_left(_State(data={}, runner=None, instance="x"), 0.0, 0.1, 5.0) == {
        "leaving": False,
        "seconds_left": None,
    }
