r"""Minibatch SGD over blocks: GA-SGD and MA-SGD (seed 003), MLLess's ISP and stop rules (seed 002).

The objective has the scaling of the ADMM problem (seed 001), N rows cut into B blocks:

.. math::

    F(x) = \sum_{b=1}^{B} f_b(x) + \lambda_1 \|x\|_1 + \tfrac{\lambda_2}{2} \|x\|_2^2,

with :math:`f_b` the block's loss *summed* over its rows. SGD minimizes :math:`F / N` (the same
minimizer), so one step on a minibatch S with learning rate :math:`\eta_t` is

.. math::

    g = \tfrac{1}{|S|} \sum_{i \in S} \nabla f_i(x) + \tfrac{\lambda_2}{N} x, \qquad
    x \leftarrow \operatorname{opt}(x, g, \eta_t), \qquad
    x \leftarrow S(x;\ s_t \lambda_1 / N),

the optimizer's step (sgd, momentum, nesterov or adam) followed by the proximal step of the l1
term (soft threshold at the optimizer's effective step :math:`s_t`, see :func:`descend`).
scikit-learn's ``LogisticRegression(C=1 / l1)`` (l1) or ``C=1 / l2`` (l2) minimizes the same F.

Two ways to spread it over blocks, one round being one broadcast and one gather:

- **GA-SGD** (gradient averaging): every block computes a minibatch gradient at the shared x;
  the coordinator sums them in block order, divides by the rows, and takes the step. Workers are
  stateless; the coordinator holds x and the optimizer state.
- **MA-SGD** (model averaging): every block takes ``sync_every`` local steps from its replica
  with its own optimizer state and sends its contribution :math:`(x_b - x_{start}) / B`; the
  coordinator adds them in block order, so with every entry sent the new model is the average
  of the blocks' models. The contributions pass through MLLess's significance filter
  (:mod:`faasopt.solvers.significance`); v = 0 is plain BSP, and with ``sync_every = 1`` this is
  MLLess's ISP training (which sums the workers' updates instead of averaging them: the same up
  to a factor B in the learning rate for plain SGD).

Minibatches are drawn per block from ``(seed, block, epoch)`` and the step within the epoch, never
from a worker, so the run does not depend on which worker holds which block. Every reduction runs
in block order. :func:`reference_sgd` runs the same functions in one process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from faasopt.solvers.admm import soft_threshold
from faasopt.solvers.logistic import logistic_loss, logistic_loss_grad
from faasopt.solvers.significance import (
    SparseUpdate,
    apply_updates,
    dense_nbytes,
    filter_update,
    flush,
)

__all__ = [
    "BlockState",
    "GradientAveraging",
    "GradientMessage",
    "LogisticProblem",
    "Method",
    "ModelAveraging",
    "ModelMessage",
    "OptimizerSettings",
    "OptimizerState",
    "Problem",
    "RateSchedule",
    "SgdRecord",
    "SgdResult",
    "SgdSettings",
    "StopReason",
    "StopRule",
    "Variant",
    "descend",
    "final_model",
    "gradient_block_step",
    "initial_block_state",
    "initial_optimizer_state",
    "learning_rate",
    "minibatch",
    "model_block_step",
    "objective",
    "reference_sgd",
    "steps_per_epoch",
    "stop_reason",
]

SAMPLING_STREAM = 0x5347_4400
"""Tag in the minibatch generator's seed: keeps its stream apart from the data generators'
(numpy's SeedSequence ignores trailing zeros, so a tag, not the seed's length, must differ)."""


class Method(StrEnum):
    """The optimizer of a step."""

    SGD = "sgd"
    """x -= eta g."""
    MOMENTUM = "momentum"
    """Heavy ball, PyTorch's form: m = mu m + g; x -= eta m."""
    NESTEROV = "nesterov"
    """PyTorch's form: m = mu m + g; x -= eta (g + mu m). MLLess trains PMF with it."""
    ADAM = "adam"
    """Kingma & Ba 2015, bias-corrected. MLLess trains logistic regression with it."""


class RateSchedule(StrEnum):
    """How the learning rate eta_t follows the step count t (counted from 0)."""

    CONSTANT = "constant"
    """eta_t = eta."""
    STEP = "step"
    """eta_t = eta * decay_factor ** floor(t / decay_every)."""
    INVERSE_SQRT = "inverseSqrt"
    """eta_t = eta / sqrt(1 + floor(t / decay_every)); per epoch, MLLess's schedule."""
    COSINE = "cosine"
    """eta_t = eta (1 + cos(pi min(t, horizon) / horizon)) / 2 (Loshchilov & Hutter 2017)."""


@dataclass(frozen=True)
class OptimizerSettings:
    """The optimizer, its hyper-parameters and the learning-rate schedule (units: steps)."""

    method: Method = Method.SGD
    """Plain SGD by default: no hyper-parameter beyond eta to tune."""
    learning_rate: float = 0.1
    """eta, the rate of the step on F / N (a mean loss, so O(0.1) suits unit-scale features)."""
    momentum: float = 0.9
    """mu of momentum and nesterov; the usual 0.9."""
    beta1: float = 0.9
    """Adam's first-moment decay (the paper's default)."""
    beta2: float = 0.999
    """Adam's second-moment decay (the paper's default)."""
    epsilon: float = 1e-8
    """Adam's epsilon, added to the root of the second moment."""
    schedule: RateSchedule = RateSchedule.CONSTANT
    """The learning-rate schedule."""
    decay_every: int = 1
    """Steps between decays of ``step`` and ``inverseSqrt`` (steps per epoch: per epoch)."""
    decay_factor: float = 0.5
    """The factor of ``step``."""
    horizon: int = 1000
    """Steps over which ``cosine`` goes from eta to 0 (and stays there)."""

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("momentum", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.decay_factor <= 1:
            raise ValueError(f"decay_factor must be in (0, 1], got {self.decay_factor}")
        if self.decay_every < 1 or self.horizon < 1:
            raise ValueError("decay_every and horizon must be >= 1")


@dataclass(frozen=True, eq=False)
class OptimizerState:
    """Everything an optimizer remembers, as arrays a coordinator can hold and hand over.

    ``t`` is the steps taken (the schedule's and Adam's bias correction's clock); ``m`` is the
    momentum buffer or Adam's first moment, ``v`` Adam's second moment, each shape (d,) when the
    method uses it and (0,) otherwise.
    """

    t: int
    m: np.ndarray
    v: np.ndarray


def initial_optimizer_state(settings: OptimizerSettings, n_params: int) -> OptimizerState:
    """t = 0 and zero moments, sized for the method."""
    uses_m = settings.method is not Method.SGD
    uses_v = settings.method is Method.ADAM
    return OptimizerState(
        t=0, m=np.zeros(n_params if uses_m else 0), v=np.zeros(n_params if uses_v else 0)
    )


def learning_rate(settings: OptimizerSettings, t: int) -> float:
    """eta_t of the schedule at step t."""
    eta, every = settings.learning_rate, settings.decay_every
    if settings.schedule is RateSchedule.STEP:
        return eta * settings.decay_factor ** (t // every)
    if settings.schedule is RateSchedule.INVERSE_SQRT:
        return eta / math.sqrt(1 + t // every)
    if settings.schedule is RateSchedule.COSINE:
        return eta * (1 + math.cos(math.pi * min(t, settings.horizon) / settings.horizon)) / 2
    return eta


class Problem(Protocol):
    """A loss summed over the rows of a block, with the penalties of F (see the module doc)."""

    n_params: int
    n_rows: int
    """N, the rows of all blocks: the 1/N of the step."""
    l1: float
    l2: float

    def rows(self, data: Any) -> int: ...

    def loss_grad(self, data: Any, x: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient summed over ``rows`` of the block."""
        ...

    def loss(self, data: Any, x: np.ndarray) -> float:
        """Loss summed over all rows of the block."""
        ...

    def initial_model(self) -> np.ndarray: ...


@dataclass(frozen=True)
class LogisticProblem:
    """Logistic loss (labels -1/+1) of :mod:`faasopt.solvers.logistic`.

    The data of a block is anything with rows ``A`` (CSR) and labels ``y``, such as a
    :class:`faasopt.data.Block` (not imported: solvers import only solvers).
    """

    n_params: int
    """d, the features."""
    n_rows: int
    l1: float = 0.0
    l2: float = 0.0

    def rows(self, data: Any) -> int:
        return data.A.shape[0]

    def loss_grad(self, data: Any, x: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
        return logistic_loss_grad(data.A[rows], data.y[rows], x)

    def loss(self, data: Any, x: np.ndarray) -> float:
        return logistic_loss(data.A, data.y, x)

    def initial_model(self) -> np.ndarray:
        """Zeros: the loss is convex, and the l1 solution is sparse."""
        return np.zeros(self.n_params)


def objective(problem: Problem, blocks: Sequence[Any], x: np.ndarray) -> float:
    """F(x), the blocks' losses summed in block order plus the penalties."""
    return math.fsum(problem.loss(b, x) for b in blocks) + penalty(problem, x)


def penalty(problem: Problem, x: np.ndarray) -> float:
    """The penalties of F at x: l1 ||x||_1 + l2/2 ||x||^2."""
    return problem.l1 * float(np.abs(x).sum()) + 0.5 * problem.l2 * float(x @ x)


def descend(
    problem: Problem,
    settings: OptimizerSettings,
    state: OptimizerState,
    x: np.ndarray,
    gradient: np.ndarray,
) -> tuple[np.ndarray, OptimizerState, float]:
    r"""One step on F / N from the loss's mean minibatch ``gradient``: the l2 term, the
    optimizer, then the prox of :math:`s \lambda_1 / N` with s the optimizer's effective step.

    s is :math:`\eta_t` for sgd, :math:`\eta_t / (1 - \mu)` for momentum and nesterov (their
    steady step: m tends to g / (1 - mu)) and :math:`\eta_t / (\sqrt{\hat v} + \epsilon)` per entry
    for adam (the prox in Adam's diagonal metric). With these the fixed points of the iteration are
    exactly the minimizers of F; thresholding at :math:`\eta_t` alone under-weights the l1 term by
    the same factor (measured: 5-9 % above the optimum at l1 = 30). Returns new arrays and eta_t.
    """
    t, eta = state.t, learning_rate(settings, state.t)
    g = gradient + (problem.l2 / problem.n_rows) * x if problem.l2 else gradient
    m, v = state.m, state.v
    if settings.method is Method.SGD:
        step = eta
        x = x - step * g
    elif settings.method in (Method.MOMENTUM, Method.NESTEROV):
        step = eta / (1 - settings.momentum)
        m = settings.momentum * m + g
        x = x - eta * (settings.momentum * m + g if settings.method is Method.NESTEROV else m)
    else:
        m = settings.beta1 * m + (1 - settings.beta1) * g
        v = settings.beta2 * v + (1 - settings.beta2) * (g * g)
        m_hat = m / (1 - settings.beta1 ** (t + 1))
        v_hat = v / (1 - settings.beta2 ** (t + 1))
        step = eta / (np.sqrt(v_hat) + settings.epsilon)
        x = x - step * m_hat
    if problem.l1:
        x = soft_threshold(x, step * (problem.l1 / problem.n_rows))
    return x, OptimizerState(t=t + 1, m=m, v=v), eta


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Minibatches in one pass over ``rows`` rows; the last may be smaller."""
    return -(-rows // batch_size)


def minibatch(rows: int, batch_size: int, seed: int, block: int, step: int) -> np.ndarray:
    """Row indices (sorted) of the block's minibatch number ``step`` (counted from 0 over epochs).

    Epoch e = step // steps_per_epoch is a permutation of the block's rows drawn from
    ``default_rng([seed, SAMPLING_STREAM, block, e])``; the minibatch is its slice number
    step % steps_per_epoch. So every row is used once per epoch, and the sequence depends on
    (seed, block, epoch, step) alone.
    """
    epoch, position = divmod(step, steps_per_epoch(rows, batch_size))
    order = np.random.default_rng([seed, SAMPLING_STREAM, block, epoch]).permutation(rows)
    return np.sort(order[position * batch_size : (position + 1) * batch_size])


class Variant(StrEnum):
    """How blocks combine their work each round."""

    GRADIENT_AVERAGING = "gradientAveraging"
    MODEL_AVERAGING = "modelAveraging"


class StopReason(StrEnum):
    """Why a run ended."""

    LOSS_THRESHOLD = "lossThreshold"
    """The round loss stayed at or below the threshold for ``hold_rounds`` rounds in a row."""
    MAX_EPOCHS = "maxEpochs"
    MAX_SECONDS = "maxSeconds"


@dataclass(frozen=True)
class StopRule:
    """When a run stops; the first rule met wins. None switches a rule off."""

    loss_threshold: float | None = None
    """Mean minibatch loss (the data term, as MLLess's supervisor measures it) to reach."""
    hold_rounds: int = 10
    """Consecutive rounds at or below the threshold before stopping (MLLess's supervisor: 10)."""
    max_epochs: float | None = 10.0
    """Passes over the data (of the largest block); a budget, so never None by default."""
    max_seconds: float | None = None
    """Seconds since the run started, as the caller measured them into the records."""

    def __post_init__(self) -> None:
        if self.hold_rounds < 1:
            raise ValueError(f"hold_rounds must be >= 1, got {self.hold_rounds}")


@dataclass(frozen=True)
class SgdSettings:
    """A run of minibatch SGD over blocks."""

    variant: Variant = Variant.GRADIENT_AVERAGING
    """Plain synchronous SGD by default: stable for any model (seed 003, Section 4.2)."""
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    batch_size: int = 128
    """Rows per minibatch per block; the global batch is B times larger."""
    sync_every: int | None = None
    """MA only: local steps per round; None = one pass over the block (LambdaML's MA-SGD)."""
    significance: float = 0.0
    """v of the ISP filter, MA only; 0 sends every nonzero entry (BSP), MLLess used 0.7."""
    seed: int = 0
    """Seed of the minibatch order."""
    stop: StopRule = field(default_factory=StopRule)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.sync_every is not None and self.sync_every < 1:
            raise ValueError(f"sync_every must be >= 1 or None, got {self.sync_every}")
        if self.significance < 0:
            raise ValueError(f"significance must be >= 0, got {self.significance}")
        if self.variant is Variant.GRADIENT_AVERAGING and self.sync_every is not None:
            raise ValueError("sync_every needs variant modelAveraging: GA-SGD syncs every step")
        if self.variant is Variant.GRADIENT_AVERAGING and self.significance > 0:
            raise ValueError(
                "significance > 0 needs variant modelAveraging: under gradientAveraging the step "
                "is taken at the coordinator, so no block has an update of its own to filter"
            )

    def local_steps(self, rows: int) -> int:
        """Steps a block of ``rows`` rows takes per round."""
        if self.variant is Variant.GRADIENT_AVERAGING:
            return 1
        return self.sync_every or steps_per_epoch(rows, self.batch_size)


@dataclass(frozen=True)
class SgdRecord:
    """The coordinator's view of one finished round."""

    round: int
    loss: float
    """Mean minibatch loss of the round's minibatches (data term), each at the iterate it
    stepped from: MLLess's step loss."""
    epochs: float
    """Passes over the data done after this round (of the largest block)."""
    learning_rate: float
    """eta_t of the round's (first) step."""
    entries_sent: int
    """Model entries the blocks sent this round (d per block when dense)."""
    bytes_sent: int
    """Bytes of the blocks' vectors (values and indices) this round."""
    dense_bytes: int
    """Bytes the same round would send without the filter (8 d per block)."""
    seconds: float | None = None
    """Seconds since the run started, when the caller measured them."""


def stop_reason(history: Sequence[SgdRecord], rule: StopRule) -> StopReason | None:
    """Which rule, if any, ends the run after the last record of ``history``."""
    if not history:
        return None
    last = history[-1]
    held = history[-rule.hold_rounds :]
    if (
        rule.loss_threshold is not None
        and len(held) == rule.hold_rounds
        and all(r.loss <= rule.loss_threshold for r in held)
    ):
        return StopReason.LOSS_THRESHOLD
    if rule.max_epochs is not None and last.epochs >= rule.max_epochs:
        return StopReason.MAX_EPOCHS
    timed = rule.max_seconds is not None and last.seconds is not None
    if timed and last.seconds >= rule.max_seconds:
        return StopReason.MAX_SECONDS
    return None


# ----------------------------------------------------------------------------- GA-SGD


@dataclass(frozen=True, eq=False)
class GradientMessage:
    """A block's GA-SGD round: its minibatch loss and gradient, summed over ``rows`` rows."""

    block: int
    loss: float
    rows: int
    gradient: np.ndarray


def gradient_block_step(
    problem: Problem, data: Any, block: int, x: np.ndarray, round_: int, settings: SgdSettings
) -> GradientMessage:
    """Worker side of GA-SGD round ``round_``: the block's minibatch ``round_`` at the shared x."""
    rows = minibatch(problem.rows(data), settings.batch_size, settings.seed, block, round_)
    loss, grad = problem.loss_grad(data, x, rows)
    return GradientMessage(block=block, loss=loss, rows=int(rows.size), gradient=grad)


def _check_order(messages: Sequence[GradientMessage | ModelMessage], n_blocks: int) -> None:
    if [m.block for m in messages] != list(range(n_blocks)):
        raise ValueError(f"expected one message per block in block order 0..{n_blocks - 1}")


class _Coordinator:
    """What both variants' coordinators share: the shared x, the history and the stop rule."""

    def __init__(self, problem: Problem, settings: SgdSettings, block_rows: Sequence[int]):
        self.problem = problem
        self.settings = settings
        self.block_rows = tuple(int(n) for n in block_rows)
        self.x = problem.initial_model()
        self.round = 0
        self.history: list[SgdRecord] = []
        self.status: StopReason | None = None
        self._epoch_steps = steps_per_epoch(max(self.block_rows), settings.batch_size)
        self._round_steps = settings.local_steps(max(self.block_rows))

    @property
    def n_blocks(self) -> int:
        return len(self.block_rows)

    @property
    def done(self) -> bool:
        return self.status is not None

    def _record(self, messages, eta, entries, nbytes, seconds) -> SgdRecord:
        record = SgdRecord(
            round=self.round,
            loss=math.fsum(m.loss for m in messages) / sum(m.rows for m in messages),
            epochs=(self.round + 1) * self._round_steps / self._epoch_steps,
            learning_rate=eta,
            entries_sent=entries,
            bytes_sent=nbytes,
            dense_bytes=self.n_blocks * dense_nbytes(self.problem.n_params),
            seconds=seconds,
        )
        self.history.append(record)
        self.round += 1
        self.status = stop_reason(self.history, self.settings.stop)
        return record


class GradientAveraging(_Coordinator):
    """Coordinator of GA-SGD: holds x and the optimizer state (all a run needs), free of I/O.

    Parameters
    ----------
    problem : Problem
    settings : SgdSettings
    block_rows : sequence of int
        Rows of each block, in block order.
    """

    def __init__(self, problem: Problem, settings: SgdSettings, block_rows: Sequence[int]):
        super().__init__(problem, settings, block_rows)
        self.optimizer = initial_optimizer_state(settings.optimizer, problem.n_params)

    def reduce(
        self, messages: Sequence[GradientMessage], seconds: float | None = None
    ) -> SgdRecord:
        """Finish the round from every block's message, in block order: step on the mean
        minibatch gradient. ``seconds`` since the start feed the ``max_seconds`` rule."""
        _check_order(messages, self.n_blocks)
        total = np.zeros(self.problem.n_params)
        for m in messages:
            total += m.gradient
        rows = sum(m.rows for m in messages)
        self.x, self.optimizer, eta = descend(
            self.problem, self.settings.optimizer, self.optimizer, self.x, total / rows
        )
        d = self.problem.n_params
        return self._record(
            messages, eta, self.n_blocks * d, self.n_blocks * dense_nbytes(d), seconds
        )


# ----------------------------------------------------------------------------- MA-SGD


@dataclass(frozen=True, eq=False)
class BlockState:
    """What a block carries between MA-SGD rounds: its optimizer and its unsent updates.

    It moves with the block: a worker that gives a block up hands this over (through the
    coordinator), and the run goes on exactly as if the block had never moved.
    """

    optimizer: OptimizerState
    accumulator: np.ndarray
    """The ISP accumulator (d,): contributions computed but not sent yet."""


def initial_block_state(settings: SgdSettings, n_params: int) -> BlockState:
    """A block's state before its first round."""
    return BlockState(
        optimizer=initial_optimizer_state(settings.optimizer, n_params),
        accumulator=np.zeros(n_params),
    )


@dataclass(frozen=True, eq=False)
class ModelMessage:
    """A block's MA-SGD round: the significant part of its contribution, and its losses."""

    block: int
    loss: float
    """Summed over the round's minibatches, each at the iterate it stepped from."""
    rows: int
    update: SparseUpdate
    learning_rate: float
    """eta_t of the block's first step this round."""


def model_block_step(
    problem: Problem,
    data: Any,
    block: int,
    x: np.ndarray,
    state: BlockState,
    round_: int,
    settings: SgdSettings,
    n_blocks: int,
) -> tuple[ModelMessage, BlockState]:
    r"""Worker side of MA-SGD round ``round_``.

    From its replica :math:`x + \delta_b` (the shared x plus its unsent contributions), the block
    takes ``settings.local_steps`` steps on its minibatches, forms its contribution
    :math:`u_b = (x_{end} - x_{start}) / B` and sends the entries of :math:`\delta_b + u_b` that
    pass the significance filter at step ``round_``.
    """
    rows = problem.rows(data)
    steps = settings.local_steps(rows)
    start = x + state.accumulator
    local, optimizer = start, state.optimizer
    losses, used, first_eta = [], 0, None
    for j in range(steps):
        batch = minibatch(rows, settings.batch_size, settings.seed, block, round_ * steps + j)
        loss, grad = problem.loss_grad(data, local, batch)
        local, optimizer, eta = descend(
            problem, settings.optimizer, optimizer, local, grad / batch.size
        )
        losses.append(loss)
        used += batch.size
        first_eta = eta if first_eta is None else first_eta
    contribution = (local - start) / n_blocks
    update, accumulator = filter_update(
        state.accumulator,
        contribution,
        x + state.accumulator + contribution,
        settings.significance,
        round_,
    )
    message = ModelMessage(
        block=block, loss=math.fsum(losses), rows=used, update=update, learning_rate=first_eta
    )
    return message, BlockState(optimizer=optimizer, accumulator=accumulator)


class ModelAveraging(_Coordinator):
    """Coordinator of MA-SGD: adds the blocks' contributions to x in block order, free of I/O.

    The blocks' :class:`BlockState` live with the blocks; the coordinator only needs them to hand
    a block to another worker and for the final model (:func:`final_model`).
    """

    def reduce(self, messages: Sequence[ModelMessage], seconds: float | None = None) -> SgdRecord:
        """Finish the round from every block's message, in block order."""
        _check_order(messages, self.n_blocks)
        self.x = apply_updates(self.x, [m.update for m in messages])
        return self._record(
            messages,
            messages[0].learning_rate,
            sum(m.update.indices.size for m in messages),
            sum(m.update.nbytes for m in messages),
            seconds,
        )


def final_model(x: np.ndarray, states: Sequence[BlockState]) -> np.ndarray:
    """The shared x plus every block's unsent contributions (in block order): all updates ever
    made, and no stale replica. Equals x when v = 0."""
    return apply_updates(x, [flush(s.accumulator) for s in states])


# ----------------------------------------------------------------------------- reference


@dataclass
class SgdResult:
    """Outcome of a run: the final model, why it stopped, and the per-round history."""

    x: np.ndarray
    status: StopReason
    objective: float
    """F(x) at the returned x."""
    history: list[SgdRecord]


def reference_sgd(problem: Problem, blocks: Sequence[Any], settings: SgdSettings) -> SgdResult:
    """GA-SGD or MA-SGD over ``blocks`` in one process: the twin distributed runs match."""
    rows = [problem.rows(b) for b in blocks]
    if settings.variant is Variant.GRADIENT_AVERAGING:
        ga = GradientAveraging(problem, settings, rows)
        while not ga.done:
            ga.reduce(
                [
                    gradient_block_step(problem, b, i, ga.x, ga.round, settings)
                    for i, b in enumerate(blocks)
                ]
            )
        x, status, history = ga.x, ga.status, ga.history
    else:
        ma = ModelAveraging(problem, settings, rows)
        states = [initial_block_state(settings, problem.n_params) for _ in blocks]
        while not ma.done:
            steps = [
                model_block_step(problem, b, i, ma.x, states[i], ma.round, settings, len(blocks))
                for i, b in enumerate(blocks)
            ]
            states = [s for _, s in steps]
            ma.reduce([m for m, _ in steps])
        x, status, history = final_model(ma.x, states), ma.status, ma.history
    return SgdResult(x=x, status=status, objective=objective(problem, blocks, x), history=history)
