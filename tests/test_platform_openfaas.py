"""The OpenFaaS platform: the function it deploys, its callback endpoint, and whole jobs through a
FAKE gateway and queue-worker to the REAL functions app, with a real nats-server.

Validated offline: every function object against the gateway's published ``FunctionDeployment``
schema (copied into tests/functions_fake.py from openfaas/faas api-docs/spec.openapi.yml, made
strict about unknown fields). Not run here: a real gateway, of-watchdog or queue-worker.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.error
import urllib.request

import jsonschema
import pytest
from functions_fake import (
    COORDINATOR,
    FUNCTION_DEPLOYMENT_SCHEMA,
    PLAN,
    WORKER,
    FakeOpenFaasGateway,
    LoopThread,
    local_reference,
    objectives,
    run_job,
    secured_nats,
)

from faasopt.errors import PlatformError
from faasopt.invocation import NATS_TOKEN_FILE_ENV, TIME_LIMIT_ENV
from faasopt.payload import NATS_TOKEN_ENV, PAYLOAD_ENV, WORKER_ENV, WorkerPayload
from faasopt.platforms.openfaas import (
    ENV_PROCESS,
    SECRETS_DIR,
    SETTINGS_ENV,
    CallbackServer,
    OpenFaasPlatform,
    OpenFaasSettings,
    build_openfaas_function,
    function_name,
)
from faasopt.platforms.pods import JOB_LABEL, NATS_TOKEN_KEY

PASSWORD = "gateway-s3cret"
SETTINGS = OpenFaasSettings(
    gateway="http://gateway.openfaas:8080",
    image="faasopt/worker-openfaas:test",
    callback_host="faasopt-operator.faasopt",
    password=PASSWORD,
    nats_secret="faasopt-nats",
    memory_mb=1024,
    time_limit_seconds=900,
    min_replicas=4,
)


def test_function_runs_the_http_app_behind_the_watchdog_with_timeouts_from_the_time_limit():
    function = build_openfaas_function("ml", "quickstart", SETTINGS)
    assert function["service"] == "faasopt-ml-quickstart"
    assert function["image"] == "faasopt/worker-openfaas:test"
    assert function["envProcess"] == ENV_PROCESS == "python -m faasopt.function_app"
    env = function["envVars"]
    assert {n: env[n] for n in WORKER_ENV} == WORKER_ENV
    assert (env["exec_timeout"], env["read_timeout"], env["write_timeout"]) == ("900s",) * 3
    assert env[TIME_LIMIT_ENV] == "900"
    assert env[NATS_TOKEN_FILE_ENV] == f"{SECRETS_DIR}/{NATS_TOKEN_KEY}"
    assert function["secrets"] == ["faasopt-nats"]
    assert NATS_TOKEN_ENV not in env and PAYLOAD_ENV not in env
    assert function["limits"] == {"memory": "1024Mi"}
    assert function["requests"] == {"memory": "1024Mi", "cpu": "1"}
    assert function["readOnlyRootFilesystem"] is True
    assert function["labels"]["com.openfaas.scale.min"] == "4"
    assert function["labels"][JOB_LABEL] == "quickstart"
    assert function["annotations"] == {"faasopt.dev/namespace": "ml"}
    assert "namespace" not in function  # the gateway's default functions namespace


@pytest.mark.parametrize(
    "settings",
    [
        SETTINGS,
        dataclasses.replace(SETTINGS, nats_secret=None, namespace="fn", time_limit_seconds=None),
    ],
    ids=["secret", "no-secret-own-namespace"],
)
def test_function_is_valid_against_the_gateways_schema(settings):
    function = build_openfaas_function("ml", "quickstart", settings)
    jsonschema.validate(function, FUNCTION_DEPLOYMENT_SCHEMA)
    if settings.nats_secret is None:
        assert function["secrets"] == [] and NATS_TOKEN_FILE_ENV not in function["envVars"]
        assert function["namespace"] == "fn"
        assert function["envVars"]["exec_timeout"] == "900s"  # the default limit


def test_timeouts_round_up_to_whole_seconds():
    settings = dataclasses.replace(SETTINGS, time_limit_seconds=120.2)
    env = build_openfaas_function("ml", "q", settings)["envVars"]
    assert env["exec_timeout"] == "121s" and env[TIME_LIMIT_ENV] == "121"


def test_long_names_fit_a_dns_label():
    name = function_name("n" * 63, "j" * 63)
    assert len(name) <= 63 and name.startswith("faasopt-n")
    assert name != function_name("n" * 63, "j" * 62 + "k")


def test_the_gateway_password_never_prints_and_settings_come_from_the_environment():
    assert PASSWORD not in repr(SETTINGS)
    env = {
        SETTINGS_ENV["gateway"]: "http://gw:8080",
        SETTINGS_ENV["image"]: "w:1",
        SETTINGS_ENV["callback_host"]: "10.0.0.7",
        SETTINGS_ENV["callback_port"]: "8099",
        SETTINGS_ENV["password"]: PASSWORD,
    }
    settings = OpenFaasSettings.from_env(env, memory_mb=256, time_limit_seconds=600)
    assert (settings.gateway, settings.callback_port, settings.password) == (
        "http://gw:8080",
        8099,
        PASSWORD,
    )
    assert (settings.username, settings.namespace, settings.min_replicas) == ("admin", None, 1)
    with pytest.raises(PlatformError, match=SETTINGS_ENV["callback_host"]):
        OpenFaasSettings.from_env(
            {k: v for k, v in env.items() if k != SETTINGS_ENV["callback_host"]},
            memory_mb=256,
            time_limit_seconds=600,
        )


def _post(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, b"{}", headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_callbacks_are_taken_only_with_the_key_and_record_the_function_status():
    server = CallbackServer("127.0.0.1", 0)
    try:
        good = server.url("127.0.0.1", "w1-r1")
        forged = good.replace(server.key, "forged-key")
        assert _post(forged, {"X-Function-Status": "500"}) == 404
        assert server.ended() == {}
        assert _post(good, {"X-Function-Status": "502"}) == 200
        assert server.ended() == {"w1-r1": 502}
    finally:
        server.close()


# --- against the fake gateway ---------------------------------------------------------------


@pytest.fixture(scope="module")
def secured():
    with secured_nats() as server:
        yield server


@pytest.fixture(scope="module")
def local_run(secured):
    return local_reference(secured.url)


@pytest.fixture
def gateway(tmp_path):
    secrets = {"faasopt-nats": {NATS_TOKEN_KEY: WORKER[1]}}
    with LoopThread() as loop, FakeOpenFaasGateway(loop, tmp_path, secrets, PASSWORD) as fake:
        yield fake


def _platform(gateway, password: str = PASSWORD) -> OpenFaasPlatform:
    settings = OpenFaasSettings(
        gateway=gateway.url,
        image="faasopt/worker-openfaas:test",
        callback_host="127.0.0.1",
        callback_bind="127.0.0.1",
        password=password,
        nats_secret="faasopt-nats",
        time_limit_seconds=PLAN.time_limit_seconds,
        ready_timeout_seconds=5,
    )
    return OpenFaasPlatform(PLAN.namespace, PLAN.name, settings)


def test_a_job_runs_through_openfaas_and_converges_to_the_local_objective(
    secured, local_run, gateway
):
    platform = _platform(gateway)
    outcome = run_job(PLAN, platform, secured.url, coordinator=COORDINATOR, worker=WORKER)
    assert outcome.error is None and outcome.status.value == "converged"
    assert objectives(outcome) == objectives(local_run)
    assert outcome.objective == local_run.objective
    assert outcome.replacements == 0
    name = function_name(PLAN.namespace, PLAN.name)
    assert gateway.calls[:3] == [
        ("GET", f"/system/function/{name}"),
        ("POST", "/system/functions"),
        ("GET", f"/system/function/{name}"),
    ]
    assert gateway.calls[3 : 3 + PLAN.workers] == [("POST", f"/async-function/{name}")] * 2
    assert gateway.calls[-1] == ("DELETE", "/system/functions")
    assert gateway.functions == {}
    assert len(gateway.async_bodies) == PLAN.workers
    assert all(WORKER[1].encode() not in body for body in gateway.async_bodies)
    assert (platform.name, platform.memory_mb) == ("openfaas", 512)  # what the cost model prices


def test_a_failed_invocation_is_reported_by_its_callback_and_its_worker_replaced(
    secured, local_run, gateway
):
    def kill_at_round_2(report):
        if report.record.iteration == 2:
            gateway.loop.loop.call_soon_threadsafe(gateway.kill_running)

    outcome = run_job(
        PLAN,
        _platform(gateway),
        secured.url,
        coordinator=COORDINATOR,
        worker=WORKER,
        on_round=kill_at_round_2,
    )
    assert outcome.error is None and outcome.status.value == "converged"
    assert objectives(outcome) == objectives(local_run)
    assert outcome.replacements == PLAN.workers
    assert [w.ended for w in outcome.workers if w.ended] == ["exited with status 502"] * 2


def test_an_invocation_of_a_vanished_function_is_accepted_then_reported_missing(secured, gateway):
    platform = _platform(gateway)
    platform.deploy()
    try:
        name = function_name(PLAN.namespace, PLAN.name)
        del gateway.functions[name]
        runner, _ = gateway._apps.pop(name)
        gateway.loop.run(runner.cleanup())
        payload = WorkerPayload("ml", PLAN.name, "w0", (0,), 2, secured.url, PLAN.source)
        assert platform.invoke(payload)  # 202 all the same: the gateway's call id
        give_up = time.monotonic() + 10
        while not platform.exited() and time.monotonic() < give_up:
            time.sleep(0.05)
        assert platform.exited() == {"w0": 404}
        platform.retire("w0")
        assert platform.exited() == {}
    finally:
        platform.teardown()  # the function is gone already: fine


def test_deploy_updates_a_function_that_exists(gateway):
    first, second = _platform(gateway), _platform(gateway)
    first.deploy()
    try:
        second.deploy()
        assert [c for c in gateway.calls if c[1] == "/system/functions"] == [
            ("POST", "/system/functions"),
            ("PUT", "/system/functions"),
        ]
    finally:
        second.teardown()
        first.teardown()


def test_a_wrong_gateway_password_fails_deploy_without_showing_it(gateway):
    with pytest.raises(PlatformError, match="401") as raised:
        _platform(gateway, password="wrong-password").deploy()
    assert "wrong-password" not in str(raised.value)


def test_an_unreachable_gateway_is_a_platform_error():
    settings = OpenFaasSettings(gateway="http://127.0.0.1:9", image="w", callback_host="h")
    with pytest.raises(PlatformError, match="unreachable"):
        OpenFaasPlatform("ml", "q", settings).deploy()
