"""One worker per function invocation: what the HTTP app and the Lambda handler share.

A function is invoked with a worker's payload (JSON) in its request or event. It takes the NATS
token from its environment when the payload carries none (the adapters strip it; a Secret
supplies it), runs the worker in-process until it leaves, and answers with a small summary.
Results travel over NATS, never in the answer.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faasopt.payload import NATS_TOKEN_ENV, WorkerPayload

NATS_TOKEN_FILE_ENV = "FAASOPT_NATS_TOKEN_FILE"
"""A file holding the NATS token, for platforms that mount secrets as files (OpenFaaS)."""
TIME_LIMIT_ENV = "FAASOPT_TIME_LIMIT_SECONDS"
"""The platform's limit on one invocation, seconds, set by the adapter that deployed the
function (Knative ``timeoutSeconds``, OpenFaaS ``exec_timeout``); unset: no limit known."""
LEAVE_MARGIN_SECONDS = 2.0
"""Time the worker keeps to drain NATS and answer before the platform cuts the invocation."""


class BadPayload(ValueError):
    """The request or event is not a worker payload; the message names what is wrong."""


def payload_from(
    document: str | bytes | Mapping[str, Any], env: Mapping[str, str]
) -> WorkerPayload:
    """The worker payload of a request body or event, with the token from ``env`` if it has none."""
    try:
        text = document if isinstance(document, str | bytes) else json.dumps(document)
        payload = WorkerPayload.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadPayload(f"not a worker payload: {type(exc).__name__}: {exc}") from None
    if payload.nats_token is not None:
        return payload
    token = env.get(NATS_TOKEN_ENV)
    if not token and env.get(NATS_TOKEN_FILE_ENV):
        token = Path(env[NATS_TOKEN_FILE_ENV]).read_text().strip()
    return dataclasses.replace(payload, nats_token=token) if token else payload


def deadline_from(time_limit_seconds: float | None) -> float | None:
    """Seconds the worker may run, given the platform's limit on this invocation (None: none)."""
    if time_limit_seconds is None:
        return None
    return max(0.0, time_limit_seconds - LEAVE_MARGIN_SECONDS)


async def run_worker(payload: WorkerPayload, deadline_seconds: float | None) -> dict[str, Any]:
    """Run one worker until it leaves; returns the summary the function answers with."""
    # Here, not at the top: the platforms import this module's names, and the worker's
    # numerical stack belongs only where a worker runs (as faasopt.payload keeps it apart).
    from faasopt.worker import serve

    started = time.perf_counter()
    await serve(payload, deadline_seconds=deadline_seconds)
    return {
        "job": payload.job,
        "worker": payload.worker,
        "blocks": list(payload.blocks),
        "seconds": round(time.perf_counter() - started, 3),
    }
