"""Workers as requests to a Knative Service, one Service per job.

``build_knative_service_manifest`` is a pure builder (a ``serving.knative.dev/v1`` Service);
``KnativePlatform`` creates it through an injected ``CustomObjectsApi`` (the ``kubernetes``
package's, or a fake with the same method names) and invokes each worker by an HTTP POST of its
payload to the Service's URL. The request stays open for the worker's life: Knative scales and
throttles by open requests, and ``containerConcurrency: 1`` gives each worker its own instance.
Results travel over NATS; the request's end (its status, or a dropped connection) is what
``exited`` reports, so the coordinator can replace a lost worker at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import math
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from kubernetes.client.exceptions import ApiException

from faasopt.errors import PlatformError
from faasopt.invocation import TIME_LIMIT_ENV
from faasopt.payload import NATS_TOKEN_ENV, WORKER_ENV, WorkerPayload
from faasopt.platforms.base import wait_until
from faasopt.platforms.naming import bounded_name
from faasopt.platforms.pods import (
    COMMON_LABELS,
    GONE,
    JOB_LABEL,
    NATS_TOKEN_KEY,
    RUN_AS_USER,
    Owner,
)

GROUP, VERSION, PLURAL = "serving.knative.dev", "v1", "services"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
"""``cluster-local``: the Service gets no public route; only the coordinator calls it."""
PORT = 8080
COMMAND = ["python", "-m", "faasopt.function_app"]
"""The worker image's HTTP entry point (its default entry point runs a Pod's worker)."""
NAME_LIMIT = 57
"""Knative names revisions ``<service>-00001``, which must stay within 63 characters."""
TIMEOUT_SLACK_SECONDS = 30.0
"""How much longer than the Service's timeout a caller waits before it calls the request lost."""


@dataclass(frozen=True)
class KnativeSettings:
    """How a job's Knative Service is made; one set per job, from the chart's values and spec."""

    image: str
    """The worker image (the chart's ``worker.image``)."""
    nats_secret: str | None = None
    """The Secret with the NATS token under ``NATS_TOKEN_KEY``; None: NATS has no auth."""
    memory_mb: int = 512
    """Memory request and limit, MiB (``spec.workers.memoryMB``)."""
    cpu: str = "1"
    """CPU request (no limit, which would throttle BLAS): a core per worker, as on FaaS."""
    time_limit_seconds: float | None = None
    """A worker's lifetime (``spec.workers.timeLimitSeconds``); None: the cluster's maximum."""
    max_timeout_seconds: int = 600
    """The cluster's ``max-revision-timeout-seconds`` (config-defaults; Knative's default 600):
    the Service's ``timeoutSeconds`` never exceeds it, or Knative would refuse the Service."""
    image_pull_policy: str = "IfNotPresent"
    ready_timeout_seconds: float = 120.0
    """How long ``deploy`` waits for the Service to become Ready (its first revision)."""

    @property
    def timeout_seconds(self) -> int:
        """The Service's ``timeoutSeconds``: the time limit, capped at the cluster's maximum."""
        if self.time_limit_seconds is None:
            return self.max_timeout_seconds
        return min(math.ceil(self.time_limit_seconds), self.max_timeout_seconds)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, memory_mb: int, time_limit_seconds: float | None
    ) -> KnativeSettings:
        """The settings the chart gives the operator (``SETTINGS_ENV``), with the job's sizes."""
        given: dict[str, Any] = {f: env[n] for f, n in SETTINGS_ENV.items() if env.get(n)}
        if "image" not in given:
            raise PlatformError(f"{SETTINGS_ENV['image']} is not set: no worker image to run")
        if "max_timeout_seconds" in given:
            given["max_timeout_seconds"] = int(given["max_timeout_seconds"])
        return cls(**given, memory_mb=memory_mb, time_limit_seconds=time_limit_seconds)


SETTINGS_ENV = {
    "image": "FAASOPT_WORKER_IMAGE",
    "image_pull_policy": "FAASOPT_WORKER_PULL_POLICY",
    "cpu": "FAASOPT_WORKER_CPU",
    "nats_secret": "FAASOPT_NATS_SECRET",
    "max_timeout_seconds": "FAASOPT_KNATIVE_MAX_TIMEOUT_SECONDS",
}
"""KnativeSettings field -> the operator's environment variable that sets it (empty: unset)."""


def service_name(job: str) -> str:
    """The job's Service name: ``faasopt-<job>``, shortened with a hash when too long."""
    return bounded_name(f"faasopt-{job}", NAME_LIMIT)


def build_knative_service_manifest(owner: Owner, settings: KnativeSettings) -> dict[str, Any]:
    """The job's Knative Service in its owner's namespace: cluster-local, one request per
    instance, scaled to zero when idle, the request timeout from the worker's time limit.

    No payload and no token in the object: payloads come with each request, the token from the
    Secret.
    """
    labels = {**COMMON_LABELS, "app.kubernetes.io/instance": owner.name, JOB_LABEL: owner.name}
    timeout = settings.timeout_seconds
    env = [{"name": name, "value": value} for name, value in WORKER_ENV.items()]
    env.append({"name": TIME_LIMIT_ENV, "value": str(timeout)})
    if settings.nats_secret is not None:
        ref = {"name": settings.nats_secret, "key": NATS_TOKEN_KEY}
        env.append({"name": NATS_TOKEN_ENV, "valueFrom": {"secretKeyRef": ref}})
    memory = f"{settings.memory_mb}Mi"
    container = {
        "name": "worker",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": COMMAND,
        "ports": [{"name": "http1", "containerPort": PORT}],
        "env": env,
        "resources": {
            "requests": {"cpu": settings.cpu, "memory": memory},
            "limits": {"memory": memory},
        },
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Service",
        "metadata": {
            "name": service_name(owner.name),
            "namespace": owner.namespace,
            "labels": {**labels, VISIBILITY_LABEL: "cluster-local"},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"autoscaling.knative.dev/min-scale": "0"},
                },
                "spec": {
                    "containerConcurrency": 1,
                    "timeoutSeconds": timeout,
                    # The answer starts only when the worker leaves: wait as long as it may live
                    # (config-defaults would otherwise cut it at 300 s).
                    "responseStartTimeoutSeconds": timeout,
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            }
        },
    }


class CustomObjectsApi(Protocol):
    """The part of ``kubernetes.client.CustomObjectsApi`` this platform uses."""

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
    ) -> Any: ...
    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any: ...
    def replace_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any: ...
    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any: ...


class HeldRequest(threading.Thread):
    """One POST held open until the far end answers or hangs up; ``status`` says how it ended.

    ``status`` is None while it runs, then 0 for a 2xx answer, the HTTP status for any other,
    and ``GONE`` for a connection that failed or dropped.
    """

    def __init__(self, url: str, body: bytes, timeout: float) -> None:
        super().__init__(daemon=True, name=f"knative-request {url}")
        self.url, self.body, self.timeout = url, body, timeout
        self.status: int | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._cancelled = threading.Event()

    def run(self) -> None:
        parts = urlsplit(self.url)
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._connection = kind(parts.hostname, parts.port, timeout=self.timeout)
        try:
            if self._cancelled.is_set():
                raise ConnectionAbortedError("cancelled before it was sent")
            self._connection.request(
                "POST", parts.path or "/", self.body, {"Content-Type": "application/json"}
            )
            response = self._connection.getresponse()
            response.read()
            self.status = 0 if 200 <= response.status < 300 else response.status
        except (OSError, http.client.HTTPException):
            self.status = GONE
        finally:
            self._connection.close()

    def cancel(self) -> None:
        """Hang up: the far end sees the connection close (and ends its worker)."""
        self._cancelled.set()
        sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)


class KnativePlatform:
    """Each worker is one held-open request to the job's Knative Service.

    Parameters
    ----------
    api : CustomObjectsApi
        ``kubernetes.client.CustomObjectsApi()`` or a fake with the same methods.
    owner : Owner
        The TrainingJob: its namespace, name and uid (the Service's owner).
    settings : KnativeSettings
        Image, NATS Secret, resources and time limits of the Service.
    """

    name = "knative"

    def __init__(self, api: CustomObjectsApi, owner: Owner, settings: KnativeSettings) -> None:
        self.api, self.owner, self.settings = api, owner, settings
        self.namespace = owner.namespace
        self.service = service_name(owner.name)
        self.url: str | None = None
        """The Service's address (its ``status.url``), known once ``deploy`` saw it Ready."""
        self._requests: dict[str, HeldRequest] = {}

    @property
    def memory_mb(self) -> int:
        """Memory per worker instance, MiB (what the cost model prices)."""
        return self.settings.memory_mb

    def deploy(self) -> None:
        """Create (or replace) the job's Service and wait until it is Ready; learns its URL.

        Blocks the calling thread for up to ``ready_timeout_seconds`` (the first revision starts).
        """
        body = build_knative_service_manifest(self.owner, self.settings)
        try:
            self._call("create", self.api.create_namespaced_custom_object, body=body)
        except _Conflict:
            current = self._call("get", self.api.get_namespaced_custom_object, name=self.service)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self._call(
                "replace", self.api.replace_namespaced_custom_object, name=self.service, body=body
            )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        return wait_until(
            self._url_when_ready,
            self.settings.ready_timeout_seconds,
            f"knative service {self.namespace}/{self.service}",
        )

    def _url_when_ready(self) -> str | None:
        """The Service's URL once Ready; None while not yet; PlatformError once it failed."""
        service = self._call("get", self.api.get_namespaced_custom_object, name=self.service)
        status = service.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        if ready.get("status") == "True" and status.get("url"):
            return status["url"]
        if ready.get("status") == "False":
            why = f"{ready.get('reason', '')}: {ready.get('message', '')}"
            raise PlatformError(f"knative service {self.namespace}/{self.service} failed: {why}")
        return None

    def invoke(self, payload: WorkerPayload) -> str:
        """POST the payload (without its token) to the Service; returns a request id."""
        if self.url is None:
            raise PlatformError(f"knative service {self.service} is not deployed")
        body = dataclasses.replace(payload, nats_token=None).to_json().encode()
        request = HeldRequest(self.url, body, self.settings.timeout_seconds + TIMEOUT_SLACK_SECONDS)
        request.start()
        self._requests[payload.worker] = request
        return f"{self.service}/{uuid.uuid4().hex[:12]}"

    def exited(self) -> dict[str, int]:
        """Workers whose request ended: 0 (answered), the HTTP status, or ``GONE`` (dropped)."""
        return {
            worker: request.status
            for worker, request in self._requests.items()
            if request.status is not None
        }

    def retire(self, worker: str) -> None:
        """Hang up the worker's request, which ends the worker."""
        request = self._requests.pop(worker, None)
        if request is not None:
            request.cancel()

    def teardown(self) -> None:
        """Hang up every request and delete the Service (gone already is fine)."""
        for worker in list(self._requests):
            self.retire(worker)
        with contextlib.suppress(_NotFound):
            self._call("delete", self.api.delete_namespaced_custom_object, name=self.service)

    def _call(self, verb: str, method, **kwargs: Any) -> Any:
        try:
            return method(GROUP, VERSION, self.namespace, PLURAL, **kwargs)
        except ApiException as exc:
            kind = {409: _Conflict, 404: _NotFound}.get(exc.status, PlatformError)
            raise kind(
                f"cannot {verb} knative service {self.namespace}/{self.service}: "
                f"{exc.status} {exc.reason}"
            ) from None


class _Conflict(PlatformError):
    """The Service exists already (409)."""


class _NotFound(PlatformError):
    """The Service does not exist (404)."""
