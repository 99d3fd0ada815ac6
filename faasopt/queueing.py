"""Two queues of a virtual clock: cores shared by jobs, and a server that takes jobs in turn.

Pure functions over times in seconds, used by the simulated platform (:mod:`faasopt.sim`).
"""

from __future__ import annotations

from collections.abc import Mapping

_DONE_SECONDS = 1e-12
"""Work left under this counts as done (rounding of the rate products)."""


def processor_sharing(
    releases: Mapping[str, float], works: Mapping[str, float], cores: float | None
) -> dict[str, float]:
    """When each job ends on ``cores`` shared fairly (processor sharing); None: one core each.

    Job ``j`` becomes ready at ``releases[j]`` and needs ``works[j]`` seconds of one core. While
    n jobs run on c cores each progresses at min(1, c / n) of a core, as an operating system's
    fair scheduler shares cores among busy processes.
    """
    if cores is None:
        return {j: releases[j] + works[j] for j in releases}
    if not cores > 0:
        raise ValueError(f"cores must be > 0, got {cores}")
    left = dict(works)
    pending = sorted(releases, key=lambda j: (releases[j], j))
    running: list[str] = []
    ends: dict[str, float] = {}
    now = releases[pending[0]] if pending else 0.0
    while pending or running:
        while pending and releases[pending[0]] <= now:
            running.append(pending.pop(0))
        if not running:
            now = releases[pending[0]]
            continue
        rate = min(1.0, cores / len(running))
        step = min(left[j] for j in running) / rate
        if pending:
            step = min(step, releases[pending[0]] - now)
        for j in running:
            left[j] -= step * rate
        now += step
        for j in [j for j in running if left[j] <= _DONE_SECONDS]:
            ends[j] = now
            running.remove(j)
    return ends


def first_come_first_served(
    arrivals: Mapping[str, float], services: Mapping[str, float], free_at: float = 0.0
) -> dict[str, tuple[float, float]]:
    """(start, end) of each job at one server taking them in order of arrival (ties by name).

    ``free_at`` is when the server finishes what it had before. A job starts when it has arrived
    and the job before it has ended.
    """
    out: dict[str, tuple[float, float]] = {}
    for j in sorted(arrivals, key=lambda j: (arrivals[j], j)):
        start = max(arrivals[j], free_at)
        free_at = start + services[j]
        out[j] = (start, free_at)
    return out
