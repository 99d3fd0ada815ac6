"""Workers as plain Kubernetes Pods, on any cluster (kind included).

``build_worker_pod_manifest`` is a pure builder (tests validate its output against the upstream
Kubernetes schema); ``PodsPlatform`` carries the coordinator's decisions out through an injected
``CoreV1Api`` (the ``kubernetes`` package's, or a fake with the same method names).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from faasopt.errors import PlatformError
from faasopt.payload import NATS_TOKEN_ENV, PAYLOAD_ENV, WORKER_ENV, WorkerPayload
from faasopt.spec import API_VERSION, KIND

NATS_URL_ENV = "FAASOPT_NATS_URL"
"""Where the operator finds the NATS address its workers connect to (set by the chart)."""
NATS_TOKEN_KEY = "token"
"""The key of the token in the NATS Secret (the chart's Secret uses the same key)."""
RUN_AS_USER = 10001
"""The worker image's non-root user and group (functions/Dockerfile)."""
JOB_LABEL, WORKER_LABEL = "faasopt.dev/job", "faasopt.dev/worker"
COMMON_LABELS = {
    "app.kubernetes.io/name": "faasopt",
    "app.kubernetes.io/component": "worker",
    "app.kubernetes.io/part-of": "faasopt",
    "app.kubernetes.io/managed-by": "faasopt-operator",
}
GONE = -1
"""The exit status ``exited`` reports for a worker whose Pod was deleted or evicted."""


@dataclass(frozen=True)
class Owner:
    """The TrainingJob that owns the Pods: deleting it deletes them (garbage collection).

    Owner references cannot cross namespaces, so the Pods live in the job's namespace.
    """

    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class PodSettings:
    """How worker Pods are made; one set per job, from the chart's values and the spec."""

    image: str
    """The worker image (the chart's ``worker.image``), e.g. ``ghcr.io/faasopt/worker:0.1.0``."""
    nats_secret: str | None = None
    """The Secret with the NATS token under ``NATS_TOKEN_KEY``; None: NATS has no auth."""
    memory_mb: int = 512
    """Memory request and limit, MiB (``spec.workers.memoryMB``)."""
    cpu: str = "1"
    """CPU request (no limit, which would throttle BLAS): a core per worker, as on FaaS."""
    time_limit_seconds: float | None = None
    """The Pod's activeDeadlineSeconds (``spec.workers.timeLimitSeconds``); None: no deadline.
    Workers leave on their own before it; this is the backstop."""
    image_pull_policy: str = "IfNotPresent"
    """IfNotPresent, so images loaded into kind with ``kind load`` are used as they are."""

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, memory_mb: int, time_limit_seconds: float | None
    ) -> PodSettings:
        """The settings the chart gives the operator (``SETTINGS_ENV``), with the job's sizes."""
        given = {field: env[name] for field, name in SETTINGS_ENV.items() if env.get(name)}
        if "image" not in given:
            raise PlatformError(f"{SETTINGS_ENV['image']} is not set: no worker image to run")
        return cls(**given, memory_mb=memory_mb, time_limit_seconds=time_limit_seconds)


SETTINGS_ENV = {
    "image": "FAASOPT_WORKER_IMAGE",
    "image_pull_policy": "FAASOPT_WORKER_PULL_POLICY",
    "cpu": "FAASOPT_WORKER_CPU",
    "nats_secret": "FAASOPT_NATS_SECRET",
}
"""PodSettings field -> the operator's environment variable that sets it (an empty one: unset)."""


def labels(job: str, worker: str) -> dict[str, str]:
    """The labels of one worker's Pods."""
    return {
        **COMMON_LABELS,
        "app.kubernetes.io/instance": job,
        JOB_LABEL: job,
        WORKER_LABEL: worker,
    }


def selector(job: str) -> str:
    """The label selector of every worker Pod of a job."""
    return f"{JOB_LABEL}={job}"


def build_worker_pod_manifest(
    payload: WorkerPayload,
    *,
    image: str,
    owner: Owner,
    nats_secret: str | None,
    memory_mb: int,
    cpu: str,
    time_limit_seconds: float | None,
    image_pull_policy: str,
) -> dict[str, Any]:
    """One worker as a Pod in its owner's namespace; the keywords are ``PodSettings``'s.

    The payload travels in ``$FAASOPT_WORKER_PAYLOAD`` without the token; the token comes from
    the Secret, so it never shows in the Pod object.
    """
    public = dataclasses.replace(payload, nats_token=None)
    env = [{"name": name, "value": value} for name, value in WORKER_ENV.items()]
    env.append({"name": PAYLOAD_ENV, "value": public.to_json()})
    if nats_secret is not None:
        ref = {"name": nats_secret, "key": NATS_TOKEN_KEY}
        env.append({"name": NATS_TOKEN_ENV, "valueFrom": {"secretKeyRef": ref}})
    memory = f"{memory_mb}Mi"
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "worker",
                "image": image,
                "imagePullPolicy": image_pull_policy,
                "env": env,
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"memory": memory},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if time_limit_seconds is not None:
        spec["activeDeadlineSeconds"] = math.ceil(time_limit_seconds)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{payload.job}-{payload.worker}-",
            "namespace": owner.namespace,
            "labels": labels(payload.job, payload.worker),
            "ownerReferences": [owner.reference()],
        },
        "spec": spec,
    }


class CoreV1Api(Protocol):
    """The part of ``kubernetes.client.CoreV1Api`` this platform uses."""

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any]) -> Any: ...
    def list_namespaced_pod(self, namespace: str, *, label_selector: str) -> Any: ...
    def delete_namespaced_pod(self, name: str, namespace: str) -> Any: ...
    def read_namespaced_secret(self, name: str, namespace: str) -> Any: ...


class PodsPlatform:
    """Each worker is a Pod owned by its TrainingJob; results travel over NATS as everywhere.

    Parameters
    ----------
    api : CoreV1Api
        ``kubernetes.client.CoreV1Api()`` or a fake with the same methods.
    owner : Owner
        The TrainingJob: its namespace, name and uid.
    settings : PodSettings
        Image, NATS Secret and resources of the worker Pods.
    list_every_seconds : float
        :meth:`exited` lists the job's Pods at most this often and answers from the last list
        in between: the coordinator asks every poll, and the API server need not hear it.
    clock : Callable[[], float]
        Seconds, for that interval (tests step it).
    """

    name = "pods"

    def __init__(
        self,
        api: CoreV1Api,
        owner: Owner,
        settings: PodSettings,
        list_every_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.owner, self.settings = api, owner, settings
        self.namespace = owner.namespace
        self.list_every_seconds, self.clock = list_every_seconds, clock
        self._pods: dict[str, str] = {}
        """Worker name -> the name of its current Pod."""
        self._listed: tuple[float, dict[str, Any]] | None = None
        """(monotonic time, Pods by name) of the last list."""

    def deploy(self) -> None:
        """Check that the NATS Secret exists: a missing one would leave every Pod unstartable."""
        if self.settings.nats_secret is None:
            return
        try:
            self.api.read_namespaced_secret(self.settings.nats_secret, self.namespace)
        except ApiException as exc:
            raise PlatformError(
                f"NATS secret {self.namespace}/{self.settings.nats_secret}: "
                f"{exc.status} {exc.reason}"
            ) from None

    def invoke(self, payload: WorkerPayload) -> str:
        """Create the worker's Pod; returns the Pod's name."""
        body = build_worker_pod_manifest(
            payload, owner=self.owner, **dataclasses.asdict(self.settings)
        )
        self._listed = None  # a new Pod: the next exited() must not answer from an older list
        try:
            pod = self.api.create_namespaced_pod(self.namespace, body)
        except ApiException as exc:
            raise PlatformError(
                f"cannot create the pod of worker {payload.worker}: {exc.status} {exc.reason}"
            ) from None
        self._pods[payload.worker] = pod.metadata.name
        return pod.metadata.name

    def exited(self) -> dict[str, int]:
        """Workers whose current Pod ended (its container's exit status) or vanished (``GONE``)."""
        now = self.clock()
        if self._listed is None or now - self._listed[0] >= self.list_every_seconds:
            pods = {p.metadata.name: p for p in self._list(selector(self.owner.name))}
            self._listed = (now, pods)
        pods = self._listed[1]
        ended = {}
        for worker, name in self._pods.items():
            pod = pods.get(name)
            if pod is None:
                ended[worker] = GONE
            elif pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
                ended[worker] = _exit_code(pod)
        return ended

    def retire(self, worker: str) -> None:
        """Delete the worker's Pod (gone already is fine)."""
        name = self._pods.pop(worker, None)
        if name is not None:
            self._delete(name)

    def teardown(self) -> None:
        """Delete every worker Pod of the job, also those started before an operator restart."""
        for pod in self._list(selector(self.owner.name)):
            self._delete(pod.metadata.name)
        self._pods.clear()

    def _list(self, label_selector: str) -> list[Any]:
        try:
            return self.api.list_namespaced_pod(self.namespace, label_selector=label_selector).items
        except ApiException as exc:
            raise PlatformError(f"cannot list worker pods: {exc.status} {exc.reason}") from None

    def _delete(self, name: str) -> None:
        try:
            self.api.delete_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise PlatformError(
                    f"cannot delete pod {name}: {exc.status} {exc.reason}"
                ) from None


def _exit_code(pod: Any) -> int:
    """The worker container's exit status; 1 for a Pod that failed before it ran (e.g. evicted)."""
    for status in pod.status.container_statuses or []:
        if status.state is not None and status.state.terminated is not None:
            return status.state.terminated.exit_code
    return 0 if pod.status.phase == "Succeeded" else 1
