"""Per-job NATS credentials on one server: jobs cannot see or disturb each other."""

from __future__ import annotations

import asyncio

import nats
import pytest
from conftest import BASE_MANIFEST, merge

import faasopt
from faasopt import protocol as p
from faasopt.coordinator import Coordinator
from faasopt.nats_auth import job_credentials
from faasopt.nats_client import connect, disconnect
from faasopt.payload import WorkerPayload
from faasopt.plan import plan_job
from faasopt.platforms.local import LocalPlatform
from faasopt.platforms.nats_server import NatsServer
from faasopt.spec import TrainingJob


def _job(name: str, seed: int) -> TrainingJob:
    patch = {
        "metadata": {"name": name},
        "spec": {
            "problem": {"data": {"synthetic": {"samples": 1500, "features": 60, "seed": seed}}},
            "workers": {"count": 2},
        },
    }
    return TrainingJob.from_dict(merge(BASE_MANIFEST, patch))


JOBS = {"job-a": _job("job-a", 1), "job-b": _job("job-b", 2)}
CREDENTIALS = {
    name: job_credentials(p.Subjects(job.metadata.namespace, name)) for name, job in JOBS.items()
}


@pytest.fixture(scope="module")
def secured():
    users = [u for c in CREDENTIALS.values() for u in (c.coordinator, c.worker)]
    with NatsServer(users=users) as server:
        yield server


def test_two_jobs_on_one_server_each_converge_to_their_own_solution(secured):
    platforms = {name: LocalPlatform(quiet=True) for name in JOBS}

    async def solve(name: str):
        creds = CREDENTIALS[name]
        nc = await connect(
            secured.url, name, creds.coordinator.password, user=creds.coordinator.user
        )
        try:
            coordinator = Coordinator(
                plan_job(JOBS[name]),
                nc,
                platforms[name],
                secured.url,
                nats_token=creds.worker.password,
                nats_user=creds.worker.user,
            )
            return await coordinator.run()
        finally:
            await disconnect(nc)

    async def both():
        return await asyncio.gather(*(solve(name) for name in JOBS))

    try:
        outcomes = dict(zip(JOBS, asyncio.run(both()), strict=True))
    finally:
        for platform in platforms.values():
            platform.teardown()
    for name, outcome in outcomes.items():
        alone = faasopt.run(JOBS[name], quiet_workers=True)  # its own server, no auth
        assert outcome.error is None and outcome.rejected == {}
        assert [r.record.objective for r in outcome.rounds] == [
            e["objective"] for e in alone.report["trace"]
        ]


def test_a_workers_credentials_do_not_reach_another_job(secured):
    a, b = CREDENTIALS["job-a"], CREDENTIALS["job-b"]
    b_subjects = p.Subjects("default", "job-b")
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async def probe():
        listener = await connect(secured.url, "b", b.coordinator.password, user=b.coordinator.user)
        seen = []

        async def record(msg) -> None:
            seen.append(msg)

        await listener.subscribe(b_subjects.up, cb=record)
        intruder = await nats.connect(
            secured.url, user=a.worker.user, password=a.worker.password, error_cb=on_error
        )
        await intruder.publish(b_subjects.up, b"forged result")
        await intruder.subscribe(b_subjects.ctl)
        await intruder.flush()
        await asyncio.sleep(0.3)
        await intruder.close()
        await disconnect(listener)
        return seen

    seen = asyncio.run(probe())
    assert seen == []
    texts = " ".join(str(e).lower() for e in errors)
    assert "permissions violation for publish" in texts
    assert "permissions violation for subscription" in texts


def test_no_credentials_no_connection(secured):
    async def anonymous():
        await nats.connect(secured.url, allow_reconnect=False, max_reconnect_attempts=0)

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(anonymous())


def test_secrets_never_print():
    creds = CREDENTIALS["job-a"]
    payload = WorkerPayload(
        namespace="default",
        job="job-a",
        worker="w0",
        blocks=(0,),
        n_blocks=1,
        nats_url="nats://127.0.0.1:4222",
        data={},
        nats_token=creds.worker.password,
        nats_user=creds.worker.user,
    )
    for text in (repr(payload), repr(creds), str(creds.worker)):
        assert creds.worker.password not in text and creds.coordinator.password not in text
