"""Prometheus metrics of training jobs (DESIGN.md "Metrics"): every name is declared here, once.

Names carry the ``faasopt_`` prefix and base units; labels are ``namespace``, ``job`` and
``platform`` (plus a closed ``reason`` on rejected messages), never a worker id. Per-worker times
of seed 001, Sec. II-B, are histograms; speedup, efficiency and responsiveness are derived at
scrape time by one collector per registry. Responsiveness (Fig. 9) is a histogram over the job's
workers of the fraction of rounds each was among the slowest 10 %, recomputed at every scrape:
Fig. 9 itself, live, without a worker label (a plain counter of such rounds would only count
ceil(W / 10) per round and say nothing about stragglers).

Scrape with ``honor_labels: true`` (a ServiceMonitor's ``honorLabels``): the ``job`` label is the
TrainingJob's, not the scrape job's.

Not exported yet, because nothing measures it yet: ``faasopt_messages_bytes_total``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.utils import floatToGoString

from faasopt.coordinator import EVICTED, ROTATED, Outcome, RoundReport, WorkerRecord
from faasopt.errors import PlatformError
from faasopt.plan import JobPlan
from faasopt.report import slowest

LABELS = ("namespace", "job", "platform")
METRICS_PORT_ENV = "FAASOPT_METRICS_PORT"
"""The operator serves /metrics of all its jobs on this port when it is set (the chart sets it)."""

ROUND_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ROUND_SECONDS_BUCKETS += (10.0, 30.0, 60.0, 120.0)
"""One worker in one round: a millisecond on loopback up to minutes for a large block."""
COLD_START_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
"""Invoke to first contact: a local process in about a second, a FaaS bulk start in tens."""
FRACTION_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.25, 1 / 3, 0.5, 0.75, 1.0)
"""Fractions of rounds; 0 counts the workers never among the slowest, as Fig. 9's first bin."""


@dataclass(frozen=True)
class Spec:
    """One metric family as PromQL names it (counters end in ``_total``)."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    buckets: tuple[float, ...] = ()
    derived: bool = False
    """Computed at scrape time by the collector, not updated in place."""
    reason: bool = False
    """Carries the extra ``reason`` label."""


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("faasopt_job_running", "gauge", "1 while the job runs, 0 once it ended."),
        Spec("faasopt_job_iterations_total", "counter", "Rounds completed (of any algorithm)."),
        Spec(
            "faasopt_job_objective",
            "gauge",
            "The round's objective: F(z_k) for ADMM, the minibatch loss for SGD, the inertia for "
            "k-means; the final objective once finished.",
        ),
        Spec(
            "faasopt_job_model_bytes_total",
            "counter",
            "SGD: bytes of the blocks' model updates sent (significance filter applied).",
        ),
        Spec(
            "faasopt_job_model_dense_bytes_total",
            "counter",
            "SGD: bytes the same updates would have taken dense (BSP without the filter).",
        ),
        Spec("faasopt_job_primal_residual", "gauge", "Primal residual r of the last round."),
        Spec("faasopt_job_dual_residual", "gauge", "Dual residual s of the last round."),
        Spec("faasopt_job_workers", "gauge", "Workers active in the last round; 0 once ended."),
        Spec(
            "faasopt_job_speedup",
            "gauge",
            "Per-run estimate: worker compute seconds / elapsed solve seconds.",
            derived=True,
        ),
        Spec(
            "faasopt_job_efficiency_ratio",
            "gauge",
            "Speedup / workers of the last round.",
            derived=True,
        ),
        Spec(
            "faasopt_worker_compute_seconds",
            "histogram",
            "Per worker and round: from receiving z_k to sending its results.",
            ROUND_SECONDS_BUCKETS,
        ),
        Spec(
            "faasopt_worker_idle_seconds",
            "histogram",
            "Per worker and round: from its previous send to receiving z_k.",
            ROUND_SECONDS_BUCKETS,
        ),
        Spec(
            "faasopt_worker_communication_seconds",
            "histogram",
            "Per worker and round: delay (broadcast to reception of its results) minus compute.",
            ROUND_SECONDS_BUCKETS,
        ),
        Spec(
            "faasopt_worker_cold_start_seconds",
            "histogram",
            "Per worker: from the invoke request to its first contact.",
            COLD_START_BUCKETS,
        ),
        Spec("faasopt_worker_cold_starts_total", "counter", "Workers started (cold starts)."),
        Spec(
            "faasopt_worker_replacements_total",
            "counter",
            "Workers started to take over the blocks of one that died or went silent.",
        ),
        Spec(
            "faasopt_worker_rotations_total",
            "counter",
            "Workers rotated out near their time limit; a successor took over their blocks.",
        ),
        Spec(
            "faasopt_scalein_evictions_total",
            "counter",
            "Workers evicted by scale-in; their blocks moved to the survivors.",
        ),
        Spec(
            "faasopt_job_cost_dollars_total",
            "counter",
            "The job's cost so far in US dollars (faasopt.cost): workers and always-on machines.",
        ),
        Spec(
            "faasopt_job_perf_per_dollar",
            "gauge",
            "1 / (wall seconds x dollars) of the finished job (seed 002, 6.2); 0 while it runs.",
        ),
        Spec(
            "faasopt_worker_slowest_round_ratio",
            "histogram",
            "Over the job's workers: fraction of rounds each was among the slowest 10 %.",
            FRACTION_BUCKETS,
            derived=True,
        ),
        Spec(
            "faasopt_messages_rejected_total",
            "counter",
            "Incoming messages dropped as bad, stale or foreign, by reason.",
            reason=True,
        ),
    )
}

_TYPES = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


class Families:
    """The metric families of one registry, and the collector of the derived ones."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs: dict[tuple[str, ...], JobMetrics] = {}
        """By labels: a job run again under the same name replaces its predecessor."""
        self.metrics = {
            spec.name: _TYPES[spec.kind](
                spec.name,
                spec.help,
                (*LABELS, "reason") if spec.reason else LABELS,
                registry=registry,
                **({"buckets": spec.buckets} if spec.buckets else {}),
            )
            for spec in SPECS.values()
            if not spec.derived
        }
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        yield from self._derived({})

    def collect(self) -> Iterator[Metric]:
        jobs = list(self.jobs.values())  # one C-level copy: jobs may arrive meanwhile
        yield from self._derived({job.labels: job.snapshot() for job in jobs})

    @staticmethod
    def _derived(snapshots: Mapping[tuple[str, ...], _Snapshot]) -> Iterator[Metric]:
        speedup, efficiency, ratio = (
            SPECS[name]
            for name in (
                "faasopt_job_speedup",
                "faasopt_job_efficiency_ratio",
                "faasopt_worker_slowest_round_ratio",
            )
        )
        speedups = GaugeMetricFamily(speedup.name, speedup.help, labels=LABELS)
        efficiencies = GaugeMetricFamily(efficiency.name, efficiency.help, labels=LABELS)
        ratios = HistogramMetricFamily(ratio.name, ratio.help, labels=LABELS)
        for labels, snap in snapshots.items():
            speedups.add_metric(labels, snap.speedup)
            efficiencies.add_metric(labels, snap.speedup / snap.workers if snap.workers else 0.0)
            fractions = snap.fractions
            buckets = [
                (floatToGoString(le), sum(f <= le for f in fractions)) for le in ratio.buckets
            ]
            ratios.add_metric(labels, [*buckets, ("+Inf", len(fractions))], sum(fractions))
        yield from (speedups, efficiencies, ratios)


@dataclass(frozen=True)
class _Snapshot:
    speedup: float
    workers: int
    fractions: list[float]


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, Families] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def families(registry: CollectorRegistry) -> Families:
    """The families of ``registry``, declared on first use (one set per registry)."""
    with _LOCK:
        if registry not in _FAMILIES:
            _FAMILIES[registry] = Families(registry)
        return _FAMILIES[registry]


class JobMetrics:
    """The series of one job, fed from the coordinator's rounds and its Outcome."""

    def __init__(self, plan: JobPlan, registry: CollectorRegistry = REGISTRY) -> None:
        self.labels = (plan.namespace, plan.name, plan.platform)
        fams = families(registry)
        self._rejected = fams.metrics["faasopt_messages_rejected_total"]
        self._m = {
            name: metric.labels(*self.labels)
            for name, metric in fams.metrics.items()
            if not SPECS[name].reason
        }
        self._lock = threading.Lock()
        self._compute_seconds = 0.0
        self._elapsed_seconds = 0.0
        self._workers = 0
        self._rounds = 0
        self._slowest: Tally[str] = Tally()
        self._cold: set[tuple[str, str]] = set()
        self._replacements: set[str] = set()
        self._rotations: set[str] = set()
        self._evictions: set[str] = set()
        self._dollars = 0.0
        self._rejected_seen: Tally[str] = Tally()
        self._m["faasopt_job_running"].set(1)
        fams.jobs[self.labels] = self

    def round(
        self,
        report: RoundReport,
        workers: Iterable[WorkerRecord],
        rejected: Mapping[str, int],
    ) -> None:
        """One finished round; every worker invoked so far and the rejections counted so far."""
        r, m = report.record, self._m
        m["faasopt_job_iterations_total"].inc()
        m["faasopt_job_objective"].set(r.objective)
        if hasattr(r, "primal_residual"):  # ADMM's; other algorithms have none
            m["faasopt_job_primal_residual"].set(r.primal_residual)
            m["faasopt_job_dual_residual"].set(r.dual_residual)
        if "bytesSent" in getattr(r, "details", {}):  # SGD's
            m["faasopt_job_model_bytes_total"].inc(r.details["bytesSent"])
            m["faasopt_job_model_dense_bytes_total"].inc(r.details["denseBytes"])
        m["faasopt_job_workers"].set(len(report.timings))
        self._spent(report.dollars)
        for t in report.timings.values():
            m["faasopt_worker_compute_seconds"].observe(t.compute)
            m["faasopt_worker_idle_seconds"].observe(t.idle)
            m["faasopt_worker_communication_seconds"].observe(t.communication)
        delays = {name: t.compute + t.communication for name, t in report.timings.items()}
        with self._lock:
            self._compute_seconds += sum(t.compute for t in report.timings.values())
            self._elapsed_seconds = report.elapsed_seconds
            self._workers = len(report.timings)
            self._rounds += 1
            self._slowest.update({name: 0 for name in delays})
            self._slowest.update(slowest(delays))
        self._count_workers(workers)
        self._count_rejected(rejected)

    def finish(self, outcome: Outcome, report: Mapping[str, Any]) -> None:
        """The end of the run: final objective, elapsed solve time, late rejections, the bill
        (from the run's report)."""
        if outcome.objective is not None:
            self._m["faasopt_job_objective"].set(outcome.objective)
        with self._lock:
            self._elapsed_seconds = outcome.solve_seconds
        self._count_workers(outcome.workers)
        self._count_rejected(outcome.rejected)
        self._spent(report["costDollars"])
        self._m["faasopt_job_perf_per_dollar"].set(report["perfPerDollar"])
        self.stop()

    def _spent(self, dollars: float) -> None:
        if dollars > self._dollars:
            self._m["faasopt_job_cost_dollars_total"].inc(dollars - self._dollars)
            self._dollars = dollars

    def stop(self) -> None:
        """Mark the job ended (also after a failure): not running, no active workers."""
        self._m["faasopt_job_running"].set(0)
        self._m["faasopt_job_workers"].set(0)

    def snapshot(self) -> _Snapshot:
        with self._lock:
            rounds = self._rounds
            return _Snapshot(
                speedup=self._compute_seconds / self._elapsed_seconds
                if self._elapsed_seconds > 0
                else 0.0,
                workers=self._workers,
                fractions=[n / rounds for n in self._slowest.values()] if rounds else [],
            )

    def _count_workers(self, workers: Iterable[WorkerRecord]) -> None:
        """Cold starts, replacements, rotations and evictions not counted yet (each worker
        once)."""
        for record in workers:
            if record.replaces is not None and record.name not in self._replacements:
                self._replacements.add(record.name)
                self._m["faasopt_worker_replacements_total"].inc()
            if (record.ended or "").startswith(ROTATED) and record.name not in self._rotations:
                self._rotations.add(record.name)
                self._m["faasopt_worker_rotations_total"].inc()
            if (record.ended or "").startswith(EVICTED) and record.name not in self._evictions:
                self._evictions.add(record.name)
                self._m["faasopt_scalein_evictions_total"].inc()
            key = (record.name, record.invocation)
            if record.cold_start_seconds is not None and key not in self._cold:
                self._cold.add(key)
                self._m["faasopt_worker_cold_starts_total"].inc()
                self._m["faasopt_worker_cold_start_seconds"].observe(record.cold_start_seconds)

    def _count_rejected(self, rejected: Mapping[str, int]) -> None:
        for reason, count in rejected.items():
            new = count - self._rejected_seen[reason]
            if new > 0:
                self._rejected.labels(*self.labels, reason).inc(new)
                self._rejected_seen[reason] = count


class MetricsServer:
    """``/metrics`` of a registry, served from a thread until :meth:`close`."""

    def __init__(self, registry: CollectorRegistry, port: int, address: str) -> None:
        try:
            self._server, self._thread = start_http_server(port, address, registry)
        except OSError as exc:  # a port in use: said before anything starts
            where = f"{address}:{port}"
            raise PlatformError(f"cannot serve /metrics on {where}: {exc.strerror}") from None
        self.port: int = self._server.server_port
        """The port served on (the one picked when 0 was asked for)."""

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def serve(
    registry: CollectorRegistry,
    port: int,
    address: str = "127.0.0.1",
    linger_seconds: float = 0.0,
) -> Iterator[int]:
    """Serve ``/metrics`` of ``registry`` on ``address:port`` (0 picks a port; yields the port).

    After a normal exit it goes on serving for ``linger_seconds``, so that a last scrape sees the
    final values; after an exception it stops at once. A port in use is a PlatformError.
    """
    server = MetricsServer(registry, port, address)
    try:
        yield server.port
        time.sleep(linger_seconds)
    finally:
        server.close()
