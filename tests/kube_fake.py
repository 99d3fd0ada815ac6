"""A FAKE Kubernetes API for handler tests: kmock's in-memory emulator, plus what it lacks.

No API server can run on these machines. kmock (``KubernetesEmulator``) serves list, watch,
get, create, merge-patch and delete of any registered resource from memory, honours finalizers,
and records every request. It is a fake: it validates no schema, and does not set ``uid``,
``generation`` or ``creationTimestamp``; ``FakeCluster`` sets those as the API server would,
and tests validate what the operator writes against the CRD and the upstream schemas.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import kmock
import kopf

from faasopt.crd import GROUP, PLURAL, VERSION

HANDLERS = Path(__file__).resolve().parent.parent / "operator" / "handlers.py"
NAMESPACE = "ml"
TRAININGJOBS = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


class FakeCluster:
    """The fake API on a loopback port, and a client that plays ``kubectl`` against it."""

    def __init__(self, api: kmock.KubernetesEmulator, server: kmock.Server) -> None:
        self.api, self.server = api, server
        self.url = str(server.url).rstrip("/")
        self._generations = itertools.count(1)

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a TrainingJob, with the metadata the API server would add."""
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": NAMESPACE}}
        body["metadata"].update(
            uid=str(uuid.uuid4()),
            generation=1,
            resourceVersion="1",  # the fake never moves it; kopf needs it present
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        async with self.server.client.post(TRAININGJOBS, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def get(self, name: str) -> dict[str, Any] | None:
        async with self.server.client.get(f"{TRAININGJOBS}/{name}") as response:
            return None if response.status == 404 else await response.json()

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        """Merge-patch the spec; the generation moves, as on a real server."""
        current = await self.get(name)
        generation = current["metadata"]["generation"] + 1
        body = {"metadata": {"generation": generation}, "spec": spec}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.server.client.patch(
            f"{TRAININGJOBS}/{name}", json=body, headers=headers
        ) as response:
            response.raise_for_status()

    async def delete(self, name: str) -> None:
        async with self.server.client.delete(f"{TRAININGJOBS}/{name}") as response:
            response.raise_for_status()

    def written(self, kind: str) -> list[Any]:
        """Bodies of the operator's requests: ``status`` patches or created ``events``."""
        out = []
        for request in self.api:
            if request.resource is None or request.method.value not in ("POST", "PATCH"):
                continue
            if kind == "status" and request.subresource == "status":
                out.append(request.data["status"])
            elif kind == "events" and request.resource.plural == "events":
                out.append(request.data)
        return out


class _Emulator(kmock.KubernetesEmulator):
    """kmock's emulator, naming objects created with only ``generateName`` (kopf's Events).

    Unlike a real API server it never moves ``resourceVersion``, so kopf may see a cause twice:
    the handlers must be (and are) idempotent.
    """

    async def _handle(self, request: kmock.Request) -> Any:
        meta = request.data.get("metadata", {}) if isinstance(request.data, dict) else {}
        if request.method.value == "POST" and "generateName" in meta and "name" not in meta:
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:8]
        return await super()._handle(request)


@asynccontextmanager
async def fake_cluster() -> AsyncIterator[FakeCluster]:
    """The fake API with namespaces, events, pods and the TrainingJob resource registered."""
    async with _Emulator() as api, kmock.Server(api) as server:
        verbs = {"list", "watch", "get", "create", "patch", "update", "delete"}
        api.resources["v1/namespaces"] = kmock.ResourceInfo(
            kind="Namespace", namespaced=False, verbs=verbs
        )
        api.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True, verbs=verbs)
        api.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True, verbs=verbs)
        api.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
            kind="TrainingJob", namespaced=True, subresources={"status"}, verbs=verbs
        )
        yield FakeCluster(api, server)


def load_handlers(url: str) -> kopf.OperatorRegistry:
    """``operator/handlers.py`` loaded by path into a fresh registry that logs in to ``url``."""
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        spec = importlib.util.spec_from_file_location("faasopt_operator_handlers", HANDLERS)
        module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        kopf.set_default_registry(previous)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True, default_namespace=NAMESPACE)

    return registry


class FakeKubelet:
    """A FAKE kubelet: runs the worker Pods created in the fake API as local processes.

    Each new Pod becomes ``python -m faasopt.worker`` with the Pod's environment (plain values
    only: the Pods under test carry no Secret). A Pod deleted from the API has its process
    killed; a process that ends has its Pod's phase and exit status written back, as a kubelet
    would. It schedules nothing, enforces no resources and pulls no image.
    """

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.processes: dict[str, subprocess.Popen] = {}
        self.reported: set[str] = set()
        self.started: list[dict[str, Any]] = []
        """Every Pod body it started, as the API held it."""

    async def run(self) -> None:
        """Follow the Pods of the namespace until cancelled; then kill what it started."""
        try:
            while True:
                await self._sync()
                await asyncio.sleep(0.1)
        finally:
            for process in self.processes.values():
                process.kill()
                process.wait()

    async def _sync(self) -> None:
        async with self.cluster.server.client.get(PODS) as response:
            pods = {p["metadata"]["name"]: p for p in (await response.json())["items"]}
        for name, pod in pods.items():
            if name not in self.processes:
                self.started.append(pod)
                (container,) = pod["spec"]["containers"]
                env = {e["name"]: e["value"] for e in container.get("env", [])}
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "faasopt.worker"],
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        for name, process in self.processes.items():
            if name not in pods and process.poll() is None:
                process.kill()  # the Pod object is gone: so is its container
            elif name in pods and process.poll() is not None and name not in self.reported:
                self.reported.add(name)
                await self._ended(name, process.returncode)

    async def _ended(self, name: str, code: int) -> None:
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": "worker", "state": {"terminated": {"exitCode": code}}}],
        }
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.cluster.server.client.patch(
            f"{PODS}/{name}", json={"status": status}, headers=headers
        ) as response:
            response.raise_for_status()

    def alive(self) -> list[str]:
        """Pods whose process still runs."""
        return [name for name, p in self.processes.items() if p.poll() is None]
