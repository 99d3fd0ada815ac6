"""From a validated TrainingJob to what a run needs: resolved data, blocks and their placement."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from faasopt.algorithms import kmeans as kmeans_wire
from faasopt.algorithms import sgd as sgd_wire
from faasopt.data import block_bounds, scan_libsvm
from faasopt.data.ratings import scan_ratings
from faasopt.data.source import ratings_shape, source_shape
from faasopt.errors import FieldProblem, SpecError
from faasopt.scalein import ScaleInSettings
from faasopt.solvers.admm import AdmmSettings
from faasopt.solvers.kmeans import KMeansSettings
from faasopt.solvers.sgd import LogisticProblem, SgdSettings
from faasopt.spec import Straggler, TrainingJob


@dataclass(frozen=True)
class JobPlan:
    """Everything the coordinator and the platform need, free of the manifest's syntax."""

    namespace: str
    name: str
    settings: AdmmSettings | SgdSettings | KMeansSettings
    """The settings of ``algorithm``."""
    source: dict[str, Any]
    """The data source as it travels to workers (paths absolute, rows and features known)."""
    rows: int
    features: int
    n_blocks: int
    assignment: dict[str, tuple[int, ...]]
    """Worker name -> the blocks it holds."""
    platform: str
    time_limit_seconds: float
    memory_mb: int
    active_deadline_seconds: float | None
    straggler: Straggler
    scale_in: ScaleInSettings
    """The scale-in policy and the budget and deadline guards (:func:`scale_in_settings`)."""
    algorithm: str = "admm"
    """``admm``, ``sgd`` or ``kmeans`` (:mod:`faasopt.algorithms`)."""
    problem: dict[str, Any] | None = None
    """SGD's problem as it travels to workers (``faasopt.algorithms.sgd.problem_from_wire``)."""

    @property
    def workers(self) -> int:
        return len(self.assignment)

    @property
    def description(self) -> str:
        """What is solved, on what data, in words: ``admm on 20000 rows x 2000 features``."""
        if "pmf" in (self.problem or {}):
            pmf = self.problem["pmf"]
            data = f"{self.rows} ratings of {pmf['n_users']} users x {pmf['n_items']} items"
        else:
            data = f"{self.rows} rows x {self.features} features"
        return f"{self.algorithm} on {data}"

    @property
    def worker_algorithm(self) -> dict[str, Any]:
        """What workers are told of the algorithm: nothing for ADMM (its settings come with each
        assignment), the settings (and SGD's problem) for the others."""
        if self.algorithm == "sgd":
            wire = {"settings": sgd_wire.settings_to_wire(self.settings), "problem": self.problem}
            return {"sgd": wire}
        if self.algorithm == "kmeans":
            return {"kmeans": {"settings": kmeans_wire.settings_to_wire(self.settings)}}
        return {}


def assign_blocks(n_blocks: int, n_workers: int) -> dict[str, tuple[int, ...]]:
    """Contiguous, balanced placement of blocks on workers ``w0 .. w{W-1}``."""
    bounds = block_bounds(n_blocks, n_workers)
    return {f"w{w}": tuple(range(bounds[w], bounds[w + 1])) for w in range(n_workers)}


def scale_in_settings(job: TrainingJob) -> ScaleInSettings:
    """The job's ``scaleIn`` with ``budget.dollars`` and ``runPolicy.activeDeadlineSeconds``."""
    spec = job.spec
    deadline = spec.run_policy.active_deadline_seconds
    return ScaleInSettings(
        **spec.scale_in.model_dump(),
        budget_dollars=spec.budget.dollars if spec.budget is not None else None,
        deadline_seconds=float(deadline) if deadline else None,
    )


def resolve_source(job: TrainingJob) -> tuple[dict[str, Any], int, int]:
    """The wire form of the job's data source, with (rows, features) (ratings: (ratings, 0)).

    A LIBSVM file (local, ``s3://`` or ``http(s)://``) is read once, whole, here: validated,
    checked against ``libsvm.sha256`` when given, and indexed for the job's blocks, so that each
    worker reads only its blocks' byte ranges (`faasopt.data.libsvm`).
    """
    data = job.spec.problem.data
    if data.kind in ("synthetic", "blobs", "syntheticRatings"):  # generated per block
        source = {data.kind: data.source.model_dump()}
        return source, *source_shape(source)
    given = data.source
    uri = given.uri.removeprefix("file://")
    if "://" not in uri and not Path(uri).is_absolute():
        uri = str(job.base_dir / uri)
    if data.kind == "ratings":
        scanned = scan_ratings(uri, given.sha256, given.shuffle_seed)
        return {"ratings": scanned.to_wire()}, scanned.ratings, 0
    libsvm = data.libsvm
    info = scan_libsvm(uri, libsvm.features, libsvm.sha256)
    blocks = min(job.spec.workers.block_count, info.rows)  # plan_job refuses more, naming the field
    return {"libsvm": info.index(blocks).to_wire()}, info.rows, info.features


DOORS = {"run": "`faasopt run`", "operator": "the operator on a cluster"}
"""The doors that start a job's workers."""
DOOR_OF = {
    "local": "run",
    "sim": "run",
    "pods": "operator",
    "knative": "operator",
    "openfaas": "operator",
    "lambda": "operator",
}
"""Which door starts the workers of each platform."""
AUTO = {"run": "local", "operator": "pods"}
"""The platform ``auto`` means at each door."""


def resolve_platform(job: TrainingJob, where: str) -> str:
    """The platform the job's workers run on when started by door ``where`` (run or operator).

    ``auto`` follows the door; a platform the door cannot start is a SpecError naming the field.
    """
    asked = job.spec.workers.platform
    if asked == "auto":
        return AUTO[where]
    if DOOR_OF[asked] == where:
        return asked
    raise SpecError(
        [
            FieldProblem(
                "spec.workers.platform",
                f"{asked} workers are started by {DOORS[DOOR_OF[asked]]}, not by {DOORS[where]}; "
                "use auto to let the door choose",
            )
        ]
    )


def plan_job(job: TrainingJob, workers: int | None = None, where: str = "run") -> JobPlan:
    """Resolve data and placement; raises SpecError or DataError before anything starts.

    ``workers`` overrides ``spec.workers.count`` (the CLI's ``--workers``); the number of blocks
    stays what the manifest says, so the iterates do not change. ``where`` is the door that
    starts the workers (see :func:`resolve_platform`).
    """
    spec = job.spec
    platform = resolve_platform(job, where)
    n_blocks = spec.workers.block_count
    count = workers if workers is not None else spec.workers.count
    if count < 1 or count > n_blocks:
        raise SpecError(
            [FieldProblem("spec.workers.count", f"must be in [1, blocks={n_blocks}], got {count}")]
        )
    source, rows, features = resolve_source(job)
    if n_blocks > rows:
        raise SpecError(
            [
                FieldProblem(
                    "spec.workers.blocks", f"must be <= the data's rows ({rows}), got {n_blocks}"
                )
            ]
        )
    deadline = spec.run_policy.active_deadline_seconds
    algorithm = job.algorithm_name
    return JobPlan(
        namespace=job.metadata.namespace,
        name=job.metadata.name,
        algorithm=algorithm,
        settings=SETTINGS[algorithm](job),
        problem=sgd_problem(job, source, rows, features) if algorithm == "sgd" else None,
        source=source,
        rows=rows,
        features=features,
        n_blocks=n_blocks,
        assignment=assign_blocks(n_blocks, count),
        platform=platform,
        time_limit_seconds=spec.workers.time_limit_seconds,
        memory_mb=spec.workers.memory_mb,
        active_deadline_seconds=float(deadline) if deadline else None,
        straggler=spec.workers.straggler,
        scale_in=scale_in_settings(job),
    )


SETTINGS = {
    "admm": TrainingJob.admm_settings,
    "sgd": TrainingJob.sgd_settings,
    "kmeans": TrainingJob.kmeans_settings,
}
"""The settings of each algorithm, from the manifest."""


def sgd_problem(job: TrainingJob, source: dict[str, Any], rows: int, features: int) -> dict:
    """The wire form of the problem SGD minimizes (logistic regression or PMF)."""
    problem = job.spec.problem
    if problem.loss == "pmf":
        _, users, items = ratings_shape(source)
        return {"pmf": asdict(job.pmf_problem(users, items, rows))}
    fields = LogisticProblem(n_params=features, n_rows=rows, l1=problem.l1, l2=problem.l2)
    return {"logistic": asdict(fields)}
