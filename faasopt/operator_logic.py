"""What the Kubernetes operator decides, free of kopf: TrainingJob status, conditions and runs.

``operator/handlers.py`` is a door over this module: it validates with :func:`parse`, calls
:func:`run_job` or one of the status builders, and hands kopf the status they return. Every
status built here is checked against :class:`faasopt.crd.TrainingJobStatus` (the CRD's status
schema) before it leaves, and conditions follow the Kubernetes API conventions: one per type,
``lastTransitionTime`` moves only when ``status`` changes.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from faasopt import checkpoint
from faasopt.checkpoint import Checkpoint, JetStreamStore
from faasopt.coordinator import EVICTED, Coordinator, CoordinatorSettings, Outcome, RoundReport
from faasopt.crd import TrainingJobStatus
from faasopt.errors import PlatformError, SpecError
from faasopt.metrics import JobMetrics
from faasopt.nats_client import connect, disconnect
from faasopt.plan import JobPlan, plan_job, resolve_platform
from faasopt.platforms.base import Platform
from faasopt.platforms.processes import peak_rss_bytes
from faasopt.report import build_report, round_figures
from faasopt.spec import TrainingJob

DOOR = "operator"
"""The door this is (faasopt.plan.resolve_platform): pods for ``auto`` jobs."""
FINISHED = ("Succeeded", "Failed")
STATUS_FIGURES = ("primalResidual", "dualResidual", "rho")
"""The round figures the status shows besides the objective (ADMM's; other algorithms' stay in
the report)."""
FINAL_FAILURES = ("DeadlineExceeded", "BudgetExceeded")
"""Failures a restart cannot mend (backoffLimit does not apply)."""
MUTABLE_SPEC = ("runPolicy",)
"""Top-level spec fields that may change after a job started (Kubeflow's rule, and ours)."""
STARTED_SPEC = "faasopt.dev/started-spec"
"""Annotation holding the spec a job was accepted with: the one it runs, whatever edits came
after (refused edits stay refused across operator restarts)."""
SETTINGS = CoordinatorSettings(checkpoint_every_iterations=1)
"""The operator checkpoints every round: a suspend or an operator restart loses at most one."""

Event = tuple[str, str, str]
"""A Kubernetes Event to post: (type Normal|Warning, reason, message)."""


def now() -> str:
    """The current time as Kubernetes writes it (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def checked(status: dict[str, Any]) -> dict[str, Any]:
    """``status`` unchanged, after checking it against the CRD's status schema."""
    TrainingJobStatus.model_validate(status)
    return status


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """``conditions`` with the one of ``type_`` set (a new list; the others are kept)."""
    out = [dict(c) for c in conditions or []]
    old = next((c for c in out if c["type"] == type_), None)
    new = {"type": type_, "status": status, "reason": reason, "message": message}
    new["lastTransitionTime"] = (
        old["lastTransitionTime"] if old and old.get("status") == status else now()
    )
    if generation is not None:
        new["observedGeneration"] = generation
    if old is None:
        out.append(new)
    else:
        out[out.index(old)] = new
    return out


def parse(body: dict[str, Any]) -> TrainingJob:
    """The TrainingJob of a Kubernetes object; SpecError names every field at fault.

    Kubernetes' own metadata (uid, labels, managedFields...) and the status are not the spec's.
    """
    meta = body.get("metadata", {})
    document = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace", "default")},
        "spec": body.get("spec"),
    }
    source = f"{meta.get('namespace')}/{meta.get('name')}"
    job = TrainingJob.from_dict(document, source=source)
    try:
        resolve_platform(job, DOOR)
    except SpecError as exc:
        raise SpecError(exc.problems, source) from None
    return job


def started_spec_annotation(body: Mapping[str, Any]) -> dict[str, str]:
    """The annotation that records ``body``'s spec as the one its job runs."""
    return {STARTED_SPEC: json.dumps(body.get("spec"), sort_keys=True, separators=(",", ":"))}


def effective(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with the spec it was accepted with, except the fields that may change
    (runPolicy), which are today's. A body without the annotation is taken as it is."""
    started = body.get("metadata", {}).get("annotations", {}).get(STARTED_SPEC)
    if started is None:
        return dict(body)
    spec = json.loads(started)
    current = body.get("spec") or {}
    for key in MUTABLE_SPEC:
        spec.pop(key, None)
        if key in current:
            spec[key] = current[key]
    return {**body, "spec": spec}


def invalid_spec_status(
    error: SpecError, status: dict[str, Any], generation: int | None
) -> dict[str, Any]:
    """Phase Failed with condition Failed/InvalidSpec whose message names every bad field."""
    message = "; ".join(str(p) for p in error.problems)
    conditions = set_condition(
        status.get("conditions"), "Failed", "True", "InvalidSpec", message, generation
    )
    return checked({"phase": "Failed", "conditions": conditions, "completionTime": now()})


def accept(progress: Progress, job: TrainingJob) -> None:
    """A valid spec: condition Created; phase Pending (Suspended when created suspended),
    unless the job's daemon got further already."""
    progress.condition("Created", "True", "Accepted", "spec is valid")
    if job.spec.run_policy.suspend:
        progress.update(suspended_status(progress.desired, progress.generation))
    elif "phase" not in progress.desired:
        progress.update({"phase": "Pending"})


def suspended_status(status: dict[str, Any], generation: int | None) -> dict[str, Any]:
    """Suspended: workers retired, state kept in the last checkpoint."""
    conditions = set_condition(
        status.get("conditions"),
        "Suspended",
        "True",
        "Suspended",
        "runPolicy.suspend is true: workers retired, state kept in the checkpoint",
        generation,
    )
    conditions = set_condition(conditions, "Running", "False", "Suspended", "suspended", generation)
    return checked({"phase": "Suspended", "conditions": conditions, "workers": 0})


def suspended(spec: Mapping[str, Any]) -> bool:
    """``runPolicy.suspend`` of a spec as it stands on the object (valid or not)."""
    return bool(spec.get("runPolicy", {}).get("suspend", False))


def refused_changes(old_spec: dict[str, Any] | None, new_spec: dict[str, Any] | None) -> list[str]:
    """Dotted paths of spec fields that changed and may not change after start."""
    old, new = old_spec or {}, new_spec or {}
    return sorted(
        f"spec.{key}"
        for key in set(old) | set(new)
        if key not in MUTABLE_SPEC and old.get(key) != new.get(key)
    )


def refuse(progress: Progress, fields: list[str], generation: int | None) -> str:
    """Condition SpecChangeRefused, from ``generation`` (observed, not applied): the running
    coordinator goes on with its spec. Returns the message, which names the fields."""
    progress.generation = generation
    changed = ", ".join(fields)
    message = f"only spec.runPolicy may change after start; ignored changes to {changed}"
    progress.condition("SpecChangeRefused", "True", "ImmutableField", message)
    return message


def ttl_expired(job: TrainingJob, status: dict[str, Any], at: datetime | None = None) -> bool:
    """Finished for ``runPolicy.ttlSecondsAfterFinished`` or longer: time to delete the job."""
    ttl = job.spec.run_policy.ttl_seconds_after_finished
    done = status.get("completionTime")
    if ttl is None or status.get("phase") not in FINISHED or not done:
        return False
    finished = datetime.fromisoformat(done.replace("Z", "+00:00"))
    return ((at or datetime.now(UTC)) - finished).total_seconds() >= ttl


@dataclass
class Progress:
    """The status a job should have, and what of it the API has not seen yet.

    One writer (the handlers' status timer) takes the changes at most once per second;
    :func:`run_job` and the handlers only update it.
    """

    generation: int | None
    desired: dict[str, Any] = field(default_factory=dict)
    written: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    announced: set[str] = field(default_factory=set)
    """Workers whose start as a replacement, or whose eviction, has had its Event."""

    @classmethod
    def of(cls, status: dict[str, Any], generation: int | None) -> Progress:
        """Progress that starts from the object's current status."""
        return cls(generation, copy.deepcopy(dict(status)), copy.deepcopy(dict(status)))

    def update(self, status: dict[str, Any]) -> None:
        self.desired.update(checked(status))

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        conditions = self.desired.get("conditions")
        self.desired["conditions"] = set_condition(
            conditions, type_, status, reason, message, self.generation
        )

    def take(self) -> dict[str, Any]:
        """The fields that changed since the last take (empty: nothing to write)."""
        changes = {k: v for k, v in self.desired.items() if self.written.get(k) != v}
        self.written.update(copy.deepcopy(changes))
        return checked(changes)

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events


@dataclass(frozen=True)
class Nats:
    """Where coordinators and workers meet; JetStream on, for checkpoints."""

    url: str
    token: str | None = None


@dataclass(frozen=True)
class Finish:
    """How one run of a job's coordinator ended."""

    report: dict[str, Any] | None
    """The run's report (report.json's contract); None when no coordinator ran."""
    reason: str
    """Converged, MaxIterations, DeadlineExceeded, BudgetExceeded, CoordinatorFailed or
    Stopped."""
    message: str

    @property
    def failed(self) -> bool:
        return self.reason in ("DeadlineExceeded", "BudgetExceeded", "CoordinatorFailed")


def deadline_at(job: TrainingJob, status: dict[str, Any]) -> float | None:
    """Epoch seconds of ``activeDeadlineSeconds`` after the job's startTime (now if unset)."""
    seconds = job.spec.run_policy.active_deadline_seconds
    if seconds is None:
        return None
    start = status.get("startTime")
    started = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() if start else None
    return (started or time.time()) + seconds


async def run_job(
    job: TrainingJob,
    platform: Platform,
    nats: Nats,
    progress: Progress,
    *,
    resume: bool,
    deadline: float | None,
    stop: Callable[[], Awaitable[Any]],
    settings: CoordinatorSettings = SETTINGS,
    registry: CollectorRegistry | None = None,
) -> Finish:
    """Run ``job``'s coordinator to its end, keeping ``progress`` current; never raises a
    FaasoptError (a failed run is a Finish that says why).

    ``resume`` continues from the job's last checkpoint when there is one. ``deadline`` (epoch
    seconds) is activeDeadlineSeconds counted from the job's first start. When ``stop()``
    returns (suspend, delete) the workers are told to leave and the run ends with reason
    Stopped; the state of the last round is in the checkpoint. The job's metrics go to
    ``registry`` when given (the operator's, served for all its jobs).
    """
    remaining = None if deadline is None else deadline - time.time()
    if remaining is not None and remaining <= 0:
        return Finish(None, "DeadlineExceeded", _deadline_message(job))
    plan = plan_job(job, where=DOOR)
    plan = dataclasses.replace(  # the deadline counts from the job's first start, not this one's
        plan,
        active_deadline_seconds=remaining,
        scale_in=dataclasses.replace(plan.scale_in, deadline_seconds=remaining),
    )
    started = time.perf_counter()
    metrics = JobMetrics(plan, registry) if registry is not None else None
    nc = await connect(nats.url, f"{plan.namespace}/{plan.name}/operator", nats.token)
    try:
        store = JetStreamStore(nc)
        saved = await _checkpoint(store, plan) if resume else None
        coordinator = Coordinator(
            plan,
            nc,
            platform,
            nats.url,
            nats.token,
            on_round=lambda report: _observe(progress, report, coordinator, metrics),
            settings=settings,
            store=store,
            resume=saved,
        )
        _running(progress, plan, saved)
        # Platform calls block (HTTP to the API server, waits for a Knative Service to be
        # ready): in a thread, so that the operator's other jobs go on meanwhile.
        await asyncio.to_thread(platform.deploy)
        watcher = asyncio.create_task(_interrupt_on(stop, coordinator))
        try:
            outcome = await coordinator.run()
        finally:
            watcher.cancel()
            await asyncio.to_thread(platform.teardown)
            if metrics is not None:
                metrics.stop()
    finally:
        await disconnect(nc)
    report = build_report(plan, outcome, time.perf_counter() - started, peak_rss_bytes())
    if metrics is not None:
        metrics.finish(outcome, report)
    finish = _finish(job, outcome, report, coordinator.interrupted is not None, deadline)
    _finished(progress, finish)
    return finish


async def _interrupt_on(stop: Callable[[], Awaitable[Any]], coordinator: Coordinator) -> None:
    await stop()
    coordinator.interrupt(0)


async def _checkpoint(store: JetStreamStore, plan: JobPlan) -> Checkpoint | None:
    """The job's last checkpoint, checked; None when there is none yet."""
    job = f"{plan.namespace}/{plan.name}"
    data = await store.load(checkpoint.key(job))
    if data is None:
        return None
    return checkpoint.decode(data, job, checkpoint.fingerprint(plan))


def _running(progress: Progress, plan: JobPlan, saved: Checkpoint | None) -> None:
    where = f" from the checkpoint of iteration {saved.iteration}" if saved else ""
    message = f"{plan.workers} workers on {plan.n_blocks} blocks{where}"
    start = progress.desired.get("startTime") or now()
    progress.update({"phase": "Running", "workers": plan.workers, "startTime": start})
    progress.condition("Running", "True", "Resumed" if saved else "Started", message)
    progress.condition("Suspended", "False", "Running", "running")
    progress.events.append(("Normal", "Resumed" if saved else "Started", message))


def _observe(
    progress: Progress,
    report: RoundReport,
    coordinator: Coordinator,
    metrics: JobMetrics | None,
) -> None:
    if metrics is not None:
        metrics.round(report, coordinator.history, coordinator.decoder.rejected)
    record = report.record
    compute = sum(t.compute for r in coordinator.rounds for t in r.timings.values())
    elapsed = max(report.elapsed_seconds, 1e-9)
    progress.update(
        {
            "iteration": len(coordinator.rounds),
            "objective": record.objective,
            **{k: v for k, v in round_figures(record).items() if k in STATUS_FIGURES},
            "workers": len(report.timings),
            "speedup": compute / elapsed,
            "costDollars": report.dollars,
        }
    )
    for worker in coordinator.history:
        if worker.name in progress.announced:
            continue
        if worker.replaces is not None:
            progress.announced.add(worker.name)
            message = f"worker {worker.replaces} replaced by {worker.name}: {worker.replaces} ended"
            progress.events.append(("Warning", "WorkerReplaced", message))
        if (worker.ended or "").startswith(EVICTED):
            progress.announced.add(worker.name)
            left = len(coordinator.workers)
            message = f"worker {worker.name} {worker.ended}; its blocks moved, {left} workers left"
            progress.events.append(("Normal", "ScaledIn", message))


def _deadline_message(job: TrainingJob) -> str:
    seconds = job.spec.run_policy.active_deadline_seconds
    return f"the job ran past runPolicy.activeDeadlineSeconds ({seconds} s)"


def _finish(
    job: TrainingJob,
    outcome: Outcome,
    report: dict[str, Any],
    interrupted: bool,
    deadline: float | None,
) -> Finish:
    if interrupted:
        return Finish(report, "Stopped", "stopped: workers retired")
    if outcome.guard is not None:  # a scale-in guard: the budget or the deadline, final
        return Finish(report, outcome.guard, outcome.error)
    if outcome.error is not None:
        if deadline is not None and time.time() >= deadline - 0.5:
            return Finish(report, "DeadlineExceeded", _deadline_message(job))
        return Finish(report, "CoordinatorFailed", outcome.error)
    if report["converged"]:
        message = f"converged in {report['iterations']} iterations"
        return Finish(report, "Converged", message)
    if report["algorithm"] != "admm":  # SGD's and k-means' budgets
        message = f"stopped by {report['status']} after {report['iterations']} rounds"
        return Finish(report, "MaxIterations", message)
    message = (
        f"stopped after maxIterations ({report['iterations']}) with primal residual "
        f"{report['primalResidual']:.3g}, dual residual {report['dualResidual']:.3g}"
    )
    return Finish(report, "MaxIterations", message)


def _finished(progress: Progress, finish: Finish) -> None:
    """Figures of the report (the same as ``faasopt run``'s); phase only for a final end."""
    report = finish.report
    if report is not None and report["iterations"]:
        figures = {
            "iteration": report["iterations"],
            "objective": report["objective"],  # None when the run failed before the end
            **{k: report.get(k) for k in STATUS_FIGURES},  # ADMM's
            "speedup": report["speedup"],
            "costDollars": report["costDollars"],
        }
        progress.update({k: v for k, v in figures.items() if v is not None})
    progress.update({"workers": 0})
    if finish.reason == "Stopped":
        return
    progress.condition("Running", "False", finish.reason, finish.message)


def complete(progress: Progress, finish: Finish) -> None:
    """The job is over: phase Succeeded or Failed, completionTime, the matching condition."""
    phase = "Failed" if finish.failed else "Succeeded"
    progress.update({"phase": phase, "completionTime": now()})
    progress.condition(phase, "True", finish.reason, finish.message)
    kind = "Warning" if finish.failed else "Normal"
    progress.events.append((kind, finish.reason, finish.message))


def restart(progress: Progress, finish: Finish, restarts: int, limit: int) -> bool:
    """After a failed run: True (and a Restarting condition) while ``restarts`` < backoffLimit.

    A deadline or a spent budget is final; every other failure of the coordinator counts against
    the limit.
    """
    if finish.reason in FINAL_FAILURES or restarts >= limit:
        return False
    message = f"restart {restarts + 1} of backoffLimit {limit} after: {finish.message}"
    progress.update({"restarts": restarts + 1})
    progress.condition("Restarting", "True", "CoordinatorFailed", message)
    progress.events.append(("Warning", "Restarting", message))
    return True


def suspend(progress: Progress) -> None:
    """Workers are gone and the state is in the checkpoint: phase Suspended."""
    progress.update(suspended_status(progress.desired, progress.generation))
    progress.events.append(("Normal", "Suspended", "workers retired, state checkpointed"))


@dataclass(frozen=True)
class KubeApis:
    """The cluster's API clients (``kubernetes.client``'s, or fakes with the same methods)."""

    core: Any
    """CoreV1Api: Pods and Secrets (pods)."""
    custom: Any
    """CustomObjectsApi: Knative Services (knative)."""


Builder = Callable[[Any, Mapping[str, str], dict[str, Any], KubeApis], Platform]
"""(owner, the operator's environment, the job's sizes, the APIs) -> a platform."""


def _pods(owner: Any, env: Mapping[str, str], sizes: dict[str, Any], apis: KubeApis) -> Platform:
    from faasopt.platforms.pods import PodSettings, PodsPlatform

    return PodsPlatform(apis.core, owner, PodSettings.from_env(env, **sizes))


def _knative(owner: Any, env: Mapping[str, str], sizes: dict[str, Any], apis: KubeApis) -> Platform:
    from faasopt.platforms.knative import KnativePlatform, KnativeSettings

    return KnativePlatform(apis.custom, owner, KnativeSettings.from_env(env, **sizes))


def _openfaas(owner: Any, env: Mapping[str, str], sizes: dict[str, Any], _: KubeApis) -> Platform:
    from faasopt.platforms.openfaas import OpenFaasPlatform, OpenFaasSettings

    return OpenFaasPlatform(owner.namespace, owner.name, OpenFaasSettings.from_env(env, **sizes))


def _lambda(owner: Any, env: Mapping[str, str], sizes: dict[str, Any], _: KubeApis) -> Platform:
    from faasopt.platforms.aws_lambda import LambdaPlatform, LambdaSettings

    return LambdaPlatform(owner.namespace, owner.name, LambdaSettings.from_env(env, **sizes))


BUILDERS: dict[str, Builder] = {
    "pods": _pods,
    "knative": _knative,
    "openfaas": _openfaas,
    "lambda": _lambda,
}
"""How the operator builds each platform it starts (faasopt.plan.DOOR_OF)."""


def job_platform(
    job: TrainingJob, uid: str, env: Mapping[str, str], apis: KubeApis, platform: str | None = None
) -> Platform:
    """The platform of a job on a cluster: the one its spec names (``auto``: pods), or
    ``platform``, with the settings the chart gives the operator in ``env`` (each module's
    ``SETTINGS_ENV``) and the job's sizes. A missing setting is a PlatformError."""
    from faasopt.platforms.pods import Owner

    workers = job.spec.workers
    sizes = {"memory_mb": workers.memory_mb, "time_limit_seconds": workers.time_limit_seconds}
    build = BUILDERS[platform or resolve_platform(job, DOOR)]
    return build(Owner(job.metadata.namespace, job.metadata.name, uid), env, sizes, apis)


def pods_platform(job: TrainingJob, uid: str, api: Any, env: Mapping[str, str]) -> Platform:
    """The job's workers as Pods owned by the TrainingJob, whatever its spec names."""
    return job_platform(job, uid, env, KubeApis(core=api, custom=None), platform="pods")


@dataclass(frozen=True)
class Services:
    """What the handlers need from the world; built once at operator start-up."""

    nats: Nats
    platform_for: Callable[[TrainingJob, str], Platform]
    """The platform of one job, given the job and the uid of its object."""
    delete_job: Callable[[str, str], Any]
    """Delete a TrainingJob object by (namespace, name) (runPolicy.ttlSecondsAfterFinished)."""
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    """The metrics of all the operator's jobs (:mod:`faasopt.metrics`)."""

    @classmethod
    def in_cluster(cls, env: Mapping[str, str]) -> Services:
        """Platforms through the cluster's API (:func:`job_platform`); NATS from the chart's
        environment."""
        from kubernetes import client, config

        from faasopt.crd import GROUP, PLURAL, VERSION
        from faasopt.payload import NATS_TOKEN_ENV
        from faasopt.platforms.pods import NATS_URL_ENV

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.ApiClient()
        apis = KubeApis(client.CoreV1Api(api), client.CustomObjectsApi(api))
        if not env.get(NATS_URL_ENV):
            raise PlatformError(f"{NATS_URL_ENV} is not set: no NATS server for the jobs")
        return cls(
            nats=Nats(env[NATS_URL_ENV], env.get(NATS_TOKEN_ENV) or None),
            platform_for=lambda job, uid: job_platform(job, uid, env, apis),
            delete_job=lambda namespace, name: apis.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            ),
        )
