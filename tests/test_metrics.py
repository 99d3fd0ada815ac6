"""Prometheus metrics of a real local run: one home (faasopt.metrics), values that match the
report, labels without worker ids, and /metrics served during the run and its linger."""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest
from conftest import BASE_MANIFEST, merge
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

import faasopt
from faasopt.cli import app
from faasopt.coordinator import RoundReport, WorkerTiming
from faasopt.errors import PlatformError
from faasopt.metrics import FRACTION_BUCKETS, LABELS, SPECS, JobMetrics
from faasopt.plan import plan_job
from faasopt.platforms.nats_server import free_port
from faasopt.solvers.admm import RoundRecord
from faasopt.spec import TrainingJob

UNCONVERGED = {"maxIterations": 30, "primalTolerance": 1e-12, "dualTolerance": 1e-12}
JOB = {"spec": {"workers": {"count": 3}, "algorithm": {"admm": UNCONVERGED}}}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition (parsed by prometheus_client's own parser)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **extra: str) -> float:
    labels = {"namespace": "default", "job": "test", "platform": "local", **extra}
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def run_with_metrics():
    """One real run (3 workers) exporting to a fresh registry: (result, exposition text)."""
    registry = CollectorRegistry()
    job = TrainingJob.model_validate(merge(BASE_MANIFEST, JOB))
    result = faasopt.run(job, quiet_workers=True, metrics_registry=registry)
    return result, generate_latest(registry).decode()


def test_names_have_one_home_with_prefix_base_units_and_suffixes():
    for name, spec in SPECS.items():
        assert name.startswith("faasopt_")
        assert name.endswith("_total") == (spec.kind == "counter"), name
        if spec.kind == "histogram":
            assert name.endswith(("_seconds", "_ratio")), name


def test_series_match_the_report(run_with_metrics):
    result, text = run_with_metrics
    report, s = result.report, _samples(text)
    timings = [w for e in report["trace"] for w in e["perWorker"].values()]
    assert _value(s, "faasopt_job_iterations_total") == report["iterations"] == 30
    assert _value(s, "faasopt_job_objective") == report["objective"]
    assert _value(s, "faasopt_job_primal_residual") == report["primalResidual"]
    assert _value(s, "faasopt_job_dual_residual") == report["dualResidual"]
    for kind in ("compute", "idle", "communication"):
        name = f"faasopt_worker_{kind}_seconds"
        assert _value(s, f"{name}_count") == len(timings) == 30 * 3
        assert _value(s, f"{name}_sum") == pytest.approx(sum(t[kind] for t in timings), rel=1e-12)
        assert _value(s, f"{name}_bucket", le="+Inf") == len(timings)
    assert _value(s, "faasopt_job_speedup") == pytest.approx(report["speedup"], rel=1e-12)
    assert _value(s, "faasopt_job_efficiency_ratio") == pytest.approx(report["efficiency"])
    cold = [c["seconds"] for c in report["coldStarts"]]
    assert _value(s, "faasopt_worker_cold_starts_total") == len(cold) == 3
    assert _value(s, "faasopt_worker_cold_start_seconds_sum") == pytest.approx(sum(cold))
    assert _value(s, "faasopt_job_cost_dollars_total") == pytest.approx(report["costDollars"])
    assert _value(s, "faasopt_job_perf_per_dollar") == report["perfPerDollar"]
    assert _value(s, "faasopt_scalein_evictions_total") == 0
    assert _value(s, "faasopt_job_running") == 0
    assert _value(s, "faasopt_job_workers") == 0  # ended: no active workers


def test_responsiveness_histogram_matches_the_report_fractions(run_with_metrics):
    result, text = run_with_metrics
    s = _samples(text)
    fractions = list(result.report["responsiveness"].values())
    assert len(fractions) == 3 and sum(fractions) == pytest.approx(1.0)  # one slowest per round
    name = "faasopt_worker_slowest_round_ratio"
    assert _value(s, f"{name}_count") == 3
    assert _value(s, f"{name}_sum") == pytest.approx(sum(fractions))
    for le in FRACTION_BUCKETS:
        expected = sum(f <= le for f in fractions)
        assert _value(s, f"{name}_bucket", le=repr(le)) == expected


def test_no_worker_ids_in_any_label(run_with_metrics):
    _, text = run_with_metrics
    labels = {key for _, items in _samples(text) for key, _ in items}
    assert labels <= {*LABELS, "le", "reason"}
    values = {value for _, items in _samples(text) for _, value in items}
    assert not values & {"w0", "w1", "w2"}


def test_slowest_workers_are_counted_without_naming_them():
    """A made-up history: w2 is always the slowest of 3, so 2 workers sit in the 0-bin."""
    plan = plan_job(TrainingJob.model_validate(_manifest()))
    registry = CollectorRegistry()
    metrics = JobMetrics(plan, registry)
    for k in range(4):
        timings = {
            name: WorkerTiming(compute=0.01 * (i + 1), idle=0.0, communication=0.001)
            for i, name in enumerate(("w0", "w1", "w2"))
        }
        record = RoundRecord(k, 10.0 - k, 1.0 / (k + 1), 0.5 / (k + 1), 1.0, 3)
        metrics.round(RoundReport(record, 0.05 * (k + 1), timings), [], {"stale": k})
    s = _samples(generate_latest(registry).decode())
    name = "faasopt_worker_slowest_round_ratio"
    assert _value(s, f"{name}_bucket", le="0.0") == 2
    assert _value(s, f"{name}_bucket", le="0.75") == 2
    assert _value(s, f"{name}_bucket", le="1.0") == 3
    assert _value(s, "faasopt_messages_rejected_total", reason="stale") == 3
    assert _value(s, "faasopt_job_speedup") == pytest.approx(4 * 0.06 / 0.2)
    assert _value(s, "faasopt_job_running") == 1 and _value(s, "faasopt_job_workers") == 3


def test_jobs_share_a_registry_and_a_rerun_replaces_its_predecessor():
    registry = CollectorRegistry()
    for name in ("a", "b", "a"):
        JobMetrics(plan_job(TrainingJob.model_validate(_manifest(name))), registry)
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert sorted(s.labels["job"] for s in families["faasopt_job_speedup"].samples) == ["a", "b"]
    assert text.count("# TYPE faasopt_job_speedup gauge") == 1


def test_metrics_are_served_during_the_run_and_its_linger(manifest):
    port = free_port()
    scrapes: list[str] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    scrapes.append(r.read().decode())
            except OSError:
                pass
            done.wait(0.05)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        result = faasopt.run(
            manifest(JOB), quiet_workers=True, metrics_port=port, metrics_linger_seconds=0.5
        )
    finally:
        done.set()
        scraper.join()
    assert scrapes, "no scrape reached /metrics"
    last = _samples(scrapes[-1])
    assert _value(last, "faasopt_job_iterations_total") == result.iterations
    assert _value(last, "faasopt_job_objective") == result.objective
    with pytest.raises(OSError):  # the server is gone once run() returned
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)


def _manifest(name: str = "test") -> dict:
    return merge(BASE_MANIFEST, {"metadata": {"name": name}, "spec": {"workers": {"count": 3}}})


def test_a_busy_metrics_port_fails_before_anything_starts(manifest):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PlatformError, match=f"cannot serve /metrics on 127.0.0.1:{port}"):
            faasopt.run(manifest(JOB), metrics_port=port)
        args = ["run", str(manifest(JOB)), "--metrics-port", str(port), "--no-progress"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "cannot serve /metrics" in result.output
