"""FAKES of the FaaS platforms around the REAL functions app, and the harness a job runs in.

No Knative, OpenFaaS or AWS can run on these machines. What is real: the worker's HTTP app
(``faasopt.function_app``, aiohttp on loopback), the Lambda handler, the workers in it, the
nats-server and the coordinator. What is fake, and named so:

- ``FakeKnativeCluster``: a fake ``CustomObjectsApi`` (Services in memory, calls recorded, the
  real ApiException) that, for each Service created, starts the real app with the environment
  the Service's container declares (Secret references resolved from its own Secrets) behind a
  ``FakeKnativeRoute``: an HTTP proxy that forwards each request to the app and cuts it at the
  Service's ``timeoutSeconds`` with a 504, as Knative's route would.
- ``FakeOpenFaasGateway``: ``/system/functions`` (POST, PUT, DELETE; basic auth; every body
  validated against the gateway's published schema) and ``/system/function/<name>``, and
  ``/async-function/<name>``: answers 202, queues, calls the app, then POSTs the app's answer to
  the ``X-Callback-Url`` with ``X-Function-Status``, as the queue-worker does.
- ``FakeLambdaRuntime``: on a boto3 client under botocore's Stubber (which checks every call
  against the real service model), each ``Invoke`` with ``InvocationType='Event'`` runs the real
  handler in a thread with a ``FakeLambdaContext`` whose remaining time shrinks.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import secrets as random
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from botocore.stub import ANY, Stubber
from conftest import BASE_MANIFEST, merge
from kubernetes.client.exceptions import ApiException

from faasopt.coordinator import Coordinator, CoordinatorSettings, Outcome
from faasopt.function_app import start_server
from faasopt.invocation import NATS_TOKEN_FILE_ENV
from faasopt.lambda_handler import handler
from faasopt.nats_auth import job_credentials
from faasopt.nats_client import connect, disconnect
from faasopt.plan import JobPlan, plan_job
from faasopt.platforms.base import Platform
from faasopt.platforms.local import LocalPlatform
from faasopt.platforms.nats_server import NatsServer
from faasopt.platforms.openfaas import SECRETS_DIR
from faasopt.protocol import Subjects
from faasopt.spec import TrainingJob

K8S_VERSION = "1.35"


class LoopThread:
    """An asyncio loop in a daemon thread: the servers of a fake platform run there, beside the
    coordinator's own loop in the test's thread."""

    def __enter__(self) -> LoopThread:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        return self

    def run(self, coroutine: Coroutine, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        """Cancel what still runs there (a worker still leaving, say), then stop the loop."""

        async def cancel_the_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.run(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def serve_app(env: dict[str, str]) -> tuple[web.AppRunner, str]:
    """The real functions app on a free loopback port; returns its runner and URL."""
    runner = await start_server(env, "127.0.0.1", 0)
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# --- Knative -------------------------------------------------------------------------------


class FakeKnativeRoute:
    """A FAKE of a Knative route: forwards each request to the app, cuts it at the timeout."""

    def __init__(self, upstream: str, timeout_seconds: float) -> None:
        self.upstream, self.timeout_seconds = upstream, timeout_seconds
        self.bodies: list[bytes] = []
        self.answers: list[int] = []
        self._open: set[asyncio.BaseTransport] = set()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner, self.url = await _serve(app)
        return self.url

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        transport = request.transport
        self._open.add(transport)
        timeout = ClientTimeout(total=self.timeout_seconds)
        try:
            async with (
                ClientSession(timeout=timeout) as session,
                session.request(request.method, self.upstream + request.path, data=body) as answer,
            ):
                response = web.Response(status=answer.status, body=await answer.read())
        except TimeoutError:
            response = web.Response(status=504, text="request timeout")
        except ClientError:
            response = web.Response(status=502, text="upstream gone")
        finally:
            self._open.discard(transport)
        self.answers.append(response.status)
        return response

    def sever(self) -> None:
        """Drop every open request's connection (say, the node under the route went away).
        Call it in the route's loop."""
        for transport in list(self._open):
            transport.abort()

    async def stop(self) -> None:
        await self._runner.cleanup()


class FakeKnativeCluster:
    """A FAKE ``CustomObjectsApi`` for Knative Services, which runs what it is given.

    Each Service created starts the real app (its container's environment, Secrets resolved)
    behind a ``FakeKnativeRoute``; its status becomes Ready with the route's URL. Every Service
    is checked as the API server and Knative's webhook would in part: its pod template against
    the upstream Pod schema (the Knative CRD schema is not available offline).
    """

    def __init__(self, loop: LoopThread, secrets: dict[tuple[str, str], str]) -> None:
        self.loop, self.secrets = loop, secrets
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, ...]] = []
        self.routes: dict[tuple[str, str], FakeKnativeRoute] = {}
        self._apps: dict[tuple[str, str], web.AppRunner] = {}
        self._versions = iter(range(1, 1 << 30))

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self._check(group, version, plural)
        name = body["metadata"]["name"]
        self.calls.append(("create", namespace, name))
        if (namespace, name) in self.services:
            raise ApiException(status=409, reason="AlreadyExists")
        self._store(namespace, body)
        return copy.deepcopy(self.services[(namespace, name)])

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check(group, version, plural)
        self.calls.append(("get", namespace, name))
        if (namespace, name) not in self.services:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.services[(namespace, name)])

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self._check(group, version, plural)
        self.calls.append(("replace", namespace, name))
        current = self.services.get((namespace, name))
        if current is None:
            raise ApiException(status=404, reason="Not Found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self._stop(namespace, name)
        self._store(namespace, body)
        return copy.deepcopy(self.services[(namespace, name)])

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check(group, version, plural)
        self.calls.append(("delete", namespace, name))
        if self.services.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="Not Found")
        self._stop(namespace, name)

    def end(self) -> None:
        """Stop every app and route still running."""
        for namespace, name in list(self._apps):
            self._stop(namespace, name)

    @staticmethod
    def _check(group: str, version: str, plural: str) -> None:
        assert (group, version, plural) == ("serving.knative.dev", "v1", "services")

    def _store(self, namespace: str, body: dict[str, Any]) -> None:
        validate_pod_template(body)
        name = body["metadata"]["name"]
        spec = body["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = {item["name"]: self._value(namespace, item) for item in container["env"]}
        runner, app_url = self.loop.run(serve_app(env))
        route = FakeKnativeRoute(app_url, spec["timeoutSeconds"])
        url = self.loop.run(route.start())
        self._apps[(namespace, name)], self.routes[(namespace, name)] = runner, route
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        stored["status"] = {"url": url, "conditions": [{"type": "Ready", "status": "True"}]}
        self.services[(namespace, name)] = stored

    def _value(self, namespace: str, item: dict[str, Any]) -> str:
        if "value" in item:
            return item["value"]
        ref = item["valueFrom"]["secretKeyRef"]
        return self.secrets[(ref["name"], ref["key"])]

    def _stop(self, namespace: str, name: str) -> None:
        route = self.routes.get((namespace, name))
        runner = self._apps.pop((namespace, name), None)
        if route is not None:
            self.loop.run(route.stop())
        if runner is not None:
            self.loop.run(runner.cleanup())


def validate_pod_template(service: dict[str, Any]) -> None:
    """A Knative Service's pod template, less Knative's own fields, against the upstream Pod
    schema (strict: unknown fields fail), with the Service's metadata as the Pod's."""
    spec = dict(service["spec"]["template"]["spec"])
    for knative_only in ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds"):
        spec.pop(knative_only, None)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": service["metadata"], "spec": spec}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


# --- OpenFaaS ------------------------------------------------------------------------------

# From the gateway's published OpenAPI description (openfaas/faas, api-docs/spec.openapi.yml,
# commit 8d803bf9e2655aec6a60fd0e25b392839f96af95, version 0.8.12), as JSON Schema: OpenAPI's
# ``nullable`` became a null type, deprecated fields were left out, and additionalProperties is
# false, which the gateway does not enforce (Go ignores unknown fields): here a misspelt field
# fails instead of vanishing.
_RESOURCES = {
    "type": ["object", "null"],
    "properties": {"memory": {"type": "string"}, "cpu": {"type": "string"}},
    "additionalProperties": False,
}
_STRINGS = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
FUNCTION_DEPLOYMENT_SCHEMA = {
    "type": "object",
    "required": ["service", "image"],
    "additionalProperties": False,
    "properties": {
        "service": {"type": "string"},
        "image": {"type": "string"},
        "namespace": {"type": "string"},
        "envProcess": {"type": "string"},
        "constraints": {"type": "array", "items": {"type": "string"}},
        "envVars": {"type": "object", "additionalProperties": {"type": "string"}},
        "secrets": {"type": "array", "items": {"type": "string"}},
        "labels": _STRINGS,
        "annotations": _STRINGS,
        "limits": _RESOURCES,
        "requests": _RESOURCES,
        "readOnlyRootFilesystem": {"type": "boolean"},
    },
}
DELETE_FUNCTION_SCHEMA = {
    "type": "object",
    "required": ["functionName"],
    "properties": {"functionName": {"type": "string"}, "namespace": {"type": "string"}},
    "additionalProperties": False,
}


class FakeOpenFaasGateway:
    """A FAKE OpenFaaS gateway and queue-worker in front of the real app (see the module)."""

    def __init__(
        self,
        loop: LoopThread,
        secrets_dir: Path,
        secrets: dict[str, dict[str, str]],
        password: str = "gateway-password",
    ) -> None:
        self.loop, self.secrets_dir, self.secrets = loop, secrets_dir, secrets
        self.auth = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
        self.functions: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.async_bodies: list[bytes] = []
        self.callbacks: list[dict[str, str]] = []
        self._apps: dict[str, tuple[web.AppRunner, str]] = {}
        self._queue: set[asyncio.Task] = set()
        self._running: set[asyncio.Task] = set()
        self._killed: set[asyncio.Task] = set()

    def __enter__(self) -> FakeOpenFaasGateway:
        app = web.Application()
        app.router.add_route("*", "/system/functions", self._functions)
        app.router.add_get("/system/function/{name}", self._status)
        app.router.add_post("/async-function/{name}", self._async)
        self._runner, self.url = self.loop.run(_serve(app))
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for task in self._queue:
                task.cancel()
            for runner, _ in self._apps.values():
                await runner.cleanup()
            await self._runner.cleanup()

        self.loop.run(stop())

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == self.auth

    async def _functions(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        if not self._authorised(request):
            return web.Response(status=401)
        body = await request.json()
        if request.method == "DELETE":
            jsonschema.validate(body, DELETE_FUNCTION_SCHEMA)
            if body["functionName"] not in self.functions:
                return web.Response(status=404)
            del self.functions[body["functionName"]]
            runner, _ = self._apps.pop(body["functionName"])
            await runner.cleanup()
            return web.Response(status=200)
        jsonschema.validate(body, FUNCTION_DEPLOYMENT_SCHEMA)
        name = body["service"]
        if request.method == "PUT":
            if name not in self.functions:
                return web.Response(status=404)
            runner, _ = self._apps.pop(name)
            await runner.cleanup()
        elif request.method != "POST":
            return web.Response(status=405)
        self.functions[name] = body
        self._apps[name] = await serve_app(self._environment(body))
        return web.Response(status=202 if request.method == "POST" else 200)

    def _environment(self, function: dict[str, Any]) -> dict[str, str]:
        """The function's envVars; its secrets' keys as files, in a folder standing in for
        ``/var/openfaas/secrets``."""
        env = dict(function.get("envVars") or {})
        for secret in function.get("secrets") or []:
            for key, value in self.secrets[secret].items():
                (self.secrets_dir / key).write_text(value)
        if NATS_TOKEN_FILE_ENV in env:
            env[NATS_TOKEN_FILE_ENV] = env[NATS_TOKEN_FILE_ENV].replace(
                SECRETS_DIR, str(self.secrets_dir)
            )
        return env

    async def _status(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        if not self._authorised(request):
            return web.Response(status=401)
        function = self.functions.get(request.match_info["name"])
        if function is None:
            return web.Response(status=404)
        status = {"name": function["service"], "image": function["image"], "replicas": 1}
        return web.json_response({**status, "availableReplicas": 1})

    async def _async(self, request: web.Request) -> web.Response:
        """202 at once, even for a missing function; the outcome goes to the callback."""
        self.calls.append((request.method, request.path))
        body = await request.read()
        self.async_bodies.append(body)
        call_id = str(uuid.uuid4())
        name = request.match_info["name"]
        callback = request.headers.get("X-Callback-Url")
        task = asyncio.create_task(self._run(name, body, call_id, callback))
        self._queue.add(task)
        task.add_done_callback(self._queue.discard)
        return web.Response(status=202, headers={"X-Call-Id": call_id})

    async def _run(self, name: str, body: bytes, call_id: str, callback: str | None) -> None:
        started = time.perf_counter()
        app = self._apps.get(name)
        async with ClientSession() as session:
            if app is None:
                status, answer = 404, b"function not found"
            else:
                call = asyncio.create_task(self._call(session, app[1], body))
                self._running.add(call)
                try:
                    status, answer = await call
                except asyncio.CancelledError:
                    if call not in self._killed:
                        raise
                    status, answer = 502, b"function instance died"
                finally:
                    self._running.discard(call)
            if callback is None:
                return
            headers = {
                "X-Function-Status": str(status),
                "X-Call-Id": call_id,
                "X-Function-Name": name,
                "X-Duration-Seconds": f"{time.perf_counter() - started:.3f}",
            }
            self.callbacks.append(headers)
            try:
                async with session.post(callback, data=answer, headers=headers):
                    pass
            except ClientError:
                pass  # the caller is gone (torn down): the queue-worker only logs it

    @staticmethod
    async def _call(session: ClientSession, url: str, body: bytes) -> tuple[int, bytes]:
        try:
            async with session.post(url + "/", data=body) as response:
                return response.status, await response.read()
        except ClientError:
            return 502, b"function gone"

    def kill_running(self) -> None:
        """Every function call in flight dies (its instance was lost): the app's request is
        dropped, which ends its worker, and the callback says 502. Call it in the gateway's loop."""
        for call in list(self._running):
            self._killed.add(call)
            call.cancel()


# --- AWS Lambda ----------------------------------------------------------------------------


class FakeLambdaContext:
    """A FAKE of Lambda's context: the invocation's remaining time shrinks as the clock runs."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class FakeLambdaRuntime:
    """A FAKE Lambda service for ``Invoke`` on a stubbed client: each Event invocation is
    answered by the Stubber (202, checked against the real service model) and run by the real
    handler in a thread; ``lifetime(n)`` gives the n-th invocation's time limit, seconds."""

    def __init__(self, client: Any, stubber: Stubber, lifetime: Callable[[int], float]) -> None:
        self.client, self.stubber, self.lifetime = client, stubber, lifetime
        self.events: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        client.meta.events.register("provide-client-params.lambda.Invoke", self._on_invoke)

    def _on_invoke(self, params: dict[str, Any], **_: Any) -> None:
        expected = {"FunctionName": params["FunctionName"], "InvocationType": "Event"}
        request_id = random.token_hex(8)
        self.stubber.add_response(
            "invoke",
            {"StatusCode": 202, "ResponseMetadata": {"RequestId": request_id}},
            {**expected, "Payload": ANY},
        )
        event = json.loads(params["Payload"])
        context = FakeLambdaContext(self.lifetime(len(self.events)))
        self.events.append(event)
        thread = threading.Thread(target=self._run, args=(event, context), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self, event: dict[str, Any], context: FakeLambdaContext) -> None:
        try:
            self.results.append(handler(event, context))
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def join(self, timeout: float = 30.0) -> None:
        for thread in self._threads:
            thread.join(timeout)


# --- the job -------------------------------------------------------------------------------


def run_job(
    plan: JobPlan,
    platform: Platform,
    nats_url: str,
    *,
    coordinator: tuple[str | None, str | None] = (None, None),
    worker: tuple[str | None, str | None] = (None, None),
    settings: CoordinatorSettings | None = None,
    on_round: Callable[[Any], None] | None = None,
) -> Outcome:
    """Deploy, run the coordinator in this thread's own loop (as tests/test_faults.py does),
    tear down also on failure. ``coordinator`` and ``worker`` are (user, password) pairs."""

    async def main() -> Outcome:
        user, password = coordinator
        nc = await connect(nats_url, "coordinator", password, user=user)
        try:
            return await Coordinator(
                plan,
                nc,
                platform,
                nats_url,
                nats_token=worker[1],
                nats_user=worker[0],
                settings=settings,
                on_round=on_round,
            ).run()
        finally:
            await disconnect(nc)

    try:
        platform.deploy()
        return asyncio.run(main())
    finally:
        platform.teardown()


def objectives(outcome: Outcome) -> list[float]:
    return [r.record.objective for r in outcome.rounds]


PLAN = plan_job(TrainingJob.from_dict(merge(BASE_MANIFEST, {"metadata": {"namespace": "ml"}})))
"""The job every adapter test runs (namespace ml), with NATS auth on."""
_CREDENTIALS = job_credentials(Subjects(PLAN.namespace, PLAN.name))
COORDINATOR = (_CREDENTIALS.coordinator.user, _CREDENTIALS.coordinator.password)
WORKER = (_CREDENTIALS.worker.user, _CREDENTIALS.worker.password)


@contextmanager
def secured_nats() -> Iterator[NatsServer]:
    """A nats-server that knows only this job's coordinator and worker users."""
    with NatsServer(users=[_CREDENTIALS.coordinator, _CREDENTIALS.worker]) as server:
        yield server


def local_reference(nats_url: str) -> Outcome:
    """The job on local worker processes: what every adapter's run must equal."""
    outcome = run_job(
        PLAN, LocalPlatform(quiet=True), nats_url, coordinator=COORDINATOR, worker=WORKER
    )
    assert outcome.error is None and outcome.status.value == "converged"
    return outcome
