"""Worker Pods: upstream-valid manifests, and the pods platform against a fake CoreV1Api.

``FakeCoreV1Api`` keeps Pods and Secrets in memory and records every call. It answers with the
``kubernetes`` package's own model objects (made by its real ApiClient deserializer), raises its
real ApiException, and validates each Pod it is given against the upstream schema, as the API
server would. Its method signatures are checked against the real CoreV1Api.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException

from faasopt.errors import PlatformError
from faasopt.payload import PAYLOAD_ENV, WORKER_ENV, WorkerPayload
from faasopt.platforms.pods import (
    GONE,
    NATS_TOKEN_ENV,
    NATS_TOKEN_KEY,
    RUN_AS_USER,
    Owner,
    PodSettings,
    PodsPlatform,
    build_worker_pod_manifest,
    labels,
    selector,
)

K8S_VERSION = "1.35"
ROOT = Path(__file__).resolve().parent.parent
OWNER = Owner(namespace="ml", name="quickstart", uid="0d6f3f4e-8a43-4d38-9a7c-1f1d8c5c2f10")
SETTINGS = PodSettings(image="faasopt/worker:test", nats_secret="faasopt-nats", memory_mb=1024)


def payload(worker: str = "w0", token: str | None = "s3cret-token") -> WorkerPayload:
    return WorkerPayload(
        namespace="ml",
        job="quickstart",
        worker=worker,
        blocks=(0, 1),
        n_blocks=4,
        nats_url="nats://faasopt-nats.faasopt:4222",
        data={"synthetic": {"samples": 100, "features": 10, "density": 0.1, "seed": 0}},
        nats_token=token,
    )


def pod(**settings: Any) -> dict[str, Any]:
    options = {**dataclasses.asdict(SETTINGS), **settings}
    return build_worker_pod_manifest(payload(), owner=OWNER, **options)


class _Response:
    def __init__(self, document: dict[str, Any]) -> None:
        self.data = json.dumps(document)


def _typed(document: dict[str, Any], kind: str) -> Any:
    """A dict as the kubernetes package's model object, through its real deserializer."""
    return ApiClient().deserialize(_Response(document), kind)


class FakeCoreV1Api:
    """A fake of ``kubernetes.client.CoreV1Api``: Pods and Secrets in memory, calls recorded."""

    def __init__(self, secrets: tuple[tuple[str, str], ...] = ()) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets = set(secrets)
        self.calls: list[tuple[str, ...]] = []
        self.refuse: int | None = None
        """When set, every call fails with this HTTP status (e.g. 403 for missing RBAC)."""
        self._ids = itertools.count(1)

    def _call(self, *call: str) -> None:
        self.calls.append(call)
        if self.refuse is not None:
            raise ApiException(status=self.refuse, reason="Forbidden")

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any]) -> Any:
        self._call("create", namespace, body["metadata"]["generateName"])
        kubernetes_validate.validate(body, K8S_VERSION, strict=True)
        stored = copy.deepcopy(body)
        name = stored["metadata"]["generateName"] + f"{next(self._ids):05d}"
        stored["metadata"].update(name=name, uid=f"uid-{name}")
        stored["status"] = {"phase": "Pending"}
        self.pods[(namespace, name)] = stored
        return _typed(stored, "V1Pod")

    def list_namespaced_pod(self, namespace: str, *, label_selector: str) -> Any:
        self._call("list", namespace, label_selector)
        wanted = dict(term.split("=") for term in label_selector.split(","))
        items = [
            p
            for (ns, _), p in self.pods.items()
            if ns == namespace and wanted.items() <= p["metadata"]["labels"].items()
        ]
        return _typed({"items": items}, "V1PodList")

    def delete_namespaced_pod(self, name: str, namespace: str) -> Any:
        self._call("delete", namespace, name)
        if self.pods.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="Not Found")

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self._call("read-secret", namespace, name)
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return _typed({"metadata": {"name": name, "namespace": namespace}}, "V1Secret")

    def end(self, name: str, exit_code: int | None) -> None:
        """The kubelet's part: the Pod's container ended (None: failed before it ran)."""
        stored = self.pods[(OWNER.namespace, name)]
        stored["status"] = {"phase": "Succeeded" if exit_code == 0 else "Failed"}
        if exit_code is not None:
            terminated = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
            }
            stored["status"]["containerStatuses"] = [
                {
                    "name": "worker",
                    "image": SETTINGS.image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ]


@pytest.mark.parametrize(
    "settings",
    [{}, {"nats_secret": None}, {"time_limit_seconds": 899.5, "cpu": "500m"}],
    ids=["default", "no-auth", "deadline"],
)
def test_worker_pod_is_valid_against_the_upstream_schema(settings):
    assert kubernetes_validate.validate(pod(**settings), K8S_VERSION, strict=True) == K8S_VERSION


def test_payload_travels_without_the_token_which_comes_from_the_secret():
    manifest = pod()
    env = {e["name"]: e for e in manifest["spec"]["containers"][0]["env"]}
    assert WorkerPayload.from_json(env[PAYLOAD_ENV]["value"]) == dataclasses.replace(
        payload(), nats_token=None
    )
    assert env[NATS_TOKEN_ENV] == {
        "name": NATS_TOKEN_ENV,
        "valueFrom": {"secretKeyRef": {"name": "faasopt-nats", "key": NATS_TOKEN_KEY}},
    }
    assert "s3cret-token" not in json.dumps(manifest)
    assert NATS_TOKEN_ENV not in {
        e["name"] for e in pod(nats_secret=None)["spec"]["containers"][0]["env"]
    }


def test_worker_env_is_the_one_every_platform_gives():
    env = {e["name"]: e.get("value") for e in pod()["spec"]["containers"][0]["env"]}
    assert {name: env[name] for name in WORKER_ENV} == WORKER_ENV


def test_resources_come_from_memory_mb_and_the_deadline_from_the_time_limit():
    manifest = pod(time_limit_seconds=899.5)
    assert manifest["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "1024Mi"},
        "limits": {"memory": "1024Mi"},
    }
    assert manifest["spec"]["activeDeadlineSeconds"] == 900
    assert "activeDeadlineSeconds" not in pod()["spec"]


def test_pod_runs_once_restricted_and_without_api_access():
    spec = pod()["spec"]
    container = spec["containers"][0]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == "faasopt/worker:test"


def test_pod_is_owned_by_its_training_job_and_labelled():
    metadata = pod()["metadata"]
    assert metadata["namespace"] == "ml"
    assert metadata["generateName"] == "quickstart-w0-"
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "faasopt.dev/v1alpha1",
            "kind": "TrainingJob",
            "name": "quickstart",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert metadata["labels"] == labels("quickstart", "w0")
    assert metadata["labels"]["app.kubernetes.io/name"] == "faasopt"
    assert metadata["labels"]["app.kubernetes.io/component"] == "worker"
    assert metadata["labels"]["app.kubernetes.io/instance"] == "quickstart"
    assert metadata["labels"]["faasopt.dev/worker"] == "w0"
    assert selector("quickstart") == "faasopt.dev/job=quickstart"


def test_pod_settings_defaults_and_environment():
    settings = PodSettings(image="i")
    assert (settings.nats_secret, settings.memory_mb, settings.cpu) == (None, 512, "1")
    assert (settings.time_limit_seconds, settings.image_pull_policy) == (None, "IfNotPresent")
    env = {"FAASOPT_WORKER_IMAGE": "w:1", "FAASOPT_NATS_SECRET": "", "FAASOPT_WORKER_CPU": "2"}
    assert PodSettings.from_env(env, memory_mb=256, time_limit_seconds=60) == PodSettings(
        image="w:1", cpu="2", memory_mb=256, time_limit_seconds=60
    )
    with pytest.raises(PlatformError, match="FAASOPT_WORKER_IMAGE is not set"):
        PodSettings.from_env({}, memory_mb=256, time_limit_seconds=None)


def test_worker_image_matches_what_the_pod_expects():
    dockerfile = (ROOT / "functions" / "Dockerfile").read_text()
    assert f"USER {RUN_AS_USER}:{RUN_AS_USER}" in dockerfile
    for name, value in WORKER_ENV.items():
        assert re.search(rf"\b{name}={value}\b", dockerfile), name
    assert 'ENTRYPOINT ["python", "-m", "faasopt.worker"]' in dockerfile


def test_the_fake_has_the_real_core_v1_api_signatures():
    for name, method in inspect.getmembers(FakeCoreV1Api, inspect.isfunction):
        if name.startswith("_") or name == "end":
            continue
        real = [p for p in inspect.signature(getattr(CoreV1Api, name)).parameters if p != "kwargs"]
        fake = [
            p for p, v in inspect.signature(method).parameters.items() if v.kind != v.KEYWORD_ONLY
        ]
        assert fake == real, name
        for keyword in inspect.signature(method).parameters.values():
            if keyword.kind == keyword.KEYWORD_ONLY:
                assert f":type {keyword.name}: str" in getattr(CoreV1Api, name).__doc__


def test_deploy_checks_the_nats_secret():
    api = FakeCoreV1Api(secrets=(("ml", "faasopt-nats"),))
    PodsPlatform(api, OWNER, SETTINGS, list_every_seconds=0).deploy()
    assert api.calls == [("read-secret", "ml", "faasopt-nats")]
    with pytest.raises(PlatformError, match="NATS secret ml/faasopt-nats: 404 Not Found"):
        PodsPlatform(FakeCoreV1Api(), OWNER, SETTINGS).deploy()
    no_auth = FakeCoreV1Api()
    PodsPlatform(no_auth, OWNER, dataclasses.replace(SETTINGS, nats_secret=None)).deploy()
    assert no_auth.calls == []


def test_invoke_creates_one_pod_per_worker_and_exited_reports_their_end():
    api = FakeCoreV1Api()
    platform = PodsPlatform(api, OWNER, SETTINGS, list_every_seconds=0)
    names = {w: platform.invoke(payload(w)) for w in ("w0", "w1", "w2", "w3")}
    assert names == {
        "w0": "quickstart-w0-00001",
        "w1": "quickstart-w1-00002",
        "w2": "quickstart-w2-00003",
        "w3": "quickstart-w3-00004",
    }
    assert [c[0] for c in api.calls] == ["create"] * 4
    assert platform.exited() == {}
    api.end(names["w0"], 0)
    api.end(names["w1"], 137)
    api.end(names["w2"], None)  # evicted before it ran
    del api.pods[("ml", names["w3"])]  # deleted by someone else
    assert platform.exited() == {"w0": 0, "w1": 137, "w2": 1, "w3": GONE}
    assert api.calls[-1] == ("list", "ml", "faasopt.dev/job=quickstart")


def test_exited_lists_pods_at_most_once_a_second():
    api, now = FakeCoreV1Api(), [100.0]
    platform = PodsPlatform(api, OWNER, SETTINGS, clock=lambda: now[0])
    name = platform.invoke(payload("w0"))
    assert platform.exited() == {} and platform.exited() == {}
    api.end(name, 0)
    now[0] += 0.9
    assert platform.exited() == {}  # from the list of a moment ago
    assert [c[0] for c in api.calls] == ["create", "list"]
    now[0] += 0.1
    assert platform.exited() == {"w0": 0}
    assert [c[0] for c in api.calls] == ["create", "list", "list"]


def test_retire_deletes_only_that_workers_pod():
    api = FakeCoreV1Api()
    platform = PodsPlatform(api, OWNER, SETTINGS, list_every_seconds=0)
    w0, w1 = platform.invoke(payload("w0")), platform.invoke(payload("w1"))
    platform.retire("w0")
    assert api.calls[-1] == ("delete", "ml", w0)
    assert [name for _, name in api.pods] == [w1]
    calls = len(api.calls)
    platform.retire("w0")  # already retired: nothing to do
    assert len(api.calls) == calls
    api.pods.clear()
    platform.retire("w1")  # its pod is gone already: fine
    assert api.calls[-1] == ("delete", "ml", w1)
    assert platform.exited() == {}


def test_teardown_deletes_every_pod_of_the_job_also_from_before_a_restart():
    api = FakeCoreV1Api()
    before_restart = PodsPlatform(api, OWNER, SETTINGS, list_every_seconds=0)
    before_restart.invoke(payload("w0"))
    other_job = Owner(namespace="ml", name="other", uid="u2")
    PodsPlatform(api, other_job, SETTINGS).invoke(dataclasses.replace(payload("w0"), job="other"))
    after_restart = PodsPlatform(api, OWNER, SETTINGS, list_every_seconds=0)
    after_restart.invoke(payload("w1"))
    after_restart.teardown()
    assert [name for _, name in api.pods] == ["other-w0-00002"]
    assert after_restart.exited() == {}


def test_api_errors_become_platform_errors():
    api = FakeCoreV1Api()
    platform = PodsPlatform(api, OWNER, SETTINGS, list_every_seconds=0)
    name = platform.invoke(payload("w0"))
    api.refuse = 403
    with pytest.raises(PlatformError, match="cannot create the pod of worker w1: 403 Forbidden"):
        platform.invoke(payload("w1"))
    with pytest.raises(PlatformError, match="cannot list worker pods: 403"):
        platform.exited()
    with pytest.raises(PlatformError, match=f"cannot delete pod {name}: 403"):
        platform.retire("w0")
