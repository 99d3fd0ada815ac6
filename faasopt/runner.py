"""Run a TrainingJob on this machine: a nats-server, local worker processes, a coordinator;
or, for ``workers.platform: sim``, the simulated platform in this process (:mod:`faasopt.sim`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faasopt import checkpoint
from faasopt.checkpoint import Checkpoint
from faasopt.coordinator import Coordinator, CoordinatorSettings, OnRound, RoundReport
from faasopt.errors import CheckpointError, FieldProblem, Interrupted, SpecError
from faasopt.nats_client import connect, disconnect
from faasopt.plan import JobPlan, plan_job
from faasopt.platforms.local import LocalPlatform
from faasopt.platforms.nats_server import NatsServer
from faasopt.platforms.processes import peak_rss_bytes
from faasopt.report import build_report, write_report
from faasopt.spec import TrainingJob

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from faasopt.metrics import JobMetrics
    from faasopt.sim import SimSettings


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


class SimModel(StrEnum):
    """What the simulated platform models (:mod:`faasopt.sim`)."""

    LAMBDA = "lambda"
    """AWS Lambda workers (``faasopt.sim.LAMBDA``): what a job would do and cost there."""
    LOCAL = "local"
    """Worker processes on this machine (``SimSettings()``, calibrated here)."""

    def settings(self) -> SimSettings:
        from faasopt.sim import LAMBDA, SimSettings

        return LAMBDA if self is SimModel.LAMBDA else SimSettings()


DEFAULT_SIM_MODEL = SimModel.LAMBDA
"""``platform: sim`` plans a job for a FaaS platform unless told to replay this machine."""


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
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
    metrics_linger_seconds: float = 0.0,
    metrics_registry: CollectorRegistry | None = None,
    resume: bool = False,
    checkpoint_store: str | None = None,
    sim_model: SimModel | str = DEFAULT_SIM_MODEL,
) -> Result:
    """Solve ``job`` locally and return its Result; write it to ``out`` when given.

    With ``workers.platform: sim`` the job runs on the simulated platform as ``sim_model``
    (:class:`SimModel`): the same iterates and report, with figures that are predictions
    (``"predicted": true``); it has no checkpoints, metrics or worker processes, and
    ``on_round`` and the coordinator's ``settings`` do not apply (the report's trace has every
    round).

    A bad manifest or data raises SpecError or DataError before anything starts. A run that fails
    or does not converge returns a Result whose report says so. The nats-server and every worker
    process are stopped on return, on exceptions and on Ctrl-C or SIGTERM, which then raise
    :class:`faasopt.errors.Interrupted` (a KeyboardInterrupt).

    The coordinator checkpoints to ``checkpoint_store`` (``s3://bucket/prefix``) or, with
    ``out``, to a JetStream object store kept in ``out/nats``; ``resume`` continues from the last
    checkpoint there (same problem required) and reaches the same final iterate as an
    uninterrupted run.

    Metrics (:mod:`faasopt.metrics`) go to ``metrics_registry`` when given; ``metrics_port``
    serves them on ``metrics_address`` (a fresh registry unless one is given) during the run and
    for ``metrics_linger_seconds`` after it, so that a last scrape sees the final values.
    """
    plan = plan_job(load(job), workers)
    if plan.platform == "sim":
        unsupported = {
            "resume": resume,
            "checkpoint_store": checkpoint_store,
            "metrics_port": metrics_port,
            "metrics_registry": metrics_registry,
        }
        if given := [name for name, value in unsupported.items() if value]:
            raise SpecError(
                [
                    FieldProblem(
                        "spec.workers.platform",
                        f"sim runs in this process on a virtual clock: no {', '.join(given)}",
                    )
                ]
            )
        if on_start is not None:
            on_start(plan)
        return _simulate(plan, SimModel(sim_model), out)
    if checkpoint_store is None and out is not None:
        checkpoint_store = "jetstream"
    if resume and checkpoint_store is None:
        raise ValueError("resume needs out or checkpoint_store: where the checkpoints are")
    if on_start is not None:
        on_start(plan)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        job_metrics = _job_metrics(
            stack, plan, metrics_port, metrics_address, metrics_linger_seconds, metrics_registry
        )
        platform = LocalPlatform(quiet=quiet_workers)
        platform.deploy()
        jetstream = Path(out) / "nats" if checkpoint_store == "jetstream" else None
        with NatsServer(jetstream_dir=jetstream) as server:
            try:
                outcome = asyncio.run(
                    _solve(
                        plan,
                        server.url,
                        platform,
                        on_round,
                        settings,
                        job_metrics,
                        checkpoint_store=checkpoint_store,
                        resume=resume,
                    )
                )
            finally:
                platform.teardown()
                if job_metrics is not None:
                    job_metrics.stop()
        report = build_report(plan, outcome, time.perf_counter() - started, peak_rss_bytes())
        if job_metrics is not None:
            job_metrics.finish(outcome, report)
        result = Result(report, np.array(outcome.z), Path(out) if out else None)
        if result.out is not None:
            write_report(result.out, report, result.solution)
    return result


def _simulate(plan: JobPlan, model: SimModel, out: str | Path | None) -> Result:
    """``plan`` on the simulated platform as ``model``; written to ``out`` when given."""
    from faasopt.sim import simulate

    result = simulate(plan, model.settings())
    result.report["simulation"]["model"] = model.value
    if out is not None:
        result.out = Path(out)
        write_report(result.out, result.report, result.solution)
    return result


def _job_metrics(
    stack: contextlib.ExitStack,
    plan: JobPlan,
    port: int | None,
    address: str,
    linger_seconds: float,
    registry: CollectorRegistry | None,
) -> JobMetrics | None:
    """The job's metrics, served on ``port`` until ``stack`` closes; None when not asked for."""
    if port is None and registry is None:
        return None
    from faasopt import metrics  # prometheus_client only for runs that export metrics

    if registry is None:
        registry = metrics.CollectorRegistry()
    if port is not None:
        stack.enter_context(metrics.serve(registry, port, address, linger_seconds))
    return metrics.JobMetrics(plan, registry)


async def _solve(
    plan: JobPlan,
    url: str,
    platform,
    on_round,
    settings,
    job_metrics,
    checkpoint_store: str | None = None,
    resume: bool = False,
):
    nc = await connect(url, f"{plan.namespace}/{plan.name}/coordinator")
    store = checkpoint.open_store(checkpoint_store, nc)
    try:
        saved = await _last_checkpoint(store, plan) if resume else None
    except BaseException:
        await disconnect(nc)
        raise

    def observe(report: RoundReport) -> None:
        if job_metrics is not None:
            job_metrics.round(report, coordinator.history, coordinator.decoder.rejected)
        if on_round is not None:
            on_round(report)

    coordinator = Coordinator(
        plan, nc, platform, url, on_round=observe, settings=settings, store=store, resume=saved
    )
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


async def _last_checkpoint(store: checkpoint.CheckpointStore, plan: JobPlan) -> Checkpoint:
    """The job's last checkpoint, checked; CheckpointError if there is none or it is unusable."""
    job = f"{plan.namespace}/{plan.name}"
    data = await store.load(checkpoint.key(job))
    if data is None:
        raise CheckpointError(f"no checkpoint of {job} to resume from")
    return checkpoint.decode(data, job, checkpoint.fingerprint(plan))
