"""Workers as processes on this machine (the embedded default)."""

from __future__ import annotations

import os
import subprocess
import sys

from faasopt.errors import PlatformError
from faasopt.payload import PAYLOAD_ENV, WORKER_ENV, WorkerPayload
from faasopt.platforms.processes import die_with_parent, terminate


class LocalPlatform:
    """Each worker is a ``python -m faasopt.worker`` process that dies with its parent.

    Parameters
    ----------
    quiet : bool
        Send the workers' stderr to /dev/null instead of this process's stderr.
    """

    name = "local"

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._processes: dict[str, subprocess.Popen] = {}

    def deploy(self) -> None:
        """Nothing to prepare: the workers run this Python with this faasopt."""

    def invoke(self, payload: WorkerPayload) -> str:
        env = {**os.environ, **WORKER_ENV, PAYLOAD_ENV: payload.to_json()}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "faasopt.worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL if self.quiet else None,
                preexec_fn=die_with_parent,
                process_group=0,  # Ctrl-C reaches only faasopt, which stops workers in order
            )
        except OSError as exc:
            raise PlatformError(f"cannot start worker {payload.worker}: {exc}") from None
        self._processes[payload.worker] = process
        return str(process.pid)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the workers started, by name."""
        return {name: p.pid for name, p in self._processes.items()}

    def exited(self) -> dict[str, int]:
        return {
            name: code
            for name, process in self._processes.items()
            if (code := process.poll()) is not None
        }

    def retire(self, worker: str) -> None:
        process = self._processes.pop(worker, None)
        if process is not None:
            terminate([process])

    def teardown(self) -> None:
        terminate(self._processes.values())
        self._processes.clear()
