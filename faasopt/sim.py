r"""The simulated platform ``sim``: the real math and protocol in one process, on a virtual clock.

Every round does what a distributed run does, in this process, for every algorithm
(:mod:`faasopt.algorithms`): the coordinator's half (the driver a real run uses) builds the
broadcast, :func:`faasopt.protocol.encode` frames it and a worker's
:class:`~faasopt.protocol.Decoder` decodes it, each simulated worker's runner (the one a real worker
runs) steps its blocks from the decoded message, and each answer is encoded and decoded again
by the coordinator's decoder before the driver takes it and reduces in block order. Block state
moves as in a real run: in ``assign``/``handover`` messages, and back from MA-SGD workers that
are evicted (named in the next round's ``leave``). So the iterates are those of a local run of the
same manifest, bit for bit, and every message's bytes are those of its real frames.

Only time is modelled (``docs/sim.md``), on a virtual clock that starts at the first invocation:

- **compute**: a worker's steps take the CPU time they took here, block by block
  (``time.thread_time``, :func:`faasopt.algorithms.base.each_block`),
  times :meth:`SimSettings.speed_factor` (Lambda gives a function CPU in proportion to its memory);
  with ``cores`` set, the workers share that many cores fairly (processor sharing);
- **messages**: a message of n bytes costs ``latency + n / worker_bandwidth`` on the worker's
  link, and ``n / hub_bandwidth`` on the NATS server's link, which every message to or from a
  worker crosses one after another (broadcast copies in a random order per round);
- **the coordinator** is a queue: answers are taken in one after another as they arrive, each
  for :meth:`SimSettings.intake_seconds` (a fixed cost plus its bytes over the client's intake
  rate) plus the CPU time its real decode took here; the reduce and the scale-in decision take
  the CPU time they took here;
- **cold starts**: a worker is invoked ``invoke_interval_seconds`` after the previous one, starts
  after a lognormal draw (median, sigma; seeded) and then loads its blocks (their measured
  generation or read time, times the speed factor).

Timings follow seed 001, Sec. II-B: a worker's compute runs from receiving the round's model to
sending its answer, its idle time from its previous send to receiving it, and its communication
is the delay (broadcast to the coordinator starting to process its answer) minus its compute.

Scale-in (:mod:`faasopt.scalein`) decides on every round while the next one runs, as the
coordinator does (its CPU on the coordinator's core), and the decision is carried out after that
round; an evicted worker's blocks go to the survivors holding the fewest blocks (ties by name),
each of which gets their state (``assign``, ``handover``) and loads their data before its next
step. The iterates do not change. Figures are predictions: the report says ``"predicted": true``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from faasopt import cost, scalein
from faasopt import protocol as p
from faasopt.algorithms import Runner, driver_for, runner_for
from faasopt.coordinator import (
    EVICTED,
    Outcome,
    RoundReport,
    WorkerRecord,
    WorkerTiming,
    evicted,
)
from faasopt.data import Block, load_blocks
from faasopt.data.ratings import Ratings
from faasopt.errors import FaasoptError
from faasopt.payload import WorkerPayload
from faasopt.plan import JobPlan, assign_blocks, plan_job
from faasopt.platforms.nats_server import MAX_PAYLOAD
from faasopt.platforms.processes import peak_rss_bytes
from faasopt.queueing import first_come_first_served, processor_sharing
from faasopt.report import build_report
from faasopt.runner import Result, load
from faasopt.spec import TrainingJob

COORDINATOR = "coordinator"


@dataclass(frozen=True)
class SimSettings:
    """The model's parameters; defaults calibrated on this machine (``docs/sim.md``).

    The defaults replay a local run here: loopback NATS, worker processes sharing 2 cores, at
    this machine's speed. :data:`LAMBDA` models AWS Lambda.
    """

    latency_seconds: float = 0.6e-3
    """One-way latency of a message, worker to coordinator or back. Fitted to the round overhead
    of local runs (round time less its slowest worker's compute: 2.7 ms with 2 workers, 3.0 ms
    with 4); a 256-byte NATS request/reply within one process takes only 0.13-0.16 ms, the rest
    is waking processes on a loaded 2-core machine."""
    worker_bandwidth: float = 0.7e9
    """Bytes/s of a worker's link (loopback: from the 256 B and 80 KB round trips)."""
    hub_bandwidth: float = 0.7e9
    """Bytes/s of the NATS server's link, shared by every message to or from a worker."""
    message_overhead_seconds: float = 10e-6
    """A client's fixed cost of taking in one message, besides its bytes and its decode
    (nats-py's parser and callback, the inbox): from the throughput of 256-byte messages into one
    subscriber (5.7-7 us each, the publisher in the same process; 10 us allows for load)."""
    intake_bandwidth: float = 0.8e9
    """Bytes/s a client reads a message in (nats-py copying and parsing it), on top of
    ``message_overhead_seconds``: from the throughput of 80 KB and 240 KB messages (100-110 us
    and 293 us each on a quiet machine, 150-190 us for 80 KB at load 2)."""
    cores: float | None = 2
    """Cores the workers share (this machine: 2; fewer when others use some); None: one core
    each (a FaaS platform)."""
    vcpu_memory_mb: float | None = None
    """Memory that buys a full vCPU; less memory, proportionally less CPU (Lambda: 1769 MB).
    None: CPU does not depend on memory (processes on this machine)."""
    cpu_slowdown: float = 1.0
    """Seconds a platform core takes for a second of one core of this machine."""
    cold_start_median_seconds: float = 2.0
    """Median of a worker's start before it loads its blocks (process start and imports; local
    runs: 2.0 s on the loaded machine, 0.5 s on a quiet one)."""
    cold_start_sigma: float = 0.25
    """Sigma of the lognormal start time (the spread of log seconds)."""
    invoke_interval_seconds: float = 0.0
    """The coordinator invokes workers one after another, this far apart."""
    prices: str = "lambda"
    """Whose prices (:func:`faasopt.cost.price_of`): sim is priced as the platform it models."""
    max_payload: int = MAX_PAYLOAD
    """NATS max_payload: larger messages travel in chunks."""
    seed: int = 0
    """Seeds the cold starts and the order of broadcast copies."""

    def intake_seconds(self, size: int) -> float:
        """A client's time to take in a message of ``size`` bytes, before decoding it."""
        return self.message_overhead_seconds + size / self.intake_bandwidth

    def speed_factor(self, memory_mb: float) -> float:
        """Platform seconds per CPU second measured here, for a worker of ``memory_mb``.

        Blocks step on one thread, so memory past one full vCPU does not speed them up.
        """
        share = 1.0 if self.vcpu_memory_mb is None else min(1.0, memory_mb / self.vcpu_memory_mb)
        return self.cpu_slowdown / share


LAMBDA = SimSettings(
    latency_seconds=0.5e-3,
    worker_bandwidth=75e6,
    hub_bandwidth=1.25e9,
    # message_overhead_seconds and intake_bandwidth as here: nats-py on a VM like this machine
    cores=None,
    vcpu_memory_mb=1769.0,
    cpu_slowdown=1.0,
    cold_start_median_seconds=0.5,
    cold_start_sigma=0.3,
    invoke_interval_seconds=0.01,
    prices="lambda",
)
"""AWS Lambda workers, coordinator and NATS on an EC2 instance in the same region (``docs/sim.md``
gives the source or reason of each figure): 1 vCPU per 1769 MB, one core per worker."""


@dataclass(frozen=True)
class SimData:
    """A job's blocks and the CPU seconds each took to load, generated once and reusable."""

    blocks: tuple[Block | Ratings, ...]
    load_seconds: tuple[float, ...]


def load_data(plan: JobPlan) -> SimData:
    """Load (generate or read) every block of ``plan``, timing each (CPU seconds)."""
    blocks, seconds = [], []
    for b in range(plan.n_blocks):
        started = time.thread_time()
        (block,) = load_blocks(plan.source, [b], plan.n_blocks)
        seconds.append(time.thread_time() - started)
        blocks.append(block)
    return SimData(tuple(blocks), tuple(seconds))


@dataclass(frozen=True)
class MessageRecord:
    """One message sent: its kind, sender, round (-1 outside rounds) and frame sizes."""

    kind: str
    sender: str
    iteration: int
    msg_id: int
    frames: tuple[int, ...]
    """Bytes of each frame (several when chunked)."""
    copies: int = 1
    """Workers it was delivered to (a broadcast reaches the whole pool)."""

    @property
    def bytes(self) -> int:
        return sum(self.frames)


@dataclass
class SimResult(Result):
    """A simulated run: its report (that of a real run, plus the model's figures), the
    solution, every message sent and every scale-in decision."""

    messages: list[MessageRecord] = field(default_factory=list)
    decisions: list[scalein.Decision] = field(default_factory=list)


def simulate(
    job: TrainingJob | JobPlan | str | Path,
    settings: SimSettings | None = None,
    scale_in: scalein.ScaleInSettings | None = None,
    *,
    workers: int | None = None,
    data: SimData | None = None,
    cpu_seconds: dict[tuple[Any, ...], float] | None = None,
    tracker: scalein.Tracker | None = None,
) -> SimResult:
    """Run ``job`` on the simulated platform and return its report and solution.

    ``job`` is a TrainingJob, a manifest path or a planned job; ``workers`` overrides its count
    (blocks stay). ``data``, from :func:`load_data` of the same plan, saves loading the blocks
    again. ``scale_in`` (default: the plan's, from the manifest) decides on every round.

    ``cpu_seconds`` holds the CPU seconds of pieces of work that are the same in every run of
    the job: each block's step of each round (``("step", k, b)``), each round's reduce
    (``("reduce", k)``), each block's final loss (``("loss", b)``), and encoding or decoding a
    message of a kind and size (``("encode" | "decode", kind, bytes)``). A value present is used
    instead of this run's measurement, a missing one is measured and stored. Runs of one job
    compute the same iterates whatever their pool, so the same work: pass one dict to several
    runs to give them the same CPU times (a paired comparison, free of the measuring machine's
    noise between runs, which reaches tens of per cent on a shared VM). The work still runs;
    only its clock is shared. The scale-in decision's CPU time is never shared: it is the
    policy's own cost.

    ``tracker`` replaces ``scalein.Tracker(scale_in, max_victims=None, ahead=1)``, which
    decides on every round while the next one runs, as the coordinator does (benchmarks use
    it to replay a fixed schedule of evictions).
    """
    plan = job if isinstance(job, JobPlan) else plan_job(load(job), workers)
    if isinstance(job, JobPlan) and workers is not None:
        plan = plan_job_workers(plan, workers)
    plan = dataclasses.replace(plan, platform="sim")
    return _Simulation(
        plan,
        settings or SimSettings(),
        scale_in or plan.scale_in,
        data or load_data(plan),
        cpu_seconds,
        tracker,
    ).run()


def plan_job_workers(plan: JobPlan, workers: int) -> JobPlan:
    """``plan`` with ``workers`` workers over the same blocks (same iterates)."""
    if not 1 <= workers <= plan.n_blocks:
        raise ValueError(f"workers must be in [1, blocks={plan.n_blocks}], got {workers}")
    return dataclasses.replace(plan, assignment=assign_blocks(plan.n_blocks, workers))


@dataclass
class _Worker:
    """A simulated worker: its runner (the worker's half of the algorithm, as in a real worker),
    its blocks and where its clock stands."""

    record: WorkerRecord
    blocks: tuple[int, ...]
    runner: Runner
    data: dict[int, Any]
    """The data of the blocks it loaded, which its runner reads (as in a real worker)."""
    ready_at: float = 0.0
    """When it holds the state of all its blocks (after an assign and loading data)."""
    last_sent: float = 0.0
    """When it last sent (hello or answer): its idle time runs from there."""


class _Simulation:
    """One simulated run: the coordinator's loop with a virtual clock ``now``."""

    def __init__(
        self,
        plan: JobPlan,
        settings: SimSettings,
        scale_in: scalein.ScaleInSettings,
        data: SimData,
        cpu_seconds: dict[tuple[Any, ...], float] | None = None,
        tracker: scalein.Tracker | None = None,
    ) -> None:
        if len(data.blocks) != plan.n_blocks:
            raise ValueError(f"data has {len(data.blocks)} blocks, the plan {plan.n_blocks}")
        self.plan, self.settings, self.scale_in, self.data = plan, settings, scale_in, data
        self.speed = settings.speed_factor(plan.memory_mb)
        self.key = p.Subjects(plan.namespace, plan.name).key
        self.driver = driver_for(plan)  # the coordinator's half, as in a real run
        self.coordinator_decoder = p.Decoder(
            self.key,
            accept={p.Hello.KIND, *self.driver.accepts},
            max_message_bytes=self.driver.max_message_bytes,
        )
        self.worker_decoder: p.Decoder | None = None  # once the runners say what they take
        self.rng = np.random.default_rng(settings.seed)
        self.pool: dict[str, _Worker] = {}
        self.history: list[WorkerRecord] = []
        self.messages: list[MessageRecord] = []
        self.msg_ids: dict[str, int] = {}
        self.rounds: list[RoundReport] = []
        # several victims at once, carried out a round later
        self.tracker = tracker or scalein.Tracker(scale_in, max_victims=None, ahead=1)
        self.evicting: dict[str, str] = {}
        """Victims that hand their blocks' states back in the next round, and why (MA-SGD)."""
        self.deciding: tuple[scalein.Observation, scalein.Spend, bool] | None = None
        """The last round's observation, to decide on while the next round runs."""
        self.lifetimes: dict[str, float] = {}
        self.now = 0.0
        self.hub_out = 0.0  # when the server's link to workers is next free
        self.hub_in = 0.0  # when its link from workers is next free
        self.coordinator_free = 0.0
        self.compute_cpu = 0.0  # the workers' steps, measured here
        self.untraced_compute = 0.0  # workers' compute in rounds the trace does not list
        self.cpu_seconds = cpu_seconds
        self.error: str | None = None

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> SimResult:
        self._start()
        solve_started = self.now
        driver = self.driver
        try:
            while not driver.done and self.error is None:
                self._round(solve_started)
            objective = self._finish() if self.error is None else None
        except FaasoptError as exc:  # what a real run ends with (e.g. k-means on too few rows)
            self.error, objective = str(exc), None
        for w in self.pool.values():
            self.lifetimes[w.record.name] = self.now - w.record.invoked_at
        outcome = Outcome(
            status=driver.status,
            error=self.error,
            z=driver.model,
            objective=objective,
            rounds=self.rounds,
            workers=self.history,
            solve_seconds=self.now - solve_started,
            rho_changes=getattr(driver, "rho_changes", 0),
            rejected=dict(self.coordinator_decoder.rejected + self.worker_decoder.rejected),
            lifetimes=self.lifetimes,
            scale_in=self.tracker.to_report(retired=evicted(self.history)),
            untraced_compute_seconds=self.untraced_compute,
        )
        report = self._report(outcome)
        return SimResult(
            report, np.array(driver.model), None, self.messages, self.tracker.decisions
        )

    def _start(self) -> None:
        """Invoke every worker, take in their hellos, hand each its blocks' state."""
        s = self.settings
        hellos: dict[str, tuple[float, p.Message]] = {}
        for i, (name, blocks) in enumerate(self.plan.assignment.items()):
            invoked = i * s.invoke_interval_seconds
            start = s.cold_start_median_seconds * math.exp(s.cold_start_sigma * self.rng.normal())
            load = self.speed * sum(self.data.load_seconds[b] for b in blocks)
            record = WorkerRecord(name, blocks, invocation=f"sim-{i}", invoked_at=invoked)
            record.load_seconds = load
            data = {b: self.data.blocks[b] for b in blocks}
            runner = runner_for(self._payload(name, blocks), data)
            worker = _Worker(record, blocks, runner, data, last_sent=invoked + start + load)
            self.pool[name] = worker
            self.history.append(record)
            hello = p.Hello(name, blocks, 0, load)
            hellos[name] = (worker.last_sent, hello)
        runner = next(iter(self.pool.values())).runner
        self.worker_decoder = p.Decoder(
            self.key,
            accept={runner.ASSIGN.KIND, runner.ROUND.KIND, p.Finish.KIND},
            max_message_bytes=runner.max_message_bytes,
        )
        for name, (taken, _) in self._gather(hellos, -1).items():
            self.pool[name].record.cold_start_seconds = taken - self.pool[name].record.invoked_at
            self.now = max(self.now, taken)
            self._assign(name, self.pool[name].blocks, taken)

    def _payload(self, name: str, blocks: tuple[int, ...]) -> WorkerPayload:
        """What a real run would start worker ``name`` with (no NATS: messages are modelled)."""
        plan = self.plan
        return WorkerPayload(
            namespace=plan.namespace,
            job=plan.name,
            worker=name,
            blocks=blocks,
            n_blocks=plan.n_blocks,
            nats_url="",
            data=plan.source,
            time_limit_seconds=plan.time_limit_seconds,
            algorithm=plan.worker_algorithm,
        )

    def _round(self, solve_started: float) -> None:
        """One round: broadcast, decide on the last round (the coordinator's core, as the
        coordinator's decision thread), every worker's step through its runner, gather, reduce,
        carry out the decision."""
        pool, driver = self.pool, self.driver
        k = driver.iteration
        leave = tuple(sorted(self.evicting))
        published, received, message = self._broadcast(driver.broadcast(leave), k)
        decision = None
        if self.deciding is not None:
            deciding, self.deciding = self.deciding, None
            decision, cpu = _timed(lambda: self.tracker.after_round(*deciding))
            self.coordinator_free += cpu  # the answers wait: one interpreter, one core
        received = {n: max(t, pool[n].ready_at) for n, t in received.items()}
        works, steps = {}, {}
        for name, worker in pool.items():
            steps[name] = worker.runner.step(message)
            cpu = self._cpu(worker.runner, "step", k)
            self.compute_cpu += cpu
            works[name] = self.speed * cpu
        finished = processor_sharing(received, works, self.settings.cores)
        sends: dict[str, tuple[float, p.Message]] = {}
        for name, fields in steps.items():
            worker = pool[name]
            answer = worker.runner.answer(
                fields,
                leaving=name in leave,
                compute_seconds=finished[name] - received[name],
                idle_seconds=received[name] - worker.last_sent,
            )
            sends[name] = (finished[name], answer)
        timings = {}
        for name, (taken, answer) in self._gather(sends, k).items():
            driver.take(answer)
            timings[name] = WorkerTiming(
                compute=answer.compute_seconds,
                idle=answer.idle_seconds,
                communication=max(taken - published - answer.compute_seconds, 0.0),
            )
        elapsed = self.coordinator_free - solve_started
        record, cpu = _timed(lambda: driver.reduce(elapsed))
        cpu = self._shared(("reduce", k), cpu)
        self.now = self.coordinator_free + cpu
        if leave:  # they answered with their blocks' states: move them now
            self._evict(leave, self.evicting[leave[0]])
            self.evicting.clear()
        if record is None:  # a round the trace does not list (k-means++ seeding, MA's flush)
            self.untraced_compute += sum(t.compute for t in timings.values())
            if decision is not None and not driver.done:
                self._carry_out(decision)
            return
        report = RoundReport(record, self.now - solve_started, timings)
        self.rounds.append(report)
        observation = scalein.Observation.of_round(
            record.iteration,
            record.objective,
            report.elapsed_seconds,
            timings,
            blocks={name: len(pool[name].blocks) for name in timings if name in pool},
        )
        if driver.done:  # the decision taken beside the last round is not carried out
            return
        if decision is not None:
            self._carry_out(decision)
        if self.error is None and self.tracker.active:  # as the coordinator: none decides
            # only a guard's stop counts where the pool has changed since
            stale = set(observation.workers) != set(self.pool) or bool(self.evicting)
            self.deciding = (observation, self._spend(), stale)

    def _cpu(self, runner: Runner, work: str, iteration: int | None = None) -> float:
        """The CPU seconds of the runner's last ``work`` (each block's, shared: ``simulate``)."""
        cpu = 0.0
        for b, seconds in runner.cpu_seconds.items():
            key = (work, b) if iteration is None else (work, iteration, b)
            cpu += self._shared(key, seconds)
        return cpu

    def _finish(self) -> float:
        """Broadcast the final model, gather every block's loss there: the final objective."""
        _, received, message = self._broadcast(self.driver.finish(), -1)
        works, finals = {}, {}
        for name, worker in self.pool.items():
            losses = worker.runner.final_losses(message.z)
            works[name] = self.speed * self._cpu(worker.runner, "loss")
            finals[name] = p.Final(name, worker.runner.held, losses, 0)
        finished = processor_sharing(received, works, self.settings.cores)
        loss = np.empty(self.plan.n_blocks)
        answers = {n: (finished[n], m) for n, m in finals.items()}
        for _, answer in self._gather(answers, -1).values():
            loss[list(answer.blocks)] = answer.loss_at_z
        self.now = self.coordinator_free
        return self.driver.final_objective(loss.tolist())

    # --- scale-in -----------------------------------------------------------------------------

    def _carry_out(self, decision: scalein.Decision) -> None:
        """Act on the decision taken while the round that just ended ran."""
        if decision.action is scalein.Action.STOP:
            self.error = f"{decision.reason.value}: stopped by the scale-in guard"
            for w in self.pool.values():
                self.lifetimes[w.record.name] = self.now - w.record.invoked_at
        elif decision.action is scalein.Action.EVICT:
            victims = [v for v in decision.victims if v in self.pool]
            if self.driver.hands_back:  # they hand their blocks' states back in the next round
                self.evicting.update(dict.fromkeys(victims, decision.reason.value))
            else:
                self._evict(victims, decision.reason.value)

    def _spend(self) -> scalein.Spend:
        """Dollars so far and the cost rates, for the budget guard."""
        price, memory = self._price(), self.plan.memory_mb
        dollars = sum(
            cost.worker_dollars(price, memory, seconds) for seconds in self.lifetimes.values()
        )
        dollars += sum(
            cost.worker_dollars(price, memory, self.now - w.record.invoked_at)
            for w in self.pool.values()
        )
        dollars += cost.always_on_dollars(price, self.now)
        return scalein.Spend(
            dollars=dollars,
            rates=cost.rates(price, memory),
            remaining_iterations=self.driver.remaining_rounds(),
        )

    def _evict(self, victims: Sequence[str], reason: str) -> None:
        """Retire ``victims`` (all at once), as ``Coordinator._evict`` does: victim by victim,
        its blocks go one by one to the survivors holding the fewest blocks (ties by name), each
        of which gets their state in one message (assign, handover) and loads their data. Each
        victim is billed until now."""
        gone = [self.pool.pop(victim) for victim in victims]
        for worker in gone:
            worker.record.ended = f"{EVICTED}: {reason}"
            self.lifetimes[worker.record.name] = self.now - worker.record.invoked_at
            moved: dict[str, list[int]] = {}
            for b in worker.blocks:
                name = min(self.pool, key=lambda n: (len(self.pool[n].blocks), n))
                self.pool[name].blocks = tuple(sorted((*self.pool[name].blocks, b)))
                moved.setdefault(name, []).append(b)
            for name, blocks in moved.items():
                self._assign(name, tuple(blocks), self.now)

    # --- messages -----------------------------------------------------------------------------

    def _assign(self, name: str, blocks: tuple[int, ...], at: float) -> None:
        """Send ``name`` the state of ``blocks`` (at start, or blocks moved to it); it is ready
        once the message arrived and, for moved blocks, their data is loaded."""
        worker = self.pool[name]
        assign = self.driver.assignment(name, "", blocks)
        frames, cpu = self._encode(assign, COORDINATOR, -1, copies=1)
        sent = max(at, self.coordinator_free) + cpu
        self.coordinator_free = sent
        arrived = self._to_worker(sent, sum(map(len, frames)))
        decoded, decode_cpu = self._decode(self.worker_decoder, frames)
        load = 0.0
        if blocks != worker.record.blocks:  # moved blocks: their data is not loaded yet
            load = self.speed * sum(self.data.load_seconds[b] for b in blocks)
            worker.data.update({b: self.data.blocks[b] for b in blocks})
        worker.runner.take(decoded)
        taken_in = self.settings.intake_seconds(sum(map(len, frames))) + decode_cpu
        worker.ready_at = arrived + self.speed * taken_in + load

    def _broadcast(
        self, message: p.Iterate | p.Finish, iteration: int
    ) -> tuple[float, dict[str, float], Any]:
        """Publish ``message`` to the pool: when it left the coordinator, when each worker had
        it decoded, and the decoded message (every worker decodes the same frames)."""
        frames, cpu = self._encode(message, COORDINATOR, iteration, copies=len(self.pool))
        published = max(self.now, self.coordinator_free) + cpu
        self.coordinator_free = published
        decoded, decode_cpu = self._decode(self.worker_decoder, frames)
        size = sum(map(len, frames))
        received = {}
        taken_in = self.settings.intake_seconds(size) + decode_cpu
        for name in self.rng.permutation(sorted(self.pool)):
            received[str(name)] = self._to_worker(published, size) + self.speed * taken_in
        return published, received, decoded

    def _to_worker(self, sent: float, size: int) -> float:
        """Arrival of ``size`` bytes sent at ``sent`` from the coordinator to one worker."""
        s = self.settings
        self.hub_out = max(self.hub_out, sent) + size / s.hub_bandwidth
        return self.hub_out + size / s.worker_bandwidth + s.latency_seconds

    def _gather(
        self, sends: Mapping[str, tuple[float, p.Message]], iteration: int
    ) -> dict[str, tuple[float, Any]]:
        """Workers' answers, sent when given: per worker, when the coordinator started to take
        it in, and the decoded message. Encoding, the links and the coordinator are queues."""
        s = self.settings
        arrivals, frames_of, sizes = {}, {}, {}
        for name, (ready, message) in sends.items():
            frames, cpu = self._encode(message, name, iteration, copies=1)
            sent = ready + self.speed * cpu
            self.pool[name].last_sent = sent
            sizes[name] = sum(map(len, frames))
            frames_of[name] = frames
            arrivals[name] = sent + s.latency_seconds + sizes[name] / s.worker_bandwidth
        through = first_come_first_served(
            arrivals, {n: sizes[n] / s.hub_bandwidth for n in arrivals}, self.hub_in
        )
        self.hub_in = max((end for _, end in through.values()), default=self.hub_in)
        decoded, services = {}, {}
        for name in through:
            decoded[name], cpu = self._decode(self.coordinator_decoder, frames_of[name])
            services[name] = s.intake_seconds(sizes[name]) + cpu
        taken = first_come_first_served(
            {n: end for n, (_, end) in through.items()}, services, self.coordinator_free
        )
        self.coordinator_free = max((end for _, end in taken.values()), default=self.now)
        return {n: (start, decoded[n]) for n, (start, _) in taken.items()}

    def _encode(
        self, message: p.Message, sender: str, iteration: int, copies: int
    ) -> tuple[list[bytes], float]:
        msg_id = self.msg_ids.get(sender, 0)
        self.msg_ids[sender] = msg_id + 1
        frames, cpu = _timed(
            lambda: p.encode(message, self.key, sender, msg_id, self.settings.max_payload)
        )
        cpu = self._shared(("encode", message.KIND, sum(map(len, frames))), cpu)
        self.messages.append(
            MessageRecord(message.KIND, sender, iteration, msg_id, tuple(map(len, frames)), copies)
        )
        return frames, cpu

    def _shared(self, key: tuple[Any, ...], seconds: float) -> float:
        """CPU seconds of the work ``key``: the shared figure if there is one (``cpu_seconds``
        of :func:`simulate`), else this measurement, which is then shared."""
        if self.cpu_seconds is None:
            return seconds
        return self.cpu_seconds.setdefault(key, seconds)

    def _decode(self, decoder: p.Decoder, frames: Sequence[bytes]) -> tuple[Any, float]:
        def feed():
            message = None
            for frame in frames:
                message = decoder.feed(frame)
            if message is None:
                raise RuntimeError(f"frames did not decode: {dict(decoder.rejected)}")
            return message

        message, cpu = _timed(feed)
        return message, self._shared(("decode", message.KIND, sum(map(len, frames))), cpu)

    # --- the report ---------------------------------------------------------------------------

    def _price(self) -> cost.Price:
        return cost.price_of("sim", models=self.settings.prices)

    def _report(self, outcome: Outcome) -> dict[str, Any]:
        report = build_report(self.plan, outcome, self.now, peak_rss_bytes(), self._price())
        report["predicted"] = True
        report["simulation"] = {
            "settings": dataclasses.asdict(self.settings),
            "speedFactor": self.speed,
            "memoryMB": self.plan.memory_mb,
            "computeCpuSeconds": self.compute_cpu,
            "messages": _traffic(self.messages),
        }
        return report


def _traffic(messages: Sequence[MessageRecord]) -> dict[str, Any]:
    """Messages and bytes by kind: sent (once per publish) and delivered (once per receiver)."""
    kinds: dict[str, dict[str, int]] = {}
    for m in messages:
        entry = kinds.setdefault(m.kind, {"messages": 0, "frames": 0, "bytes": 0, "delivered": 0})
        entry["messages"] += 1
        entry["frames"] += len(m.frames)
        entry["bytes"] += m.bytes
        entry["delivered"] += m.bytes * m.copies
    return {
        "bytes": sum(k["bytes"] for k in kinds.values()),
        "deliveredBytes": sum(k["delivered"] for k in kinds.values()),
        "byKind": kinds,
    }


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()`` and the CPU seconds of this thread it took."""
    started = time.thread_time()
    out = call()
    return out, time.thread_time() - started


def round_seconds(report: Mapping[str, Any]) -> list[float]:
    """Each round's duration from a report's trace (end of the previous round to its end)."""
    ends = [0.0] + [e["elapsedSeconds"] for e in report["trace"]]
    return [b - a for a, b in pairwise(ends)]


def median_round_seconds(report: Mapping[str, Any], skip: int = 1) -> float:
    """Median round time, leaving out the first ``skip`` rounds (start-up effects)."""
    return statistics.median(round_seconds(report)[skip:])
