"""Workers as asynchronous invocations of an OpenFaaS function, one function per job.

``build_openfaas_function`` is a pure builder (the gateway's ``FunctionDeployment``);
``OpenFaasPlatform`` deploys it through the gateway's REST API (``/system/functions``, basic
auth) and invokes each worker on ``/async-function/<name>``. The gateway answers 202 even for a
missing function and reports an invocation's end only to its ``X-Callback-Url``: the platform
serves that endpoint (a small HTTP server in this process) and ``exited`` reports what arrived
there (``X-Function-Status``). Results travel over NATS; a worker that hangs without failing is
found by the coordinator's heartbeat timeout.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from faasopt.errors import PlatformError
from faasopt.invocation import NATS_TOKEN_FILE_ENV, TIME_LIMIT_ENV
from faasopt.payload import WORKER_ENV, WorkerPayload
from faasopt.platforms.base import wait_until
from faasopt.platforms.naming import bounded_name
from faasopt.platforms.pods import COMMON_LABELS, JOB_LABEL, NATS_TOKEN_KEY

ENV_PROCESS = "python -m faasopt.function_app"
"""What of-watchdog (http mode) starts in the function's container: the worker's HTTP app."""
SECRETS_DIR = "/var/openfaas/secrets"
"""Where OpenFaaS mounts a function's secrets, one file per key."""
DEFAULT_TIME_LIMIT_SECONDS = 900
"""The function's ``exec_timeout`` when the job gives no time limit."""
CALLBACK_PATH = re.compile(r"^/callback/(?P<key>[\w-]+)/(?P<worker>[\w.-]+)$")


@dataclass(frozen=True)
class OpenFaasSettings:
    """Where the gateway is, how to reach back to this process, and how the function is made."""

    gateway: str
    """The gateway's base URL, e.g. ``http://gateway.openfaas:8080``."""
    image: str
    """The worker image built with ``--target openfaas`` (of-watchdog in front of the app)."""
    callback_host: str
    """An address of this process the gateway's queue-worker can reach (the operator Pod's IP
    or Service name; 127.0.0.1 when everything runs on one machine)."""
    callback_port: int = 0
    """The callback server's port; 0: a free one."""
    callback_bind: str = "0.0.0.0"
    """The interface the callback server listens on."""
    username: str = "admin"
    """The gateway's basic-auth user (the ``basic-auth`` Secret's ``basic-auth-user``)."""
    password: str | None = field(default=None, repr=False)
    """The gateway's basic-auth password; None: the gateway has no auth. Never printed."""
    namespace: str | None = None
    """The functions' namespace; None: the gateway's default (``openfaas-fn``)."""
    nats_secret: str | None = None
    """The OpenFaaS secret with the NATS token under ``NATS_TOKEN_KEY``; None: NATS has no auth."""
    memory_mb: int = 512
    """Memory request and limit, MiB (``spec.workers.memoryMB``)."""
    cpu: str = "1"
    """CPU request: a core per worker."""
    time_limit_seconds: float | None = None
    """A worker's lifetime (``spec.workers.timeLimitSeconds``), the watchdog's ``exec_timeout``;
    None: ``DEFAULT_TIME_LIMIT_SECONDS``."""
    min_replicas: int = 1
    """``com.openfaas.scale.min``: instances kept ready, e.g. the job's worker count."""
    ready_timeout_seconds: float = 120.0
    """How long ``deploy`` waits for the function's first ready instance."""

    @property
    def timeout_seconds(self) -> int:
        limit = self.time_limit_seconds or DEFAULT_TIME_LIMIT_SECONDS
        return math.ceil(limit)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, memory_mb: int, time_limit_seconds: float | None
    ) -> OpenFaasSettings:
        """The settings the chart gives the operator (``SETTINGS_ENV``), with the job's sizes."""
        given: dict[str, Any] = {f: env[n] for f, n in SETTINGS_ENV.items() if env.get(n)}
        for required in ("gateway", "image", "callback_host"):
            if required not in given:
                raise PlatformError(f"{SETTINGS_ENV[required]} is not set: OpenFaaS needs it")
        if "callback_port" in given:
            given["callback_port"] = int(given["callback_port"])
        return cls(**given, memory_mb=memory_mb, time_limit_seconds=time_limit_seconds)


SETTINGS_ENV = {
    "gateway": "FAASOPT_OPENFAAS_GATEWAY",
    "image": "FAASOPT_OPENFAAS_WORKER_IMAGE",
    "callback_host": "FAASOPT_OPENFAAS_CALLBACK_HOST",
    "callback_port": "FAASOPT_OPENFAAS_CALLBACK_PORT",
    "username": "FAASOPT_OPENFAAS_USER",
    "password": "FAASOPT_OPENFAAS_PASSWORD",
    "namespace": "FAASOPT_OPENFAAS_NAMESPACE",
    "nats_secret": "FAASOPT_OPENFAAS_NATS_SECRET",
    "cpu": "FAASOPT_WORKER_CPU",
}
"""OpenFaasSettings field -> the operator's environment variable that sets it (empty: unset).
The password comes from the gateway's basic-auth Secret through the chart, never from a manifest."""


def function_name(namespace: str, job: str) -> str:
    """The job's function: ``faasopt-<namespace>-<job>`` (jobs of every namespace share the
    gateway's functions namespace), shortened with a hash to a DNS label's 63 characters."""
    return bounded_name(f"faasopt-{namespace}-{job}", 63)


def build_openfaas_function(namespace: str, job: str, settings: OpenFaasSettings) -> dict[str, Any]:
    """The job's function as the gateway's ``FunctionDeployment`` (POST/PUT /system/functions).

    The watchdog's timeouts follow the worker's time limit; the NATS token comes from an OpenFaaS
    secret (a file), never in the object or the payloads.
    """
    timeout = settings.timeout_seconds
    env = {
        **WORKER_ENV,
        TIME_LIMIT_ENV: str(timeout),
        # of-watchdog: cut a request at exec_timeout; read and write never cut it earlier.
        "exec_timeout": f"{timeout}s",
        "read_timeout": f"{timeout}s",
        "write_timeout": f"{timeout}s",
    }
    if settings.nats_secret is not None:
        env[NATS_TOKEN_FILE_ENV] = f"{SECRETS_DIR}/{NATS_TOKEN_KEY}"
    memory = f"{settings.memory_mb}Mi"
    function: dict[str, Any] = {
        "service": function_name(namespace, job),
        "image": settings.image,
        "envProcess": ENV_PROCESS,
        "envVars": env,
        "labels": {
            **COMMON_LABELS,
            "app.kubernetes.io/instance": job,
            JOB_LABEL: job,
            "com.openfaas.scale.min": str(settings.min_replicas),
        },
        "annotations": {"faasopt.dev/namespace": namespace},
        "secrets": [settings.nats_secret] if settings.nats_secret is not None else [],
        "limits": {"memory": memory},
        "requests": {"memory": memory, "cpu": settings.cpu},
        "readOnlyRootFilesystem": True,
    }
    if settings.namespace is not None:
        function["namespace"] = settings.namespace
    return function


class CallbackServer:
    """Receives the gateway's callbacks: one POST per ended invocation, with its status.

    The path carries a random key, so nobody who merely reaches the port can end a worker.
    """

    def __init__(self, bind: str, port: int) -> None:
        self.key = secrets.token_urlsafe(16)
        self.statuses: dict[str, int] = {}
        """Worker -> ``X-Function-Status`` of its invocation's callback."""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((bind, port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="openfaas-callbacks", daemon=True
        )
        self._thread.start()

    def url(self, host: str, worker: str) -> str:
        return f"http://{host}:{self.port}/callback/{self.key}/{quote(worker)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = CALLBACK_PATH.match(self.path)
                if match is None or not secrets.compare_digest(match["key"], server.key):
                    self.send_response(404)
                else:
                    status = self.headers.get("X-Function-Status", "")
                    with server._lock:
                        server.statuses[match["worker"]] = int(status) if status.isdigit() else 0
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the path carries the key."""

        return Handler

    def ended(self) -> dict[str, int]:
        with self._lock:
            return dict(self.statuses)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class OpenFaasPlatform:
    """Each worker is one asynchronous invocation of the job's OpenFaaS function.

    Parameters
    ----------
    owner_namespace, job : str
        The TrainingJob's namespace and name.
    settings : OpenFaasSettings
        The gateway, the callback address, and how the function is made.
    """

    name = "openfaas"

    def __init__(self, owner_namespace: str, job: str, settings: OpenFaasSettings) -> None:
        self.owner_namespace, self.job, self.settings = owner_namespace, job, settings
        self.function = function_name(owner_namespace, job)
        self._callbacks: CallbackServer | None = None
        self._workers: set[str] = set()

    @property
    def memory_mb(self) -> int:
        """Memory per worker instance, MiB (what the cost model prices)."""
        return self.settings.memory_mb

    def deploy(self) -> None:
        """Create or update the function, wait for a ready instance, start the callback server.

        Blocks the calling thread for up to ``ready_timeout_seconds``.
        """
        body = build_openfaas_function(self.owner_namespace, self.job, self.settings)
        exists = self._request("GET", self._status_path(), ok=(200, 404)) == 200
        self._request("PUT" if exists else "POST", "/system/functions", body, ok=(200, 202))
        self._wait_ready()
        if self._callbacks is None:
            self._callbacks = CallbackServer(
                self.settings.callback_bind, self.settings.callback_port
            )

    def _wait_ready(self) -> None:
        wait_until(
            self._an_instance_is_ready,
            self.settings.ready_timeout_seconds,
            f"openfaas function {self.function}",
        )

    def _an_instance_is_ready(self) -> bool | None:
        """True once the function has a ready instance; None while not yet."""
        status = json.loads(self._read(self._status_path()))
        return True if status.get("availableReplicas", 0) >= 1 else None

    def invoke(self, payload: WorkerPayload) -> str:
        """Queue the worker's invocation; returns the gateway's call id."""
        if self._callbacks is None:
            raise PlatformError(f"openfaas function {self.function} is not deployed")
        body = dataclasses.replace(payload, nats_token=None).to_json().encode()
        target = self.function
        if self.settings.namespace is not None:
            target = f"{target}.{self.settings.namespace}"
        callback = self._callbacks.url(self.settings.callback_host, payload.worker)
        with self._open(
            "POST", f"/async-function/{target}", body, {"X-Callback-Url": callback}
        ) as response:
            if response.status != 202:
                raise PlatformError(
                    f"openfaas did not queue worker {payload.worker}: {response.status}"
                )
            call_id = response.headers.get("X-Call-Id", "")
        self._workers.add(payload.worker)
        return call_id

    def exited(self) -> dict[str, int]:
        """Workers whose invocation's callback came: 0 for a 2xx status, else that status."""
        if self._callbacks is None:
            return {}
        return {
            worker: 0 if 200 <= status < 300 else status
            for worker, status in self._callbacks.ended().items()
            if worker in self._workers
        }

    def retire(self, worker: str) -> None:
        """Forget the worker: OpenFaaS cannot stop an invocation, which ends when the worker
        leaves (told to, or its coordinator silent past the payload's idle timeout)."""
        self._workers.discard(worker)

    def teardown(self) -> None:
        """Delete the function (gone already is fine) and stop the callback server."""
        self._workers.clear()
        delete = {"functionName": self.function}
        if self.settings.namespace is not None:
            delete["namespace"] = self.settings.namespace
        try:
            self._request("DELETE", "/system/functions", delete, ok=(200, 202, 404))
        finally:
            if self._callbacks is not None:
                self._callbacks.close()
                self._callbacks = None

    def _status_path(self) -> str:
        query = f"?namespace={quote(self.settings.namespace)}" if self.settings.namespace else ""
        return f"/system/function/{self.function}{query}"

    def _request(self, method: str, path: str, body: Any = None, ok=(200,)) -> int:
        """One gateway call; returns its status, which must be one of ``ok``."""
        data = None if body is None else json.dumps(body).encode()
        with self._open(method, path, data, {"Content-Type": "application/json"}) as response:
            if response.status not in ok:
                raise PlatformError(
                    f"openfaas gateway: {method} {path.split('?')[0]}: {response.status}"
                )
            return response.status

    def _read(self, path: str) -> bytes:
        """The body of a GET that must answer 200."""
        with self._open("GET", path) as response:
            if response.status != 200:
                raise PlatformError(
                    f"openfaas gateway: GET {path.split('?')[0]}: {response.status}"
                )
            return response.read()

    def _open(self, method: str, path: str, data: bytes | None = None, headers=None):
        request = urllib.request.Request(
            self.settings.gateway.rstrip("/") + path, data, dict(headers or {}), method=method
        )
        if self.settings.password is not None:
            pair = f"{self.settings.username}:{self.settings.password}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
        try:
            return urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as answer:  # an answer all the same: callers judge it
            return answer
        except OSError as exc:
            where = path.split("?")[0]
            raise PlatformError(f"openfaas gateway unreachable: {method} {where}: {exc}") from None
