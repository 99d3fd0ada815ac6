"""End to end on a real cluster: the chart, the operator and worker Pods (``make e2e``).

Runs with ``pytest -m e2e`` when ``KUBECONFIG`` points at a cluster where the chart is installed
(``make kind-up`` builds both images, loads them into kind and installs the chart); elsewhere
every test here is skipped, with the reason in pytest's summary. Nothing here is faked.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import faasopt
from faasopt.crd import GROUP, PLURAL, VERSION
from faasopt.platforms.pods import selector

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
NAMESPACE = os.environ.get("FAASOPT_E2E_NAMESPACE", "faasopt")
SLOW = {"maxIterations": 100000, "primalTolerance": 1e-300, "dualTolerance": 1e-300}


@pytest.fixture(scope="module")
def kube() -> Iterator[Any]:
    """Clients of the cluster KUBECONFIG points at; skips the module when there is none."""
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("KUBECONFIG is not set: the e2e suite needs a cluster (make kind-up; make e2e)")
    from kubernetes import client, config

    try:
        config.load_kube_config()
        api = client.ApiClient()
        client.VersionApi(api).get_code()
    except Exception as exc:  # any reason the cluster cannot be reached is a reason to skip
        pytest.skip(f"KUBECONFIG={os.environ['KUBECONFIG']}: no cluster reachable ({exc})")
    crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
    if f"{PLURAL}.{GROUP}" not in {c.metadata.name for c in crds}:
        pytest.fail(f"the cluster has no {PLURAL}.{GROUP} CRD: install the chart (make kind-up)")
    yield client.CustomObjectsApi(api), client.CoreV1Api(api)
    api.close()


def manifest(spec_patch: dict[str, Any] | None = None) -> dict[str, Any]:
    """The quickstart under a fresh name, with ``spec_patch`` merged into its spec."""
    body = yaml.safe_load(QUICKSTART.read_text())
    body["metadata"] = {"name": f"e2e-{uuid.uuid4().hex[:8]}", "namespace": NAMESPACE}
    for key, value in (spec_patch or {}).items():
        body["spec"][key] = {**body["spec"].get(key, {}), **value}
    return body


@pytest.fixture
def apply(kube: Any) -> Iterator[Callable[[dict[str, Any]], str]]:
    """``kubectl apply`` of a TrainingJob; every job applied is deleted after the test."""
    custom, _ = kube
    names: list[str] = []

    def create(body: dict[str, Any]) -> str:
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        names.append(body["metadata"]["name"])
        return body["metadata"]["name"]

    yield create
    for name in names:
        delete(kube, name)


def get(kube: Any, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return kube[0].get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete(kube: Any, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        kube[0].delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def until(what: Callable[[], Any], ok: Callable[[Any], bool], seconds: float, why: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = what()
        if ok(value):
            return value
        time.sleep(1)
    raise AssertionError(f"{why}: not within {seconds} s (last seen: {value})")


def status(body: dict[str, Any] | None) -> dict[str, Any]:
    return (body or {}).get("status", {})


def pods(kube: Any, name: str) -> list[Any]:
    return kube[1].list_namespaced_pod(NAMESPACE, label_selector=selector(name)).items


def test_the_quickstart_succeeds_on_worker_pods_with_the_local_solution(kube, apply) -> None:
    name = apply(manifest())
    running = until(
        lambda: pods(kube, name), lambda p: len(p) >= 4, 300, "4 worker pods of the job"
    )
    for pod in running:
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.controller) == ("TrainingJob", name, True)
    body = until(
        lambda: get(kube, name),
        lambda b: status(b).get("phase") in ("Succeeded", "Failed"),
        600,
        "the job finished",
    )
    assert status(body)["phase"] == "Succeeded", status(body)
    local = faasopt.run(QUICKSTART, quiet_workers=True).report
    # The image may hold other numpy/scipy builds than this machine: equal to 1e-6, not bits.
    assert status(body)["objective"] == pytest.approx(local["objective"], rel=1e-6)
    until(lambda: pods(kube, name), lambda p: not p, 120, "worker pods deleted after the run")
    events = (
        kube[1].list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}").items
    )
    assert {"Started", "Converged"} <= {e.reason for e in events}


def test_the_api_server_rejects_what_spec_py_rejects(kube) -> None:
    from kubernetes.client.exceptions import ApiException

    body = manifest({"problem": {"l1": -1.0}})
    with pytest.raises(ApiException) as refused:
        kube[0].create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
    assert refused.value.status == 422 and "spec.problem.l1" in refused.value.body


def test_local_processes_are_refused_on_a_cluster_with_the_field_named(kube, apply) -> None:
    name = apply(manifest({"workers": {"platform": "local"}}))
    body = until(
        lambda: get(kube, name), lambda b: status(b).get("phase") == "Failed", 120, "Failed"
    )
    (failed,) = [c for c in status(body)["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "InvalidSpec" and "spec.workers.platform" in failed["message"]
    assert not pods(kube, name)


def test_suspend_resume_and_delete_mid_run(kube, apply) -> None:
    name = apply(manifest({"algorithm": {"admm": SLOW}}))
    until(lambda: status(get(kube, name)).get("iteration", 0), lambda i: i >= 3, 300, "3 rounds")
    patch = {"spec": {"runPolicy": {"suspend": True}}}
    kube[0].patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name, patch)
    body = until(
        lambda: get(kube, name), lambda b: status(b).get("phase") == "Suspended", 120, "Suspended"
    )
    at = status(body)["iteration"]
    until(lambda: pods(kube, name), lambda p: not p, 120, "worker pods retired on suspend")
    patch = {"spec": {"runPolicy": {"suspend": False}}}
    kube[0].patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name, patch)
    until(
        lambda: status(get(kube, name)).get("iteration", 0),
        lambda i: i > at,
        300,
        f"rounds after resuming from iteration {at}",
    )
    resumed = [c for c in status(get(kube, name))["conditions"] if c["type"] == "Running"]
    assert resumed[0]["reason"] == "Resumed"
    delete(kube, name)
    until(lambda: get(kube, name), lambda b: b is None, 120, "the job deleted (finalizer done)")
    assert not pods(kube, name)
