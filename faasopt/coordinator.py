"""The coordinator: Algorithm 1 of seed 001 over NATS, with the ADMM variables kept per block.

It starts the workers through a platform, hands each its blocks' state, and runs rounds: broadcast
``(k, rho_k, z_k)``, gather every block's new ``x_b``, reduce in block order (so the iterates do not
depend on the placement), z-step, stop or go on. Every incoming message is decoded
and checked; a bad, stale or foreign one is dropped and counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from nats.errors import Error as NatsError

from faasopt import protocol as p
from faasopt.errors import (
    FaasoptError,
    JobDeadlineError,
    PlatformError,
    ProtocolError,
    WorkerTimeoutError,
)
from faasopt.plan import JobPlan
from faasopt.platforms.base import Platform
from faasopt.solvers.admm import Consensus, RoundRecord, Status, final_objective
from faasopt.worker import WorkerPayload


@dataclass(frozen=True)
class CoordinatorSettings:
    """Deadlines of the coordinator's waits (seconds)."""

    start_timeout_seconds: float = 120.0
    """From invoking a worker to its hello: process start, imports and loading its blocks."""
    round_timeout_seconds: float = 600.0
    """From a broadcast to the last result of that round."""
    finish_timeout_seconds: float = 60.0
    """From the finish broadcast to the last worker's final answer."""
    poll_seconds: float = 0.25
    """How often a wait checks that the workers are still alive."""


@dataclass
class WorkerRecord:
    """What the coordinator learned about one worker."""

    name: str
    blocks: tuple[int, ...]
    invocation: str = ""
    cold_start_seconds: float | None = None
    """From the invoke request to the worker's first contact (seed 001, Sec. II-B)."""
    load_seconds: float | None = None
    """Part of the cold start spent loading the worker's blocks, as the worker measured it."""
    peak_rss_bytes: int | None = None


@dataclass(frozen=True)
class WorkerTiming:
    """One worker in one round (seed 001, Sec. II-B): all in seconds."""

    compute: float
    """From receiving z_k to sending its results, measured by the worker."""
    idle: float
    """From its previous send to receiving z_k, measured by the worker."""
    communication: float
    """Delay (broadcast to reception of its results, at the coordinator) minus compute."""


@dataclass(frozen=True)
class RoundReport:
    record: RoundRecord
    elapsed_seconds: float
    """Since the first broadcast, when this round's z_{k+1} was computed."""
    timings: dict[str, WorkerTiming]


@dataclass
class Outcome:
    """How a run ended: the status, the solution and everything measured on the way."""

    status: Status | None
    error: str | None
    z: np.ndarray
    objective: float | None
    rounds: list[RoundReport]
    workers: dict[str, WorkerRecord]
    solve_seconds: float
    rho_changes: int
    rejected: dict[str, int] = field(default_factory=dict)


OnRound = Callable[[RoundReport], None]


class Coordinator:
    """Runs one job's rounds over a connected NATS client.

    Parameters
    ----------
    plan : JobPlan
    nc : nats.aio.client.Client
        A connected client; the coordinator subscribes and publishes, it does not close it.
    platform : Platform
        Starts the workers; its ``exited`` lets waits fail fast when a worker dies.
    nats_url, nats_token : str
        What workers connect to.
    on_round : callable, optional
        Called with each finished round (progress display, metrics).
    """

    def __init__(
        self,
        plan: JobPlan,
        nc,
        platform: Platform,
        nats_url: str,
        nats_token: str | None = None,
        on_round: OnRound | None = None,
        settings: CoordinatorSettings | None = None,
    ) -> None:
        self.plan = plan
        self.nc = nc
        self.platform = platform
        self.nats_url = nats_url
        self.nats_token = nats_token
        self.on_round = on_round
        self.settings = settings or CoordinatorSettings()
        self.subjects = p.Subjects(plan.namespace, plan.name)
        self.decoder = p.Decoder(
            self.subjects.key,
            accept={p.Hello.KIND, p.Result.KIND, p.Final.KIND},
            max_message_bytes=8 * (plan.n_blocks * plan.features + 1024),
        )
        self.consensus = Consensus(plan.settings, plan.n_blocks, plan.features)
        self.workers = {
            name: WorkerRecord(name, blocks) for name, blocks in plan.assignment.items()
        }
        self.rounds: list[RoundReport] = []
        self._inbox: asyncio.Queue[tuple[float, p.Message]] = asyncio.Queue()
        self._msg_ids = iter(range(1 << 62))
        self._deadline = float("inf")
        self.interrupted: int | None = None

    def interrupt(self, signum: int) -> None:
        """Stop at the next poll: workers are told to leave and the run ends unfinished."""
        self.interrupted = signum

    async def run(self) -> Outcome:
        """Start the workers, iterate to the end, collect the final objective. Never raises
        a FaasoptError: a failed run is an Outcome with ``error`` set."""
        started = time.perf_counter()
        if self.plan.active_deadline_seconds:
            self._deadline = started + self.plan.active_deadline_seconds
        sub = await self.nc.subscribe(self.subjects.up, cb=self._on_message)
        solve_started = started
        error = None
        objective = None
        try:
            await self._start_workers()
            solve_started = time.perf_counter()
            while not self.consensus.done:
                await self._round(solve_started)
            objective = await self._finish()
        except (FaasoptError, NatsError) as exc:
            error = str(exc) if isinstance(exc, FaasoptError) else f"NATS: {exc}"
            with contextlib.suppress(NatsError):  # workers also leave when NATS is gone
                await self._publish(self.subjects.ctl, p.Stop(error[:200]))
        finally:
            await sub.unsubscribe()
        return Outcome(
            status=self.consensus.status,
            error=error,
            z=self.consensus.z,
            objective=objective,
            rounds=self.rounds,
            workers=self.workers,
            solve_seconds=time.perf_counter() - solve_started,
            rho_changes=self.consensus.rho_changes,
            rejected=dict(self.decoder.rejected),
        )

    # --- phases ---------------------------------------------------------------------------

    async def _start_workers(self) -> None:
        invoked: dict[str, float] = {}
        for name, blocks in self.plan.assignment.items():
            payload = WorkerPayload(
                namespace=self.plan.namespace,
                job=self.plan.name,
                worker=name,
                blocks=blocks,
                n_blocks=self.plan.n_blocks,
                nats_url=self.nats_url,
                nats_token=self.nats_token,
                data=self.plan.source,
            )
            invoked[name] = time.perf_counter()
            self.workers[name].invocation = self.platform.invoke(payload)

        def hello(t: float, msg: p.Message) -> str | None:
            if not isinstance(msg, p.Hello):
                return None
            record = self.workers[msg.worker]
            record.cold_start_seconds = t - invoked[msg.worker]
            record.load_seconds = msg.load_seconds
            return msg.worker

        await self._gather(hello, "start", self.settings.start_timeout_seconds)
        local = self.plan.settings.local
        for name, record in self.workers.items():
            idx = list(record.blocks)
            state = np.stack([self.consensus.x[idx], self.consensus.u[idx]])
            assign = p.Assign(
                worker=name,
                blocks=record.blocks,
                rho_u=self.consensus.rho_u,
                solver=local.method,
                gradient_tolerance=local.gradient_tolerance,
                relative_improvement=local.relative_improvement,
                min_iterations=local.min_iterations,
                max_iterations=local.max_iterations,
                state=state,
            )
            await self._publish(self.subjects.worker(name), assign)

    async def _round(self, solve_started: float) -> None:
        c = self.consensus
        k = c.iteration
        x = np.empty((self.plan.n_blocks, self.plan.features))
        loss = np.empty(self.plan.n_blocks)
        evaluations = 0
        timings: dict[str, WorkerTiming] = {}
        sent = time.perf_counter()
        await self._publish(self.subjects.ctl, p.Iterate(k, c.rho, c.z))

        def result(t: float, msg: p.Message) -> str | None:
            nonlocal evaluations
            if not isinstance(msg, p.Result):
                return None
            if msg.iteration != k:
                raise ProtocolError("stale", f"result of round {msg.iteration} in round {k}")
            idx = list(msg.blocks)
            per_block = (msg.loss_at_z, msg.gradient_evaluations, msg.solver_iterations)
            if msg.x.shape != (len(idx), self.plan.features) or any(
                len(values) != len(idx) for values in per_block
            ):
                raise ProtocolError("bad-shape", f"x {msg.x.shape} for blocks {idx}")
            x[idx], loss[idx] = msg.x, msg.loss_at_z
            evaluations += sum(msg.gradient_evaluations)
            delay = t - sent
            timings[msg.worker] = WorkerTiming(
                compute=msg.compute_seconds,
                idle=msg.idle_seconds,
                communication=max(delay - msg.compute_seconds, 0.0),
            )
            return msg.worker

        await self._gather(result, f"round {k}", self.settings.round_timeout_seconds)
        record = c.reduce(x, loss.tolist(), evaluations)
        report = RoundReport(record, time.perf_counter() - solve_started, timings)
        self.rounds.append(report)
        if self.on_round is not None:
            self.on_round(report)

    async def _finish(self) -> float:
        await self._publish(
            self.subjects.ctl, p.Finish(str(self.consensus.status), self.consensus.z)
        )
        loss = np.empty(self.plan.n_blocks)

        def final(t: float, msg: p.Message) -> str | None:
            if not isinstance(msg, p.Final):
                return None
            if len(msg.loss_at_z) != len(msg.blocks):
                raise ProtocolError("bad-shape", f"{len(msg.loss_at_z)} losses for {msg.blocks}")
            loss[list(msg.blocks)] = msg.loss_at_z
            self.workers[msg.worker].peak_rss_bytes = msg.peak_rss_bytes
            return msg.worker

        await self._gather(final, "finish", self.settings.finish_timeout_seconds, allow_exit=True)
        return final_objective(loss.tolist(), self.consensus.z, self.plan.settings)

    # --- plumbing -------------------------------------------------------------------------

    async def _on_message(self, msg) -> None:
        message = self.decoder.feed(msg.data)
        if message is not None:
            self._inbox.put_nowait((time.perf_counter(), message))

    async def _publish(self, subject: str, message: p.Message) -> None:
        frames = p.encode(
            message, self.subjects.key, "coordinator", next(self._msg_ids), self.nc.max_payload
        )
        for frame in frames:
            await self.nc.publish(subject, frame)
        await self.nc.flush()

    async def _gather(
        self,
        accept: Callable[[float, p.Message], str | None],
        phase: str,
        timeout: float,
        allow_exit: bool = False,
    ) -> None:
        """Wait until every worker's message is accepted; ``accept`` returns the worker's name.

        A message from an unknown worker, for blocks it does not hold, one already answered, or
        one ``accept`` refuses (by ProtocolError) is dropped and counted. Fails when a worker
        exits (unless ``allow_exit`` and it has answered), when the phase times out, or when the
        job's deadline passes.
        """
        pending = set(self.workers)
        deadline = min(time.perf_counter() + timeout, self._deadline)
        while pending:
            if self.interrupted is not None:
                raise FaasoptError(f"{phase}: interrupted by signal {self.interrupted}")
            now = time.perf_counter()
            if now >= deadline:
                if deadline == self._deadline:
                    raise JobDeadlineError(self.plan.active_deadline_seconds)
                missing = sorted(pending)
                raise WorkerTimeoutError(
                    f"{phase}: no answer from {', '.join(missing)} within {timeout:g} s",
                    missing,
                    timeout,
                )
            try:  # asyncio.timeout, unlike wait_for in 3.11, never turns a cancel into a timeout
                async with asyncio.timeout(min(self.settings.poll_seconds, deadline - now)):
                    received, msg = await self._inbox.get()
            except TimeoutError:
                self._check_alive(pending if allow_exit else set(self.workers), phase)
                continue
            name = getattr(msg, "worker", None)
            record = self.workers.get(name)
            if record is None:
                self.decoder.reject("unknown-worker")
            elif getattr(msg, "blocks", record.blocks) != record.blocks:
                self.decoder.reject("wrong-blocks")
            elif name not in pending:
                self.decoder.reject("duplicate")
            else:
                try:
                    accepted = accept(received, msg)
                except ProtocolError as exc:
                    self.decoder.reject(exc.reason)
                    continue
                if accepted is None:
                    self.decoder.reject("unexpected")
                else:
                    pending.discard(name)

    def _check_alive(self, watched: set[str], phase: str) -> None:
        for name, code in sorted(self.platform.exited().items()):
            if name in watched:
                raise PlatformError(f"{phase}: worker {name} exited with status {code}")
