"""The worker's HTTP app for real: aiohttp on loopback, a real worker in it, a real nats-server.

The app is what Knative and OpenFaaS run; here nothing stands in front of it. No coordinator
either: the test listens on the job's subjects and plays the silent coordinator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
import pytest
from conftest import BASE_MANIFEST

from faasopt import protocol as p
from faasopt.function_app import start_server
from faasopt.invocation import (
    LEAVE_MARGIN_SECONDS,
    NATS_TOKEN_FILE_ENV,
    TIME_LIMIT_ENV,
    BadPayload,
    deadline_from,
    payload_from,
)
from faasopt.nats_auth import job_credentials
from faasopt.nats_client import connect, disconnect
from faasopt.payload import NATS_TOKEN_ENV, WorkerPayload
from faasopt.plan import plan_job
from faasopt.platforms.nats_server import NatsServer
from faasopt.spec import TrainingJob

PLAN = plan_job(TrainingJob.from_dict(BASE_MANIFEST))
SUBJECTS = p.Subjects(PLAN.namespace, PLAN.name)
CREDENTIALS = job_credentials(SUBJECTS)


@pytest.fixture(scope="module")
def secured():
    with NatsServer(users=[CREDENTIALS.coordinator, CREDENTIALS.worker]) as server:
        yield server


def _payload(url: str, **changes) -> WorkerPayload:
    """Worker w0 of the plan, without its password (the app's environment has it)."""
    payload = WorkerPayload(
        namespace=PLAN.namespace,
        job=PLAN.name,
        worker="w0",
        blocks=PLAN.assignment["w0"],
        n_blocks=PLAN.n_blocks,
        nats_url=url,
        data=PLAN.source,
        nats_user=CREDENTIALS.worker.user,
        idle_timeout_seconds=1.0,
        heartbeat_seconds=0.1,
    )
    return dataclasses.replace(payload, **changes)


ENV = {NATS_TOKEN_ENV: CREDENTIALS.worker.password}


class _Listener:
    """The coordinator's side of the subjects: what the worker says, and when it beats."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.hellos: list[p.Hello] = []
        self.beats: list[float] = []
        self.decoder = p.Decoder(SUBJECTS.key, accept={p.Hello.KIND, p.Heartbeat.KIND})

    async def __aenter__(self) -> _Listener:
        c = CREDENTIALS.coordinator
        self.nc = await connect(self.url, "listener", c.password, user=c.user)

        async def on_message(msg) -> None:
            message = self.decoder.feed(msg.data)
            if isinstance(message, p.Hello):
                self.hellos.append(message)
            elif isinstance(message, p.Heartbeat):
                self.beats.append(asyncio.get_running_loop().time())

        await self.nc.subscribe(SUBJECTS.up, cb=on_message)
        await self.nc.subscribe(SUBJECTS.hb, cb=on_message)
        await self.nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await disconnect(self.nc)

    async def hello(self, timeout: float = 20.0) -> p.Hello:
        async with asyncio.timeout(timeout):
            while not self.hellos:
                await asyncio.sleep(0.02)
        return self.hellos[0]


def _with_app(env: dict[str, str], scenario):
    """Run ``scenario(session, url)`` against the app on a free loopback port; stop it after."""

    async def main():
        runner = await start_server(env, "127.0.0.1", 0)
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as session:
                return await scenario(session, f"http://{host}:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_health_endpoint_answers():
    async def scenario(session, url):
        async with session.get(url + "/healthz") as response:
            return response.status, await response.json()

    assert _with_app({}, scenario) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"job": "x"}', json.dumps({"secret": "tok-3n", "worker": 1}).encode()],
    ids=["not-json", "missing-fields", "unknown-field"],
)
def test_a_malformed_payload_is_refused_with_400_and_runs_nothing(body):
    async def scenario(session, url):
        async with session.post(url + "/", data=body) as response:
            return response.status, await response.json()

    status, answer = _with_app({}, scenario)
    assert status == 400
    assert answer["error"].startswith("not a worker payload")
    assert "tok-3n" not in answer["error"]


def test_one_request_runs_one_worker_until_it_leaves_and_answers_its_summary(secured):
    """The token comes from the environment (a Secret), not the request; the worker says hello
    on NATS, leaves when its coordinator stays silent, and the request ends with 200."""

    async def scenario(session, url):
        async with _Listener(secured.url) as listener:
            body = _payload(secured.url).to_json()
            async with session.post(url + "/invoke", data=body) as response:
                return response.status, await response.json(), listener.hellos

    status, summary, hellos = _with_app(ENV, scenario)
    assert status == 200
    assert [h.worker for h in hellos] == ["w0"]
    assert summary["job"] == PLAN.name and summary["worker"] == "w0"
    assert summary["blocks"] == list(PLAN.assignment["w0"])
    assert summary["seconds"] >= 1.0  # the idle timeout


def test_the_token_may_come_from_a_secret_file(secured, tmp_path):
    token = tmp_path / "token"
    token.write_text(CREDENTIALS.worker.password + "\n")

    async def scenario(session, url):
        body = _payload(secured.url).to_json()
        async with _Listener(secured.url) as listener, session.post(url + "/", data=body) as answer:
            return answer.status, listener.hellos

    status, hellos = _with_app({NATS_TOKEN_FILE_ENV: str(token)}, scenario)
    assert status == 200 and [h.worker for h in hellos] == ["w0"]


def test_the_worker_leaves_at_its_invocations_deadline(secured):
    """The platform's limit from the environment, less the margin to leave: long before the
    coordinator's silence (60 s here) would end it."""
    env = {**ENV, TIME_LIMIT_ENV: str(LEAVE_MARGIN_SECONDS + 1.0)}

    async def scenario(session, url):
        async with _Listener(secured.url) as listener:
            body = _payload(secured.url, idle_timeout_seconds=60.0).to_json()
            async with session.post(url + "/", data=body) as response:
                return response.status, await response.json(), listener.hellos

    status, summary, hellos = _with_app(env, scenario)
    assert status == 200 and len(hellos) == 1
    assert 1.0 <= summary["seconds"] < 10.0


def test_a_caller_that_hangs_up_ends_its_worker(secured):
    """Its heartbeats stop: the worker was cancelled with its request."""

    async def scenario(session, url):
        async with _Listener(secured.url) as listener:
            body = _payload(secured.url, idle_timeout_seconds=60.0).to_json()
            request = asyncio.create_task(session.post(url + "/", data=body))
            await listener.hello()
            await asyncio.sleep(0.5)
            beating = len(listener.beats)
            request.cancel()  # the connection closes under the open request
            await asyncio.sleep(0.5)  # a beat already on its way may still arrive
            settled = asyncio.get_running_loop().time()
            await asyncio.sleep(1.0)
            return beating, [t for t in listener.beats if t > settled]

    beating, after = _with_app(ENV, scenario)
    assert beating >= 2  # it was alive and beating every 0.1 s
    assert after == []


def test_payload_from_prefers_the_payloads_own_token_and_refuses_garbage(tmp_path):
    payload = _payload("nats://127.0.0.1:4222", nats_token="in-payload")
    env = {NATS_TOKEN_ENV: "from-env"}
    assert payload_from(payload.to_json(), env).nats_token == "in-payload"
    bare = dataclasses.replace(payload, nats_token=None)
    assert payload_from(json.loads(bare.to_json()), env).nats_token == "from-env"
    assert payload_from(bare.to_json(), {}).nats_token is None
    assert payload_from(bare.to_json(), {}).blocks == bare.blocks
    with pytest.raises(BadPayload):
        payload_from("[1, 2]", {})


def test_deadline_keeps_a_margin_to_leave():
    assert deadline_from(None) is None
    assert deadline_from(900.0) == 900.0 - LEAVE_MARGIN_SECONDS
    assert deadline_from(1.0) == 0.0


def test_the_image_offers_every_entry_point_the_platforms_name():
    """Knative's command, OpenFaaS's fprocess and Lambda's handler exist and match the image."""
    import importlib
    from pathlib import Path

    from faasopt.platforms.aws_lambda import HANDLER, IMAGE_ENTRYPOINT
    from faasopt.platforms.knative import COMMAND
    from faasopt.platforms.openfaas import ENV_PROCESS

    dockerfile = (Path(__file__).resolve().parent.parent / "functions" / "Dockerfile").read_text()
    assert COMMAND == ENV_PROCESS.split() == ["python", "-m", "faasopt.function_app"]
    assert f'fprocess="{ENV_PROCESS}"' in dockerfile
    assert 'ENTRYPOINT ["fwatchdog"]' in dockerfile and "FROM worker AS openfaas" in dockerfile
    assert IMAGE_ENTRYPOINT == ["python", "-m", "awslambdaric"] and '"awslambdaric' in dockerfile
    module, function = HANDLER.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), function))
    assert callable(importlib.import_module(COMMAND[-1]).main)
