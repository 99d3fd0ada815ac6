"""Debian's real Prometheus scrapes a real ``faasopt.run`` and evaluates the rules file; the
series it stores match report.json. ``promtool`` checks and unit-tests the rules."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import BASE_MANIFEST, merge

import faasopt
from faasopt.platforms.nats_server import free_port
from faasopt.protocol import Subjects
from faasopt.runner import Result
from faasopt.spec import TrainingJob

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "charts" / "faasopt" / "files" / "faasopt-rules.yaml"
RULES_TESTS = RULES.with_name("faasopt-rules.test.yaml")

# The paper's uniform load (its ADMM, FISTA with Kw = 60) makes 100 rounds last about 3 s: a
# few scrapes. Tolerances no run meets keep it going for all 100.
SCRAPED_JOB = {
    "metadata": {"name": "scraped", "namespace": "ml"},
    "spec": {
        "problem": {"data": {"synthetic": {"samples": 20000, "features": 1000, "density": 0.01}}},
        "algorithm": {
            "admm": {
                "penalty": "paper",
                "relaxation": 1.0,
                "maxIterations": 100,
                "primalTolerance": 1e-300,
                "dualTolerance": 1e-300,
                "localSolver": {"method": "fista", "minIterations": 60},
            }
        },
        "workers": {"count": 2},
    },
}


def needs(binary: str) -> str:
    """The path of a Debian binary the test runs, or a skip that says how to get it."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not found: ./dev test installs Debian's prometheus package")
    return path


@dataclass
class ScrapedRun:
    """A real Prometheus that scraped one real run, and that run."""

    url: str
    result: Result
    at: float
    """Evaluation time of queries: the last scrape, which saw the run's final values."""

    def query(self, expr: str) -> list[dict]:
        """An instant query at ``at`` through the HTTP API; fails on a PromQL error."""
        params = urllib.parse.urlencode({"query": expr, "time": f"{self.at:.3f}"})
        body = _get(f"{self.url}/api/v1/query?{params}")
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        (sample,) = self.query(expr)
        return float(sample["value"][1])


def _get(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # the API explains a bad query in its JSON body
        return json.load(exc)


def _wait(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _publish_foreign_message(plan) -> None:
    """Publish one garbage frame on the job's subject, over the run's own nats-server (found
    among this process's children), with the plain NATS text protocol."""
    (server,) = [p for p in psutil.Process().children() if p.name() == "nats-server"]
    (port,) = {c.laddr.port for c in server.net_connections("tcp") if c.status == "LISTEN"}
    subject = Subjects(plan.namespace, plan.name).up
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        replies = sock.makefile("rb")
        replies.readline()  # INFO
        sock.sendall(f"CONNECT {{}}\r\nPUB {subject} 7\r\nforeign\r\nPING\r\n".encode())
        while replies.readline().strip() != b"PONG":
            pass


_SHARED: list[ScrapedRun] = []
"""The session's one ScrapedRun: test_dashboard.py imports the fixture, and pytest then holds a
second session fixture of the same name, which must not start a second Prometheus."""


@pytest.fixture(scope="session")
def scraped_run(tmp_path_factory) -> Iterator[ScrapedRun]:
    """Debian's prometheus on loopback (scrape and rule interval 1 s, faasopt's rules loaded)
    scraping a real run of SCRAPED_JOB, with one foreign message rejected; stopped at the end
    of the session, also when a test fails."""
    if _SHARED:
        yield _SHARED[0]
        return
    with _prometheus_scraping_a_run(tmp_path_factory.mktemp("prometheus")) as run:
        _SHARED.append(run)
        yield run


@contextlib.contextmanager
def _prometheus_scraping_a_run(home: Path) -> Iterator[ScrapedRun]:
    binary = needs("prometheus")
    metrics_port, web_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "faasopt",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (home / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{web_port}"
    try:
        # Debian's prometheus scrapes a target first a few seconds after start: wait for it.
        _wait(
            "a first scrape attempt",
            lambda: any(
                not t["lastScrape"].startswith("0001")
                for t in _get(f"{url}/api/v1/targets")["data"]["activeTargets"]
            ),
        )
        plans = []

        def inject(report) -> None:
            if report.record.iteration == 0:
                _publish_foreign_message(plans[0])

        result = faasopt.run(
            TrainingJob.model_validate(merge(BASE_MANIFEST, SCRAPED_JOB)),
            quiet_workers=True,
            on_start=plans.append,
            on_round=inject,
            metrics_port=metrics_port,
            metrics_linger_seconds=3.0,
        )
        # Once the server is gone, the series are marked stale: query at the last scrape.
        run = ScrapedRun(url, result, time.time())
        (series,) = run.query('faasopt_job_running{job="scraped"}[5m]')
        run.at = float(series["values"][-1][0])
        assert float(series["values"][-1][1]) == 0, "no scrape after the run ended"
        yield run
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


SELECTOR = '{namespace="ml", job="scraped", platform="local"}'


def test_scraped_series_match_the_report(scraped_run):
    report = scraped_run.result.report
    assert report["iterations"] == 100
    assert scraped_run.value(f"faasopt_job_iterations_total{SELECTOR}") == 100
    assert scraped_run.value(f"faasopt_job_objective{SELECTOR}") == pytest.approx(
        report["objective"], rel=1e-12
    )
    assert (
        scraped_run.value(f"max_over_time(faasopt_job_workers{SELECTOR}[5m])")
        == report["workers"]
        == 2
    )
    compute = sum(w["compute"] for e in report["trace"] for w in e["perWorker"].values())
    assert scraped_run.value(f"faasopt_worker_compute_seconds_sum{SELECTOR}") == pytest.approx(
        compute, rel=1e-9
    )
    assert scraped_run.value(f"faasopt_worker_compute_seconds_count{SELECTOR}") == 200
    assert scraped_run.value(f"faasopt_worker_cold_starts_total{SELECTOR}") == 2


def test_scrapes_saw_the_run_in_progress(scraped_run):
    """At least one scrape landed mid-run: the counter has an intermediate value."""
    values = scraped_run.query(f"faasopt_job_iterations_total{SELECTOR}[5m]")[0]["values"]
    assert any(0 < float(v) < 100 for _, v in values), values


def test_the_foreign_message_is_rejected_and_counted(scraped_run):
    rejected = scraped_run.result.report["messagesRejected"]
    assert sum(rejected.values()) == 1
    series = scraped_run.query(f"faasopt_messages_rejected_total{SELECTOR}")
    assert {s["metric"]["reason"]: float(s["value"][1]) for s in series} == rejected


def test_rules_load_and_evaluate_for_the_job(scraped_run):
    groups = _get(f"{scraped_run.url}/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    on_disk = yaml.safe_load(RULES.read_text())["groups"]
    assert set(rules) == {r.get("record") or r["alert"] for g in on_disk for r in g["rules"]}
    assert all(r["health"] == "ok" for r in rules.values()), rules
    for name, rule in rules.items():
        result = scraped_run.query(f"{rule['query']}")
        mine = [s for s in result if s["metric"].get("job") == "scraped"]
        if rule["type"] == "recording":
            assert mine, f"recording rule {name} has no data for the job"
            assert all(math.isfinite(float(s["value"][1])) for s in mine)
        else:  # a finished, healthy job fires nothing
            assert not mine, f"alert {name} fires for a healthy job: {mine}"
    share = scraped_run.value(f"faasopt_job:worker_idle_share:ratio_rate5m{SELECTOR}")
    assert 0 < share < 1


def test_promtool_checks_the_rules():
    out = subprocess.run(
        [needs("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 10 rules found" in out.stdout


def test_promtool_unit_tests_fire_and_stay_quiet():
    out = subprocess.run(
        [needs("promtool"), "test", "rules", RULES_TESTS.name],
        capture_output=True,
        text=True,
        cwd=RULES_TESTS.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    alerts = {t["alertname"] for test in tests for t in test.get("alert_rule_test", [])}
    fired = [t for test in tests for t in test.get("alert_rule_test", []) if t.get("exp_alerts")]
    on_disk = yaml.safe_load(RULES.read_text())["groups"]
    assert alerts == {r["alert"] for g in on_disk for r in g["rules"] if "alert" in r}
    assert len(fired) == len(alerts)  # every alert has a case that fires
