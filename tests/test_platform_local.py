"""The local platform and the embedded nats-server, on their own."""

from __future__ import annotations

import socket

import psutil
import pytest

from faasopt.errors import PlatformError
from faasopt.payload import WorkerPayload
from faasopt.platforms.local import LocalPlatform
from faasopt.platforms.nats_server import NatsServer


def _payload(name: str, url: str) -> WorkerPayload:
    return WorkerPayload(
        namespace="default",
        job="t",
        worker=name,
        blocks=(0,),
        n_blocks=1,
        nats_url=url,
        data={"synthetic": {"samples": 10, "features": 5, "density": 0.2, "seed": 0}},
        idle_timeout_seconds=30,
    )


def test_nats_server_listens_on_loopback_and_stops():
    with NatsServer() as server:
        pid = server.pid
        assert server.url.startswith("nats://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", server.port), 1) as s:
            assert s.recv(4) == b"INFO"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_nats_server_that_cannot_start_is_a_platform_error():
    with NatsServer() as first, pytest.raises(PlatformError, match="nats-server"):
        NatsServer(port=first.port, start_timeout=3).start()


def test_retire_and_teardown_stop_workers(nats_server):
    platform = LocalPlatform(quiet=True)
    platform.invoke(_payload("w0", nats_server.url))
    platform.invoke(_payload("w1", nats_server.url))
    pids = platform.pids
    platform.retire("w0")
    assert not psutil.pid_exists(pids["w0"]) and psutil.pid_exists(pids["w1"])
    assert "w0" not in platform.exited()
    platform.teardown()
    assert not psutil.pid_exists(pids["w1"]) and platform.pids == {}
