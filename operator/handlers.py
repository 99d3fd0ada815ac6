"""kopf handlers of the TrainingJob: doors over :mod:`faasopt.operator_logic`.

Run with ``kopf run --standalone operator/handlers.py`` (a module loaded by path: there is no
Python package named ``operator``). Start-up builds the library's ``Services`` into ``memo``
unless the caller gave some (tests give a local platform and a loopback NATS). One daemon per
job runs its coordinator; one timer per job is the only writer of status once the job runs
(at most once per second) and applies ``ttlSecondsAfterFinished``. Only these doors turn
library errors into kopf's permanent or temporary errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from faasopt import metrics
from faasopt import operator_logic as logic
from faasopt.crd import GROUP, PLURAL, VERSION
from faasopt.errors import FaasoptError, SpecError

RESOURCE = (GROUP, VERSION, PLURAL)
PREFIX = GROUP
STATUS_SECONDS = 1.0
"""Status is written at most this often."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Keep kopf's own bookkeeping in annotations (status is the CRD's); build the services."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.persistence.finalizer = f"{PREFIX}/teardown"
    settings.posting.level = logging.INFO  # Events for milestones, not kopf's debug chatter
    # Daemons and timers are stopped gracefully (the coordinator tells its workers to leave and
    # returns within a poll); kopf looks again every second, then lifts the finalizer.
    settings.background.cancellation_polling = STATUS_SECONDS
    if "services" not in memo:
        try:
            memo.services = logic.Services.in_cluster(os.environ)
        except FaasoptError as exc:
            raise kopf.PermanentError(str(exc)) from None
    memo.setdefault("jobs", {})
    port = os.environ.get(metrics.METRICS_PORT_ENV)
    if port:  # /metrics of every job this operator runs
        try:
            memo.metrics_server = metrics.MetricsServer(
                memo.services.registry, int(port), "0.0.0.0"
            )
        except (ValueError, FaasoptError) as exc:
            raise kopf.PermanentError(f"{metrics.METRICS_PORT_ENV}={port!r}: {exc}") from None


@kopf.on.cleanup()
def stop_serving(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("metrics_server") is not None:
        memo.metrics_server.close()


def _runnable(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    return not logic.suspended(dict(spec)) and status.get("phase") not in logic.FINISHED


@kopf.on.create(*RESOURCE)
def create(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    """Validate: Pending (or Suspended), or Failed with the fields named, and no retry."""
    try:
        job = logic.parse(dict(body))
    except SpecError as exc:
        patch.status.update(logic.invalid_spec_status(exc, dict(status), meta.get("generation")))
        kopf.warn(body, reason="InvalidSpec", message=str(exc))
        raise kopf.PermanentError(f"invalid spec: {exc}") from None
    patch.metadata.annotations.update(logic.started_spec_annotation(body))
    logic.accept(_progress(memo, meta, status), job)


def _progress(memo: kopf.Memo, meta: kopf.Meta, status: kopf.Status) -> logic.Progress:
    """The job's status as the status timer will write it."""
    return memo.jobs.setdefault(
        meta["uid"], logic.Progress.of(dict(status), meta.get("generation"))
    )


@kopf.on.update(*RESOURCE, field="spec")
def update(
    body: kopf.Body,
    old: Any,
    new: Any,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    """Only runPolicy may change after start; other edits get a SpecChangeRefused condition."""
    fields = logic.refused_changes(old, new)
    if not fields or status.get("phase") is None:
        return
    message = logic.refuse(_progress(memo, meta, status), fields, meta.get("generation"))
    kopf.warn(body, reason="SpecChangeRefused", message=message)


@kopf.daemon(*RESOURCE, when=_runnable)
async def run(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    retry: int,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """Run the job's coordinator; restart it (from its checkpoint) up to backoffLimit times."""
    try:
        job = logic.parse(logic.effective(body))
    except SpecError:
        return  # the create handler reported it
    uid = meta["uid"]
    progress = _progress(memo, meta, status)
    services: logic.Services = memo.services
    try:
        finish = await logic.run_job(
            job,
            services.platform_for(job, uid),
            services.nats,
            progress,
            resume=retry > 0 or bool(status.get("startTime")),
            deadline=logic.deadline_at(job, progress.desired),
            stop=stopped.wait,
            registry=services.registry,
        )
    except FaasoptError as exc:  # data, checkpoint or platform: counts against backoffLimit
        finish = logic.Finish(None, "CoordinatorFailed", str(exc))
    if finish.reason == "Stopped":
        if logic.suspended(dict(body.get("spec", {}))):
            logic.suspend(progress)
        return
    if finish.failed and logic.restart(progress, finish, retry, job.spec.run_policy.backoff_limit):
        raise kopf.TemporaryError(finish.message, delay=1)
    logic.complete(progress, finish)


@kopf.timer(*RESOURCE, interval=STATUS_SECONDS)
async def report(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    """Write what changed in the job's status and post its milestones; apply the TTL."""
    progress: logic.Progress | None = memo.jobs.get(meta["uid"])
    if progress is not None:
        patch.status.update(progress.take())
        for kind, reason, message in progress.take_events():
            kopf.event(body, type=kind, reason=reason, message=message)
    try:
        job = logic.parse(logic.effective(body))
    except SpecError:
        return
    if logic.ttl_expired(job, dict(status)):
        await asyncio.to_thread(memo.services.delete_job, meta["namespace"], meta["name"])


@kopf.on.delete(*RESOURCE)
async def delete(body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Tear down the job's workers, also mid-run (kopf has stopped its daemon by now)."""
    memo.jobs.pop(meta["uid"], None)
    try:
        job = logic.parse(logic.effective(body))
    except SpecError:
        return
    try:
        platform = memo.services.platform_for(job, meta["uid"])
    except FaasoptError as exc:  # no platform (settings missing): it started no workers either
        kopf.warn(body, reason="NoPlatform", message=str(exc))
        return
    try:
        await asyncio.to_thread(platform.teardown)
    except FaasoptError as exc:
        raise kopf.TemporaryError(str(exc), delay=5) from None
