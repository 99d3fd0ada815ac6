"""The interface every platform gives the coordinator."""

from __future__ import annotations

from typing import Protocol

from faasopt.payload import WorkerPayload


class Platform(Protocol):
    """Starts, watches and stops workers. Results travel over NATS, never through the platform."""

    name: str

    def deploy(self) -> None:
        """Prepare whatever workers of this job need (an image, a function); idempotent."""

    def invoke(self, payload: WorkerPayload) -> str:
        """Start one worker asynchronously; returns an invocation id."""

    def exited(self) -> dict[str, int]:
        """Workers known to have ended, by name, with their exit status (empty if unknowable)."""

    def retire(self, worker: str) -> None:
        """Stop one worker."""

    def teardown(self) -> None:
        """Stop every worker of the job and remove what deploy made."""
