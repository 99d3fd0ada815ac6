"""The operator's handlers, run by kopf for real against a FAKE Kubernetes API (kmock).

Real: kopf, the handlers loaded by path, a nats-server with JetStream, worker processes (the
local platform stands in for Pods), the coordinator and its checkpoints. Fake: the API server
(``tests/kube_fake.py``). Every status the operator writes is checked against the CRD's status
schema and every Event against the upstream Kubernetes schema (strict).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kopf
import kubernetes_validate
import psutil
import pytest
import pytest_asyncio
from conftest import BASE_MANIFEST, merge
from kube_fake import NAMESPACE, PODS, FakeCluster, FakeKubelet, fake_cluster, load_handlers
from kubernetes import client as k8s_client
from prometheus_client.parser import text_string_to_metric_families

from faasopt import operator_logic as logic
from faasopt.crd import GROUP, PLURAL, VERSION, build_crd
from faasopt.errors import PlatformError
from faasopt.metrics import METRICS_PORT_ENV
from faasopt.plan import plan_job
from faasopt.platforms.local import LocalPlatform
from faasopt.platforms.nats_server import NatsServer
from faasopt.runner import run
from faasopt.spec import TrainingJob
from faasopt.worker import WorkerPayload

K8S_VERSION = "1.35"


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected (the API server prunes them; we want to know)."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out:
        out["properties"] = {k: _closed(v) for k, v in out["properties"].items()}
        out["additionalProperties"] = False
    if "items" in out:
        out["items"] = _closed(out["items"])
    return out


STATUS = jsonschema.Draft4Validator(  # OpenAPI 3.0's boolean exclusiveMinimum is draft 4's
    _closed(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"])
)
PLATFORMS: dict[str, Callable[[TrainingJob, str], Any]] = {
    "make": lambda job, uid: LocalPlatform(quiet=True)
}
"""How the operator under test makes a job's platform (real local worker processes)."""
SLOW = {"maxIterations": 100000, "primalTolerance": 1e-300, "dualTolerance": 1e-300}
"""A job that runs until it is stopped."""
pytestmark = pytest.mark.timeout(60)


def workers_alive() -> list[psutil.Process]:
    """Worker processes started by this test process."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "faasopt.worker" in " ".join(p.cmdline())
    ]


@pytest.fixture
def nats(tmp_path: Path):
    with NatsServer(jetstream_dir=tmp_path / "jetstream") as server:
        yield server


@pytest_asyncio.fixture
async def cluster(nats: NatsServer) -> AsyncIterator[FakeCluster]:
    """The fake API with the operator running against it; no worker may outlive the test."""
    async with fake_cluster() as fake:
        api = k8s_client.ApiClient(k8s_client.Configuration(host=fake.url))
        custom = k8s_client.CustomObjectsApi(api)
        services = logic.Services(
            nats=logic.Nats(nats.url),
            platform_for=lambda job, uid: PLATFORMS["make"](job, uid),
            delete_job=lambda namespace, name: custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            ),
        )
        # kopf in a thread of its own, with its own event loop: on exit it waits for every task
        # of its loop it did not start, and the test's tasks must not be among them.
        stop = threading.Event()
        operator = threading.Thread(
            target=asyncio.run,
            args=(
                kopf.operator(
                    registry=load_handlers(fake.url),
                    standalone=True,
                    clusterwide=True,
                    memo=kopf.Memo(services=services),
                    stop_flag=stop,
                ),
            ),
            name="kopf",
        )
        operator.start()
        try:
            yield fake
        finally:
            stop.set()
            await asyncio.to_thread(operator.join, 30)
            for process in workers_alive():
                process.kill()
            api.close()
    for status in fake.written("status"):
        STATUS.validate(status)
        logic.checked(status)
    for event in fake.written("events"):
        stored = {"apiVersion": "v1", "kind": "Event", **event}  # kopf leaves these to the URL
        kubernetes_validate.validate(stored, K8S_VERSION, strict=True)


async def until(
    cluster: FakeCluster, name: str, ok: Callable[[dict[str, Any]], bool], seconds: float = 40
) -> dict[str, Any]:
    """The object once ``ok`` holds for it (None when it is gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = await cluster.get(name)
        if ok(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never got there: {body and body.get('status')}")


async def posted(cluster: FakeCluster, *reasons: str, seconds: float = 10) -> list[dict[str, Any]]:
    """The Events of these reasons, once one of each was posted (kopf posts from a queue)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events = [e for e in cluster.written("events") if e["reason"] in reasons]
        if {e["reason"] for e in events} == set(reasons):
            return events
        await asyncio.sleep(0.1)
    raise AssertionError(f"not all of {reasons} posted: {cluster.written('events')}")


def phase(*phases: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda body: body is not None and body.get("status", {}).get("phase") in phases


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == type_)


def job(patch: dict[str, Any] | None = None, name: str = "job") -> dict[str, Any]:
    return merge(BASE_MANIFEST, {"metadata": {"name": name}, **(patch or {})})


@pytest.mark.asyncio
async def test_invalid_spec_fails_with_the_field_named(cluster: FakeCluster) -> None:
    await cluster.apply(job({"spec": {"problem": {"l1": -1.0}}}))
    body = await until(cluster, "job", phase("Failed"))
    failed = condition(body, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "InvalidSpec")
    assert "spec.problem.l1" in failed["message"]
    assert failed["observedGeneration"] == 1
    for event in await posted(cluster, "InvalidSpec"):
        assert "spec.problem.l1" in event["message"] and event["type"] == "Warning"
    assert not workers_alive()


@pytest.mark.asyncio
async def test_a_job_for_local_processes_is_refused_on_a_cluster(cluster: FakeCluster) -> None:
    await cluster.apply(job({"spec": {"workers": {"platform": "local"}}}))
    body = await until(cluster, "job", phase("Failed"))
    failed = condition(body, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"].startswith("spec.workers.platform: local workers are started by")
    assert not workers_alive()


@pytest.fixture
def metrics_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """The operator serves /metrics on this port (set as the chart sets it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(METRICS_PORT_ENV, str(port))
    return port


def scrape(port: int) -> dict[str, float]:
    """The operator's /metrics, as {series: value} for the job named job in namespace ml."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    labels = {"namespace": NAMESPACE, "job": "job", "platform": "pods"}
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels == labels
    }


@pytest.mark.asyncio
async def test_a_job_runs_to_succeeded_with_the_figures_of_a_local_run(
    metrics_port: int, cluster: FakeCluster, tmp_path: Path
) -> None:
    manifest = job()
    local = await asyncio.to_thread(run, TrainingJob.from_dict(manifest), quiet_workers=True)
    await cluster.apply(manifest)
    body = await until(cluster, "job", phase("Succeeded"))
    status, report = body["status"], local.report
    assert status["iteration"] == report["iterations"]
    for name in ("objective", "primalResidual", "dualResidual", "rho"):
        assert status[name] == report[name], name
    assert status["workers"] == 0 and status["speedup"] > 0
    assert status["startTime"] <= status["completionTime"]
    succeeded = condition(body, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("True", "Converged")
    assert condition(body, "Created")["reason"] == "Accepted"
    await posted(cluster, "Started", "Converged")
    assert not workers_alive()
    series = await asyncio.to_thread(scrape, metrics_port)
    assert series["faasopt_job_iterations_total"] == report["iterations"]
    assert series["faasopt_job_objective"] == report["objective"]
    assert series["faasopt_job_running"] == 0
    assert series["faasopt_worker_cold_starts_total"] == len(report["coldStarts"])
    assert series["faasopt_worker_compute_seconds_count"] == sum(
        len(entry["perWorker"]) for entry in report["trace"]
    )


async def pod_names(cluster: FakeCluster) -> list[str]:
    async with cluster.server.client.get(PODS) as response:
        return [p["metadata"]["name"] for p in (await response.json())["items"]]


@pytest.mark.asyncio
async def test_on_pods_a_job_runs_through_the_api_and_leaves_no_pod(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production Pods platform, through the fake API, with a FAKE kubelet running them."""
    api = k8s_client.ApiClient(k8s_client.Configuration(host=cluster.url))
    core = k8s_client.CoreV1Api(api)
    env = {"FAASOPT_WORKER_IMAGE": "faasopt/worker:test"}
    monkeypatch.setitem(
        PLATFORMS, "make", lambda job, uid: logic.pods_platform(job, uid, core, env)
    )
    kubelet = FakeKubelet(cluster)
    following = asyncio.create_task(kubelet.run())
    try:
        manifest = job()
        local = await asyncio.to_thread(run, TrainingJob.from_dict(manifest), quiet_workers=True)
        await cluster.apply(manifest)
        body = await until(cluster, "job", phase("Succeeded"))
        assert body["status"]["objective"] == local.report["objective"]
        assert len(kubelet.started) == 2  # one Pod per worker
        for pod in kubelet.started:
            assert kubernetes_validate.validate(pod, K8S_VERSION, strict=True) == K8S_VERSION
            (owner,) = pod["metadata"]["ownerReferences"]
            assert (owner["name"], owner["uid"]) == ("job", body["metadata"]["uid"])
        assert await pod_names(cluster) == []

        await cluster.apply(job({"spec": {"algorithm": {"admm": SLOW}}}, name="slow"))
        await until(cluster, "slow", iteration(2))
        assert len(await pod_names(cluster)) == 2
        await cluster.delete("slow")
        await until(cluster, "slow", lambda b: b is None)
        assert await pod_names(cluster) == []
        deadline = time.monotonic() + 5
        while kubelet.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert kubelet.alive() == []
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        api.close()


@pytest.mark.asyncio
async def test_on_pods_k_means_runs_through_the_api_like_admm(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another algorithm through the operator, the production Pods platform and the FAKE
    kubelet: the status (checked against the CRD's schema) and the objective are the local run's."""
    api = k8s_client.ApiClient(k8s_client.Configuration(host=cluster.url))
    core = k8s_client.CoreV1Api(api)
    env = {"FAASOPT_WORKER_IMAGE": "faasopt/worker:test"}
    monkeypatch.setitem(
        PLATFORMS, "make", lambda job, uid: logic.pods_platform(job, uid, core, env)
    )
    kubelet = FakeKubelet(cluster)
    following = asyncio.create_task(kubelet.run())
    blobs = {"samples": 3000, "features": 4, "centers": 5, "seed": 2}
    kmeans = {
        "spec": {
            "problem": {"loss": "kmeans", "l1": None, "kmeans": {"k": 5},
                        "data": {"synthetic": None, "blobs": blobs}},
            "algorithm": {"kmeans": {"seed": 1}},
        }
    }  # fmt: skip
    try:
        manifest = job(kmeans, name="clusters")
        local = await asyncio.to_thread(run, TrainingJob.from_dict(manifest), quiet_workers=True)
        await cluster.apply(manifest)
        body = await until(cluster, "clusters", phase("Succeeded"))
        assert body["status"]["objective"] == local.report["objective"]
        assert body["status"]["iteration"] == local.report["iterations"]
        assert "primalResidual" not in body["status"]
        assert len(kubelet.started) == 2 and await pod_names(cluster) == []
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        api.close()


@pytest.mark.asyncio
async def test_deleting_a_running_job_leaves_no_worker(cluster: FakeCluster) -> None:
    slow = {"spec": {"algorithm": {"admm": SLOW}}}
    await cluster.apply(job(slow))
    await until(cluster, "job", lambda b: b.get("status", {}).get("iteration", 0) >= 2)
    assert workers_alive()
    await cluster.delete("job")
    await until(cluster, "job", lambda body: body is None)
    assert not workers_alive()


@pytest.mark.asyncio
async def test_a_job_past_its_deadline_fails_with_deadline_exceeded(cluster: FakeCluster) -> None:
    slow = {
        "spec": {
            "algorithm": {"admm": SLOW},
            "runPolicy": {"activeDeadlineSeconds": 3, "backoffLimit": 0},
        }
    }
    await cluster.apply(job(slow))
    body = await until(cluster, "job", phase("Failed"))
    failed = condition(body, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "DeadlineExceeded")
    assert "activeDeadlineSeconds" in failed["message"]
    assert not workers_alive()


def iteration(at_least: int) -> Callable[[dict[str, Any] | None], bool]:
    return lambda body: body is not None and body.get("status", {}).get("iteration", 0) >= at_least


@pytest.mark.asyncio
async def test_suspend_retires_workers_and_resume_goes_on_from_the_checkpoint(
    cluster: FakeCluster,
) -> None:
    await cluster.apply(job({"spec": {"algorithm": {"admm": SLOW}}}))
    await until(cluster, "job", iteration(3))
    await cluster.patch_spec("job", {"runPolicy": {"suspend": True}})
    body = await until(cluster, "job", phase("Suspended"))
    suspended_at = body["status"]["iteration"]
    assert condition(body, "Suspended")["status"] == "True"
    assert body["status"]["workers"] == 0
    assert not workers_alive()
    await cluster.patch_spec("job", {"runPolicy": {"suspend": False}})
    body = await until(
        cluster, "job", lambda b: phase("Running")(b) and iteration(suspended_at + 2)(b)
    )
    running = condition(body, "Running")
    assert running["reason"] == "Resumed", running
    resumed_from = int(running["message"].rsplit(" ", 1)[1])
    assert 1 <= resumed_from <= suspended_at
    await posted(cluster, "Suspended", "Resumed")
    await cluster.delete("job")
    await until(cluster, "job", lambda b: b is None)


class _CrashingPlatform(LocalPlatform):
    """Real worker processes; its first ``crashes`` deployments fail (a coordinator crash)."""

    crashes = 0

    def deploy(self) -> None:
        if _CrashingPlatform.crashes > 0:
            _CrashingPlatform.crashes -= 1
            raise PlatformError("injected: the platform is down")


@pytest.mark.asyncio
async def test_a_crashed_coordinator_restarts_within_backoff_limit(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_CrashingPlatform, "crashes", 1)
    monkeypatch.setitem(PLATFORMS, "make", lambda *_: _CrashingPlatform(quiet=True))
    await cluster.apply(job({"spec": {"runPolicy": {"backoffLimit": 1}}}))
    body = await until(cluster, "job", phase("Succeeded", "Failed"))
    assert body["status"]["phase"] == "Succeeded"
    restarting = condition(body, "Restarting")
    assert "restart 1 of backoffLimit 1" in restarting["message"]
    assert body["status"]["restarts"] == 1
    assert "injected" in restarting["message"]


@pytest.mark.asyncio
async def test_a_crashed_coordinator_past_backoff_limit_fails(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_CrashingPlatform, "crashes", 5)
    monkeypatch.setitem(PLATFORMS, "make", lambda *_: _CrashingPlatform(quiet=True))
    await cluster.apply(job({"spec": {"runPolicy": {"backoffLimit": 0}}}))
    body = await until(cluster, "job", phase("Failed"))
    failed = condition(body, "Failed")
    assert (failed["reason"], "injected" in failed["message"]) == ("CoordinatorFailed", True)


@pytest.mark.asyncio
async def test_spec_edits_after_start_are_refused_with_a_condition(cluster: FakeCluster) -> None:
    await cluster.apply(job({"spec": {"algorithm": {"admm": SLOW}}}))
    await until(cluster, "job", iteration(1))
    await cluster.patch_spec("job", {"problem": {"l1": 2.0}})
    body = await until(
        cluster,
        "job",
        lambda b: any(c["type"] == "SpecChangeRefused" for c in b["status"]["conditions"]),
    )
    refused = condition(body, "SpecChangeRefused")
    assert refused["reason"] == "ImmutableField" and "spec.problem" in refused["message"]
    assert refused["observedGeneration"] == 2
    assert body["status"]["phase"] == "Running"
    # What the job runs, also after an operator restart: the accepted spec, today's runPolicy.
    assert logic.parse(logic.effective(body)).spec.problem.l1 == 1.0
    await cluster.delete("job")
    await until(cluster, "job", lambda b: b is None)


@pytest.mark.asyncio
async def test_scale_in_is_announced_and_the_cost_is_in_status(cluster: FakeCluster) -> None:
    shrink = {
        "workers": {"count": 4},
        "scaleIn": {
            "policy": "idle",
            "idleShare": 0.01,
            "windowRounds": 2,
            "intervalSeconds": 0.05,
            "deltaSeconds": 0.05,
            "minWorkers": 2,
        },
        "algorithm": {"admm": {"maxIterations": 30, "primalTolerance": 1e-9}},
    }
    await cluster.apply(job({"spec": shrink}))
    body = await until(cluster, "job", phase("Succeeded", "Failed"))
    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["costDollars"] > 0
    scaled = await posted(cluster, "ScaledIn")
    assert all(e["type"] == "Normal" and "evicted" in e["message"] for e in scaled)
    assert not workers_alive()


@pytest.mark.asyncio
async def test_a_spent_budget_fails_the_job_without_a_restart(cluster: FakeCluster) -> None:
    await cluster.apply(job({"spec": {"budget": {"dollars": 1e-9}}}))
    body = await until(cluster, "job", phase("Failed"))
    failed = condition(body, "Failed")
    assert failed["reason"] == "BudgetExceeded" and "spent" in failed["message"]
    assert "restarts" not in body["status"]
    assert body["status"]["iteration"] >= 1 and body["status"]["costDollars"] > 1e-9
    await posted(cluster, "BudgetExceeded")


@pytest.mark.asyncio
async def test_a_finished_job_is_deleted_after_its_ttl(cluster: FakeCluster) -> None:
    await cluster.apply(job({"spec": {"runPolicy": {"ttlSecondsAfterFinished": 0}}}))
    await until(cluster, "job", lambda body: body is None)
    await posted(cluster, "Converged")
    assert not workers_alive()


# --- the library's decisions, on made-up objects (no kopf) -----------------------------------


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = logic.set_condition(None, "Running", "True", "Started", "a", 1)
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    same = logic.set_condition(first, "Running", "True", "Resumed", "b", 2)
    flipped = logic.set_condition(same, "Running", "False", "Converged", "c", 2)
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("Resumed", 2)
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z" and len(flipped) == 1


def test_a_job_runs_the_spec_it_was_accepted_with_and_todays_run_policy() -> None:
    accepted = job()
    body = merge(accepted, {"metadata": {"annotations": logic.started_spec_annotation(accepted)}})
    edited = merge(body, {"spec": {"problem": {"l1": 5.0}, "runPolicy": {"suspend": True}}})
    spec = logic.effective(edited)["spec"]
    assert spec["problem"] == accepted["spec"]["problem"]
    assert spec["runPolicy"] == {"suspend": True}
    assert logic.effective(accepted) == accepted  # created before the annotation was written


def test_only_run_policy_may_change_after_start() -> None:
    old = job()["spec"]
    assert logic.refused_changes(old, merge(old, {"runPolicy": {"suspend": True}})) == []
    edited = merge(old, {"problem": {"l1": 2.0}, "workers": {"count": 1}})
    assert logic.refused_changes(old, edited) == ["spec.problem", "spec.workers"]


def test_ttl_counts_from_completion_and_only_for_finished_jobs() -> None:
    tj = TrainingJob.from_dict(job({"spec": {"runPolicy": {"ttlSecondsAfterFinished": 60}}}))
    done = {"phase": "Succeeded", "completionTime": "2026-01-01T00:00:00Z"}
    at = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert logic.ttl_expired(tj, done, at)
    assert not logic.ttl_expired(tj, done, at - timedelta(seconds=1))
    assert not logic.ttl_expired(tj, {**done, "phase": "Running"}, at)
    assert not logic.ttl_expired(TrainingJob.from_dict(job()), done, at)


def test_the_deadline_counts_from_the_first_start() -> None:
    tj = TrainingJob.from_dict(job({"spec": {"runPolicy": {"activeDeadlineSeconds": 30}}}))
    started = datetime(2026, 1, 1, tzinfo=UTC)
    assert logic.deadline_at(tj, {"startTime": "2026-01-01T00:00:00Z"}) == started.timestamp() + 30
    assert logic.deadline_at(TrainingJob.from_dict(job()), {}) is None


def test_on_a_cluster_the_workers_of_a_job_are_pods_it_owns() -> None:
    """The operator's platform on a cluster; its Pods checked against the upstream schema."""
    from test_pods import FakeCoreV1Api

    api, uid = FakeCoreV1Api(), "0d6f3f4e-8a43-4d38-9a7c-1f1d8c5c2f10"
    tj = TrainingJob.from_dict(job({"spec": {"workers": {"memoryMB": 256}}}))
    platform = logic.pods_platform(tj, uid, api, {"FAASOPT_WORKER_IMAGE": "faasopt/worker:t"})
    plan = plan_job(tj)
    for worker, blocks in plan.assignment.items():
        platform.invoke(
            WorkerPayload(
                NAMESPACE, "job", worker, blocks, plan.n_blocks, "nats://n:4222", plan.source
            )
        )
    pods = list(api.pods.values())
    assert len(pods) == 2
    for pod in pods:
        (owner,) = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("TrainingJob", "job", uid)
        assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi"
    platform.teardown()
    assert not api.pods


CHART_ENV = {
    "FAASOPT_NATS_URL": "nats://faasopt-nats.faasopt.svc:4222",
    "FAASOPT_WORKER_IMAGE": "faasopt/worker:t",
    "FAASOPT_OPENFAAS_GATEWAY": "http://gateway.openfaas:8080",
    "FAASOPT_OPENFAAS_WORKER_IMAGE": "faasopt/worker-openfaas:t",
    "FAASOPT_OPENFAAS_CALLBACK_HOST": "10.0.0.7",
    "FAASOPT_LAMBDA_IMAGE_URI": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/faasopt:t",
    "AWS_REGION": "eu-west-1",
}
"""What the chart gives the operator with every platform on (tests/test_chart.py checks the
names against each module's SETTINGS_ENV)."""


@pytest.fixture
def in_cluster(monkeypatch: pytest.MonkeyPatch) -> logic.Services:
    """The operator's real services, with no cluster to configure from (no call is made)."""
    from kubernetes import config

    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    return logic.Services.in_cluster(CHART_ENV)


@pytest.mark.parametrize(
    ("platform", "module", "name"),
    [
        ("auto", "pods", "PodsPlatform"),
        ("pods", "pods", "PodsPlatform"),
        ("knative", "knative", "KnativePlatform"),
        ("openfaas", "openfaas", "OpenFaasPlatform"),
        ("lambda", "aws_lambda", "LambdaPlatform"),
    ],
)
def test_the_operator_starts_the_platform_the_spec_names(
    in_cluster: logic.Services, platform: str, module: str, name: str
) -> None:
    tj = TrainingJob.from_dict(
        job(
            {"spec": {"workers": {"platform": platform, "memoryMB": 1024, "timeLimitSeconds": 300}}}
        )
    )
    built = in_cluster.platform_for(tj, "uid-1")
    assert type(built).__name__ == name and type(built).__module__ == f"faasopt.platforms.{module}"
    assert built.name == (platform if platform != "auto" else "pods")
    assert built.settings.memory_mb == 1024 and built.settings.time_limit_seconds == 300


def test_the_cluster_apis_go_to_the_platforms_that_use_them(in_cluster: logic.Services) -> None:
    from kubernetes import client

    pods = in_cluster.platform_for(TrainingJob.from_dict(job()), "uid-1")
    knative = in_cluster.platform_for(
        TrainingJob.from_dict(job({"spec": {"workers": {"platform": "knative"}}})), "uid-1"
    )
    assert isinstance(pods.api, client.CoreV1Api)
    assert isinstance(knative.api, client.CustomObjectsApi)
    assert knative.owner == pods.owner and pods.owner.uid == "uid-1"


@pytest.mark.parametrize(
    ("platform", "missing"),
    [
        ("pods", "FAASOPT_WORKER_IMAGE"),
        ("knative", "FAASOPT_WORKER_IMAGE"),
        ("openfaas", "FAASOPT_OPENFAAS_GATEWAY"),
        ("openfaas", "FAASOPT_OPENFAAS_CALLBACK_HOST"),
        ("lambda", "FAASOPT_LAMBDA_IMAGE_URI"),
    ],
)
def test_a_platform_the_chart_did_not_configure_is_a_platform_error(
    platform: str, missing: str
) -> None:
    tj = TrainingJob.from_dict(job({"spec": {"workers": {"platform": platform}}}))
    env = {k: v for k, v in CHART_ENV.items() if k != missing}
    apis = logic.KubeApis(core=object(), custom=object())
    with pytest.raises(PlatformError, match=missing if platform != "lambda" else "image URI"):
        logic.job_platform(tj, "uid-1", env, apis)
