"""The Knative platform: the Service it builds, and whole jobs through a FAKE Knative route to
the REAL functions app, with a real nats-server (see tests/functions_fake.py for what is fake).

Validated offline: the Service's pod template against the upstream Pod schema
(kubernetes-validate, strict). Not validated here: the Knative Service CRD schema itself, which
no offline package ships; its fields are asserted one by one below.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading

import pytest
from aiohttp import web
from functions_fake import (
    COORDINATOR,
    PLAN,
    WORKER,
    FakeKnativeCluster,
    LoopThread,
    _serve,
    local_reference,
    objectives,
    run_job,
    secured_nats,
    validate_pod_template,
)
from kubernetes.client import CustomObjectsApi

from faasopt.errors import PlatformError
from faasopt.invocation import TIME_LIMIT_ENV
from faasopt.payload import NATS_TOKEN_ENV, PAYLOAD_ENV, WORKER_ENV
from faasopt.platforms.knative import (
    COMMAND,
    NAME_LIMIT,
    PORT,
    SETTINGS_ENV,
    VISIBILITY_LABEL,
    HeldRequest,
    KnativePlatform,
    KnativeSettings,
    build_knative_service_manifest,
    service_name,
)
from faasopt.platforms.pods import GONE, JOB_LABEL, NATS_TOKEN_KEY, RUN_AS_USER, Owner

OWNER = Owner(namespace="ml", name="quickstart", uid="0d6f3f4e-8a43-4d38-9a7c-1f1d8c5c2f10")
SETTINGS = KnativeSettings(
    image="faasopt/worker:test", nats_secret="faasopt-nats", memory_mb=1024, time_limit_seconds=900
)


def _container(service):
    (container,) = service["spec"]["template"]["spec"]["containers"]
    return container


def test_service_is_cluster_local_one_request_per_instance_and_scales_to_zero():
    service = build_knative_service_manifest(OWNER, SETTINGS)
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    meta = service["metadata"]
    assert meta["name"] == "faasopt-quickstart" and meta["namespace"] == "ml"
    assert meta["labels"][VISIBILITY_LABEL] == "cluster-local"
    assert meta["labels"][JOB_LABEL] == "quickstart"
    assert meta["ownerReferences"] == [OWNER.reference()]
    template = service["spec"]["template"]
    assert template["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "0"}
    assert VISIBILITY_LABEL not in template["metadata"]["labels"]
    spec = template["spec"]
    assert spec["containerConcurrency"] == 1
    assert spec["timeoutSeconds"] == spec["responseStartTimeoutSeconds"] == 600
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False


def test_container_runs_the_http_app_with_memory_from_memory_mb_and_the_token_from_the_secret():
    container = _container(build_knative_service_manifest(OWNER, SETTINGS))
    assert container["image"] == "faasopt/worker:test"
    assert container["command"] == COMMAND == ["python", "-m", "faasopt.function_app"]
    assert container["ports"] == [{"name": "http1", "containerPort": PORT}]
    assert container["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": PORT}}
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1024Mi"},
        "limits": {"memory": "1024Mi"},
    }
    env = {e["name"]: e for e in container["env"]}
    assert {n: env[n]["value"] for n in WORKER_ENV} == WORKER_ENV
    assert env[TIME_LIMIT_ENV]["value"] == "600"
    assert env[NATS_TOKEN_ENV] == {
        "name": NATS_TOKEN_ENV,
        "valueFrom": {"secretKeyRef": {"name": "faasopt-nats", "key": NATS_TOKEN_KEY}},
    }
    assert PAYLOAD_ENV not in env  # payloads come with each request
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == RUN_AS_USER
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_without_a_nats_secret_no_token_variable():
    service = build_knative_service_manifest(OWNER, dataclasses.replace(SETTINGS, nats_secret=None))
    assert NATS_TOKEN_ENV not in {e["name"] for e in _container(service)["env"]}


@pytest.mark.parametrize(
    ("limit", "cluster_max", "timeout"),
    [(900, 600, 600), (120.2, 600, 121), (None, 600, 600), (900, 3600, 900), (None, 1200, 1200)],
)
def test_timeout_follows_the_time_limit_capped_at_the_clusters_maximum(limit, cluster_max, timeout):
    settings = dataclasses.replace(
        SETTINGS, time_limit_seconds=limit, max_timeout_seconds=cluster_max
    )
    spec = build_knative_service_manifest(OWNER, settings)["spec"]["template"]["spec"]
    assert spec["timeoutSeconds"] == spec["responseStartTimeoutSeconds"] == timeout
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env[TIME_LIMIT_ENV] == str(timeout)


@pytest.mark.parametrize("settings", [SETTINGS, KnativeSettings(image="w:1")])
def test_pod_template_is_valid_against_the_upstream_pod_schema(settings):
    validate_pod_template(build_knative_service_manifest(OWNER, settings))


def test_long_job_names_are_shortened_stably_and_apart():
    long_a, long_b = "a" * 63, "a" * 62 + "b"
    assert service_name("quickstart") == "faasopt-quickstart"
    for name in (long_a, long_b):
        assert len(service_name(name)) <= NAME_LIMIT and service_name(name)[0].isalpha()
    assert service_name(long_a) == service_name(long_a) != service_name(long_b)


def test_settings_defaults_and_environment():
    defaults = KnativeSettings(image="w:1")
    assert (defaults.max_timeout_seconds, defaults.memory_mb, defaults.cpu) == (600, 512, "1")
    assert defaults.nats_secret is None and defaults.image_pull_policy == "IfNotPresent"
    env = {SETTINGS_ENV["image"]: "w:2", SETTINGS_ENV["max_timeout_seconds"]: "1800"}
    settings = KnativeSettings.from_env(env, memory_mb=256, time_limit_seconds=900)
    assert (settings.image, settings.max_timeout_seconds, settings.timeout_seconds) == (
        "w:2",
        1800,
        900,
    )
    with pytest.raises(PlatformError, match="FAASOPT_WORKER_IMAGE"):
        KnativeSettings.from_env({}, memory_mb=256, time_limit_seconds=900)


def test_the_fake_has_the_real_custom_objects_api_signatures():
    for name, method in inspect.getmembers(FakeKnativeCluster, inspect.isfunction):
        if name.startswith("_") or name == "end":
            continue
        real = inspect.signature(getattr(CustomObjectsApi, name)).parameters
        assert list(inspect.signature(method).parameters) == [p for p in real if p != "kwargs"]


# --- held requests ------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "status"), [(200, 0), (204, 0), (500, 500), (503, 503)])
def test_a_held_request_reports_how_it_ended(answer, status):
    async def handle(request):
        await request.read()
        return web.Response(status=answer)

    app = web.Application()
    app.router.add_post("/", handle)
    with LoopThread() as loop:
        runner, url = loop.run(_serve(app))
        try:
            request = HeldRequest(url, b"{}", timeout=10)
            request.start()
            request.join(10)
        finally:
            loop.run(runner.cleanup())
    assert request.status == status


def test_a_dropped_or_refused_connection_is_gone():
    opened = threading.Event()

    async def hang_up(request):
        opened.set()
        request.transport.abort()
        return web.Response()

    app = web.Application()
    app.router.add_post("/", hang_up)
    with LoopThread() as loop:
        runner, url = loop.run(_serve(app))
        try:
            dropped = HeldRequest(url, b"{}", timeout=10)
            dropped.start()
            dropped.join(10)
        finally:
            loop.run(runner.cleanup())
    refused = HeldRequest(url, b"{}", timeout=10)  # the server is gone now
    refused.start()
    refused.join(10)
    assert opened.is_set() and dropped.status == GONE and refused.status == GONE


# --- whole jobs -----------------------------------------------------------------------------

JOB_OWNER = Owner(
    namespace=PLAN.namespace, name=PLAN.name, uid="7c1e5d1c-0000-4000-8000-000000000001"
)


@pytest.fixture(scope="module")
def secured():
    with secured_nats() as server:
        yield server


@pytest.fixture(scope="module")
def local_run(secured):
    return local_reference(secured.url)


@pytest.fixture
def cluster():
    with LoopThread() as loop:
        api = FakeKnativeCluster(loop, secrets={("faasopt-nats", NATS_TOKEN_KEY): WORKER[1]})
        try:
            yield api
        finally:
            api.end()


def _platform(api) -> KnativePlatform:
    settings = KnativeSettings(
        image="faasopt/worker:test",
        nats_secret="faasopt-nats",
        time_limit_seconds=PLAN.time_limit_seconds,
        ready_timeout_seconds=5,
    )
    return KnativePlatform(api, JOB_OWNER, settings)


def test_a_job_runs_through_knative_and_converges_to_the_local_objective(
    secured, local_run, cluster
):
    platform = _platform(cluster)
    outcome = run_job(PLAN, platform, secured.url, coordinator=COORDINATOR, worker=WORKER)
    assert outcome.error is None and outcome.status.value == "converged"
    assert objectives(outcome) == objectives(local_run)
    assert outcome.objective == local_run.objective
    assert outcome.replacements == 0
    name = service_name(PLAN.name)
    assert cluster.calls[0] == ("create", "ml", name) and cluster.calls[-1] == (
        "delete",
        "ml",
        name,
    )
    assert cluster.services == {}  # torn down
    route = cluster.routes[("ml", name)]
    assert len(route.bodies) == PLAN.workers
    assert all(WORKER[1].encode() not in body for body in route.bodies)  # the token stays put
    assert set(route.answers) <= {200}
    assert platform.url == route.url
    assert (platform.name, platform.memory_mb) == ("knative", 512)  # what the cost model prices


def test_dropped_requests_are_noticed_and_their_workers_replaced_without_changing_the_iterates(
    secured, local_run, cluster
):
    name = service_name(PLAN.name)

    def sever_at_round_2(report):
        if report.record.iteration == 2:
            route = cluster.routes[("ml", name)]
            cluster.loop.loop.call_soon_threadsafe(route.sever)

    outcome = run_job(
        PLAN,
        _platform(cluster),
        secured.url,
        coordinator=COORDINATOR,
        worker=WORKER,
        on_round=sever_at_round_2,
    )
    assert outcome.error is None and outcome.status.value == "converged"
    assert objectives(outcome) == objectives(local_run)
    assert outcome.replacements == PLAN.workers
    ended = [w.ended for w in outcome.workers if w.ended]
    assert ended == [f"exited with status {GONE}"] * PLAN.workers


def test_deploy_replaces_a_service_that_exists(cluster):
    platform = _platform(cluster)
    cluster.create_namespaced_custom_object(
        "serving.knative.dev",
        "v1",
        "ml",
        "services",
        build_knative_service_manifest(JOB_OWNER, KnativeSettings(image="old:0")),
    )
    platform.deploy()
    name = service_name(PLAN.name)
    assert [c[0] for c in cluster.calls] == ["create", "create", "get", "replace", "get"]
    assert _container(cluster.services[("ml", name)])["image"] == "faasopt/worker:test"
    platform.teardown()
    platform.teardown()  # gone already is fine


class _FailingRevisionCluster(FakeKnativeCluster):
    """A FAKE whose Services never become Ready: their revision fails."""

    def _store(self, namespace, body):
        super()._store(namespace, body)
        failed = {"type": "Ready", "status": "False", "reason": "RevisionFailed"}
        self.services[(namespace, body["metadata"]["name"])]["status"] = {
            "conditions": [{**failed, "message": "image pull back-off"}]
        }


def test_a_service_that_fails_to_become_ready_fails_deploy_with_the_reason():
    with LoopThread() as loop:
        api = _FailingRevisionCluster(loop, secrets={("faasopt-nats", NATS_TOKEN_KEY): "x"})
        try:
            with pytest.raises(PlatformError, match="RevisionFailed: image pull back-off"):
                _platform(api).deploy()
        finally:
            api.end()


def test_invoke_before_deploy_and_api_errors_are_platform_errors(cluster):
    platform = _platform(cluster)
    with pytest.raises(PlatformError, match="not deployed"):
        platform.invoke(None)

    class Forbidden(FakeKnativeCluster):
        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(PlatformError, match=r"cannot create knative service ml/.*: 403 Forbidden"):
        _platform(Forbidden(cluster.loop, {})).deploy()
