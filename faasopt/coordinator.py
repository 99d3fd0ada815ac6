"""The coordinator: Algorithm 1 of seed 001 over NATS, for any algorithm of faasopt.algorithms.

It starts the workers through a platform, hands each its blocks' state, and runs rounds: broadcast
(ADMM: ``(k, rho_k, z_k)``), gather every block's answer, reduce in block order (so the iterates do
not depend on the placement), stop or go on. The algorithm's driver does the math and keeps every
block's state; the coordinator moves messages, times them and keeps the pool alive. Between
rounds, workers near their time limit are rotated: a successor takes over their blocks with the
exact state. Every incoming message is decoded and checked; a bad, stale or foreign one is
dropped and counted, never raised, and a duplicate instance of a worker (an invocation delivered
twice) is told to leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from nats.errors import Error as NatsError

from faasopt import cost, scalein
from faasopt import protocol as p
from faasopt.algorithms import StepRecord, driver_for
from faasopt.checkpoint import (
    Checkpoint,
    CheckpointStore,
    encode,
    fingerprint,
)
from faasopt.checkpoint import key as checkpoint_key
from faasopt.errors import (
    FaasoptError,
    GuardStop,
    JobDeadlineError,
    PlatformError,
    ProtocolError,
)
from faasopt.payload import WorkerPayload
from faasopt.plan import JobPlan
from faasopt.platforms.base import Platform
from faasopt.solvers.admm import RoundRecord


@dataclass(frozen=True)
class CoordinatorSettings:
    """Deadlines of the coordinator's waits and its patience with workers (seconds)."""

    start_timeout_seconds: float = 120.0
    """From invoking a worker to its hello: process start, imports and loading its blocks."""
    heartbeat_timeout_seconds: float = 10.0
    """A worker that sends no heartbeat this long is presumed dead and replaced; workers beat
    five times as often."""
    presumed_dead_seconds: float = 30.0
    """A worker silent this long in a round (or 10x the slowest round so far, if longer) is
    presumed dead and replaced."""
    finish_timeout_seconds: float = 60.0
    """From the finish broadcast to the last worker's final answer."""
    resend_seconds: float = 2.0
    """A worker that owes an answer this long (or twice the slowest round, if longer) is sent
    the phase's message again: NATS may have lost it."""
    checkpoint_every_iterations: int = 10
    """Save a checkpoint after this many rounds (when a store is given)..."""
    checkpoint_every_seconds: float = 30.0
    """...or after this many seconds, whichever comes first."""
    max_replacements_per_round: int = 3
    """Replacements of one worker's blocks within one round before the job fails: a worker
    that dies every time (out of memory, say) must not loop forever."""
    poll_seconds: float = 0.25
    """How often a wait checks that the workers are still alive."""


EVICTED = "evicted"
"""How the ``ended`` of a worker that scale-in evicted begins."""
ROTATED = "rotated"
"""How the ``ended`` of a worker rotated out before its time limit begins."""


@dataclass
class WorkerRecord:
    """What the coordinator learned about one worker."""

    name: str
    blocks: tuple[int, ...]
    replaces: str | None = None
    """The worker whose blocks this one took over, if it is a replacement."""
    rotates: str | None = None
    """The worker whose blocks this one took over before its time limit, if it is a successor."""
    instance: str | None = None
    """The instance admitted under this name (its hello's); any other instance is a duplicate."""
    invocation: str = ""
    invoked_at: float = 0.0
    cold_start_seconds: float | None = None
    """From the invoke request to the worker's first contact (seed 001, Sec. II-B)."""
    load_seconds: float | None = None
    """Part of the cold start spent loading the worker's blocks, as the worker measured it."""
    peak_rss_bytes: int | None = None
    ended: str | None = None
    """Why it left the pool early (exit status, silence, eviction), or None."""
    ended_at: float | None = None
    """When it left the pool (perf_counter); None while it is in it."""

    def retire(self, why: str) -> None:
        """It leaves the pool early, for ``why``, now."""
        self.ended, self.ended_at = why, time.perf_counter()

    def said_hello(self, received: float, hello: p.Hello) -> None:
        """Its first contact, at ``received``: the end of its cold start; the instance admitted."""
        self.cold_start_seconds = received - self.invoked_at
        self.load_seconds = hello.load_seconds
        self.instance = hello.instance


def evicted(records: Iterable[WorkerRecord]) -> list[str]:
    """The workers among ``records`` that scale-in evicted."""
    return [r.name for r in records if (r.ended or "").startswith(EVICTED)]


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
    record: RoundRecord | StepRecord
    """ADMM's round record, or another algorithm's (:class:`faasopt.algorithms.StepRecord`)."""
    elapsed_seconds: float
    """Since the first broadcast, when this round's z_{k+1} was computed."""
    timings: dict[str, WorkerTiming]
    dollars: float = 0.0
    """The job's cost so far (faasopt.cost), when this round ended."""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "timings": {n: asdict(t) for n, t in self.timings.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundReport:
        fields = data["record"]
        if "details" in fields:
            record = StepRecord(**fields)
        else:
            record = RoundRecord(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
            )
        return cls(
            record=record,
            elapsed_seconds=data["elapsed_seconds"],
            timings={n: WorkerTiming(**t) for n, t in data["timings"].items()},
            dollars=data.get("dollars", 0.0),
        )


@dataclass
class Outcome:
    """How a run ended: the status, the solution and everything measured on the way."""

    status: Any
    """Why the run ended: the algorithm's status (a StrEnum), or None if it never did."""
    error: str | None
    z: np.ndarray
    """The solution: z (ADMM), x (SGD), the centroids (k-means)."""
    objective: float | None
    rounds: list[RoundReport]
    workers: list[WorkerRecord]
    """Every worker that took part, replaced ones included, in order of invocation."""
    solve_seconds: float
    rho_changes: int
    rejected: dict[str, int] = field(default_factory=dict)
    speculations: int = 0
    """Speculative copies started for stragglers (``workers.straggler: speculate``)."""
    speculation_wins: int = 0
    """Rounds in which a copy answered before its straggler."""
    lifetimes: dict[str, float] = field(default_factory=dict)
    """Seconds each worker was in the pool, from its invocation: what it is billed for."""
    scale_in: dict[str, Any] | None = None
    """The scale-in policy and every decision (:meth:`faasopt.scalein.Tracker.to_report`)."""
    guard: str | None = None
    """The reason a scale-in guard stopped the run (BudgetExceeded, DeadlineExceeded), if one
    did; ``error`` says more."""
    untraced_compute_seconds: float = 0.0
    """Workers' compute in the rounds the trace does not list (k-means++ seeding, MA-SGD's
    flush): counted in ``speedup`` with the listed rounds'."""

    @property
    def replacements(self) -> int:
        return sum(w.replaces is not None for w in self.workers)

    @property
    def rotations(self) -> int:
        """Workers rotated out before their time limit (a successor took over each)."""
        return sum((w.ended or "").startswith(ROTATED) for w in self.workers)


OnRound = Callable[[RoundReport], None]
Accept = Callable[[float, p.Message], bool]


class Coordinator:
    """Runs one job's rounds over a connected NATS client.

    A worker that exits, or stays silent past its deadline, is replaced: a fresh worker is
    invoked for the same blocks, handed their exact state, and sent the message of the phase in
    flight. The job loses the time of that round, never its iterates. A worker that says it
    leaves before its time limit is rotated between rounds the same way, without losing a round.

    Parameters
    ----------
    plan : JobPlan
    nc : nats.aio.client.Client
        A connected client; the coordinator subscribes and publishes, it does not close it.
    platform : Platform
        Starts and stops workers; its ``exited`` reveals deaths before any deadline.
    nats_url, nats_token, nats_user : str
        What workers connect to and with (a token, or a user and its password).
    on_round : callable, optional
        Called with each finished round (progress display, metrics).
    store : CheckpointStore, optional
        Where checkpoints go; none are taken without one.
    resume : Checkpoint, optional
        Start from this state instead of from zero.
    """

    def __init__(
        self,
        plan: JobPlan,
        nc,
        platform: Platform,
        nats_url: str,
        nats_token: str | None = None,
        nats_user: str | None = None,
        on_round: OnRound | None = None,
        settings: CoordinatorSettings | None = None,
        store: CheckpointStore | None = None,
        resume: Checkpoint | None = None,
    ) -> None:
        self.plan = plan
        self.nc = nc
        self.platform = platform
        self.nats_url = nats_url
        self.nats_token = nats_token
        self.nats_user = nats_user
        self.on_round = on_round
        self.settings = settings or CoordinatorSettings()
        self.subjects = p.Subjects(plan.namespace, plan.name)
        self.driver = driver_for(plan)
        self.decoder = p.Decoder(
            self.subjects.key,
            accept={p.Hello.KIND, p.Heartbeat.KIND, *self.driver.accepts},
            max_message_bytes=self.driver.max_message_bytes,
        )
        self.workers: dict[str, WorkerRecord] = {}
        """The active pool: worker name -> record."""
        self.history: list[WorkerRecord] = []
        self.rounds: list[RoundReport] = []
        self.interrupted: int | None = None
        self._inbox: asyncio.Queue[tuple[float, p.Message]] = asyncio.Queue()
        self._msg_ids = iter(range(1 << 62))
        self._deadline = float("inf")
        self._starting: set[str] = set()
        self._in_flight: p.Message | None = None  # what a worker admitted mid-phase needs
        self._slowest_round = 0.0
        self._broadcasts: list[float] = []  # when the last two rounds were broadcast
        self._reconnects = 0
        self._beats: dict[str, float] = {}  # worker -> when its last heartbeat came
        self._copies: dict[str, str] = {}  # speculative copy -> the straggler it races
        self._successors: dict[str, WorkerRecord] = {}  # worker -> successor started early
        self._seconds_left: dict[str, float] = {}  # worker -> how long it stays, from its result
        self._leaving: set[str] = set()  # workers whose last result said they leave
        self._evicting: dict[str, str] = {}  # worker -> why: evicted once it hands back (MA)
        self._retiring: set[str] = set()  # rotated out once it hands back (its successor waits)
        self._untraced_compute = 0.0  # workers' compute in rounds the trace does not list
        self.speculations = 0
        self.speculation_wins = 0
        # several victims at once, carried out after the round the decision ran beside
        self.tracker = scalein.Tracker(plan.scale_in, max_victims=None, ahead=1)
        self._deciding: asyncio.Future[scalein.Decision] | None = None
        """The decision on the last round, running on a thread while this round runs."""
        self.price = cost.price_of(plan.platform)
        self._started = time.perf_counter()
        self.store = store
        self.fingerprint = fingerprint(plan)
        self._elapsed_before = 0.0  # solve seconds of the run a checkpoint resumes
        self._checkpointed = (0, time.perf_counter())  # (iteration, when)
        if resume is not None:
            self._restore(resume)
        self._replaced: dict[tuple[int, ...], int] = {}  # blocks -> replacements this phase

    def _restore(self, cp: Checkpoint) -> None:
        self.rounds = [RoundReport.from_dict(r) for r in cp.rounds]
        self._elapsed_before = self.rounds[-1].elapsed_seconds if self.rounds else 0.0
        self.driver.restore([r.record for r in self.rounds], cp.state)
        self._checkpointed = (cp.iteration, time.perf_counter())

    async def _checkpoint(self) -> None:
        """Save the state if a checkpoint is due (never after the last round: the run ends)."""
        c, s = self.driver, self.settings
        last, when = self._checkpointed
        due = c.iteration - last >= s.checkpoint_every_iterations or (
            time.perf_counter() - when >= s.checkpoint_every_seconds
        )
        if self.store is None or c.done or not due:
            return
        cp = Checkpoint(
            job=self.subjects.key,
            fingerprint=self.fingerprint,
            iteration=c.iteration,
            state=c.snapshot(),
            rounds=[r.to_dict() for r in self.rounds],
        )
        await self.store.save(checkpoint_key(self.subjects.key), encode(cp))
        self._checkpointed = (c.iteration, time.perf_counter())

    def interrupt(self, signum: int) -> None:
        """Stop at the next poll: workers are told to leave and the run ends unfinished."""
        self.interrupted = signum

    async def run(self) -> Outcome:
        """Start the workers, iterate to the end, collect the final objective. Never raises
        a FaasoptError: a failed run is an Outcome with ``error`` set."""
        started = self._started = time.perf_counter()
        if self.plan.active_deadline_seconds:
            self._deadline = started + self.plan.active_deadline_seconds
        sub = await self.nc.subscribe(self.subjects.up, cb=self._on_message)
        beats = await self.nc.subscribe(self.subjects.hb, cb=self._on_message)
        await self.nc.flush()  # subscribed at the server before any worker can say hello
        solve_started = started
        error = guard = None
        objective = None
        try:
            for name, blocks in self.plan.assignment.items():
                self._invoke(name, blocks)
            await self._gather(None, "start", self.settings.start_timeout_seconds)
            solve_started = time.perf_counter()
            while not self.driver.done:
                await self._round(solve_started)
                await self._rotate()
            objective = await self._finish()
            # whoever is still up (a duplicate, a late copy) has nothing left to wait for
            await self._publish(self.subjects.ctl, p.Stop("the job is over"))
        except (FaasoptError, NatsError) as exc:
            error = str(exc) if isinstance(exc, FaasoptError) else f"NATS: {exc}"
            if isinstance(exc, GuardStop):
                guard = exc.reason
            with contextlib.suppress(NatsError):  # workers also leave when NATS is gone
                await self._publish(self.subjects.ctl, p.Stop(error[:200]))
        finally:
            if self._deciding is not None:  # the job is over: the decision is not carried out
                with contextlib.suppress(Exception):
                    await self._deciding
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
                await beats.unsubscribe()
        return Outcome(
            status=self.driver.status,
            error=error,
            z=self.driver.model,
            objective=objective,
            rounds=self.rounds,
            workers=self.history,
            solve_seconds=time.perf_counter() - solve_started,
            rho_changes=getattr(self.driver, "rho_changes", 0),
            rejected=dict(self.decoder.rejected),
            speculations=self.speculations,
            speculation_wins=self.speculation_wins,
            lifetimes=self.lifetimes(),
            guard=guard,
            scale_in=self.tracker.to_report(retired=evicted(self.history))
            if self.tracker.active
            else None,
            untraced_compute_seconds=self._untraced_compute,
        )

    def lifetimes(self) -> dict[str, float]:
        """Seconds each worker has been (or was) in the pool, from its invocation."""
        now = time.perf_counter()
        return {w.name: (w.ended_at or now) - w.invoked_at for w in self.history}

    def dollars(self) -> float:
        """The job's cost so far: its workers' lifetimes and the always-on machines."""
        seconds = time.perf_counter() - self._started
        return cost.job_cost(self.price, self.plan.memory_mb, self.lifetimes(), seconds).total

    # --- the pool -------------------------------------------------------------------------

    def _invoke(self, name: str, blocks: tuple[int, ...], **links: str) -> WorkerRecord:
        """Invoke worker ``name`` into the pool (it joins once it says hello)."""
        record = self._launch(name, blocks, **links)
        self.workers[name] = record
        self._starting.add(name)
        return record

    def _launch(self, name: str, blocks: tuple[int, ...], **links: str) -> WorkerRecord:
        """Invoke worker ``name`` for ``blocks``; ``links``: whom it ``replaces`` or ``rotates``."""
        payload = WorkerPayload(
            namespace=self.plan.namespace,
            job=self.plan.name,
            worker=name,
            blocks=blocks,
            n_blocks=self.plan.n_blocks,
            nats_url=self.nats_url,
            nats_token=self.nats_token,
            nats_user=self.nats_user,
            data=self.plan.source,
            heartbeat_seconds=self.settings.heartbeat_timeout_seconds / 5,
            time_limit_seconds=self.plan.time_limit_seconds,
            algorithm=self.plan.worker_algorithm,
        )
        record = WorkerRecord(name, blocks, **links, invoked_at=time.perf_counter())
        record.invocation = self.platform.invoke(payload)
        self.history.append(record)
        return record

    def _replace(self, name: str, why: str, phase: str) -> str | None:
        """Retire ``name`` and invoke a fresh worker for its blocks; returns the new name.

        A lost racer of a speculative pair needs no replacement: the other one goes on.
        """
        old = self.workers.pop(name)
        old.retire(why)
        self._starting.discard(name)
        self._retiring.discard(name)
        self.platform.retire(name)
        if name in self._copies:
            del self._copies[name]
            return None
        copy = next((c for c, o in self._copies.items() if o == name), None)
        if copy is not None:
            del self._copies[copy]
            return None
        tries = self._replaced.get(old.blocks, 0) + 1
        if tries > self.settings.max_replacements_per_round:
            raise PlatformError(
                f"{phase}: worker {name} {why}; blocks {list(old.blocks)} already lost "
                f"{tries - 1} workers in this phase"
            )
        self._replaced[old.blocks] = tries
        new = self._fresh_name(name, "r")
        self._invoke(new, old.blocks, replaces=name)
        return new

    def _fresh_name(self, name: str, kind: str) -> str:
        """``w1`` -> ``w1-r1`` (a replacement), ``w1-s2`` (a speculative copy) or ``w1-t3`` (a
        successor before the time limit), never reused."""
        base = name.split("-")[0]
        return f"{base}-{kind}{sum(w.name.split('-')[0] == base for w in self.history)}"

    def _speculate(self, answered: dict[str, float], started: float) -> None:
        """Start a copy of each straggler's blocks (``workers.straggler: speculate``)."""
        policy = self.plan.straggler
        if policy.policy != "speculate" or not answered:
            return
        now = time.perf_counter()
        typical = statistics.median(t - started for t in answered.values())
        if now - started < max(policy.min_seconds, policy.slowness * typical):
            return
        copied = set(self._copies.values())
        for name in sorted(set(self.workers) - set(answered) - self._starting):
            if name not in copied and name not in self._copies:
                copy = self._fresh_name(name, "s")
                self._invoke(copy, self.workers[name].blocks)
                self._copies[copy] = name
                self.speculations += 1

    def _settle_copies(self, name: str, answered: dict[str, float]) -> None:
        """``name`` answered: its copy (or original) lost the race and leaves the pool."""
        partner = self._copies.pop(name, None)
        if partner is None:
            partner = next((c for c, o in self._copies.items() if o == name), None)
            if partner is None:
                return
            del self._copies[partner]
            why = "speculative copy: the original answered first"
        else:
            self.speculation_wins += 1
            why = f"straggler: its copy {name} answered first"
        loser = self.workers.pop(partner)
        loser.retire(why)
        self._starting.discard(partner)
        self.platform.retire(partner)
        answered.setdefault(partner, answered[name])

    async def _admit(self, received: float, hello: p.Hello) -> None:
        """A starting worker said hello: hand it its blocks' state and the phase in flight."""
        record = self.workers[hello.worker]
        record.said_hello(received, hello)
        self._starting.discard(hello.worker)
        await self._hand_over(record)

    async def _hand_over(self, record: WorkerRecord) -> None:
        """Send an admitted worker its blocks' exact state, and the phase in flight if any."""
        await self._publish(
            self.subjects.worker(record.name), self._assignment(record, record.blocks)
        )
        if self._in_flight is not None:
            await self._publish(self.subjects.worker(record.name), self._in_flight)

    def _assignment(self, record: WorkerRecord, blocks: tuple[int, ...]) -> p.Message:
        """The exact state of ``blocks`` for the admitted instance of ``record`` (at its start,
        or moved to it)."""
        return self.driver.assignment(record.name, record.instance or "", blocks)

    async def _scale_in(self, report: RoundReport | None) -> None:
        """Carry out the decision taken while this round ran (evict, or stop the job), then
        start the decision on this round (``report``; None for a round the trace does not
        list), on a thread while the next round runs: the policy's fits stay off the rounds'
        critical path."""
        observation = None
        if report is not None:  # the pool as it was in the round
            observation = scalein.Observation.of_round(
                report.record.iteration,
                report.record.objective,
                report.elapsed_seconds,
                report.timings,
                blocks={
                    n: len(self.workers[n].blocks) for n in report.timings if n in self.workers
                },
            )
        if self._deciding is not None:
            decision, self._deciding = await self._deciding, None
            if not self.driver.done:
                await self._carry_out(decision, report)
        if observation is None or not self.tracker.active or self.driver.done:
            return
        # the pool has changed since (evictions carried out, victims still to hand back): a
        # decision on this round would weigh workers already gone; only a guard's stop counts
        stale = set(observation.workers) != set(self.workers) or bool(self._evicting)
        spend = scalein.Spend(
            dollars=report.dollars,
            rates=cost.rates(self.price, self.plan.memory_mb),
            remaining_iterations=self.driver.remaining_rounds(),
        )
        self._deciding = asyncio.ensure_future(
            asyncio.to_thread(self.tracker.after_round, observation, spend, stale)
        )

    async def _carry_out(self, decision: scalein.Decision, report: RoundReport | None) -> None:
        """Evict the decision's victims, or stop the job (:class:`GuardStop`)."""
        if decision.action is scalein.Action.EVICT:
            leaving = {*self._retiring, *self._leaving}  # they go anyway, their own way
            victims = [v for v in decision.victims if v in self.workers and v not in leaving]
            for victim in victims:
                if self.driver.hands_back:  # it hands its blocks' states back in the next round
                    self._evicting[victim] = decision.reason.value
                else:
                    await self._evict(victim, decision.reason.value, leaving=victims)
        elif decision.action is scalein.Action.STOP:
            projected = decision.figures.projected_dollars
            ahead = f", ${projected:.6g} projected to converge" if projected is not None else ""
            last = report or self.rounds[-1]
            raise GuardStop(
                decision.reason.value,
                f"stopped after round {last.record.iteration}: ${last.dollars:.6g} spent"
                f"{ahead}; the solution is the last z",
            )

    async def _evict(self, victim: str, why: str, leaving: Collection[str] = ()) -> None:
        """Retire ``victim``; each of its blocks goes to the admitted survivor holding the fewest
        blocks (ties by name), which is handed their exact state: the iterates do not change.
        ``leaving``: the other workers evicted by the same decision, which take no blocks."""
        going = {victim, *leaving, *self._starting, *self._leaving, *self._retiring}
        survivors = sorted(set(self.workers) - going)  # not to workers leaving now either
        if not survivors:  # nobody ready to take the blocks over: keep the pool this round
            return
        gone = self.workers.pop(victim)
        gone.retire(f"{EVICTED}: {why}")
        self._leaving.discard(victim)  # it said it leaves because it was told to
        self._seconds_left.pop(victim, None)
        await self._stop(gone)
        moved: dict[str, list[int]] = {}
        for block in gone.blocks:
            name = min(survivors, key=lambda n: (len(self.workers[n].blocks), n))
            self.workers[name].blocks = tuple(sorted((*self.workers[name].blocks, block)))
            moved.setdefault(name, []).append(block)
        for name, blocks in moved.items():
            record = self.workers[name]
            await self._publish(self.subjects.worker(name), self._assignment(record, tuple(blocks)))

    async def _stop(self, record: WorkerRecord) -> None:
        """Tell a retired worker's admitted instance to leave, and stop it on the platform."""
        await self._publish(
            self.subjects.worker(record.name), p.Stop(record.ended or "", record.instance)
        )
        self.platform.retire(record.name)

    # --- rotation -------------------------------------------------------------------------

    async def _rotate(self) -> None:
        """Between rounds: hand the blocks of workers near their time limit to successors.

        A worker whose last result said it leaves is retired, and its successor (started earlier,
        or now) joins the pool; a successor that is ready takes its predecessor's place at once,
        or, when the blocks keep state on their worker (MA-SGD), after one more round in which
        the predecessor is told to hand it back.
        A worker that stays less than a cold start and two rounds more gets its successor started
        now, so that the cold start overlaps its last rounds. Successors are handed the exact
        state of the blocks, as any admitted worker: the iterates do not change.
        """
        await self._drop_orphans()
        for name in sorted(self.workers):
            successor = self._successors.get(name)
            ready = successor is not None and successor.instance is not None
            if name in self._leaving or (ready and not self.driver.hands_back):
                await self._rotate_out(name)
            elif ready:  # it hands its blocks' states back with its next answer, then goes
                self._retiring.add(name)
            elif successor is None and not self.driver.done and self._due(name):
                record = self.workers[name]
                new = self._fresh_name(name, "t")
                self._successors[name] = self._launch(new, record.blocks, rotates=name)
        if self.driver.done:  # no round left for early successors to take over
            for name in list(self._successors):
                await self._drop_successor(name, "the job ended before it took over")

    def _due(self, name: str) -> bool:
        """Whether ``name`` leaves within the slowest cold start so far and two rounds (from
        broadcast to broadcast, the last one), as its last result says."""
        seconds_left = self._seconds_left.get(name)
        if seconds_left is None:
            return False
        cold = max((w.cold_start_seconds or 0.0) for w in self.history)
        period = self._broadcasts[-1] - self._broadcasts[0]
        return seconds_left < cold + 2.0 * max(period, self._slowest_round)

    async def _rotate_out(self, name: str) -> None:
        """Retire ``name`` and put its successor in its place: admitted at once if it said hello
        already, else (just started, or started earlier but not up yet) when it does."""
        old = self.workers.pop(name)
        how = "it left before its time limit" if name in self._leaving else "its time limit nears"
        self._leaving.discard(name)
        self._retiring.discard(name)
        self._seconds_left.pop(name, None)
        early = self._successors.get(name)
        if early is not None and early.blocks != old.blocks:  # scale-in moved blocks to it
            await self._drop_successor(name, f"the blocks of {name} changed")
        successor = self._successors.pop(name, None)
        if successor is None:
            new = self._fresh_name(name, "t")
            successor = self._launch(new, old.blocks, rotates=name)
        old.retire(f"{ROTATED}: {how}; {successor.name} took over")
        await self._stop(old)
        self.workers[successor.name] = successor
        if successor.instance is None:
            self._starting.add(successor.name)
        else:
            await self._hand_over(successor)

    async def _drop_successor(self, name: str, why: str) -> None:
        """Retire the early successor of ``name`` before it took over."""
        successor = self._successors.pop(name)
        successor.retire(why)
        await self._stop(successor)

    async def _drop_orphans(self) -> None:
        """Retire early successors that cannot take over: their predecessor left the pool
        otherwise (died, evicted), or they exited before their turn."""
        exited = self.platform.exited()
        for name in sorted(self._successors):
            successor = self._successors[name]
            if name not in self.workers:
                await self._drop_successor(name, f"{name} left the pool before its time limit")
            elif successor.name in exited:
                await self._drop_successor(name, f"exited with status {exited[successor.name]}")

    def _early(self, name: str | None) -> WorkerRecord | None:
        """The early successor called ``name``, if one waits for its turn."""
        return next((s for s in self._successors.values() if s.name == name), None)

    # --- phases ---------------------------------------------------------------------------

    async def _round(self, solve_started: float) -> None:
        k = self.driver.iteration
        timings: dict[str, WorkerTiming] = {}
        sent = time.perf_counter()
        self._broadcasts = [*self._broadcasts[-1:], sent]
        # victims gone meanwhile (rotated out, replaced) hand nothing back
        self._evicting = {v: why for v, why in self._evicting.items() if v in self.workers}
        evicting = tuple(sorted(self._evicting))
        leave = tuple(sorted({*evicting, *self._retiring} & set(self.workers)))
        broadcast = self.driver.broadcast(leave)
        await self._publish(self.subjects.ctl, broadcast)

        def answer(t: float, msg: p.Message) -> bool:
            if not isinstance(msg, self.driver.ANSWER):
                return False
            if msg.iteration != k:
                raise ProtocolError("stale", f"answer of round {msg.iteration} in round {k}")
            self.driver.take(msg)
            self._note_time_left(msg)
            timings[msg.worker] = WorkerTiming(
                compute=msg.compute_seconds,
                idle=msg.idle_seconds,
                communication=max(t - sent - msg.compute_seconds, 0.0),
            )
            return True

        patience = max(self.settings.presumed_dead_seconds, 10.0 * self._slowest_round)
        await self._gather(answer, f"round {k}", patience, in_flight=broadcast)
        self._slowest_round = max(self._slowest_round, time.perf_counter() - sent)
        record = self.driver.reduce(self._elapsed(solve_started))
        for victim in evicting:  # they answered with their blocks' states: move them now
            why = self._evicting.pop(victim)
            if victim in self.workers:  # not replaced in the meantime (a death ends it too)
                await self._evict(victim, why, leaving=evicting)
        if record is None:  # a round the trace does not list (k-means++ seeding, MA's flush)
            self._untraced_compute += sum(t.compute for t in timings.values())
            await self._scale_in(None)
            return
        report = RoundReport(record, self._elapsed(solve_started), timings, self.dollars())
        self.rounds.append(report)
        await self._checkpoint()
        try:
            await self._scale_in(report)
        finally:  # observers see the round, and the eviction or stop it led to
            if self.on_round is not None:
                self.on_round(report)

    def _elapsed(self, solve_started: float) -> float:
        """Solve seconds so far, counting those of the run a checkpoint resumed."""
        return self._elapsed_before + time.perf_counter() - solve_started

    def _note_time_left(self, result: p.Result | p.Answer) -> None:
        """What a worker's result says about its time limit, for :meth:`_rotate`."""
        if result.leaving:
            self._leaving.add(result.worker)
        if result.seconds_left is not None:
            self._seconds_left[result.worker] = result.seconds_left

    async def _finish(self) -> float:
        finish = self.driver.finish()
        await self._publish(self.subjects.ctl, finish)
        loss = np.empty(self.plan.n_blocks)

        def final(t: float, msg: p.Message) -> bool:
            if not isinstance(msg, p.Final):
                return False
            if len(msg.loss_at_z) != len(msg.blocks):
                raise ProtocolError("bad-shape", f"{len(msg.loss_at_z)} losses for {msg.blocks}")
            loss[list(msg.blocks)] = msg.loss_at_z
            self.workers[msg.worker].peak_rss_bytes = msg.peak_rss_bytes
            return True

        await self._gather(final, "finish", self.settings.finish_timeout_seconds, in_flight=finish)
        return self.driver.final_objective(loss.tolist())

    # --- plumbing -------------------------------------------------------------------------

    async def _on_message(self, msg) -> None:
        message = self.decoder.feed(msg.data)
        if message is not None:
            self._inbox.put_nowait((time.perf_counter(), message))

    async def _publish(self, subject: str, message: p.Message) -> None:
        frames = p.encode(
            message, self.subjects.key, "coordinator", next(self._msg_ids), self.nc.max_payload
        )
        for frame in frames:  # no flush: nats.py writes at once, and buffers through an outage
            await self.nc.publish(subject, frame)

    async def _gather(
        self,
        accept: Accept | None,
        phase: str,
        patience: float,
        in_flight: p.Message | None = None,
    ) -> None:
        """Wait until every worker of the pool has answered this phase.

        ``accept`` takes a worker's message and says whether it is that worker's answer (None:
        the answer is the hello itself, as at start). A hello from a starting worker admits it
        in any phase (the first instance of its name; a hello from an early successor only
        marks it ready). A worker that exits, or is silent for ``patience`` seconds, is replaced,
        and its replacement is sent ``in_flight``. A message from an unknown worker or another
        instance than the admitted one (a hello of either is told to leave), for blocks it does
        not hold, one already answered, or one ``accept`` refuses (by ProtocolError) is dropped
        and counted. Fails on the job's deadline or on a signal.
        """
        self._in_flight = in_flight
        self._replaced.clear()
        answered: dict[str, float] = {}  # worker -> when its answer came
        since = {name: time.perf_counter() for name in self.workers}
        started = time.perf_counter()
        asked = dict(since)  # when each worker was last sent what is in flight
        checked = time.perf_counter()
        while set(self.workers) - set(answered):
            if self.interrupted is not None:
                raise FaasoptError(f"{phase}: interrupted by signal {self.interrupted}")
            now = time.perf_counter()
            if now >= self._deadline:
                raise JobDeadlineError(self.plan.active_deadline_seconds)
            received, msg = now, None
            try:  # asyncio.timeout, unlike wait_for in 3.11, never turns a cancel into a timeout
                async with asyncio.timeout(min(self.settings.poll_seconds, self._deadline - now)):
                    received, msg = await self._inbox.get()
            except TimeoutError:
                received = time.perf_counter()
            if received - checked >= self.settings.poll_seconds:  # even while messages flow
                checked = received
                if self.nc.is_closed:
                    raise PlatformError(f"{phase}: the NATS server stayed unreachable")
                if not self.nc.is_connected:  # an outage delays workers; it does not kill them
                    since.update(dict.fromkeys(since, received))
                    self._beats.update(dict.fromkeys(self._beats, received))
                else:
                    self._replace_the_lost(answered, since, phase, patience)
                    await self._ask_again(in_flight, answered, asked)
                    stateless = not self.driver.hands_back  # a copy cannot fork a block's state
                    if isinstance(in_flight, (p.Iterate, p.Round)) and stateless:
                        self._speculate(answered, started)
            if msg is None:
                continue
            name = getattr(msg, "worker", None)
            record = self.workers.get(name)
            early = self._early(name)
            known = record or early
            if known is None:
                await self._refuse(msg, "unknown-worker")
            elif known.instance is not None and getattr(msg, "instance", None) != known.instance:
                await self._refuse(msg, "duplicate-instance")
            elif early is not None:  # up early: it takes over at the next round boundary
                if isinstance(msg, p.Hello):
                    early.said_hello(received, msg)
                elif not isinstance(msg, p.Heartbeat):
                    self.decoder.reject("unexpected")
            elif isinstance(msg, p.Heartbeat):
                self._beats[name] = received
            elif getattr(msg, "blocks", record.blocks) != record.blocks:
                self.decoder.reject("wrong-blocks")
            elif isinstance(msg, p.Hello):
                if name not in self._starting:
                    self.decoder.reject("duplicate")
                    continue
                await self._admit(received, msg)
                since[name] = asked[name] = time.perf_counter()
                if accept is None:
                    answered[name] = received
            elif name in answered:
                self.decoder.reject("duplicate")
            elif accept is None:
                self.decoder.reject("unexpected")
            else:
                try:
                    if accept(received, msg):
                        answered[name] = received
                        self._settle_copies(name, answered)
                    else:
                        self.decoder.reject("unexpected")
                except ProtocolError as exc:
                    self.decoder.reject(exc.reason)
        self._in_flight = None

    async def _refuse(self, msg: p.Message, reason: str) -> None:
        """Drop and count ``msg``. A hello is also told to leave: it comes from a duplicate
        instance, or from a worker no longer in the pool (a late copy of one replaced, rotated or
        evicted), which would otherwise wait for its idle timeout."""
        self.decoder.reject(reason)
        if isinstance(msg, p.Hello):
            stop = p.Stop(f"refused: {reason}", msg.instance)
            await self._publish(self.subjects.worker(msg.worker), stop)

    async def _ask_again(
        self, in_flight: p.Message | None, answered: dict[str, float], asked: dict[str, float]
    ) -> None:
        """NATS delivers at most once, so a broadcast or an answer can be lost in an outage (ours
        or a worker's). Ask a worker that owes an answer again, directly: at once after our own
        reconnect, else when it is overdue (twice the slowest round, at least resend_seconds).
        Workers answer a repeated round from their cache and never apply it twice."""
        if in_flight is None:
            return
        reconnected = self.nc.stats.get("reconnects", 0) != self._reconnects
        self._reconnects = self.nc.stats.get("reconnects", 0)
        overdue = max(self.settings.resend_seconds, 2.0 * self._slowest_round)
        now = time.perf_counter()
        for name in sorted(set(self.workers) - set(answered) - self._starting):
            if reconnected or now - asked.get(name, now) > overdue:
                asked[name] = now
                await self._publish(self.subjects.worker(name), in_flight)

    def _replace_the_lost(
        self, answered: dict[str, float], since: dict[str, float], phase: str, patience: float
    ) -> None:
        """Replace every worker of the pool that exited or has been silent too long.

        A worker that answered this phase and then exited is only retired from the watch (at
        finish, workers leave after answering).
        """
        exited = self.platform.exited()
        now = time.perf_counter()
        for name in sorted(self.workers):
            if name in answered:
                continue
            silent = now - max(since.get(name, now), self._beats.get(name, 0.0))
            if name in exited:
                why = f"exited with status {exited[name]}"
            elif name not in self._starting and silent > self.settings.heartbeat_timeout_seconds:
                why = f"sent no heartbeat for {silent:.0f} s"
            elif now - since.get(name, now) > (
                self.settings.start_timeout_seconds if name in self._starting else patience
            ):
                why = f"was silent for {now - since[name]:.0f} s"
            else:
                continue
            new = self._replace(name, why, phase)
            if new is not None:
                since[new] = now
