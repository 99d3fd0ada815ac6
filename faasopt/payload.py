"""What a worker is started with, and the environment every platform gives it.

Kept apart from :mod:`faasopt.worker` so that the coordinator and the platforms can build
payloads without importing the worker's numerical stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_ENV = "FAASOPT_WORKER_PAYLOAD"
NATS_TOKEN_ENV = "FAASOPT_NATS_TOKEN"
"""Where a worker finds its NATS token when the payload carries none (from a Secret)."""
WORKER_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
"""Environment every platform gives its workers. One BLAS thread: workers are the parallelism,
and scipy's L-BFGS-B makes many tiny BLAS calls that threaded OpenBLAS slows down several times
(scipy issue 22438). It must be set before the process starts: BLAS reads it when it loads."""


@dataclass(frozen=True)
class WorkerPayload:
    """What a worker is started with: small, JSON, the same on every platform.

    One invocation is (job, worker, blocks): the coordinator never reuses a worker name (a
    successor is ``w1-r1``, ``w1-t2``...), so the name is the invocation's generation. A platform
    that delivers an invocation twice starts two instances of one name; the coordinator admits
    the first to say hello and stops the other.
    """

    namespace: str
    job: str
    worker: str
    blocks: tuple[int, ...]
    n_blocks: int
    nats_url: str
    data: dict[str, Any]
    nats_token: str | None = field(default=None, repr=False)
    """The server's token, or the password of ``nats_user``; never printed."""
    nats_user: str | None = None
    idle_timeout_seconds: float = 300.0
    """Leave when the coordinator says nothing for this long (it is gone)."""
    heartbeat_seconds: float = 2.0
    """Interval of the heartbeats on the job's ``hb`` subject."""
    time_limit_seconds: float | None = None
    """A worker's lifetime from its start (``spec.workers.timeLimitSeconds``); it leaves at a
    round boundary before it, and the coordinator starts a successor (rotation). None: no limit
    but the platform's own (Lambda's remaining time, Knative's and OpenFaaS's timeouts)."""
    algorithm: dict[str, Any] = field(default_factory=dict)
    """The algorithm and its settings, ``{"sgd": {...}}`` or ``{"kmeans": {...}}``
    (:mod:`faasopt.algorithms`); empty: ADMM, whose settings come with each assignment."""

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "blocks": list(self.blocks)})

    @classmethod
    def from_json(cls, text: str) -> WorkerPayload:
        raw = json.loads(text)
        return cls(**{**raw, "blocks": tuple(raw["blocks"])})
