"""The stateless worker runtime (seed 001, Algorithm 2).

A worker is started with a small payload (job, name, blocks, NATS address, data source, algorithm).
It loads its blocks, says hello, and from then on does only what the coordinator's messages say:
take over the state of its blocks (``assign``, or ``handover``), run rounds (``iterate``, or
``round``), report its losses at the final model and leave (``finish``), or leave at once
(``stop``). What a round computes is the algorithm's runner's (:mod:`faasopt.algorithms`).
Nothing it knows is lost if it dies: the coordinator can hand its blocks to another worker.

A worker with a time limit leaves at a round boundary before it (rotation, issue #5): after each
result it compares the time left with a margin learned from its own rounds, says in the result
how long it will stay, and leaves after the result that says ``leaving``. Every process draws a
random instance id, sent with all it says, so that a duplicate invocation can be told apart.

Run as ``python -m faasopt.worker`` with the payload, as JSON, in ``$FAASOPT_WORKER_PAYLOAD``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

import scipy.optimize  # noqa: F401  (x-steps need it: load it in the cold start, not in round 0)
from nats.errors import Error as NatsError

from faasopt import protocol as p
from faasopt.algorithms import Runner, runner_for
from faasopt.data import Block, load_blocks
from faasopt.errors import ProtocolError
from faasopt.invocation import deadline_from
from faasopt.nats_client import connect, disconnect
from faasopt.payload import NATS_TOKEN_ENV, PAYLOAD_ENV, WorkerPayload
from faasopt.platforms.processes import peak_rss_bytes

log = logging.getLogger("faasopt.worker")
ROTATION_MIN_MARGIN_SECONDS = 0.25
"""The least time a worker keeps for its next round before its deadline; twice its slowest
round so far usually decides. Leaving itself (draining NATS) is already outside the deadline
(:data:`faasopt.invocation.LEAVE_MARGIN_SECONDS`)."""


@dataclass
class _State:
    """What the coordinator handed over (``assign``), advanced by each round as it does."""

    data: dict[int, Block]
    """The data of every block loaded, by block number."""
    runner: Runner
    """The algorithm's half that computes; it holds the state of the blocks assigned."""
    instance: str
    """This process's random id: its messages carry it, assignments and stops must match it."""
    leave_at: float | None = None
    """The deadline of this invocation on the event loop's clock; None: no limit."""
    ready_for: int = 0
    """The round its state is for (the last assignment's): broadcasts of earlier rounds, seen
    while it waited for its turn, are not for it."""
    answer: p.Message | None = None
    """The result of the last round, sent again if that round's broadcast comes again."""
    last_sent: float = 0.0
    """When this worker last sent (hello or result): idle time runs from there."""
    last_received: float | None = None
    """When the last round's broadcast came: rounds are timed from broadcast to broadcast."""
    slowest_round: float = 0.0
    """The longest round seen (broadcast to broadcast, or one x-step): the rotation margin."""


async def serve(payload: WorkerPayload, deadline_seconds: float | None = None) -> None:
    """Run the worker until the coordinator finishes or stops it, or goes silent.

    ``deadline_seconds`` is how long this invocation may still run: the platform's limit (Lambda's
    remaining time, Knative's ``timeoutSeconds``, OpenFaaS's ``exec_timeout``) less the time to
    leave; None: no limit. The payload's ``time_limit_seconds`` (less the same time to leave)
    bounds it too. The worker leaves at a round boundary before the deadline (rotation, issue #5,
    item 1); the deadline itself is the backstop: there the worker leaves wherever it is, and the
    coordinator replaces it as a worker lost mid-round.
    """
    limits = [
        s for s in (deadline_seconds, deadline_from(payload.time_limit_seconds)) if s is not None
    ]
    now = asyncio.get_running_loop().time()
    leave_at = now + min(limits) if limits else None
    instance = secrets.token_hex(8)
    started = time.perf_counter()
    blocks = load_blocks(payload.data, payload.blocks, payload.n_blocks)
    load_seconds = time.perf_counter() - started

    subjects = p.Subjects(payload.namespace, payload.job)
    data = dict(zip(payload.blocks, blocks, strict=True))
    runner = runner_for(payload, data)
    decoder = p.Decoder(
        subjects.key,
        accept={runner.ASSIGN.KIND, runner.ROUND.KIND, p.Finish.KIND, p.Stop.KIND},
        max_message_bytes=runner.max_message_bytes,
    )
    inbox: asyncio.Queue[tuple[float, p.Message]] = asyncio.Queue()

    async def on_message(msg) -> None:
        message = decoder.feed(msg.data)
        if message is None:
            return
        if getattr(message, "instance", None) not in (None, instance):
            return  # an assign or stop for another instance of this worker (a duplicate)
        inbox.put_nowait((time.perf_counter(), message))

    async def on_closed() -> None:  # the server stayed away: nobody is left to answer to
        inbox.put_nowait((time.perf_counter(), p.Stop("NATS connection closed")))

    nc = await connect(
        payload.nats_url,
        f"{subjects.key}/{payload.worker}",
        payload.nats_token,
        on_closed,
        user=payload.nats_user,
    )
    msg_ids = iter(range(1 << 62))

    async def send(message: p.Message) -> None:
        try:
            for frame in p.encode(
                message, subjects.key, payload.worker, next(msg_ids), nc.max_payload
            ):
                await nc.publish(subjects.up, frame)  # buffered through an outage
        except NatsError as exc:  # lost in an outage: the coordinator asks again after it
            log.info("could not send %s: %s", message.KIND, exc)

    try:
        await nc.subscribe(subjects.ctl, cb=on_message)
        await nc.subscribe(subjects.worker(payload.worker), cb=on_message)
        await nc.flush()
        await send(p.Hello(payload.worker, payload.blocks, os.getpid(), load_seconds, instance))
        beats = asyncio.create_task(_beat(nc, subjects, payload, instance))
        state = _State(
            data=data,
            runner=runner,
            instance=instance,
            leave_at=leave_at,
            last_sent=time.perf_counter(),
        )
        try:
            async with asyncio.timeout_at(leave_at) as window:
                await _loop(payload, state, inbox, send, decoder)
        except TimeoutError:
            if not window.expired():
                raise
            log.info("deadline of this invocation reached; leaving")
        finally:
            beats.cancel()
    finally:
        await disconnect(nc)


async def _beat(nc, subjects: p.Subjects, payload: WorkerPayload, instance: str) -> None:
    """Signs of life while the loop waits or the x-steps run in their thread."""
    beat = p.Heartbeat(payload.worker, instance)
    (frame,) = p.encode(beat, subjects.key, payload.worker, 0, 1 << 16)
    while True:
        await asyncio.sleep(payload.heartbeat_seconds)
        try:
            await nc.publish(subjects.hb, frame)
        except NatsError as exc:
            log.info("heartbeat not sent: %s", exc)


async def _loop(payload: WorkerPayload, state: _State, inbox, send, decoder: p.Decoder) -> None:
    waiting: tuple[float, p.Message] | None = None  # a round or finish before the assignment
    loop = asyncio.get_running_loop()
    runner = state.runner
    while True:
        try:
            async with asyncio.timeout(payload.idle_timeout_seconds):
                received, message = await inbox.get()
        except TimeoutError:
            log.warning("coordinator silent for %.0f s; leaving", payload.idle_timeout_seconds)
            return
        if isinstance(message, runner.ASSIGN):
            if message.worker != payload.worker:
                continue
            if not runner.ready and message.blocks != payload.blocks:
                continue  # the first assignment is of the blocks this worker was started for
            missing = [b for b in message.blocks if b not in state.data]
            if missing:  # blocks moved here (scale-in): load their data, off the event loop
                loaded = await loop.run_in_executor(
                    None, load_blocks, payload.data, tuple(missing), payload.n_blocks
                )
                state.data.update(zip(missing, loaded, strict=True))
            try:
                runner.take(message)
            except ProtocolError as exc:
                decoder.reject(exc.reason)
                continue
            state.ready_for = message.iteration
            if waiting is None:
                continue
            received, message = waiting
            waiting = None
        if isinstance(message, runner.ROUND):
            if not runner.valid(message):
                decoder.reject("bad-shape")
                continue
            if not runner.ready:
                waiting = (received, message)
                continue
            if message.iteration < state.ready_for:
                continue
            if state.answer is not None and message.iteration <= state.answer.iteration:
                # A repeated broadcast (NATS delivers at most once, so the coordinator resends
                # after an outage): answer again, never apply a round twice.
                if message.iteration == state.answer.iteration:
                    await send(state.answer)
                continue
            fields = await loop.run_in_executor(None, runner.step, message)
            finished = time.perf_counter()
            idle = received - state.last_sent
            state.last_sent = finished
            time_left = _time_left(state, received, finished, loop.time())
            if payload.worker in getattr(message, "leave", ()):  # evicted: hand back, leave
                time_left["leaving"] = True
            state.answer = runner.answer(
                fields,
                compute_seconds=finished - received,
                idle_seconds=idle,
                instance=state.instance,
                **time_left,
            )
            await send(state.answer)
            if state.answer.leaving:
                log.info("round %d was the last before the time limit; leaving", message.iteration)
                return
        elif isinstance(message, p.Finish):
            if not runner.fits(message.z):
                decoder.reject("bad-shape")
                continue
            if not runner.ready:
                waiting = (received, message)
                continue
            losses = await loop.run_in_executor(None, runner.final_losses, message.z)
            final = p.Final(payload.worker, runner.held, losses, peak_rss_bytes(), state.instance)
            await send(final)
            return
        elif isinstance(message, p.Stop):
            log.info("stopped by the coordinator: %s", message.reason)
            return


def _time_left(state: _State, received: float, finished: float, now: float) -> dict[str, Any]:
    """Whether this worker leaves after the round just computed, and how long it will stay.

    It stays while the time left covers ``max(ROTATION_MIN_MARGIN_SECONDS, 2 x its slowest
    round)``: a round is timed from the previous broadcast to this one (all the pool's work and
    the coordinator's), or its own x-steps if longer. ``received`` and ``finished`` are on the
    perf_counter clock, ``now`` on the event loop's (the deadline's).
    """
    rounds = [finished - received]
    if state.last_received is not None:
        rounds.append(received - state.last_received)
    state.last_received = received
    state.slowest_round = max(state.slowest_round, *rounds)
    if state.leave_at is None:
        return {"leaving": False, "seconds_left": None}
    spare = state.leave_at - now - max(ROTATION_MIN_MARGIN_SECONDS, 2 * state.slowest_round)
    return {"leaving": spare < 0, "seconds_left": max(spare, 0.0)}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    text = os.environ.get(PAYLOAD_ENV)
    if not text:
        log.error("no payload: set %s to the worker's JSON payload", PAYLOAD_ENV)
        return 2
    payload = WorkerPayload.from_json(text)
    if payload.nats_token is None and os.environ.get(NATS_TOKEN_ENV):
        payload = dataclasses.replace(payload, nats_token=os.environ[NATS_TOKEN_ENV])
    try:
        asyncio.run(serve(payload))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent cleans up
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
