"""The TrainingJob: one typed model of the manifest, its defaults and its validation.

The same document serves ``faasopt run`` and ``kubectl apply``: camelCase on the wire, snake_case in
Python, unknown fields rejected, defaults filled. Every problem is reported with the dotted path of
its field (``spec.problem.l1: must be >= 0, got -1``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from faasopt.errors import FieldProblem, SpecError
from faasopt.solvers.admm import (
    RELAXATION_RANGE,
    RHO_MAX,
    RHO_MIN,
    AdmmSettings,
    Penalty,
    Schedule,
    Stopping,
)
from faasopt.solvers.kmeans import Criterion, KMeansSettings
from faasopt.solvers.local import LocalSolverSettings
from faasopt.solvers.pmf import PmfProblem
from faasopt.solvers.sgd import (
    Method,
    OptimizerSettings,
    RateSchedule,
    SgdSettings,
    StopRule,
    Variant,
)

API_VERSION = "faasopt.dev/v1alpha1"
KIND = "TrainingJob"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Strict scalars: a string or a bool is never read as a number (the API server refuses them too).
PositiveFloat = Annotated[StrictFloat, Field(gt=0)]
NonNegativeFloat = Annotated[StrictFloat, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Synthetic(_Model):
    """The paper's generator (seed 001, Section III), made per block from (seed, block)."""

    samples: StrictInt = Field(gt=0, description="N, rows of the whole data set.")
    features: StrictInt = Field(gt=0, description="d, columns.")
    density: StrictFloat = Field(
        gt=0, le=1, description="p, the share of nonzero features per row."
    )
    seed: StrictInt = Field(0, ge=0, description="Seed of the generator; block b uses (seed, b).")


class Libsvm(_Model):
    """A LIBSVM/svmlight text file, cut into contiguous row blocks; workers read only theirs."""

    uri: str = Field(
        min_length=1,
        description=(
            "A path (relative to the manifest's folder), s3://bucket/key (credentials, region "
            "and endpoint from the standard AWS configuration) or http(s)://host/path."
        ),
    )
    features: StrictInt | None = Field(
        None, gt=0, description="d; inferred from the file when None."
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 of the file (hex); checked when the job is planned.",
    )

    @field_validator("uri")
    @classmethod
    def _supported_uri(cls, uri: str) -> str:
        scheme, sep, rest = uri.partition("://")
        host = rest.split("/", 1)[0]
        if not sep or scheme == "file":
            return uri
        if scheme == "s3" and (not host or not rest[len(host) + 1 :]):
            raise ValueError(f"must be s3://bucket/key, got {uri!r}")
        if scheme in ("http", "https") and (not host or "@" in host):
            raise ValueError(
                "must be http(s)://host/path without user:password@ (credentials never go in "
                f"the manifest), got {uri.replace(host, host.rpartition('@')[2])!r}"
            )
        if scheme not in ("s3", "http", "https"):
            raise ValueError(f"must be a path, s3://bucket/key or http(s)://host/path, got {uri!r}")
        return uri


class Ratings(_Model):
    """A ``user item rating`` text file (MovieLens formats, faasopt.data.ratings), for loss pmf."""

    uri: str = Field(
        min_length=1,
        description=(
            "A local path (relative to the manifest's folder; file:// accepted). Every worker "
            "reads the whole file; s3:// and http(s):// are not supported yet."
        ),
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 of the file (hex); checked when the job is planned.",
    )
    shuffle_seed: StrictInt | None = Field(
        None,
        ge=0,
        description=(
            "Shuffle the ratings with this seed before cutting blocks (for files sorted by user, "
            "as MovieLens's are); None keeps the file's order."
        ),
    )

    @field_validator("uri")
    @classmethod
    def _local_uri(cls, uri: str) -> str:
        scheme, sep, _ = uri.partition("://")
        if sep and scheme != "file":
            raise ValueError(
                "must be a local path (s3:// and http(s):// ratings files are not supported yet), "
                f"got {uri!r}"
            )
        return uri


class SyntheticRatings(_Model):
    """A seeded low-rank ratings matrix observed at random pairs with Gaussian noise, per block."""

    users: StrictInt = Field(gt=0, description="Rows of the ratings matrix.")
    items: StrictInt = Field(gt=0, description="Columns of the ratings matrix.")
    rank: StrictInt = Field(gt=0, description="Rank of the true factors.")
    ratings: StrictInt = Field(gt=0, description="Training ratings, all blocks together.")
    noise: NonNegativeFloat = Field(
        0.0, description="Standard deviation of the noise: the test RMSE a perfect fit reaches."
    )
    seed: StrictInt = Field(0, ge=0, description="Seed; block b uses (seed, b).")
    holdout: StrictInt = Field(
        0, ge=0, description="Test ratings drawn apart from every block (0: none)."
    )


class Blobs(_Model):
    """Seeded Gaussian clusters (faasopt.data.blobs), per block; no labels: for loss kmeans."""

    samples: StrictInt = Field(gt=0, description="N, rows of the whole data set.")
    features: StrictInt = Field(gt=0, description="d, columns.")
    centers: StrictInt = Field(gt=0, description="Clusters drawn, centers uniform in [-10, 10]^d.")
    spread: PositiveFloat = Field(1.0, description="Standard deviation around each center.")
    seed: StrictInt = Field(
        0, ge=0, description="Seed; the centers come from (seed), block b from (seed, b)."
    )


SOURCES = ("synthetic", "libsvm", "ratings", "syntheticRatings", "blobs")
"""The data sources, by their spec (and wire) names."""
RATINGS_SOURCES = ("ratings", "syntheticRatings")


class Data(_Model):
    """Where the problem data comes from: exactly one source."""

    synthetic: Synthetic | None = None
    libsvm: Libsvm | None = None
    ratings: Ratings | None = None
    synthetic_ratings: SyntheticRatings | None = None
    blobs: Blobs | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Data:
        given = self._given()
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise ValueError(f"exactly one of {', '.join(SOURCES)} must be given, got {got}")
        return self

    def _given(self) -> list[str]:
        return [name for name in SOURCES if getattr(self, _snake(name)) is not None]

    @property
    def kind(self) -> str:
        """The source given, by its spec name (one of ``SOURCES``)."""
        (kind,) = self._given()
        return kind

    @property
    def source(self) -> _Model:
        """The source given."""
        return getattr(self, _snake(self.kind))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class Pmf(_Model):
    """Probabilistic matrix factorization (faasopt.solvers.pmf.PmfProblem), trained by sgd."""

    rank: StrictInt = Field(10, ge=1, description="r, factors per user and per item.")
    regularization: NonNegativeFloat = Field(
        0.05, description="lambda, the weight of (||U||^2 + ||V||^2) / 2."
    )
    offset: StrictFloat = Field(
        0.0, description="c, added to every prediction (the mean rating is the usual choice)."
    )
    seed: StrictInt = Field(0, ge=0, description="Seed of the initial factors.")
    init_scale: PositiveFloat = Field(
        0.1, description="Standard deviation of the initial factors (MLLess's N(0, 0.1))."
    )


class Clusters(_Model):
    """k-means' problem: how many clusters (the algorithm's settings are algorithm.kmeans)."""

    k: StrictInt = Field(ge=1, description="Clusters.")


LOSSES = ("logistic", "pmf", "kmeans")
TRAINED_BY = {"logistic": ("admm", "sgd"), "pmf": ("sgd",), "kmeans": ("kmeans",)}
"""Which algorithms train each loss."""
DATA_FOR = {
    "logistic": ("synthetic", "libsvm"),
    "pmf": RATINGS_SOURCES,
    "kmeans": ("synthetic", "libsvm", "blobs"),
}
"""Which data sources each loss reads (k-means ignores the labels of synthetic and libsvm)."""
L1_DEFAULT, L2_DEFAULT = 1.0, 0.0


class Problem(_Model):
    """What to minimize, on which data (docs/algorithms.md has each objective and its scaling)."""

    loss: Literal["logistic", "pmf", "kmeans"] = Field(
        "logistic",
        description=(
            "logistic: sum_n log(1 + exp(-b_n <a_n, x>)) + l1 ||x||_1 + l2/2 ||x||^2 (labels "
            "-1/+1; admm or sgd); pmf: matrix factorization of ratings data (sgd); kmeans: the "
            "inertia of kmeans.k centroids (labels ignored; algorithm kmeans)."
        ),
    )
    l1: NonNegativeFloat = Field(
        L1_DEFAULT, description="lambda1 of seed 001 (loss logistic only)."
    )
    l2: NonNegativeFloat = Field(
        L2_DEFAULT, description="Weight of ||x||^2 / 2 (loss logistic only)."
    )
    pmf: Pmf | None = Field(None, description="Loss pmf only; its defaults when absent.")
    kmeans: Clusters | None = Field(None, description="Loss kmeans only, and required by it.")
    data: Data

    @model_validator(mode="before")
    @classmethod
    def _pmf_defaults(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("loss") == "pmf" and value.get("pmf") is None:
            return {**value, "pmf": {}}
        return value


class LocalSolver(_Model):
    """The worker's x-step solver and its stopping rule (seed 001, Section III)."""

    method: Literal["lbfgs", "fista"] = "lbfgs"
    gradient_tolerance: PositiveFloat = Field(
        1.0,
        description=(
            "eps_g: the x-step's gradient tolerance, the loosest one with toleranceSchedule "
            "residuals (the paper: 0.01 with fixed)."
        ),
    )
    relative_improvement: NonNegativeFloat = Field(1e-12, description="eps_f.")
    min_iterations: StrictInt = Field(1, ge=0, description="K_w, the fewest inner iterations.")
    max_iterations: StrictInt = Field(1000, ge=1, description="A safety cap on inner iterations.")
    tolerance_schedule: Schedule = Field(
        Schedule.RESIDUALS,
        description=(
            "fixed: gradientTolerance in every round (the paper); residuals: tied to the "
            "residuals, loose early and tight late, never above gradientTolerance."
        ),
    )
    schedule_factor: PositiveFloat = Field(
        1.0, description="c of the residuals schedule: x-steps move x_b by about c x residual."
    )


class Admm(_Model):
    """Consensus ADMM; the defaults are the fastest measured (bench/algorithms.py)."""

    # The paper's configuration instead: penalty paper, relaxation 1, localSolver
    # {toleranceSchedule: fixed, gradientTolerance: 0.01}; stopping absolute is the paper's.

    rho: StrictFloat = Field(1.0, ge=RHO_MIN, le=RHO_MAX, description="rho_0.")
    penalty: Penalty = Field(
        Penalty.SPECTRAL,
        description=(
            "paper: x2 / x0.5 at a 10x residual imbalance; fixed; balanced: residual balancing "
            "(Wohlberg 2017); spectral: per-block spectral penalties (ACADMM, Xu et al. 2017)."
        ),
    )
    relaxation: StrictFloat = Field(
        1.8,
        ge=RELAXATION_RANGE[0],
        le=RELAXATION_RANGE[1],
        description="Over-relaxation alpha (Boyd et al. 3.4.3); 1 is plain ADMM.",
    )
    max_iterations: StrictInt = Field(100, ge=1, description="K.")
    stopping: Stopping = Field(
        Stopping.ABSOLUTE,
        description=(
            "absolute: r <= primalTolerance and s <= dualTolerance (the paper); relative: "
            "Boyd et al. 3.3.1 with absoluteTolerance and relativeTolerance."
        ),
    )
    primal_tolerance: PositiveFloat = Field(0.02, description="eps_r.")
    dual_tolerance: PositiveFloat = Field(0.02, description="eps_s.")
    absolute_tolerance: NonNegativeFloat = Field(
        1e-6, description="eps_abs of relative stopping, per coordinate."
    )
    relative_tolerance: PositiveFloat = Field(1e-4, description="eps_rel of relative stopping.")
    local_solver: LocalSolver = LocalSolver()


class Optimizer(_Model):
    """The optimizer of an SGD step and its learning-rate schedule (OptimizerSettings)."""

    method: Method = Field(
        Method.SGD,
        description="sgd; momentum and nesterov (PyTorch's forms); adam (bias-corrected).",
    )
    learning_rate: PositiveFloat = Field(0.1, description="eta, on the mean loss F / N.")
    momentum: StrictFloat = Field(0.9, ge=0, lt=1, description="mu of momentum and nesterov.")
    beta1: StrictFloat = Field(0.9, ge=0, lt=1, description="Adam's first-moment decay.")
    beta2: StrictFloat = Field(0.999, ge=0, lt=1, description="Adam's second-moment decay.")
    epsilon: PositiveFloat = Field(1e-8, description="Adam's epsilon.")
    schedule: RateSchedule = Field(
        RateSchedule.CONSTANT,
        description=(
            "constant; step (x decayFactor every decayEvery steps); inverseSqrt "
            "(eta / sqrt(1 + floor(t / decayEvery))); cosine (to 0 over horizon steps)."
        ),
    )
    decay_every: StrictInt = Field(1, ge=1, description="Steps between decays.")
    decay_factor: StrictFloat = Field(0.5, gt=0, le=1, description="The factor of step.")
    horizon: StrictInt = Field(1000, ge=1, description="Steps of cosine from eta to 0.")


class SgdStop(_Model):
    """When an SGD run stops (StopRule); the first rule met wins."""

    loss_threshold: NonNegativeFloat | None = Field(
        None, description="Mean minibatch loss (data term) to reach; None: no threshold."
    )
    hold_rounds: StrictInt = Field(
        10, ge=1, description="Consecutive rounds at or below lossThreshold (MLLess: 10)."
    )
    max_epochs: PositiveFloat = Field(
        10.0, description="Passes over the data (of the largest block): the budget."
    )
    max_seconds: PositiveFloat | None = Field(
        None, description="Wall seconds since the start; None: no limit."
    )


class Sgd(_Model):
    """Minibatch SGD over blocks: GA-SGD or MA-SGD, with MLLess's ISP filter (SgdSettings)."""

    variant: Variant = Field(
        Variant.GRADIENT_AVERAGING,
        description="gradientAveraging (GA-SGD, one step a round) or modelAveraging (MA-SGD).",
    )
    optimizer: Optimizer = Optimizer()
    batch_size: StrictInt = Field(
        128, ge=1, description="Rows per minibatch per block; the global batch is B times larger."
    )
    sync_every: StrictInt | None = Field(
        None,
        ge=1,
        description="modelAveraging only: local steps per round; None: one pass over the block.",
    )
    significance: NonNegativeFloat = Field(
        0.0, description="v of the ISP filter, modelAveraging only; 0 is BSP (MLLess: 0.7)."
    )
    seed: StrictInt = Field(0, ge=0, description="Seed of the minibatch order.")
    stop: SgdStop = SgdStop()

    @field_validator("sync_every", "significance")
    @classmethod
    def _model_averaging_only(cls, value: Any, info: ValidationInfo) -> Any:
        if "variant" not in info.data:  # the variant has a problem of its own
            return value
        try:
            SgdSettings(variant=info.data["variant"], **{info.field_name: value})
        except ValueError as exc:  # SgdSettings says why, in snake_case
            name = info.field_name
            raise ValueError(str(exc).replace(name, to_camel(name))) from None
        return value


class KMeans(_Model):
    """k-means by EM (Lloyd) with a k-means++ start by seeded reduction (KMeansSettings)."""

    max_iterations: StrictInt = Field(300, ge=1, description="Rounds at most.")
    tolerance: NonNegativeFloat = Field(
        1e-4, description="epsilon of the relative change; 0 runs until nothing moves."
    )
    criterion: Criterion = Field(
        Criterion.CENTROIDS,
        description=(
            "centroids: ||C' - C|| <= eps ||C||; inertia: the inertia's relative decrease <= eps."
        ),
    )
    seed: StrictInt = Field(0, ge=0, description="Seed of the k-means++ start.")


ALGORITHMS = ("admm", "sgd", "kmeans")


class Algorithm(_Model):
    """How to train: exactly one of admm, sgd, kmeans; none given means admm with its defaults."""

    admm: Admm | None = None
    sgd: Sgd | None = None
    kmeans: KMeans | None = None

    @model_validator(mode="before")
    @classmethod
    def _admm_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and all(value.get(name) is None for name in ALGORITHMS):
            return {**value, "admm": {}}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Algorithm:
        given = [name for name in ALGORITHMS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"exactly one of admm, sgd, kmeans must be given, got {', '.join(given)}"
            )
        return self

    @property
    def name(self) -> str:
        """The algorithm given: admm, sgd or kmeans."""
        return next(name for name in ALGORITHMS if getattr(self, name) is not None)


class Straggler(_Model):
    """What to do about a worker that is alive but much slower than the rest of its round."""

    policy: Literal["none", "speculate"] = Field(
        "none", description="speculate: start a copy for its blocks; the first answer wins."
    )
    slowness: PositiveFloat = Field(
        3.0, description="Slower than this times the median of the round's answers, in time."
    )
    min_seconds: PositiveFloat = Field(1.0, description="Never speculate earlier in a round.")


class Workers(_Model):
    """Where and how many workers run. Workers are placement: the math lives in the blocks."""

    platform: Literal["auto", "local", "sim", "pods", "knative", "openfaas", "lambda"] = Field(
        "auto",
        description=(
            "Where workers run. auto: local processes under `faasopt run`, Pods under the "
            "operator. `faasopt run` starts local (processes) and sim (simulated, one process); "
            "the operator starts pods, knative, openfaas and lambda."
        ),
    )
    count: StrictInt = Field(4, ge=1, description="Workers started.")
    blocks: StrictInt | None = Field(None, ge=1, description="B, data blocks; None means count.")
    time_limit_seconds: PositiveFloat = Field(900, description="A worker's lifetime.")
    memory_mb: StrictInt = Field(512, ge=64, alias="memoryMB", description="Memory per worker.")
    straggler: Straggler = Straggler()

    @property
    def block_count(self) -> int:
        return self.blocks if self.blocks is not None else self.count


class ScaleIn(_Model):
    """Shrinking the pool while training (seed 002, Sec. 4.2; docs/scale-in.md)."""

    policy: Literal["none", "auto", "idle"] = Field(
        "none",
        description=(
            "auto: MLLess's scheduler (evict while the projected loss gap stays under "
            "threshold); idle: evict while the pool idles more than idleShare; none."
        ),
    )
    rule: Literal["model", "mlless"] = Field(
        "model",
        description=(
            "auto after the knee: model (the pool size of highest projected Perf/$ within "
            "maxSlowdown, several workers in one decision) or mlless (seed 002, eq. 1: one "
            "worker per interval while the projected loss gap is under threshold)."
        ),
    )
    interval_seconds: PositiveFloat = Field(
        20.0, description="T: at most one eviction decision per T."
    )
    delta_seconds: PositiveFloat = Field(10.0, description="Delta, the horizon of s_Delta (<= T).")
    threshold: PositiveFloat = Field(0.15, description="S, the largest projected loss gap.")
    knee_tolerance: PositiveFloat = Field(
        0.01, description="Slope of the normalized objective that marks the knee."
    )
    knee_patience: StrictInt = Field(5, ge=1, description="Checks the knee must hold.")
    ewma_span: StrictInt = Field(20, ge=1, description="Span of the smoothing EWMAs.")
    min_workers: StrictInt = Field(1, ge=1, description="The pool never shrinks below this.")
    min_fit_points: StrictInt = Field(5, ge=4, description="Rounds to fit the current curve.")
    idle_share: StrictFloat = Field(
        0.5, gt=0, lt=1, description="idle evicts above this idle / (idle + compute)."
    )
    window_rounds: StrictInt = Field(10, ge=1, description="Rounds the idle share looks at.")
    max_slowdown: NonNegativeFloat = Field(
        0.10,
        description=(
            "model: the largest projected solve time, as a share over the initial pool's "
            "projected time, that a smaller pool may cost."
        ),
    )

    @model_validator(mode="after")
    def _delta_within_interval(self) -> ScaleIn:
        if self.delta_seconds > self.interval_seconds:
            raise ValueError(
                f"deltaSeconds ({self.delta_seconds:g}) must be <= intervalSeconds "
                f"({self.interval_seconds:g})"
            )
        return self


class Budget(_Model):
    """What the job may cost (faasopt.cost prices); past it the job stops, best z kept."""

    dollars: PositiveFloat = Field(description="US dollars for workers and always-on machines.")


class RunPolicy(_Model):
    """Kubernetes-style run policy; the local runner honours activeDeadlineSeconds."""

    active_deadline_seconds: StrictInt | None = Field(None, gt=0)
    backoff_limit: StrictInt = Field(3, ge=0)
    ttl_seconds_after_finished: StrictInt | None = Field(None, ge=0)
    suspend: StrictBool = False


class TrainingJobSpec(_Model):
    problem: Problem
    algorithm: Algorithm = Algorithm()
    workers: Workers = Workers()
    scale_in: ScaleIn = ScaleIn()
    budget: Budget | None = None
    run_policy: RunPolicy = RunPolicy()


class Metadata(BaseModel):
    """Kubernetes object metadata: a name and namespace; other Kubernetes fields pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, max_length=63)
    namespace: str = Field("default", min_length=1, max_length=63)

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"must be a DNS-1123 label (lower-case a-z, 0-9, '-'), got {value!r}")
        return value


class TrainingJob(_Model):
    """A TrainingJob manifest (``apiVersion: faasopt.dev/v1alpha1``)."""

    api_version: Literal["faasopt.dev/v1alpha1"] = API_VERSION
    kind: Literal["TrainingJob"] = KIND
    metadata: Metadata
    spec: TrainingJobSpec
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _cross_field(self) -> TrainingJob:
        workers, problems = self.spec.workers, []
        if workers.blocks is not None and workers.blocks < workers.count:
            problems.append(
                FieldProblem(
                    "spec.workers.blocks",
                    f"must be >= count ({workers.count}), got {workers.blocks}",
                )
            )
        if self.spec.scale_in.min_workers > workers.count:
            problems.append(
                FieldProblem(
                    "spec.scaleIn.minWorkers",
                    f"must be <= workers.count ({workers.count}), got "
                    f"{self.spec.scale_in.min_workers}",
                )
            )
        problems += _combination_problems(self.spec)
        if problems:
            raise SpecError(problems)
        return self

    @property
    def algorithm_name(self) -> str:
        """The algorithm that trains this job: ``admm``, ``sgd`` or ``kmeans``."""
        return self.spec.algorithm.name

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the spec are read from (the manifest's folder)."""
        return self._base_dir

    @classmethod
    def from_dict(cls, document: Any, base_dir: Path | None = None, source: str | None = None):
        """Validate a parsed manifest; raises SpecError listing every problem."""
        if not isinstance(document, dict):
            got = type(document).__name__
            raise SpecError([FieldProblem("", f"a manifest must be a mapping, got {got}")], source)
        try:
            job = cls.model_validate(document)
        except ValidationError as exc:
            raise SpecError([_problem(e) for e in exc.errors()], source) from None
        except SpecError as exc:
            raise SpecError(exc.problems, source) from None
        job._base_dir = (base_dir or Path.cwd()).resolve()
        return job

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingJob:
        """Read and validate a manifest file; relative data paths resolve against its folder."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError([FieldProblem("", f"cannot read: {exc.strerror}")], str(path)) from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            reason = getattr(exc, "problem", None) or str(exc)
            raise SpecError([FieldProblem("", f"not valid YAML: {reason}")], where) from None
        return cls.from_dict(document, base_dir=path.parent, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The manifest with every default filled, camelCase, as YAML or JSON would carry it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def _algorithm(self, name: str) -> Any:
        given = getattr(self.spec.algorithm, name)
        if given is None:
            raise SpecError(
                [
                    FieldProblem(
                        f"spec.algorithm.{name}",
                        f"not given: this job is trained by {self.algorithm_name}",
                    )
                ]
            )
        return given

    def admm_settings(self) -> AdmmSettings:
        """The ADMM settings this manifest asks for; a SpecError unless its algorithm is admm."""
        admm, problem = self._algorithm("admm"), self.spec.problem
        local = admm.local_solver
        return AdmmSettings(
            l1=problem.l1,
            l2=problem.l2,
            rho=admm.rho,
            penalty=admm.penalty,
            relaxation=admm.relaxation,
            max_iterations=admm.max_iterations,
            stopping=admm.stopping,
            primal_tolerance=admm.primal_tolerance,
            dual_tolerance=admm.dual_tolerance,
            absolute_tolerance=admm.absolute_tolerance,
            relative_tolerance=admm.relative_tolerance,
            tolerance_schedule=local.tolerance_schedule,
            schedule_factor=local.schedule_factor,
            local=LocalSolverSettings(
                method=local.method,
                gradient_tolerance=local.gradient_tolerance,
                relative_improvement=local.relative_improvement,
                min_iterations=local.min_iterations,
                max_iterations=local.max_iterations,
            ),
        )

    def sgd_settings(self) -> SgdSettings:
        """The SGD settings this manifest asks for; a SpecError unless its algorithm is sgd."""
        sgd = self._algorithm("sgd")
        return SgdSettings(
            variant=sgd.variant,
            optimizer=OptimizerSettings(**sgd.optimizer.model_dump()),
            batch_size=sgd.batch_size,
            sync_every=sgd.sync_every,
            significance=sgd.significance,
            seed=sgd.seed,
            stop=StopRule(**sgd.stop.model_dump()),
        )

    def kmeans_settings(self) -> KMeansSettings:
        """The k-means settings (k from ``problem.kmeans``); a SpecError unless it is kmeans."""
        kmeans = self._algorithm("kmeans")
        return KMeansSettings(k=self.spec.problem.kmeans.k, **kmeans.model_dump())

    def pmf_problem(self, n_users: int, n_items: int, n_rows: int) -> PmfProblem:
        """The PMF problem of ``problem.pmf`` for ratings of that shape (``n_rows`` ratings).

        A SpecError unless the loss is pmf.
        """
        pmf = self.spec.problem.pmf
        if pmf is None:
            reason = f"not given: this job's loss is {self.spec.problem.loss}"
            raise SpecError([FieldProblem("spec.problem.pmf", reason)])
        return PmfProblem(
            n_users=n_users,
            n_items=n_items,
            rank=pmf.rank,
            n_rows=n_rows,
            l2=pmf.regularization,
            offset=pmf.offset,
            seed=pmf.seed,
            init_scale=pmf.init_scale,
        )


def _combination_problems(spec: TrainingJobSpec) -> list[FieldProblem]:
    """The fields of ``spec`` that make no sense together (each mirrored in faasopt.crd.RULES)."""
    problem, problems = spec.problem, []
    loss, algorithm, kind = problem.loss, spec.algorithm.name, problem.data.kind
    if algorithm not in TRAINED_BY[loss]:
        default = " (the default when no algorithm is given)" if algorithm == "admm" else ""
        problems.append(
            FieldProblem(
                "spec.algorithm",
                f"loss {loss} is trained by {' or '.join(TRAINED_BY[loss])}, got "
                f"{algorithm}{default}",
            )
        )
    if kind not in DATA_FOR[loss]:
        if kind in RATINGS_SOURCES:
            reason = f"ratings data is for loss pmf only, got loss {loss}"
        elif kind == "blobs":
            reason = f"blobs have no labels: for loss kmeans only, got loss {loss}"
        else:
            reason = f"loss {loss} needs {' or '.join(DATA_FOR[loss])} data, got {kind}"
        problems.append(FieldProblem(f"spec.problem.data.{kind}", reason))
    for name in ("pmf", "kmeans"):
        if getattr(problem, name) is not None and loss != name:
            problems.append(
                FieldProblem(f"spec.problem.{name}", f"is for loss {name} only, got loss {loss}")
            )
    sgd = spec.algorithm.sgd
    averaging_models = sgd is not None and sgd.variant is Variant.MODEL_AVERAGING
    if averaging_models and spec.workers.straggler.policy == "speculate":
        problems.append(
            FieldProblem(
                "spec.workers.straggler.policy",
                "speculate needs stateless blocks; under modelAveraging each block keeps its "
                "optimizer and unsent updates on its worker, which a copy would fork",
            )
        )
    if loss == "kmeans" and problem.kmeans is None:
        problems.append(FieldProblem("spec.problem.kmeans", "required when loss is kmeans (k)"))
    for name, default in (("l1", L1_DEFAULT), ("l2", L2_DEFAULT)):
        if loss != "logistic" and getattr(problem, name) != default:
            instead = "pmf.regularization" if loss == "pmf" else "none"
            problems.append(
                FieldProblem(
                    f"spec.problem.{name}",
                    f"applies to loss logistic only (loss {loss} has {instead}), got "
                    f"{getattr(problem, name):g}",
                )
            )
    rows = _rows(problem.data)
    if rows is not None:
        if problem.kmeans is not None and problem.kmeans.k > rows:
            problems.append(
                FieldProblem(
                    "spec.problem.kmeans.k",
                    f"must be <= the data's rows ({rows}), got {problem.kmeans.k}",
                )
            )
        blocks = spec.workers.block_count
        if blocks > rows and kind != "synthetic":  # plan_job says it for synthetic data
            what = "ratings" if kind in RATINGS_SOURCES else "rows"
            problems.append(
                FieldProblem(
                    "spec.workers.blocks", f"must be <= the data's {what} ({rows}), got {blocks}"
                )
            )
    return problems


def _rows(data: Data) -> int | None:
    """Rows (ratings for ratings data) of a source known from the spec alone, else None."""
    source = data.source
    if isinstance(source, Synthetic | Blobs):
        return source.samples
    if isinstance(source, SyntheticRatings):
        return source.ratings
    return None


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif "[" not in str(
            item
        ):  # pydantic adds union/function tags such as 'function-after[...]'
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _problem(error: dict[str, Any]) -> FieldProblem:
    """One pydantic error as a FieldProblem with a short reason that shows what came."""
    kind, got = error["type"], error.get("input")
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in error.get("ctx", {}).items()}
    reasons = {
        "greater_than_equal": lambda: f"must be >= {ctx.get('ge')}, got {got!r}",
        "greater_than": lambda: f"must be > {ctx.get('gt')}, got {got!r}",
        "less_than_equal": lambda: f"must be <= {ctx.get('le')}, got {got!r}",
        "less_than": lambda: f"must be < {ctx.get('lt')}, got {got!r}",
        "missing": lambda: "required field is missing",
        "extra_forbidden": lambda: "unknown field",
        "literal_error": lambda: f"must be one of {ctx.get('expected')}, got {got!r}",
        "enum": lambda: f"must be one of {ctx.get('expected')}, got {got!r}",
        "int_type": lambda: f"must be an integer, got {got!r}",
        "int_parsing": lambda: f"must be an integer, got {got!r}",
        "int_from_float": lambda: f"must be an integer, got {got!r}",
        "float_type": lambda: f"must be a number, got {got!r}",
        "float_parsing": lambda: f"must be a number, got {got!r}",
        "bool_type": lambda: f"must be true or false, got {got!r}",
        "bool_parsing": lambda: f"must be true or false, got {got!r}",
        "string_type": lambda: f"must be a string, got {got!r}",
        "string_too_short": lambda: "must not be empty",
        "model_type": lambda: f"must be a mapping, got {type(got).__name__}",
        "model_attributes_type": lambda: f"must be a mapping, got {type(got).__name__}",
        "value_error": lambda: str(ctx.get("error", error["msg"])),
    }
    reason = reasons.get(kind, lambda: f"{error['msg']}, got {got!r}")()
    return FieldProblem(_path(error["loc"]), reason)
