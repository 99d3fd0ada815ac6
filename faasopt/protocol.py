"""NATS subjects and the wire format of every message between coordinator and workers.

A message is a small JSON header plus a payload of raw little-endian float64 numbers::

    b"FOP2" | u32 header length | header (JSON, UTF-8) | payload

The header names the kind with its version (``iterate.v2``), the job and the sender, and holds the
message's scalar and string fields. The payload holds its numbers: first the kind's array (the
header gives its dtype and shape), then its per-block tuples (``tuple[float, ...]``,
``tuple[int, ...]``) one after another in field order, whose lengths the header lists as
``vectors: {name: length}``; ``nbytes`` is the payload's size. Per-block numbers thus cost 8 bytes
each whatever the number of blocks, and the header stays small. Nothing is pickled: a message is
data from the network, validated when decoded. Frames larger than the server's max_payload are cut
into chunks of the payload that share the header (with ``chunk: [i, n]`` and a message id) and are
put back together by :class:`Decoder`. A message that fails validation is dropped and counted by
reason; decoding never raises.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from faasopt.errors import ProtocolError

MAGIC = b"FOP2"
_PREFIX = struct.Struct("<4sI")
DTYPE = "<f8"
MAX_HEADER_BYTES = 64 * 1024
"""Largest header accepted: headers carry scalars and strings, never per-block numbers."""
MAX_ELEMENTS = 2**40
"""Largest product of an array's sides (empty sides counted as 1): numpy refuses larger shapes."""
PER_BLOCK_NUMBERS = 8
"""Most per-block numbers a message carries for each block (an answer's block, scalars, size and
state size; ADMM's penalty and tolerance for every block): what a size budget allows for them."""


@dataclass(frozen=True)
class Subjects:
    """The subject family of one job: ``faasopt.<namespace>.<job>.{ctl,up,hb}``."""

    namespace: str
    job: str

    @property
    def prefix(self) -> str:
        return f"faasopt.{self.namespace}.{self.job}"

    @property
    def ctl(self) -> str:
        """Coordinator to every worker: iterate, finish, stop."""
        return f"{self.prefix}.ctl"

    @property
    def up(self) -> str:
        """Workers to coordinator: hello, result, final."""
        return f"{self.prefix}.up"

    @property
    def hb(self) -> str:
        """Worker heartbeats: signs of life, also while a worker computes."""
        return f"{self.prefix}.hb"

    def worker(self, name: str) -> str:
        """Coordinator to one worker: its assignment, and stops addressed to one instance."""
        return f"{self.prefix}.ctl.{name}"

    @property
    def key(self) -> str:
        """The job's identity inside headers."""
        return f"{self.namespace}/{self.job}"


# --- messages ---------------------------------------------------------------------------------
# One frozen dataclass per kind. Scalar and string fields travel in the header; the field named
# by ARRAY (if any) and the numeric tuples travel in the payload. Field annotations double as the
# validation schema.


@dataclass(frozen=True)
class Hello:
    """A worker is up and has loaded its blocks (its first contact: the end of its cold start)."""

    KIND: ClassVar[str] = "hello.v2"
    ARRAY: ClassVar[str | None] = None
    worker: str
    blocks: tuple[int, ...]
    pid: int
    load_seconds: float
    instance: str = ""
    """A random id of this process: a platform may start one invocation twice (at-least-once),
    and the coordinator admits only the first instance of a worker name ("": not given)."""


@dataclass(frozen=True)
class Assign:
    """The state of a worker's nb blocks and how to step them, for one instance of the worker.

    ``state`` stacks x_b (nb rows), u_b (nb rows) and z_u (one row), shape (2 nb + 1, d): u_b is
    scaled for ``rho_u`` (one per block) and still lacks the dual step of the round that made
    x_b, taken from z_u (see ``faasopt.solvers.admm.dual_update``). ``relaxation`` is alpha; the
    other scalars are the fields of ``LocalSolverSettings`` (``gradient_tolerance`` the configured
    one: each round's comes with the round). ``instance`` is the admitted instance's (see
    :class:`Hello`): a duplicate of the worker ignores it and never takes part. ``iteration`` is
    the round the state is ready for: a worker that was up early (a successor before a time
    limit) ignores the broadcasts of earlier rounds it saw while it waited.
    """

    KIND: ClassVar[str] = "assign.v4"
    ARRAY: ClassVar[str | None] = "state"
    worker: str
    blocks: tuple[int, ...]
    rho_u: tuple[float, ...]
    relaxation: float
    method: str
    gradient_tolerance: float
    relative_improvement: float
    min_iterations: int
    max_iterations: int
    state: np.ndarray
    instance: str = ""
    iteration: int = 0

    def __post_init__(self) -> None:
        nb = len(self.blocks)
        if len(self.rho_u) != nb or self.state.shape[:1] != (2 * nb + 1,):
            raise ProtocolError("bad-shape", f"state {self.state.shape} for {nb} blocks")
        if min(self.rho_u, default=1.0) <= 0:
            raise ProtocolError("bad-field", "assign.v4.rho_u must be > 0")


@dataclass(frozen=True)
class Iterate:
    """Round k: (k, rho_k, z_k), broadcast to every worker (Algorithm 1, line 21).

    ``rho`` and ``gradient_tolerance`` hold one value per block of the job, in block order: each
    block's penalty and x-step gradient tolerance for this round.
    """

    KIND: ClassVar[str] = "iterate.v2"
    ARRAY: ClassVar[str | None] = "z"
    iteration: int
    rho: tuple[float, ...]
    gradient_tolerance: tuple[float, ...]
    z: np.ndarray

    def __post_init__(self) -> None:
        if len(self.rho) != len(self.gradient_tolerance) or self.z.ndim != 1:
            raise ProtocolError("bad-shape", f"{len(self.rho)} penalties, z {self.z.shape}")
        if min(self.rho, default=1.0) <= 0 or min(self.gradient_tolerance, default=0.0) < 0:
            raise ProtocolError("bad-field", "iterate.v2: rho must be > 0, tolerances >= 0")


@dataclass(frozen=True)
class Result:
    """One worker's blocks after round k, with its timings.

    ``x`` holds the new x_b, shape (nb, d), rows in the order of ``blocks`` (the coordinator forms
    omega_b and q_b of Algorithm 2 itself, from its exact copy of u_b); compute and idle seconds
    are measured by the worker as in seed 001, Section II-B. ``leaving``: the worker's time limit
    is too close for another round, so it leaves after this result (rotation, issue #5);
    ``seconds_left``: how long before it will leave (None: it has no time limit), so that the
    coordinator can start its successor early.
    """

    KIND: ClassVar[str] = "result.v3"
    ARRAY: ClassVar[str | None] = "x"
    worker: str
    iteration: int
    blocks: tuple[int, ...]
    loss_at_z: tuple[float, ...]
    gradient_evaluations: tuple[int, ...]
    solver_iterations: tuple[int, ...]
    compute_seconds: float
    idle_seconds: float
    x: np.ndarray
    instance: str = ""
    leaving: bool = False
    seconds_left: float | None = None

    def __post_init__(self) -> None:
        if self.seconds_left is not None and self.seconds_left < 0:
            raise ProtocolError("bad-field", "result.v3.seconds_left must be >= 0")


@dataclass(frozen=True)
class Round:
    """Round k of an algorithm other than ADMM (SGD, k-means), broadcast to every worker.

    ``phase`` names what the round does (``step``: an SGD round; ``seed``: a k-means++ round;
    ``lloyd``: a k-means round) and ``model`` is what every block needs for it: the shared
    model (SGD), the centroids chosen so far or the current ones (k-means). The workers named in
    ``leave`` (evicted by scale-in, or rotated out by a successor that is ready) answer with their
    blocks' states, and leave.
    """

    KIND: ClassVar[str] = "round.v1"
    ARRAY: ClassVar[str | None] = "model"
    iteration: int
    phase: str
    model: np.ndarray
    leave: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """One worker's blocks after a :class:`Round`, with its timings (see :class:`Result`).

    Per block, in the order of ``blocks``: ``width`` numbers of ``scalars`` (a loss, a row
    count...) and ``sizes[i]`` numbers of ``values`` (a gradient, a sparse update as indices then
    values, cluster sums...); what they mean is the algorithm's (``faasopt.algorithms``).
    ``state_sizes`` is empty, or, when the worker leaves alive (its time limit, or named in the
    round's ``leave``), the sizes of its blocks' states, which follow the parts in ``values``.
    """

    KIND: ClassVar[str] = "answer.v1"
    ARRAY: ClassVar[str | None] = "values"
    worker: str
    iteration: int
    blocks: tuple[int, ...]
    width: int
    scalars: tuple[float, ...]
    sizes: tuple[int, ...]
    compute_seconds: float
    idle_seconds: float
    values: np.ndarray
    instance: str = ""
    leaving: bool = False
    seconds_left: float | None = None
    state_sizes: tuple[int, ...] = ()
    """Per block, how many of the last numbers of ``values`` are its state (when it leaves)."""

    def __post_init__(self) -> None:
        nb = len(self.blocks)
        sizes = (*self.sizes, *self.state_sizes)
        if (
            len(self.sizes) != nb
            or len(self.state_sizes) not in (0, nb)
            or len(self.scalars) != self.width * nb
            or self.values.ndim != 1
            or min(sizes, default=0) < 0
            or sum(sizes) != self.values.size
        ):
            raise ProtocolError("bad-shape", f"answer for {nb} blocks: sizes do not add up")
        if self.seconds_left is not None and self.seconds_left < 0:
            raise ProtocolError("bad-field", "answer.v1.seconds_left must be >= 0")

    def parts(self) -> list[np.ndarray]:
        """The blocks' values, one array per block in the order of ``blocks``."""
        return _cut(self.values, self.sizes)

    def states(self) -> list[np.ndarray]:
        """The blocks' states (rotation), one array per block; empty when none were sent."""
        if not self.state_sizes:
            return []
        return _cut(self.values[sum(self.sizes) :], self.state_sizes)


@dataclass(frozen=True)
class Handover:
    """The state of a worker's blocks for an algorithm other than ADMM (see :class:`Assign`).

    ``values`` is the blocks' states one after another, ``sizes[i]`` numbers each (0: the block
    starts afresh); ``iteration`` is the round the state is ready for.
    """

    KIND: ClassVar[str] = "handover.v1"
    ARRAY: ClassVar[str | None] = "values"
    worker: str
    blocks: tuple[int, ...]
    sizes: tuple[int, ...]
    values: np.ndarray
    instance: str = ""
    iteration: int = 0

    def __post_init__(self) -> None:
        if (
            len(self.sizes) != len(self.blocks)
            or self.values.ndim != 1
            or min(self.sizes, default=0) < 0
            or sum(self.sizes) != self.values.size
        ):
            raise ProtocolError("bad-shape", f"handover for {len(self.blocks)} blocks")

    def parts(self) -> list[np.ndarray]:
        return _cut(self.values, self.sizes)


def _cut(values: np.ndarray, sizes: tuple[int, ...]) -> list[np.ndarray]:
    ends = np.cumsum(sizes)
    return [values[end - size : end] for size, end in zip(sizes, ends, strict=True)]


@dataclass(frozen=True)
class Finish:
    """The run is over: workers evaluate their losses at the final z, answer, and leave."""

    KIND: ClassVar[str] = "finish.v1"
    ARRAY: ClassVar[str | None] = "z"
    status: str
    z: np.ndarray


@dataclass(frozen=True)
class Final:
    """A worker's last word: f_b(z) for its blocks and its peak resident memory."""

    KIND: ClassVar[str] = "final.v2"
    ARRAY: ClassVar[str | None] = None
    worker: str
    blocks: tuple[int, ...]
    loss_at_z: tuple[float, ...]
    peak_rss_bytes: int
    instance: str = ""


@dataclass(frozen=True)
class Stop:
    """Leave now, without answering: every worker (the job failed or was cancelled), or, with
    ``instance``, only that instance (a duplicate, or a worker rotated out or evicted)."""

    KIND: ClassVar[str] = "stop.v2"
    ARRAY: ClassVar[str | None] = None
    reason: str
    instance: str | None = None


@dataclass(frozen=True)
class Heartbeat:
    """A worker is alive (sent on the ``hb`` subject every few seconds, also while computing)."""

    KIND: ClassVar[str] = "heartbeat.v2"
    ARRAY: ClassVar[str | None] = None
    worker: str
    instance: str = ""


Message = (
    Hello
    | Assign
    | Iterate
    | Result
    | Round
    | Answer
    | Handover
    | Finish
    | Final
    | Stop
    | Heartbeat
)
KINDS: dict[str, type] = {
    cls.KIND: cls
    for cls in (
        Hello,
        Assign,
        Iterate,
        Result,
        Round,
        Answer,
        Handover,
        Finish,
        Final,
        Stop,
        Heartbeat,
    )
}


def _check_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_count(value: Any) -> bool:
    return _check_int(value) and value >= 0


def _check_float(value: Any) -> bool:
    return (_check_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_str(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 256


_CHECKS = {
    "int": _check_int,
    "float": _check_float,
    "bool": lambda v: isinstance(v, bool),
    "str": _check_str,
    "float | None": lambda v: v is None or _check_float(v),
    "str | None": lambda v: v is None or _check_str(v),
    "tuple[str, ...]": lambda v: isinstance(v, list) and all(map(_check_str, v)),
}
"""The checks of the fields that travel in the header, by type."""

_NUMBERS = {"tuple[float, ...]": float, "tuple[int, ...]": int}
_VECTORS: dict[str, dict[str, type]] = {
    kind: {f.name: _NUMBERS[f.type] for f in dataclasses.fields(cls) if f.type in _NUMBERS}
    for kind, cls in KINDS.items()
}
"""Per kind, its numeric tuple fields (in field order) and their numbers' type: they travel in the
payload after the array, as float64."""


# --- encoding ---------------------------------------------------------------------------------


def encode(message: Message, job: str, sender: str, msg_id: int, max_payload: int) -> list[bytes]:
    """Frames for ``message``: one, or several chunks when it exceeds ``max_payload`` bytes."""
    header: dict[str, Any] = {"kind": message.KIND, "job": job, "sender": sender, "msg": msg_id}
    parts, vectors = [b""], {}  # the array's bytes first, then the vectors'
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if f.name == message.ARRAY:
            array = np.ascontiguousarray(value, dtype=DTYPE)
            header["dtype"], header["shape"] = DTYPE, list(array.shape)
            parts[0] = array.tobytes()
        elif f.name in _VECTORS[message.KIND]:
            vector = np.asarray(value, dtype=DTYPE)
            if not np.isfinite(vector).all():
                raise ValueError(f"{message.KIND}.{f.name} holds NaN or infinity")
            vectors[f.name] = len(vector)
            parts.append(vector.tobytes())
        else:
            header[f.name] = list(value) if isinstance(value, tuple) else value
    payload = b"".join(parts)
    header["vectors"], header["nbytes"] = vectors, len(payload)
    room = max_payload - _PREFIX.size - 512  # 512: room for the header's chunk fields and ids
    first = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    if len(first) + len(payload) <= room:
        return [_frame(first, payload)]
    step = room - len(first)
    if step <= 0:
        raise ProtocolError("header-too-large", f"{len(first)} bytes > max_payload {max_payload}")
    n = math.ceil(len(payload) / step)
    frames = []
    for i in range(n):
        header["chunk"] = [i, n]
        text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
        frames.append(_frame(text, payload[i * step : (i + 1) * step]))
    return frames


def _frame(header: bytes, payload: bytes) -> bytes:
    return _PREFIX.pack(MAGIC, len(header)) + header + payload


# --- decoding ---------------------------------------------------------------------------------


class Decoder:
    """Turns frames into messages of one job; drops and counts anything invalid.

    Parameters
    ----------
    job : str
        The job key (``namespace/name``) every message must carry.
    accept : set of str
        The kinds this side expects (a worker does not accept results, for instance).
    max_message_bytes : int
        Largest payload (array and vectors) accepted for one message, chunks included.
    max_pending : int
        Most partially received chunked messages kept; the oldest is dropped beyond it.
    """

    def __init__(
        self,
        job: str,
        accept: set[str],
        max_message_bytes: int = 1 << 30,
        max_pending: int = 64,
    ) -> None:
        self.job = job
        self.accept = accept
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.rejected: Counter[str] = Counter()
        self._pending: OrderedDict[tuple[str, int], dict[int, bytes]] = OrderedDict()

    def reject(self, reason: str) -> None:
        """Count one dropped message (also for checks made by the caller, e.g. stale rounds)."""
        self.rejected[reason] += 1

    def feed(self, frame: bytes) -> Message | None:
        """The message ``frame`` completes, or None (a partial chunk, or dropped and counted)."""
        try:
            header, payload = _split(frame)
            if header.get("job") != self.job:
                raise ProtocolError("foreign-job", f"expected job {self.job!r}")
            kind = header.get("kind")
            if not isinstance(kind, str) or kind not in self.accept:
                raise ProtocolError("unexpected-kind", f"got {header.get('kind')!r}")
            if "chunk" in header:
                payload = self._gather(header, payload)
                if payload is None:
                    return None
            return _build(header, payload, self.max_message_bytes)
        except ProtocolError as exc:
            self.reject(exc.reason)
            return None

    def _gather(self, header: dict[str, Any], part: bytes) -> bytes | None:
        chunk, sender, msg = header.get("chunk"), header.get("sender"), header.get("msg")
        valid = (
            isinstance(chunk, list)
            and len(chunk) == 2
            and all(map(_check_int, chunk))
            and 0 <= chunk[0] < chunk[1]
            and isinstance(sender, str)
            and _check_int(msg)
            and _check_int(header.get("nbytes"))
        )
        if not valid:
            raise ProtocolError("bad-chunk", "chunk must be [i, n] with 0 <= i < n")
        if header["nbytes"] > self.max_message_bytes:
            raise ProtocolError("too-large", f"{header['nbytes']} bytes announced")
        i, n = chunk
        key = (sender, msg)
        parts = self._pending.get(key)
        if parts is None:
            if len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
                self.reject("chunk-evicted")
            parts = self._pending[key] = {}
        if i in parts:
            raise ProtocolError("duplicate-chunk", f"chunk {i} of message {msg} from {sender}")
        parts[i] = part
        if sum(map(len, parts.values())) > header["nbytes"]:
            del self._pending[key]
            raise ProtocolError("bad-chunk", "chunks exceed the announced size")
        if len(parts) < n:
            return None
        del self._pending[key]
        if set(parts) != set(range(n)):
            raise ProtocolError("bad-chunk", f"chunk indices {sorted(parts)} for n = {n}")
        return b"".join(parts[j] for j in range(n))


def _split(frame: bytes) -> tuple[dict[str, Any], bytes]:
    if len(frame) < _PREFIX.size:
        raise ProtocolError("truncated", f"{len(frame)} bytes")
    magic, size = _PREFIX.unpack_from(frame)
    if magic != MAGIC:
        raise ProtocolError("bad-magic", f"expected {MAGIC!r}, got {magic!r}")
    if size > MAX_HEADER_BYTES or _PREFIX.size + size > len(frame):
        raise ProtocolError("truncated", f"header of {size} bytes in a {len(frame)}-byte frame")
    try:
        header = json.loads(frame[_PREFIX.size : _PREFIX.size + size], parse_constant=_no_nan)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise ProtocolError("bad-header", str(exc)[:80]) from None
    if not isinstance(header, dict):
        raise ProtocolError("bad-header", "header is not an object")
    return header, frame[_PREFIX.size + size :]


def _no_nan(name: str) -> None:
    raise ProtocolError("non-finite", f"{name} in header")


def _build(header: dict[str, Any], payload: bytes, max_bytes: int) -> Message:
    cls = KINDS[header["kind"]]
    if len(payload) > max_bytes:
        raise ProtocolError("too-large", f"{len(payload)} bytes")
    values = _payload(cls, header, payload)
    for f in dataclasses.fields(cls):
        if f.name in values:
            continue
        value = header.get(f.name)
        if not _CHECKS[f.type](value):
            raise ProtocolError(
                "bad-field", f"{cls.KIND}.{f.name} is not {f.type}: {value!r}"[:120]
            )
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _payload(cls: type, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """The fields ``payload`` holds: the kind's array, then its vectors, as the header says."""
    vectors = _VECTORS[cls.KIND]
    lengths = header.get("vectors")
    if not (
        isinstance(lengths, dict)
        and lengths.keys() == vectors.keys()
        and all(map(_check_count, lengths.values()))
    ):
        raise ProtocolError(
            "bad-field", f"{cls.KIND}.vectors must give the lengths of {list(vectors)}"
        )
    shape = None if cls.ARRAY is None else _shape(header)
    start = 0 if shape is None else math.prod(shape)
    expected = 8 * (start + sum(lengths.values()))
    if len(payload) != expected:
        reason = "truncated" if expected else "bad-array"  # bad-array: a kind with no numbers
        raise ProtocolError(reason, f"{cls.KIND} needs {expected} bytes, got {len(payload)}")
    numbers = np.frombuffer(payload, dtype=DTYPE)
    if not np.isfinite(numbers).all():
        raise ProtocolError("non-finite", f"{cls.KIND} carries NaN or infinity")
    values: dict[str, Any] = {} if shape is None else {cls.ARRAY: numbers[:start].reshape(shape)}
    for name, kind in vectors.items():
        vector = numbers[start : start + lengths[name]]
        start += lengths[name]
        if kind is int:
            if not (np.all(vector == np.trunc(vector)) and np.all(np.abs(vector) <= 2**53)):
                raise ProtocolError("bad-field", f"{cls.KIND}.{name} is not tuple[int, ...]")
            vector = vector.astype(np.int64)
        values[name] = tuple(vector.tolist())
    return values


def _shape(header: dict[str, Any]) -> list[int]:
    shape = header.get("shape")
    if header.get("dtype") != DTYPE:
        raise ProtocolError("bad-dtype", f"expected {DTYPE}, got {header.get('dtype')!r}")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 3 and all(map(_check_count, shape))):
        raise ProtocolError("bad-shape", f"got {shape!r}"[:80])
    if math.prod(d or 1 for d in shape) > MAX_ELEMENTS:  # an empty array's other sides too
        raise ProtocolError("bad-shape", f"got {shape!r}"[:80])
    return shape
