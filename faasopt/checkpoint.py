"""Coordinator checkpoints: versioned, checked, never pickled, in a NATS JetStream object store.

A checkpoint holds what the coordinator needs to go on exactly where it was: the round, the
algorithm's state as its driver gives it (:class:`Snapshot`; ADMM: z, every block's (x_b, u_b),
the penalties, the x-step tolerances and the penalty rule's memory) and the trace so far. It is a
JSON header plus raw float64 arrays (as on the wire), with a SHA-256 of the arrays in the header,
and it names its job and the fingerprint of the problem it belongs to, so a corrupt or foreign
checkpoint is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from nats.js.errors import NotFoundError

from faasopt.errors import CheckpointError

if TYPE_CHECKING:
    from faasopt.plan import JobPlan

FORMAT = "faasopt.checkpoint.v3"
_PREFIX = struct.Struct("<8sI")
_MAGIC = b"FOPTCKP1"
BUCKET = "faasopt-checkpoints"


@dataclass
class Snapshot:
    """An algorithm's state as a checkpoint keeps it (a driver's ``snapshot``): JSON-able
    scalars and named float64 arrays, each algorithm checking its own on ``restore``."""

    scalars: dict[str, Any]
    arrays: dict[str, np.ndarray]


@dataclass
class Checkpoint:
    """The coordinator's state after ``iteration`` rounds."""

    job: str
    fingerprint: str
    """Of the problem (data, blocks, settings): a resumed run must solve the same one."""
    iteration: int
    state: Snapshot
    """Everything the next round depends on (ADMM: z, every block's (x_b, u_b), the penalties,
    the x-step tolerances and the penalty rule's memory)."""
    rounds: list[dict[str, Any]]
    """The trace so far, as plain data (see Coordinator)."""


def encode(cp: Checkpoint) -> bytes:
    named = list(cp.state.arrays.items())
    arrays = b"".join(np.ascontiguousarray(a, "<f8").tobytes() for _, a in named)
    header = {
        "format": FORMAT,
        "job": cp.job,
        "fingerprint": cp.fingerprint,
        "iteration": cp.iteration,
        "scalars": cp.state.scalars,
        "arrays": [[name, list(np.shape(a))] for name, a in named],
        "sha256": hashlib.sha256(arrays).hexdigest(),
        "rounds": cp.rounds,
    }
    text = json.dumps(header, allow_nan=False).encode()
    return _PREFIX.pack(_MAGIC, len(text)) + text + arrays


def decode(data: bytes, job: str, fingerprint: str) -> Checkpoint:
    """The checkpoint in ``data``; raises CheckpointError unless it is whole and ``job``'s own."""
    try:
        magic, size = _PREFIX.unpack_from(data)
        header = json.loads(data[_PREFIX.size : _PREFIX.size + size])
        arrays = data[_PREFIX.size + size :]
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint of {job} is corrupt: {exc}") from None
    if magic != _MAGIC or not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint of {job} is not a {FORMAT} checkpoint")
    if header["job"] != job:
        raise CheckpointError(f"checkpoint belongs to job {header['job']}, not {job}")
    if header["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint of {job} is for another problem (data, blocks or settings changed); "
            "run without --resume to start over"
        )
    if hashlib.sha256(arrays).hexdigest() != header["sha256"]:
        raise CheckpointError(f"checkpoint of {job} is corrupt: its arrays fail their checksum")
    values, offset = {}, 0
    try:
        for name, shape in header["arrays"]:
            count = math.prod(shape)
            values[name] = np.frombuffer(arrays, "<f8", count, offset).reshape(shape).copy()
            offset += 8 * count
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint of {job} is corrupt: {exc}") from None
    if offset != len(arrays) or not isinstance(header.get("scalars"), dict):
        raise CheckpointError(f"checkpoint of {job} is corrupt: wrong arrays")
    return Checkpoint(
        job=job,
        fingerprint=fingerprint,
        iteration=header["iteration"],
        state=Snapshot(header["scalars"], values),
        rounds=header["rounds"],
    )


def fingerprint(plan: JobPlan) -> str:
    """What makes two runs the same problem: the algorithm and its settings, the problem (SGD's
    penalties, PMF's), the data and the blocks (not the workers)."""
    same = {
        "algorithm": plan.algorithm,
        "settings": asdict(plan.settings),
        "problem": plan.problem,
        "source": plan.source,
        "blocks": plan.n_blocks,
    }
    text = json.dumps(same, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key(job: str) -> str:
    """The object name of ``job``'s (``namespace/name``) checkpoint."""
    return job.replace("/", ".")


class CheckpointStore(Protocol):
    """Where checkpoints live; keyed by job."""

    async def save(self, key: str, data: bytes) -> None: ...

    async def load(self, key: str) -> bytes | None: ...


class JetStreamStore:
    """Checkpoints in a JetStream object store bucket of the job's own NATS server."""

    def __init__(self, nc, bucket: str = BUCKET) -> None:
        self.nc = nc
        self.bucket = bucket
        self._store = None

    async def _objects(self):
        if self._store is None:
            js = self.nc.jetstream()
            try:
                self._store = await js.object_store(self.bucket)
            except NotFoundError:
                self._store = await js.create_object_store(self.bucket)
        return self._store

    async def save(self, key: str, data: bytes) -> None:
        await (await self._objects()).put(key, data)

    async def load(self, key: str) -> bytes | None:
        try:
            return (await (await self._objects()).get(key)).data
        except NotFoundError:
            return None


class S3Store:
    """Checkpoints as objects ``<prefix><key>`` in an S3 bucket (boto3's usual credentials and
    endpoint: environment, profile or instance role; ``AWS_ENDPOINT_URL`` for S3-compatible
    stores). boto3 is synchronous, so calls run in a thread."""

    def __init__(self, uri: str, client=None) -> None:
        if not uri.startswith("s3://") or "/" not in uri[5:].strip("/") + "/":
            raise ValueError(f"expected s3://bucket/prefix, got {uri!r}")
        self.bucket, _, self.prefix = uri[5:].partition("/")
        if client is None:
            import boto3  # only runs that checkpoint to S3 pay for importing it

            client = boto3.client("s3")
        self.client = client

    async def save(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=self.prefix + key, Body=data
        )

    async def load(self, key: str) -> bytes | None:
        def get() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)[
                    "Body"
                ].read()
            except self.client.exceptions.NoSuchKey:
                return None

        return await asyncio.to_thread(get)


def open_store(uri: str | None, nc) -> CheckpointStore | None:
    """The store a run checkpoints to: ``s3://bucket/prefix``, ``jetstream`` (the job's NATS
    server), or None for no checkpoints."""
    if uri is None:
        return None
    if uri == "jetstream":
        return JetStreamStore(nc)
    return S3Store(uri)
