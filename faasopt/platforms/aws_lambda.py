"""Workers as asynchronous AWS Lambda invocations, one function per job.

``deploy`` creates the function (a container image or a zip) or updates the one that is there,
and turns Lambda's retries of asynchronous events off (``MaximumRetryAttempts=0``: a retried
worker would be a duplicate). ``invoke`` sends the payload as the event with
``InvocationType='Event'``; Lambda answers 202 at once and reports nothing back, so ``exited`` is
always empty: a worker that dies on Lambda is noticed by the coordinator's heartbeat timeout
(``CoordinatorSettings.heartbeat_timeout_seconds``). ``teardown`` deletes the function if
``deploy`` created it.

Credentials come from boto3's standard chain (environment variables, which the chart may fill
from a Kubernetes Secret; profiles; IAM roles for service accounts); this module never reads,
stores or logs them. The event carries the NATS token: Lambda keeps events to itself, while
environment variables show in the function's configuration. (botocore's own DEBUG log prints
request parameters: never run it at DEBUG with real tokens.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from faasopt.errors import PlatformError
from faasopt.payload import WORKER_ENV, WorkerPayload
from faasopt.platforms.naming import bounded_name

MAX_TIMEOUT_SECONDS = 900
"""Lambda's limit on one invocation."""
EVENT_PAYLOAD_LIMIT = 256 * 1024
"""Bytes of an asynchronous invocation's event (Lambda's long-standing limit); checked before
sending."""
HANDLER = "faasopt.lambda_handler.handler"
IMAGE_ENTRYPOINT = ["python", "-m", "awslambdaric"]
"""How the worker image runs the handler (its default entry point runs a Pod's worker)."""


@dataclass(frozen=True)
class LambdaSettings:
    """How a job's Lambda function is made. Exactly one of ``image_uri`` and ``zip_file``."""

    image_uri: str | None = None
    """The worker image in ECR, e.g. ``<account>.dkr.ecr.<region>.amazonaws.com/faasopt:0.1.0``."""
    zip_file: str | None = None
    """A deployment package: a local ``.zip`` path, or ``s3://bucket/key``."""
    role_arn: str | None = None
    """The function's execution role; needed only when ``deploy`` creates the function."""
    function_name: str | None = None
    """An existing or wanted function name; None: ``faasopt-<namespace>-<job>``."""
    region: str | None = None
    """The AWS region; None: boto3's default (``AWS_REGION``, the profile)."""
    memory_mb: int = 512
    """``MemorySize``, MiB (``spec.workers.memoryMB``); Lambda gives CPU in proportion."""
    time_limit_seconds: float | None = None
    """A worker's lifetime (``spec.workers.timeLimitSeconds``); None: Lambda's 900 s."""
    max_event_age_seconds: int = 120
    """An event not started within this long is dropped (Lambda retries throttled events until
    then even with retries off); the coordinator's start timeout has replaced it by then."""
    runtime: str = "python3.11"
    """The runtime of a zip package (an image brings its own)."""
    architecture: str = "x86_64"

    def __post_init__(self) -> None:
        if (self.image_uri is None) == (self.zip_file is None):
            raise PlatformError("lambda: give exactly one of an image URI and a zip package")

    @property
    def timeout_seconds(self) -> int:
        """The function's ``Timeout``: the time limit, capped at Lambda's 900 s."""
        limit = self.time_limit_seconds or MAX_TIMEOUT_SECONDS
        return min(math.ceil(limit), MAX_TIMEOUT_SECONDS)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, memory_mb: int, time_limit_seconds: float | None
    ) -> LambdaSettings:
        """The settings the chart gives the operator (``SETTINGS_ENV``), with the job's sizes."""
        given = {f: env[n] for f, n in SETTINGS_ENV.items() if env.get(n)}
        return cls(**given, memory_mb=memory_mb, time_limit_seconds=time_limit_seconds)


SETTINGS_ENV = {
    "image_uri": "FAASOPT_LAMBDA_IMAGE_URI",
    "zip_file": "FAASOPT_LAMBDA_ZIP",
    "role_arn": "FAASOPT_LAMBDA_ROLE_ARN",
    "function_name": "FAASOPT_LAMBDA_FUNCTION",
    "region": "AWS_REGION",
}
"""LambdaSettings field -> the environment variable that sets it (empty: unset)."""


def default_function_name(namespace: str, job: str) -> str:
    """``faasopt-<namespace>-<job>``, shortened with a hash to Lambda's 64 characters."""
    return bounded_name(f"faasopt-{namespace}-{job}", 64)


def _code(settings: LambdaSettings) -> dict[str, Any]:
    """The ``Code`` of create_function (the same keys as update_function_code takes)."""
    if settings.image_uri is not None:
        return {"ImageUri": settings.image_uri}
    if settings.zip_file.startswith("s3://"):
        bucket, _, key = settings.zip_file.removeprefix("s3://").partition("/")
        return {"S3Bucket": bucket, "S3Key": key}
    try:
        return {"ZipFile": Path(settings.zip_file).read_bytes()}
    except OSError as exc:
        raise PlatformError(f"lambda: cannot read the zip package: {exc}") from None


def build_function_configuration(name: str, settings: LambdaSettings) -> dict[str, Any]:
    """The configuration part of create_function / update_function_configuration (an update
    without a role keeps the function's role)."""
    config: dict[str, Any] = {
        "FunctionName": name,
        "MemorySize": settings.memory_mb,
        "Timeout": settings.timeout_seconds,
        "Environment": {"Variables": dict(WORKER_ENV)},
        "Description": "faasopt worker (consensus ADMM over NATS)",
    }
    if settings.role_arn is not None:
        config["Role"] = settings.role_arn
    if settings.image_uri is not None:
        config["ImageConfig"] = {"EntryPoint": IMAGE_ENTRYPOINT, "Command": [HANDLER]}
    else:
        config.update(Runtime=settings.runtime, Handler=HANDLER)
    return config


class LambdaPlatform:
    """Each worker is one asynchronous invocation of the job's Lambda function.

    Parameters
    ----------
    namespace, job : str
        The TrainingJob's namespace and name (they name the function).
    settings : LambdaSettings
    client : botocore client, optional
        A ``lambda`` client; None: ``boto3.client("lambda")`` with the standard credential chain.
    """

    name = "lambda"

    def __init__(
        self, namespace: str, job: str, settings: LambdaSettings, client: Any = None
    ) -> None:
        self.settings = settings
        self.function = settings.function_name or default_function_name(namespace, job)
        if client is None:
            import boto3

            client = boto3.client("lambda", region_name=settings.region)
        self.client = client
        self.created = False
        """Whether ``deploy`` created the function (then ``teardown`` deletes it)."""

    @property
    def memory_mb(self) -> int:
        """``MemorySize`` of the function, MiB (what the cost model prices)."""
        return self.settings.memory_mb

    def deploy(self) -> None:
        """Create the function, or update its configuration and code; retries off."""
        config = build_function_configuration(self.function, self.settings)
        code = _code(self.settings)
        if self._exists():
            self._call("update_function_configuration", **config)
            self._wait("function_updated_v2")
            self._call(
                "update_function_code",
                FunctionName=self.function,
                Architectures=[self.settings.architecture],
                **code,
            )
            self._wait("function_updated_v2")
        else:
            if self.settings.role_arn is None:
                raise PlatformError(f"lambda: {self.function} does not exist; no role to create it")
            package = "Image" if self.settings.image_uri is not None else "Zip"
            self._call(
                "create_function",
                **config,
                Code=code,
                PackageType=package,
                Architectures=[self.settings.architecture],
            )
            self.created = True
            self._wait("function_active_v2")
        self._call(
            "put_function_event_invoke_config",
            FunctionName=self.function,
            MaximumRetryAttempts=0,
            MaximumEventAgeInSeconds=self.settings.max_event_age_seconds,
        )

    def invoke(self, payload: WorkerPayload) -> str:
        """Queue one invocation with the payload as its event; returns Lambda's request id."""
        event = payload.to_json().encode()
        if len(event) > EVENT_PAYLOAD_LIMIT:
            raise PlatformError(
                f"lambda: the payload of worker {payload.worker} has {len(event)} bytes, "
                f"more than the {EVENT_PAYLOAD_LIMIT} an event may have"
            )
        response = self._call(
            "invoke", FunctionName=self.function, InvocationType="Event", Payload=event
        )
        if response.get("StatusCode") != 202:
            raise PlatformError(
                f"lambda did not queue worker {payload.worker}: {response.get('StatusCode')}"
            )
        return response.get("ResponseMetadata", {}).get("RequestId", "")

    def exited(self) -> dict[str, int]:
        """Always empty: Lambda tells nothing of an asynchronous invocation's end."""
        return {}

    def retire(self, worker: str) -> None:
        """Nothing to do: a Lambda invocation cannot be stopped from outside; the worker ends
        when it leaves (told to, or its coordinator silent past the payload's idle timeout)."""

    def teardown(self) -> None:
        """Delete the function if ``deploy`` created it (gone already is fine)."""
        if not self.created:
            return
        try:
            self.client.delete_function(FunctionName=self.function)
        except self.client.exceptions.ResourceNotFoundException:
            pass
        except (ClientError, BotoCoreError) as exc:
            raise PlatformError(f"lambda: delete_function {self.function}: {exc}") from None
        self.created = False

    def _exists(self) -> bool:
        try:
            self.client.get_function(FunctionName=self.function)
        except self.client.exceptions.ResourceNotFoundException:
            return False
        except (ClientError, BotoCoreError) as exc:
            raise PlatformError(f"lambda: get_function {self.function}: {exc}") from None
        return True

    def _wait(self, waiter: str) -> None:
        try:
            self.client.get_waiter(waiter).wait(FunctionName=self.function)
        except (ClientError, BotoCoreError) as exc:
            raise PlatformError(f"lambda: {self.function} never settled: {exc}") from None

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise PlatformError(f"lambda: {operation} {self.function}: {exc}") from None
