"""Run a TrainingJob on this machine: a nats-server, local worker processes, a coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faasopt.coordinator import Coordinator, CoordinatorSettings, OnRound
from faasopt.errors import Interrupted
from faasopt.nats_client import connect, disconnect
from faasopt.plan import JobPlan, plan_job
from faasopt.platforms.local import LocalPlatform
from faasopt.platforms.nats_server import NatsServer
from faasopt.report import build_report, write_report
from faasopt.spec import TrainingJob
from faasopt.worker import peak_rss_bytes


@dataclass
class Result:
    """A finished run: its report (the contract of report.json) and the solution z."""

    report: dict[str, Any]
    solution: np.ndarray
    out: Path | None = None

    @property
    def converged(self) -> bool:
        return bool(self.report["converged"])

    @property
    def objective(self) -> float | None:
        return self.report["objective"]

    @property
    def iterations(self) -> int:
        return int(self.report["iterations"])


def load(job: TrainingJob | str | Path) -> TrainingJob:
    """A TrainingJob from a model or a manifest path."""
    return job if isinstance(job, TrainingJob) else TrainingJob.from_yaml(job)


def run(
    job: TrainingJob | str | Path,
    *,
    workers: int | None = None,
    out: str | Path | None = None,
    on_start: Any = None,
    on_round: OnRound | None = None,
    quiet_workers: bool = False,
    settings: CoordinatorSettings | None = None,
) -> Result:
    """Solve ``job`` locally and return its Result; write it to ``out`` when given.

    A bad manifest or data raises SpecError or DataError before anything starts. A run that fails
    or does not converge returns a Result whose report says so. The nats-server and every worker
    process are stopped on return, on exceptions and on Ctrl-C or SIGTERM, which then raise
    :class:`faasopt.errors.Interrupted` (a KeyboardInterrupt).
    """
    plan = plan_job(load(job), workers)
    if on_start is not None:
        on_start(plan)
    started = time.perf_counter()
    platform = LocalPlatform(quiet=quiet_workers)
    platform.deploy()
    with NatsServer() as server:
        try:
            outcome = asyncio.run(_solve(plan, server.url, platform, on_round, settings))
        finally:
            platform.teardown()
    report = build_report(plan, outcome, time.perf_counter() - started, peak_rss_bytes())
    result = Result(report, np.array(outcome.z), Path(out) if out else None)
    if result.out is not None:
        write_report(result.out, report, result.solution)
    return result


async def _solve(plan: JobPlan, url: str, platform, on_round, settings):
    nc = await connect(url, f"{plan.namespace}/{plan.name}/coordinator")
    coordinator = Coordinator(plan, nc, platform, url, on_round=on_round, settings=settings)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ValueError, RuntimeError):  # signals only in the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, coordinator.interrupt, signum)
    try:
        outcome = await coordinator.run()
    finally:
        await disconnect(nc)
    if coordinator.interrupted is not None:
        raise Interrupted(coordinator.interrupted)
    return outcome
