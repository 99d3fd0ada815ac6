"""Thirty small jobs back to back in one process: nothing accumulates."""

from __future__ import annotations

import threading

import psutil

import faasopt
from faasopt.spec import TrainingJob

SMALL = {
    "spec": {
        "problem": {"data": {"synthetic": {"samples": 400, "features": 30, "density": 0.1}}},
        "workers": {"count": 2},
    }
}


def test_thirty_jobs_leak_no_files_threads_memory_or_processes(manifest):
    job = TrainingJob.from_yaml(manifest(SMALL))
    me = psutil.Process()
    others = {p.pid for p in me.children(recursive=True)}  # e.g. a session's prometheus
    samples = []
    for i in range(30):
        result = faasopt.run(job, quiet_workers=True)
        assert result.converged
        if i in (4, 29):  # after a warm-up, and at the end
            samples.append((me.num_fds(), threading.active_count(), me.memory_info().rss))
        assert {p.pid for p in me.children(recursive=True)} <= others
    (fds0, threads0, rss0), (fds1, threads1, rss1) = samples
    assert fds1 - fds0 <= 2, (fds0, fds1)
    assert threads1 - threads0 <= 1, (threads0, threads1)
    assert rss1 - rss0 < 30 * 2**20, (rss0, rss1)  # stated bound: under 30 MB over 25 jobs
