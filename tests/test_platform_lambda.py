"""The AWS Lambda platform: every boto3 call checked against the real service model with
botocore's Stubber; and the REAL Lambda handler run in-process for each Event invocation by a
FAKE runtime (tests/functions_fake.py), with a shrinking remaining time, against a real
nats-server. No AWS account is used.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import botocore.session
import numpy as np
import pytest
from botocore.stub import Stubber
from conftest import BASE_MANIFEST, merge
from functions_fake import (
    COORDINATOR,
    PLAN,
    WORKER,
    FakeLambdaRuntime,
    local_reference,
    objectives,
    run_job,
    secured_nats,
)

from faasopt.algorithms.sgd import problem_from_wire
from faasopt.coordinator import CoordinatorSettings
from faasopt.data import load_blocks
from faasopt.errors import PlatformError
from faasopt.invocation import LEAVE_MARGIN_SECONDS
from faasopt.payload import WORKER_ENV, WorkerPayload
from faasopt.plan import plan_job
from faasopt.platforms.aws_lambda import (
    EVENT_PAYLOAD_LIMIT,
    HANDLER,
    IMAGE_ENTRYPOINT,
    SETTINGS_ENV,
    LambdaPlatform,
    LambdaSettings,
    default_function_name,
)
from faasopt.solvers.sgd import reference_sgd
from faasopt.spec import TrainingJob

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/faasopt:0.1.0"
ROLE = "arn:aws:iam::123456789012:role/faasopt-worker"
NAME = "faasopt-ml-quickstart"
ARN = f"arn:aws:lambda:eu-west-1:123456789012:function:{NAME}"
TOKEN = "nats-s3cret-token"


def _client():
    session = botocore.session.get_session()
    return session.create_client(
        "lambda", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


def _payload(**changes) -> WorkerPayload:
    payload = WorkerPayload(
        "ml", "quickstart", "w0", (0, 1), 4, "nats://nats.example:4222", {}, nats_token=TOKEN
    )
    return dataclasses.replace(payload, **changes)


def _expect_create(stub: Stubber, code: dict, extra: dict, settings: LambdaSettings) -> None:
    stub.add_client_error(
        "get_function",
        service_error_code="ResourceNotFoundException",
        http_status_code=404,
        expected_params={"FunctionName": NAME},
    )
    stub.add_response(
        "create_function",
        {"FunctionName": NAME, "FunctionArn": ARN, "State": "Pending"},
        {
            "FunctionName": NAME,
            "Role": ROLE,
            "MemorySize": settings.memory_mb,
            "Timeout": settings.timeout_seconds,
            "Environment": {"Variables": WORKER_ENV},
            "Description": "faasopt worker (consensus ADMM over NATS)",
            "Code": code,
            "Architectures": ["x86_64"],
            **extra,
        },
    )
    stub.add_response(  # the function_active_v2 waiter
        "get_function",
        {"Configuration": {"FunctionName": NAME, "State": "Active"}},
        {"FunctionName": NAME},
    )
    _expect_retries_off(stub)


def _expect_retries_off(stub: Stubber) -> None:
    stub.add_response(
        "put_function_event_invoke_config",
        {"FunctionArn": ARN, "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 120},
        {"FunctionName": NAME, "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 120},
    )


def test_deploy_creates_an_image_function_with_retries_off_invokes_events_and_deletes_it():
    client = _client()
    settings = LambdaSettings(
        image_uri=IMAGE, role_arn=ROLE, memory_mb=1024, time_limit_seconds=900
    )
    payload = _payload()
    with Stubber(client) as stub:
        image_config = {"EntryPoint": IMAGE_ENTRYPOINT, "Command": [HANDLER]}
        _expect_create(
            stub,
            {"ImageUri": IMAGE},
            {"PackageType": "Image", "ImageConfig": image_config},
            settings,
        )
        stub.add_response(
            "invoke",
            {"StatusCode": 202, "ResponseMetadata": {"RequestId": "req-1"}},
            {
                "FunctionName": NAME,
                "InvocationType": "Event",
                "Payload": payload.to_json().encode(),
            },
        )
        stub.add_response("delete_function", {}, {"FunctionName": NAME})
        platform = LambdaPlatform("ml", "quickstart", settings, client=client)
        platform.deploy()
        assert platform.created
        assert platform.invoke(payload) == "req-1"
        assert platform.exited() == {}  # Lambda tells nothing: heartbeats do
        platform.retire("w0")  # cannot stop an invocation: nothing to call
        platform.teardown()
        stub.assert_no_pending_responses()
    assert (platform.name, platform.memory_mb) == ("lambda", 1024)
    assert IMAGE_ENTRYPOINT == ["python", "-m", "awslambdaric"]
    assert HANDLER == "faasopt.lambda_handler.handler"


def test_deploy_creates_a_zip_function_from_s3_with_the_handler_and_runtime():
    client = _client()
    settings = LambdaSettings(zip_file="s3://artifacts/faasopt/worker.zip", role_arn=ROLE)
    with Stubber(client) as stub:
        code = {"S3Bucket": "artifacts", "S3Key": "faasopt/worker.zip"}
        extra = {"PackageType": "Zip", "Runtime": "python3.11", "Handler": HANDLER}
        _expect_create(stub, code, extra, settings)
        LambdaPlatform("ml", "quickstart", settings, client=client).deploy()
        stub.assert_no_pending_responses()


def test_deploy_updates_an_existing_function_from_a_local_zip_and_teardown_keeps_it(tmp_path):
    package = tmp_path / "worker.zip"
    package.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive
    client = _client()
    settings = LambdaSettings(zip_file=str(package), memory_mb=2048, time_limit_seconds=120.2)
    updated = {"Configuration": {"FunctionName": NAME, "LastUpdateStatus": "Successful"}}
    with Stubber(client) as stub:
        stub.add_response("get_function", updated, {"FunctionName": NAME})
        stub.add_response(
            "update_function_configuration",
            {"FunctionName": NAME},
            {
                "FunctionName": NAME,
                "MemorySize": 2048,
                "Timeout": 121,
                "Environment": {"Variables": WORKER_ENV},
                "Description": "faasopt worker (consensus ADMM over NATS)",
                "Runtime": "python3.11",
                "Handler": HANDLER,
            },
        )
        stub.add_response("get_function", updated, {"FunctionName": NAME})
        stub.add_response(
            "update_function_code",
            {"FunctionName": NAME},
            {"FunctionName": NAME, "Architectures": ["x86_64"], "ZipFile": package.read_bytes()},
        )
        stub.add_response("get_function", updated, {"FunctionName": NAME})
        _expect_retries_off(stub)
        platform = LambdaPlatform("ml", "quickstart", settings, client=client)
        platform.deploy()
        platform.teardown()  # not ours: no delete_function (an unstubbed call would fail)
        stub.assert_no_pending_responses()
    assert not platform.created


@pytest.mark.parametrize(("limit", "timeout"), [(None, 900), (1800, 900), (120.2, 121), (900, 900)])
def test_timeout_follows_the_time_limit_capped_at_lambdas_900_seconds(limit, timeout):
    assert LambdaSettings(image_uri=IMAGE, time_limit_seconds=limit).timeout_seconds == timeout


def test_settings_need_exactly_one_package_and_a_role_to_create():
    with pytest.raises(PlatformError, match="exactly one"):
        LambdaSettings()
    with pytest.raises(PlatformError, match="exactly one"):
        LambdaSettings(image_uri=IMAGE, zip_file="x.zip")
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("get_function", "ResourceNotFoundException", http_status_code=404)
        with pytest.raises(PlatformError, match="no role"):
            LambdaPlatform("ml", "quickstart", LambdaSettings(image_uri=IMAGE), client).deploy()
    env = {
        SETTINGS_ENV["image_uri"]: IMAGE,
        SETTINGS_ENV["role_arn"]: ROLE,
        "AWS_REGION": "eu-west-1",
    }
    settings = LambdaSettings.from_env(env, memory_mb=256, time_limit_seconds=300)
    assert (settings.image_uri, settings.role_arn, settings.region) == (IMAGE, ROLE, "eu-west-1")
    assert (settings.memory_mb, settings.timeout_seconds, settings.max_event_age_seconds) == (
        256,
        300,
        120,
    )


def test_names_fit_lambdas_64_characters():
    assert default_function_name("ml", "quickstart") == NAME
    long = default_function_name("n" * 63, "j" * 63)
    assert len(long) <= 64 and long != default_function_name("n" * 63, "j" * 62 + "k")


def test_an_oversized_payload_is_refused_before_any_call():
    client = _client()
    platform = LambdaPlatform("ml", "quickstart", LambdaSettings(image_uri=IMAGE), client)
    with Stubber(client) as stub, pytest.raises(PlatformError, match="more than the"):
        platform.invoke(_payload(data={"pad": "x" * EVENT_PAYLOAD_LIMIT}))
        stub.assert_no_pending_responses()


def test_service_errors_become_platform_errors_and_no_token_is_logged_or_shown(caplog):
    caplog.set_level(logging.DEBUG, logger="faasopt")
    client = _client()
    platform = LambdaPlatform("ml", "quickstart", LambdaSettings(image_uri=IMAGE), client)
    with Stubber(client) as stub:
        stub.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)
        with pytest.raises(PlatformError, match="TooManyRequestsException") as raised:
            platform.invoke(_payload())
    assert TOKEN not in str(raised.value) and TOKEN not in caplog.text
    assert TOKEN not in repr(_payload())


# --- whole jobs through the handler ---------------------------------------------------------

JOB_FUNCTION = default_function_name(PLAN.namespace, PLAN.name)


@pytest.fixture(scope="module")
def secured():
    with secured_nats() as server:
        yield server


@pytest.fixture(scope="module")
def local_run(secured):
    return local_reference(secured.url)


def _run_on_lambda(secured, lifetime, settings=None, on_round=None, plan=PLAN):
    """The job through LambdaPlatform on a stubbed client whose Event invocations the fake
    runtime runs; returns the outcome and the runtime."""
    client = _client()
    lambda_settings = LambdaSettings(image_uri=IMAGE, role_arn=ROLE, time_limit_seconds=900)
    with Stubber(client) as stub:
        stub.add_client_error("get_function", "ResourceNotFoundException", http_status_code=404)
        stub.add_response("create_function", {"FunctionName": JOB_FUNCTION, "State": "Pending"})
        stub.add_response("get_function", {"Configuration": {"State": "Active"}})
        stub.add_response("put_function_event_invoke_config", {"MaximumRetryAttempts": 0})
        runtime = FakeLambdaRuntime(client, stub, lifetime)
        deleted = []

        def on_delete(params, **_):  # queued when called: invocations come before it
            deleted.append(params["FunctionName"])
            stub.add_response("delete_function", {}, {"FunctionName": JOB_FUNCTION})

        client.meta.events.register("provide-client-params.lambda.DeleteFunction", on_delete)
        platform = LambdaPlatform(PLAN.namespace, PLAN.name, lambda_settings, client)
        try:
            outcome = run_job(
                plan,
                platform,
                secured.url,
                coordinator=COORDINATOR,
                worker=WORKER,
                settings=settings,
                on_round=on_round,
            )
        finally:
            runtime.join()
        stub.assert_no_pending_responses()
    assert deleted == [JOB_FUNCTION]  # deploy created it, teardown deleted it
    return outcome, runtime


def test_a_job_runs_through_the_lambda_handler_and_converges_to_the_local_objective(
    secured, local_run
):
    outcome, runtime = _run_on_lambda(secured, lifetime=lambda n: 60.0)
    assert runtime.errors == []
    assert outcome.error is None and outcome.status.value == "converged"
    assert objectives(outcome) == objectives(local_run)
    assert outcome.replacements == 0
    assert sorted(r["worker"] for r in runtime.results) == sorted(PLAN.assignment)
    assert all(e["nats_user"] == WORKER[0] for e in runtime.events)


def test_workers_out_of_time_leave_and_the_heartbeat_timeout_replaces_them(secured, local_run):
    """The first invocations have no time left beyond the margin: each says hello and leaves.
    Lambda reports nothing; missing heartbeats tell the coordinator, which invokes successors
    for the same blocks (with time to spare). The iterates are those of the local run."""
    first = PLAN.workers

    def lifetime(n: int) -> float:
        return LEAVE_MARGIN_SECONDS if n < first else 60.0

    settings = CoordinatorSettings(heartbeat_timeout_seconds=1.0)
    outcome, runtime = _run_on_lambda(secured, lifetime, settings)
    assert runtime.errors == []
    assert outcome.error is None and outcome.status.value == "converged"
    assert objectives(outcome) == objectives(local_run)
    assert outcome.replacements == first
    ended = [w.ended for w in outcome.workers if w.ended]
    assert len(ended) == first and all("sent no heartbeat" in why for why in ended)
    assert len(runtime.events) == 2 * first


def test_workers_near_their_time_limit_rotate_and_the_iterates_do_not_change(secured, local_run):
    """Every invocation has 4 s (2 s before it must leave); the test holds each round 0.25 s, so
    a worker's time runs out within a few rounds. It leaves at a round boundary, the coordinator
    invokes a successor for its blocks and hands it their exact state: no round is lost."""
    outcome, runtime = _run_on_lambda(
        secured, lambda n: 4.0, on_round=lambda report: time.sleep(0.25)
    )
    assert runtime.errors == []
    assert outcome.error is None and outcome.status.value == "converged"
    assert objectives(outcome) == objectives(local_run)
    assert outcome.rotations >= PLAN.workers and outcome.replacements == 0
    successors = [w for w in outcome.workers if w.rotates and w.cold_start_seconds is not None]
    assert len(successors) >= outcome.rotations
    assert all(w.cold_start_seconds > 0 for w in successors)


def test_ma_sgd_with_the_filter_runs_and_rotates_through_the_lambda_handler(secured):
    """Another algorithm on the same handler: MA-SGD's blocks keep optimizer states and unsent
    updates on their workers, which hand them over when their time runs out; the run equals the
    in-process reference bit for bit."""
    sgd = {
        "variant": "modelAveraging",
        "optimizer": {"method": "adam", "learningRate": 0.05},
        "batchSize": 64,
        "syncEvery": 2,
        "significance": 0.7,
        "stop": {"maxEpochs": 3.0},
    }
    patch = {"metadata": {"namespace": "ml"}, "spec": {"algorithm": {"sgd": sgd}}}
    plan = plan_job(TrainingJob.from_dict(merge(BASE_MANIFEST, patch)))
    outcome, runtime = _run_on_lambda(
        secured, lambda n: 4.0, on_round=lambda report: time.sleep(0.25), plan=plan
    )
    blocks = load_blocks(plan.source, range(plan.n_blocks), plan.n_blocks)
    reference = reference_sgd(problem_from_wire(plan.problem), blocks, plan.settings)
    assert runtime.errors == []
    assert outcome.error is None and outcome.status.value == "maxEpochs"
    assert objectives(outcome) == [r.loss for r in reference.history]
    assert np.array_equal(outcome.z, reference.x)
    assert outcome.rotations >= plan.workers and outcome.replacements == 0
