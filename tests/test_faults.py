"""A worker that dies costs the round in flight, never the iterates (DESIGN.md, "Blocks, not
workers"): kill -9 at several points, real processes, a real nats-server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml
from conftest import BASE_MANIFEST, merge
from conftest import kill_workers as _kill
from conftest import worker_processes as _workers
from prometheus_client import CollectorRegistry

import faasopt
from faasopt import protocol as p
from faasopt.coordinator import Coordinator, CoordinatorSettings
from faasopt.nats_client import connect, disconnect
from faasopt.plan import plan_job
from faasopt.platforms.local import LocalPlatform
from faasopt.platforms.nats_server import NatsServer
from faasopt.spec import TrainingJob

SYN = {"samples": 6000, "features": 150, "density": 0.04, "seed": 9}
PATCH = {
    "spec": {
        "problem": {"data": {"synthetic": SYN}},
        "algorithm": {"admm": {"primalTolerance": 1e-4, "dualTolerance": 1e-4}},
        "workers": {"count": 3},
    }
}


def _objectives(result) -> list[float]:
    return [entry["objective"] for entry in result.report["trace"]]


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "job.yaml"
    path.write_text(yaml.safe_dump(merge(BASE_MANIFEST, PATCH)))
    result = faasopt.run(path, quiet_workers=True)
    assert result.converged and result.iterations > 8
    return result


def _run_with(manifest, kills: dict[int, object], **options):
    """Run the job; after round k finishes, call kills[k]() (which kills some workers)."""

    def on_round(report):
        action = kills.get(report.record.iteration)
        if action is not None:
            action()

    return faasopt.run(manifest(PATCH), on_round=on_round, quiet_workers=True, **options)


def _same_run(result, undisturbed, replacements: int) -> None:
    assert result.converged
    assert _objectives(result) == _objectives(undisturbed)  # bit for bit: nothing was lost
    assert np.array_equal(result.solution, undisturbed.solution)
    assert result.report["replacements"] == replacements
    ended = [c for c in result.report["coldStarts"] if c["ended"]]
    assert len(ended) == replacements
    assert all("exited with status -9" in c["ended"] for c in ended)


def test_worker_killed_between_rounds(manifest, undisturbed):
    registry = CollectorRegistry()
    result = _run_with(manifest, {2: lambda: _kill(["w1"])}, metrics_registry=registry)
    _same_run(result, undisturbed, 1)
    counted = {
        sample.name: sample.value for family in registry.collect() for sample in family.samples
    }
    assert counted["faasopt_worker_replacements_total"] == 1
    assert counted["faasopt_worker_cold_starts_total"] == 4
    starts = {c["worker"]: c for c in result.report["coldStarts"]}
    assert starts["w1-r1"]["replaces"] == "w1" and starts["w1-r1"]["seconds"] > 0
    assert set(result.report["trace"][-1]["perWorker"]) == {"w0", "w1-r1", "w2"}


def test_worker_killed_in_the_middle_of_its_round(manifest, undisturbed):
    def soon():
        threading.Timer(0.002, _kill, (["w0"],)).start()

    result = _run_with(manifest, {3: soon})
    _same_run(result, undisturbed, 1)


def test_every_worker_killed_in_turn(manifest, undisturbed):
    kills = {1: lambda: _kill(["w0"]), 3: lambda: _kill(["w1"]), 5: lambda: _kill(["w2"])}
    result = _run_with(manifest, kills)
    _same_run(result, undisturbed, 3)


def test_all_workers_killed_at_once(manifest, undisturbed):
    result = _run_with(manifest, {2: lambda: _kill(["w0", "w1", "w2"])})
    _same_run(result, undisturbed, 3)


def test_replacement_is_killed_too(manifest, undisturbed):
    kills = {1: lambda: _kill(["w2"]), 2: lambda: _kill(["w2-r1"])}
    result = _run_with(manifest, kills)
    _same_run(result, undisturbed, 2)
    assert "w2-r2" in result.report["trace"][-1]["perWorker"]


def _frozen(manifest, worker: str, settings: CoordinatorSettings, undisturbed) -> str:
    """Freeze ``worker`` (SIGSTOP: alive, silent) after round 2; returns why it was retired."""
    on_round = _at(2, lambda: _kill([worker], signal.SIGSTOP))
    result = faasopt.run(manifest(PATCH), on_round=on_round, quiet_workers=True, settings=settings)
    assert result.converged
    assert _objectives(result) == _objectives(undisturbed)
    (ended,) = [c for c in result.report["coldStarts"] if c["ended"]]
    assert ended["worker"] == worker
    return ended["ended"]


def test_a_hung_worker_is_presumed_dead_and_replaced(manifest, undisturbed):
    settings = CoordinatorSettings(presumed_dead_seconds=1.5)
    assert "silent" in _frozen(manifest, "w1", settings, undisturbed)


class _AlwaysFailingPlatform(LocalPlatform):
    """Every worker for block 1 exits at once with status 3 (say, out of memory)."""

    def invoke(self, payload):
        if payload.blocks == (1,):
            process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
            self._processes[payload.worker] = process
            return str(process.pid)
        return super().invoke(payload)


def test_blocks_that_kill_every_worker_fail_the_job_clearly(manifest, nats_server):
    plan = plan_job(TrainingJob.from_yaml(manifest(PATCH)))
    platform = _AlwaysFailingPlatform(quiet=True)

    async def main():
        nc = await connect(nats_server.url, "test")
        try:
            settings = CoordinatorSettings(max_replacements_per_round=2)
            return await Coordinator(plan, nc, platform, nats_server.url, settings=settings).run()
        finally:
            await disconnect(nc)

    try:
        outcome = asyncio.run(main())
    finally:
        platform.teardown()
    assert outcome.error is not None
    assert "worker w1-r2 exited with status 3" in outcome.error
    assert "blocks [1] already lost 2 workers" in outcome.error
    assert outcome.replacements == 2


def test_hostile_messages_are_dropped_counted_and_change_nothing(
    manifest, nats_server, undisturbed
):
    """Garbage, foreign, stale and impostor messages published into a running job's subjects."""
    plan = plan_job(TrainingJob.from_yaml(manifest(PATCH)))
    subjects = p.Subjects(plan.namespace, plan.name)
    platform = LocalPlatform(quiet=True)
    x = np.zeros((1, plan.features))
    impostor = p.Result("w9", 0, (0,), (1.0,), (1,), (1,), 0.1, 0.0, x)
    stale = p.Result("w0", 0, (0,), (1.0,), (1,), (1,), 0.1, 0.0, x)
    sent = {
        "bad-magic": [b"GARBAGE" * 10] * 3,
        "truncated": [b"FO"] * 2,
        "foreign-job": p.encode(stale, "other/job", "w0", 1, 1 << 20) * 2,
        "unknown-worker": p.encode(impostor, subjects.key, "w9", 1, 1 << 20) * 4,
        "non-finite": [
            p.encode(stale, subjects.key, "w0", 2, 1 << 20)[0].replace(
                b'"idle_seconds":0.0', b'"idle_seconds":NaN'
            )
        ],
    }
    # w0's name without w0's instance: another instance's messages, dropped as such
    stale_frames = p.encode(stale, subjects.key, "w0", 3, 1 << 20) * 5

    async def main():
        nc = await connect(nats_server.url, "coordinator")
        attacker = await connect(nats_server.url, "attacker")
        loop = asyncio.get_running_loop()

        async def attack():
            for frames in [*sent.values(), stale_frames]:
                for frame in frames:
                    await attacker.publish(subjects.up, frame)
            await attacker.flush()

        attacks = []

        def on_round(report):
            if report.record.iteration == 3:
                attacks.append(loop.create_task(attack()))

        try:
            coordinator = Coordinator(plan, nc, platform, nats_server.url, on_round=on_round)
            outcome = await coordinator.run()
            await asyncio.gather(*attacks)
            return outcome
        finally:
            await disconnect(attacker)
            await disconnect(nc)

    try:
        outcome = asyncio.run(main())
    finally:
        platform.teardown()
    assert outcome.error is None and outcome.status.value == "converged"
    assert [r.record.objective for r in outcome.rounds] == _objectives(undisturbed)
    rejected = dict(outcome.rejected)
    assert rejected.pop("duplicate-instance") == len(stale_frames)
    assert rejected == {reason: len(frames) for reason, frames in sent.items()}


def _run_on(server, plan, on_round=None, outage_seconds=30.0):
    """Run ``plan`` with local workers on ``server``; the coordinator in this process."""
    platform = LocalPlatform(quiet=True)

    async def main():
        nc = await connect(server.url, "coordinator", outage_seconds=outage_seconds)
        try:
            coordinator = Coordinator(plan, nc, platform, server.url, on_round=on_round)
            return await coordinator.run()
        finally:
            await disconnect(nc)

    try:
        return asyncio.run(main())
    finally:
        platform.teardown()


def test_a_nats_server_restart_mid_job_delays_it_but_does_not_fail_it(manifest, undisturbed):
    plan = plan_job(TrainingJob.from_yaml(manifest(PATCH)))
    server = NatsServer().start()

    def on_round(report):
        if report.record.iteration == 3:  # between rounds: the next broadcast meets the outage
            server.stop()
            time.sleep(0.5)
            server.start()

    try:
        outcome = _run_on(server, plan, on_round)
    finally:
        server.stop()
    assert outcome.error is None and outcome.status.value == "converged"
    assert [r.record.objective for r in outcome.rounds] == _objectives(undisturbed)
    assert outcome.replacements == 0


def test_a_server_that_stays_gone_fails_the_job_with_the_reason(manifest):
    plan = plan_job(TrainingJob.from_yaml(manifest(PATCH)))
    server = NatsServer().start()

    def on_round(report):
        if report.record.iteration == 2:
            server.stop()

    try:
        outcome = _run_on(server, plan, on_round, outage_seconds=2.0)
    finally:
        server.stop()
    assert outcome.status is None
    assert outcome.error == "round 3: the NATS server stayed unreachable"
    assert outcome.replacements == 0


def test_a_frozen_worker_is_found_by_its_missing_heartbeats(manifest, undisturbed):
    """Without exit codes (a FaaS platform) and long before any round deadline."""
    settings = CoordinatorSettings(heartbeat_timeout_seconds=1.0, presumed_dead_seconds=600)
    assert "sent no heartbeat" in _frozen(manifest, "w2", settings, undisturbed)


def test_a_straggler_gets_a_speculative_copy_and_the_first_answer_wins(manifest, undisturbed):
    """A worker paused for 3 s in round 4 (alive, beating, just slow) is raced by a copy."""
    straggle = {
        "spec": {
            **PATCH["spec"],
            "workers": {"count": 3, "straggler": {"policy": "speculate", "minSeconds": 0.3}},
        }
    }
    settings = CoordinatorSettings(heartbeat_timeout_seconds=60, presumed_dead_seconds=60)

    def pause_w1():
        w1 = _workers()["w1"]
        w1.suspend()
        threading.Timer(3.0, lambda: w1.is_running() and w1.resume()).start()

    result = faasopt.run(
        manifest(straggle), on_round=_at(4, pause_w1), quiet_workers=True, settings=settings
    )
    assert result.converged
    assert _objectives(result) == _objectives(undisturbed)
    assert result.report["stragglers"] == {"speculated": 1, "copiesWon": 1}
    (ended,) = [c for c in result.report["coldStarts"] if c["ended"]]
    assert ended["worker"] == "w1" and "its copy w1-s1 answered first" in ended["ended"]
    assert "w1-s1" in result.report["trace"][-1]["perWorker"]


def _at(iteration: int, action):
    def on_round(report):
        if report.record.iteration == iteration:
            action()

    return on_round
