"""From a validated TrainingJob to what a run needs: resolved data, blocks and their placement."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faasopt.data import block_bounds, scan_libsvm
from faasopt.errors import FieldProblem, SpecError
from faasopt.scalein import ScaleInSettings
from faasopt.solvers.admm import AdmmSettings
from faasopt.spec import Straggler, TrainingJob


@dataclass(frozen=True)
class JobPlan:
    """Everything the coordinator and the platform need, free of the manifest's syntax."""

    namespace: str
    name: str
    settings: AdmmSettings
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

    @property
    def workers(self) -> int:
        return len(self.assignment)


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
    """The wire form of the job's data source, with (rows, features).

    A LIBSVM file (local, ``s3://`` or ``http(s)://``) is read once, whole, here: validated,
    checked against ``libsvm.sha256`` when given, and indexed for the job's blocks, so that each
    worker reads only its blocks' byte ranges (`faasopt.data.libsvm`).
    """
    data = job.spec.problem.data
    if data.synthetic is not None:
        s = data.synthetic
        source = {"synthetic": s.model_dump()}
        return source, s.samples, s.features
    libsvm = data.libsvm
    uri = libsvm.uri.removeprefix("file://")
    if "://" not in uri and not Path(uri).is_absolute():
        uri = str(job.base_dir / uri)
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
    return JobPlan(
        namespace=job.metadata.namespace,
        name=job.metadata.name,
        settings=job.admm_settings(),
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
