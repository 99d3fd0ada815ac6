"""At-least-once invocations are harmless (issue #5, item 2): a platform that starts a worker
twice from one payload (Lambda's async retries, OpenFaaS's queue), or a late copy of a worker
that left the pool, changes nothing. Real worker processes, a real nats-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import numpy as np
from test_faults import PATCH, _objectives, undisturbed  # noqa: F401  (the module's fixture)

from faasopt.coordinator import Coordinator, Outcome
from faasopt.nats_client import connect, disconnect
from faasopt.payload import WorkerPayload
from faasopt.plan import plan_job
from faasopt.platforms.local import LocalPlatform
from faasopt.spec import TrainingJob


class _RecordingPlatform(LocalPlatform):
    """Local workers; the payload of each invocation is kept, to deliver it again."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.payloads: dict[str, WorkerPayload] = {}

    def invoke(self, payload: WorkerPayload) -> str:
        self.payloads[payload.worker] = payload
        return super().invoke(payload)


class _TwicePlatform(_RecordingPlatform):
    """Each invocation delivered twice: a twin process from the same payload. A worker has
    exited when both of its processes have; retiring it stops both."""

    def __init__(self) -> None:
        super().__init__()
        self.twins: dict[str, LocalPlatform] = {}

    def invoke(self, payload: WorkerPayload) -> str:
        self.twins[payload.worker] = twin = LocalPlatform(quiet=True)
        twin.invoke(payload)
        return super().invoke(payload)

    def exited(self) -> dict[str, int]:
        return {n: c for n, c in super().exited().items() if n in self.twins[n].exited()}

    def retire(self, worker: str) -> None:
        super().retire(worker)
        self.twins[worker].retire(worker)

    def processes(self) -> list[subprocess.Popen]:
        """Every process started: the first and the twin of each worker."""
        return [
            process
            for platform in (self, *self.twins.values())
            for process in platform._processes.values()
        ]

    def teardown(self) -> None:
        super().teardown()
        for twin in self.twins.values():
            twin.teardown()


def _run(manifest, nats_server, platform: LocalPlatform, on_round=None) -> Outcome:
    plan = plan_job(TrainingJob.from_yaml(manifest(PATCH)))

    async def main() -> Outcome:
        nc = await connect(nats_server.url, "coordinator")
        try:
            coordinator = Coordinator(plan, nc, platform, nats_server.url, on_round=on_round)
            return await coordinator.run()
        finally:
            await disconnect(nc)

    return asyncio.run(main())


def test_every_worker_invoked_twice_changes_nothing(manifest, nats_server, undisturbed):  # noqa: F811
    platform = _TwicePlatform()
    try:  # rounds stretched to 0.3 s: every twin says hello while the job runs
        outcome = _run(manifest, nats_server, platform, lambda report: time.sleep(0.3))
        # every process leaves by itself: the admitted one after its final answer, its
        # duplicate when told to at its hello; none is left for teardown to kill
        codes = [process.wait(10) for process in platform.processes()]
    finally:
        platform.teardown()
    assert outcome.error is None and outcome.status.value == "converged"
    assert [r.record.objective for r in outcome.rounds] == _objectives(undisturbed)
    assert np.array_equal(outcome.z, undisturbed.solution)
    assert outcome.replacements == 0
    assert codes == [0] * 2 * len(platform.twins)
    assert outcome.rejected.get("duplicate-instance", 0) >= len(platform.twins)
    assert {w.name for w in outcome.workers} == {"w0", "w1", "w2"}


def test_a_late_copy_of_a_worker_that_left_the_pool_is_told_to_leave(
    manifest,
    nats_server,
    undisturbed,  # noqa: F811
):
    """w1 is killed after round 2 and replaced; its invocation is delivered again after round 4
    (a late retry). The coordinator no longer has w1: the copy's hello is refused and it is told
    to leave, instead of idling until its idle timeout."""
    platform = _RecordingPlatform()
    late = LocalPlatform(quiet=True)

    def on_round(report) -> None:
        k = report.record.iteration
        if k == 2:
            os.kill(platform.pids["w1"], signal.SIGKILL)
        elif k == 4:
            late.invoke(platform.payloads["w1"])
        if k >= 4:
            time.sleep(0.3)  # the copy says hello while the job still runs

    try:
        outcome = _run(manifest, nats_server, platform, on_round)
        code = late._processes["w1"].wait(10)
    finally:
        platform.teardown()
        late.teardown()
    assert outcome.error is None and outcome.status.value == "converged"
    assert [r.record.objective for r in outcome.rounds] == _objectives(undisturbed)
    assert outcome.replacements == 1
    assert code == 0  # it left by itself
    assert outcome.rejected.get("unknown-worker", 0) >= 1
