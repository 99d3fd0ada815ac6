"""GA-SGD and MA-SGD (seed 003; MA with MLLess's ISP filter, seed 002) as a driver and a runner.

GA-SGD: the driver holds x and the optimizer; each round every block sends its minibatch's summed
loss and gradient, and the driver steps (``faasopt.solvers.sgd.GradientAveraging``). Blocks keep
nothing, so any worker can take any block at any round.

MA-SGD: each block keeps its optimizer state and its ISP accumulator (a ``BlockState``); each round
it steps from its replica and sends the significant part of its contribution, sparse (indices then
values, both float64: 16 bytes an entry) or dense when that is smaller. The state lives with the
block's worker. It moves exactly when a worker leaves before its time limit (its last answer
carries it); a block whose worker dies restarts from a fresh state, losing its unsent (each
insignificant) updates and its optimizer's moments. When the stop rules end the run, one more
round (``flush``) collects every block's unsent updates, so the final model holds every update
ever made and no replica (docs/algorithms.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from faasopt import protocol as p
from faasopt.algorithms.base import StepRecord, each_block
from faasopt.checkpoint import Snapshot
from faasopt.data.blocks import block_bounds
from faasopt.data.source import holdout_ratings
from faasopt.errors import CheckpointError, ProtocolError
from faasopt.scalein import rounds_to_tolerance
from faasopt.solvers.pmf import PmfProblem, rmse
from faasopt.solvers.sgd import (
    BlockState,
    GradientAveraging,
    GradientMessage,
    LogisticProblem,
    Method,
    ModelAveraging,
    ModelMessage,
    OptimizerSettings,
    OptimizerState,
    RateSchedule,
    SgdRecord,
    SgdSettings,
    StopRule,
    Variant,
    gradient_block_step,
    initial_block_state,
    model_block_step,
    penalty,
    stop_reason,
)
from faasopt.solvers.significance import SparseUpdate, apply_updates, flush

if TYPE_CHECKING:
    from faasopt.payload import WorkerPayload
    from faasopt.plan import JobPlan

STEP, FLUSH = "step", "flush"
"""The phases of an SGD round: a step, and the last collection of unsent updates (MA)."""


# --- wire forms ------------------------------------------------------------------------------


def settings_to_wire(settings: SgdSettings) -> dict[str, Any]:
    """``settings`` as JSON-able data (enums as their values), for the workers' payload."""
    return _json_ready(dataclasses.asdict(settings))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return str(value) if isinstance(value, (Variant, Method, RateSchedule)) else value


def settings_from_wire(wire: Mapping[str, Any]) -> SgdSettings:
    """The inverse of :func:`settings_to_wire`."""
    optimizer = dict(wire["optimizer"])
    optimizer["method"] = Method(optimizer["method"])
    optimizer["schedule"] = RateSchedule(optimizer["schedule"])
    return SgdSettings(
        **{
            **wire,
            "variant": Variant(wire["variant"]),
            "optimizer": OptimizerSettings(**optimizer),
            "stop": StopRule(**wire["stop"]),
        }
    )


def problem_from_wire(wire: Mapping[str, Any]) -> LogisticProblem | PmfProblem:
    """The SGD problem: ``{"logistic": {n_params, n_rows, l1, l2}}`` or ``{"pmf": {...}}`` (the
    fields of :class:`PmfProblem`)."""
    ((kind, fields),) = wire.items()
    if kind == "logistic":
        return LogisticProblem(**fields)
    if kind == "pmf":
        return PmfProblem(**fields)
    raise ValueError(f"unknown SGD problem {kind!r}")


def pack_state(state: BlockState) -> np.ndarray:
    """A block's MA state as one vector: [t, m, v, accumulator]."""
    o = state.optimizer
    return np.concatenate([[float(o.t)], o.m, o.v, state.accumulator])


def unpack_state(packed: np.ndarray, settings: SgdSettings, n_params: int) -> BlockState:
    """The inverse of :func:`pack_state` (sizes from the optimizer's method)."""
    empty = initial_block_state(settings, n_params).optimizer
    m_end = 1 + empty.m.size
    v_end = m_end + empty.v.size
    if packed.size != v_end + n_params or packed[0] != int(packed[0]) or packed[0] < 0:
        raise ProtocolError("bad-shape", f"block state of {packed.size} numbers")
    optimizer = OptimizerState(
        t=int(packed[0]), m=packed[1:m_end].copy(), v=packed[m_end:v_end].copy()
    )
    return BlockState(optimizer=optimizer, accumulator=packed[v_end:].copy())


def encode_update(update: SparseUpdate) -> tuple[float, np.ndarray]:
    """(sparse flag, values): indices then values, or the dense vector when that is smaller."""
    if 2 * update.indices.size < update.size:
        return 1.0, np.concatenate([update.indices.astype(np.float64), update.values])
    dense = np.zeros(update.size)
    dense[update.indices] = update.values
    return 0.0, dense


def decode_update(sparse: float, values: np.ndarray, size: int) -> SparseUpdate:
    """The inverse of :func:`encode_update`; raises ProtocolError for a malformed one."""
    try:
        if sparse:
            n = values.size // 2
            indices = values[:n]
            whole = np.array_equal(indices, np.round(indices))
            if values.size % 2 or not whole or np.any((indices < 0) | (indices >= size)):
                raise ValueError(f"indices must be integers in [0, {size})")
            return SparseUpdate(indices.astype(_index_type(size)), values[n:].copy(), size)
        if values.size != size:
            raise ValueError(f"dense update of {values.size} entries, model of {size}")
        sent = np.flatnonzero(values).astype(_index_type(size))  # a sent entry is never 0
        return SparseUpdate(sent, values[sent], size)
    except ValueError as exc:
        raise ProtocolError("bad-update", str(exc)[:120]) from None


def _index_type(size: int) -> type:
    """The indices' type as the filter makes them, so that ``SparseUpdate.nbytes`` counts the
    same bytes (4 an index) here as in the in-process reference."""
    return np.int32 if size < 2**31 else np.int64


# --- the coordinator's half ------------------------------------------------------------------


class SgdDriver:
    """Synchronous minibatch SGD rounds, reduced in block order (GA or MA)."""

    ANSWER = p.Answer
    accepts: ClassVar[set[str]] = {p.Answer.KIND, p.Final.KIND}

    def __init__(self, plan: JobPlan) -> None:
        self.settings: SgdSettings = plan.settings
        self.problem = problem_from_wire(plan.problem)
        self.n_blocks = plan.n_blocks
        d = self.problem.n_params
        rows = np.diff(block_bounds(plan.rows, plan.n_blocks)).tolist()
        if self.settings.variant is Variant.GRADIENT_AVERAGING:
            self.core: GradientAveraging | ModelAveraging = GradientAveraging(
                self.problem, self.settings, rows
            )
        else:
            self.core = ModelAveraging(self.problem, self.settings, rows)
        state_size = pack_state(initial_block_state(self.settings, d)).size
        self.max_message_bytes = 8 * (
            plan.n_blocks * (2 * d + state_size + p.PER_BLOCK_NUMBERS) + 1024
        )
        self.states: dict[int, np.ndarray] = {}
        """Blocks' MA states handed back by a leaving worker, for their next holder (taken by
        :meth:`assignment`; a block cannot step again before it is assigned)."""
        self._flushed = False
        self._answers: dict[int, GradientMessage | ModelMessage | SparseUpdate] = {}
        self._wire: dict[int, int] = {}  # block -> bytes of its part of the round's answers
        self.holdout = holdout_ratings(plan.source) if "pmf" in plan.problem else None
        """PMF's held-out ratings, if its data has some: every round reports the test RMSE."""

    @property
    def averaging_models(self) -> bool:
        return self.settings.variant is Variant.MODEL_AVERAGING

    @property
    def hands_back(self) -> bool:
        """MA: a worker hands its blocks' states back before it leaves."""
        return self.averaging_models

    @property
    def iteration(self) -> int:
        return self.core.round

    @property
    def done(self) -> bool:
        return self.core.done and (self._flushed or not self.averaging_models)

    @property
    def status(self):
        return self.core.status

    @property
    def model(self) -> np.ndarray:
        return self.core.x

    @property
    def history(self) -> list[SgdRecord]:
        return self.core.history

    def snapshot(self) -> Snapshot:
        """x, the history (for the stop rules) and, under GA, the optimizer. MA's block states
        live on the workers: a resumed MA run restarts them fresh (see docs/algorithms.md)."""
        core = self.core
        scalars: dict[str, Any] = {"history": [dataclasses.asdict(r) for r in core.history]}
        arrays = {"x": core.x}
        if isinstance(core, GradientAveraging):
            scalars["t"] = core.optimizer.t
            arrays |= {"m": core.optimizer.m, "v": core.optimizer.v}
        return Snapshot(scalars, arrays)

    def restore(self, records: Sequence[StepRecord], snapshot: Snapshot) -> None:
        core, arrays = self.core, snapshot.arrays
        expected = ["x", "m", "v"] if isinstance(core, GradientAveraging) else ["x"]
        if list(arrays) != expected or arrays["x"].shape != core.x.shape:
            raise CheckpointError(f"not a checkpoint of this SGD job: arrays {list(arrays)}")
        core.x = arrays["x"]
        core.history = [SgdRecord(**r) for r in snapshot.scalars["history"]]
        core.round = len(core.history)
        core.status = stop_reason(core.history, self.settings.stop)
        if isinstance(core, GradientAveraging):
            core.optimizer = OptimizerState(snapshot.scalars["t"], arrays["m"], arrays["v"])

    def broadcast(self, leave: tuple[str, ...] = ()) -> p.Round:
        self._answers, self._wire = {}, {}
        phase = FLUSH if self.core.done else STEP
        return p.Round(self.core.round, phase, self.core.x, leave)

    def take(self, answer: p.Answer) -> None:
        """Decode and check the whole answer, then keep it: a malformed one changes nothing."""
        width = 4 if self.averaging_models else 2
        if answer.width != width:
            raise ProtocolError("bad-shape", f"{answer.width} numbers a block, expected {width}")
        received = {
            block: self._message(block, answer.scalars[i * width : (i + 1) * width], values)
            for i, (block, values) in enumerate(zip(answer.blocks, answer.parts(), strict=True))
        }
        states = dict(zip(answer.blocks, answer.states(), strict=False))
        for state in states.values():
            unpack_state(state, self.settings, self.problem.n_params)
        self._answers.update(received)
        self._wire.update(
            {b: 8 * v.size for b, v in zip(answer.blocks, answer.parts(), strict=True)}
        )
        self.states.update(states)

    def _message(self, block: int, scalars: tuple[float, ...], values: np.ndarray):
        """A block's part of an answer as the round's message (in the flush round: its update)."""
        d, rows = self.problem.n_params, scalars[1]
        if self.averaging_models and scalars[3] not in (0.0, 1.0):
            raise ProtocolError("bad-field", f"sparse flag {scalars[3]} for block {block}")
        if self.core.done:  # the flush round
            return decode_update(scalars[3], values, d)
        if rows < 1 or rows != int(rows):
            raise ProtocolError("bad-field", f"{rows} rows for block {block}")
        if not self.averaging_models:
            if values.size != d:
                raise ProtocolError("bad-shape", f"gradient of {values.size} for {d} features")
            return GradientMessage(block, scalars[0], int(rows), values)
        update = decode_update(scalars[3], values, d)
        return ModelMessage(block, scalars[0], int(rows), update, scalars[2])

    def reduce(self, seconds: float) -> StepRecord | None:
        if sorted(self._answers) != list(range(self.n_blocks)):
            raise ProtocolError("missing", f"answers for blocks {sorted(self._answers)}")
        messages = [self._answers[b] for b in range(self.n_blocks)]
        wire = sum(self._wire.values())
        if self.core.done:  # the flush round: every block's unsent updates, then stop
            self.core.x = apply_updates(self.core.x, messages)
            self._flushed = True
            return None
        previous = self.core.x
        r = self.core.reduce(messages, seconds)
        details = {
            "epochs": r.epochs,
            "learningRate": r.learning_rate,
            "entriesSent": r.entries_sent,
            "bytesSent": r.bytes_sent,
            "denseBytes": r.dense_bytes,
            "wireBytes": wire,
        }
        if self.holdout is not None:  # at the model this round's answers started from
            details["testRmse"] = rmse(self.problem, previous, self.holdout)
        return StepRecord(r.round, r.loss, details)

    def assignment(self, worker: str, instance: str, blocks: tuple[int, ...]) -> p.Handover:
        states = [self.states.pop(b, np.empty(0)) for b in blocks]
        return p.Handover(
            worker=worker,
            blocks=blocks,
            sizes=tuple(s.size for s in states),
            values=np.concatenate(states) if states else np.empty(0),
            instance=instance,
            iteration=self.core.round,
        )

    def finish(self) -> p.Finish:
        return p.Finish(str(self.core.status), self.core.x)

    def final_objective(self, losses: Sequence[float]) -> float:
        return math.fsum(losses) + penalty(self.problem, self.core.x)

    def remaining_rounds(self) -> float | None:
        """The rounds left of the epoch budget, or fewer if the loss projects to reach its
        threshold (and hold it) before."""
        history, stop = self.core.history, self.settings.stop
        if not history:
            return None
        left = math.inf
        if stop.max_epochs is not None:
            per_round = history[-1].epochs / len(history)
            left = max(stop.max_epochs - history[-1].epochs, 0.0) / per_round
        if stop.loss_threshold is not None:
            losses = [r.loss for r in history]
            reach = rounds_to_tolerance(losses, stop.loss_threshold)
            if reach is not None:
                left = min(left, reach + stop.hold_rounds)
        return None if math.isinf(left) else left


# --- the worker's half -----------------------------------------------------------------------


class SgdRunner:
    """A worker's blocks' minibatch steps (GA: gradients; MA: local steps and ISP)."""

    ASSIGN = p.Handover
    ROUND = p.Round

    def __init__(self, payload: WorkerPayload, data: Mapping[int, Any], wire: Mapping[str, Any]):
        self.payload = payload
        self.data = data
        self.settings = settings_from_wire(wire["settings"])
        self.problem = problem_from_wire(wire["problem"])
        d = self.problem.n_params
        state_size = pack_state(initial_block_state(self.settings, d)).size
        self.max_message_bytes = 8 * (
            payload.n_blocks * (state_size + p.PER_BLOCK_NUMBERS) + d + 1024
        )
        self.states: dict[int, BlockState] = {}
        self._ready = False
        self.cpu_seconds: dict[int, float] = {}

    @property
    def averaging_models(self) -> bool:
        return self.settings.variant is Variant.MODEL_AVERAGING

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def held(self) -> tuple[int, ...]:
        return tuple(sorted(self.states))

    def take(self, message: p.Handover) -> None:
        d = self.problem.n_params
        given = {
            block: unpack_state(packed, self.settings, d)
            if packed.size
            else initial_block_state(self.settings, d)
            for block, packed in zip(message.blocks, message.parts(), strict=True)
        }
        self.states.update(given)  # all or nothing: a malformed state raised above
        self._ready = True

    def fits(self, model: np.ndarray) -> bool:
        return model.shape == (self.problem.n_params,)

    def valid(self, message: p.Round) -> bool:
        return message.phase in (STEP, FLUSH) and self.fits(message.model)

    def step(self, message: p.Round) -> dict[str, Any]:
        steps = each_block(self.held, lambda b: self._block(b, message), self.cpu_seconds)
        scalars = [number for numbers, _ in steps for number in numbers]
        parts = [values for _, values in steps]
        return {
            "worker": self.payload.worker,
            "iteration": message.iteration,
            "blocks": self.held,
            "width": 4 if self.averaging_models else 2,
            "scalars": tuple(scalars),
            "sizes": tuple(v.size for v in parts),
            "values": np.concatenate(parts) if parts else np.empty(0),
        }

    def _block(self, block: int, message: p.Round) -> tuple[tuple[float, ...], np.ndarray]:
        s, data, k = self.settings, self.data[block], message.iteration
        if not self.averaging_models:
            g = gradient_block_step(self.problem, data, block, message.model, k, s)
            return (g.loss, float(g.rows)), g.gradient
        if message.phase == FLUSH:
            state = self.states[block]
            sparse, values = encode_update(flush(state.accumulator))
            empty = np.zeros_like(state.accumulator)
            self.states[block] = dataclasses.replace(state, accumulator=empty)
            return (0.0, 0.0, 0.0, sparse), values
        m, self.states[block] = model_block_step(
            self.problem, data, block, message.model, self.states[block], k, s,
            self.payload.n_blocks,
        )  # fmt: skip
        sparse, values = encode_update(m.update)
        return (m.loss, float(m.rows), m.learning_rate, sparse), values

    def answer(self, fields: dict[str, Any], leaving: bool, **timing: Any) -> p.Answer:
        if leaving and self.averaging_models:  # the states go with the last answer
            states = [pack_state(self.states[b]) for b in fields["blocks"]]
            fields = {
                **fields,
                "values": np.concatenate([fields["values"], *states]),
                "state_sizes": tuple(s.size for s in states),
            }
        return p.Answer(**fields, leaving=leaving, **timing)

    def final_losses(self, model: np.ndarray) -> tuple[float, ...]:
        losses = each_block(
            self.held, lambda b: self.problem.loss(self.data[b], model), self.cpu_seconds
        )
        return tuple(losses)
