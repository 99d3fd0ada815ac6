"""What every platform shares: waiting for a deployment to be ready."""

from __future__ import annotations

import pytest

from faasopt.errors import PlatformError
from faasopt.platforms import base


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.time, "sleep", lambda _: None)


def test_wait_until_returns_what_ready_found() -> None:
    answers = iter([None, None, "http://svc.ml"])
    assert base.wait_until(lambda: next(answers), 60, "knative service ml/svc") == "http://svc.ml"


def test_wait_until_gives_up_naming_what_it_waited_for() -> None:
    with pytest.raises(PlatformError, match=r"^openfaas function f not ready after 0 s$"):
        base.wait_until(lambda: None, 0, "openfaas function f")


def test_a_failure_seen_while_waiting_ends_the_wait() -> None:
    def failed() -> None:
        raise PlatformError("knative service ml/svc failed: RevisionFailed: image not found")

    with pytest.raises(PlatformError, match="RevisionFailed"):
        base.wait_until(failed, 60, "knative service ml/svc")
