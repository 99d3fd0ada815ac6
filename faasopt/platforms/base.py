"""The interface every platform gives the coordinator."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from faasopt.errors import PlatformError
from faasopt.payload import WorkerPayload

T = TypeVar("T")


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


def wait_until(ready: Callable[[], T | None], seconds: float, what: str) -> T:
    """Poll ``ready`` once a second until it returns something; a PlatformError naming ``what``
    after ``seconds``. ``ready`` may raise to give up at once (a failed deployment)."""
    give_up = time.monotonic() + seconds
    while (found := ready()) is None:
        if time.monotonic() > give_up:
            raise PlatformError(f"{what} not ready after {seconds:g} s")
        time.sleep(1.0)
    return found
