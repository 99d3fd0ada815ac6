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
from faasopt.solvers.local import LocalSolverSettings

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


class Data(_Model):
    """Where the problem data comes from: exactly one source."""

    synthetic: Synthetic | None = None
    libsvm: Libsvm | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Data:
        given = [name for name in ("synthetic", "libsvm") if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise ValueError(f"exactly one of synthetic, libsvm must be given, got {got}")
        return self


class Problem(_Model):
    """minimize sum_n loss(b_n <a_n, x>) + l1 ||x||_1 + l2/2 ||x||^2 (labels -1/+1)."""

    loss: Literal["logistic"] = "logistic"
    l1: NonNegativeFloat = Field(1.0, description="lambda1 of seed 001.")
    l2: NonNegativeFloat = Field(0.0, description="Weight of ||x||^2 / 2.")
    data: Data


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


class Algorithm(_Model):
    admm: Admm = Admm()


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
    interval_seconds: PositiveFloat = Field(20.0, description="T: at most one eviction per T.")
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
        if problems:
            raise SpecError(problems)
        return self

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

    def admm_settings(self) -> AdmmSettings:
        """The solver settings this manifest asks for."""
        admm, problem = self.spec.algorithm.admm, self.spec.problem
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
