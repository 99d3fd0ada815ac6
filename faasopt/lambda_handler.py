"""The worker as an AWS Lambda function: handler ``faasopt.lambda_handler.handler``.

The event is the worker's payload (``faasopt.platforms.aws_lambda`` invokes with
``InvocationType='Event'``). The worker runs in-process until it leaves, and leaves by itself
before Lambda's limit: its deadline is the remaining time of the invocation
(``context.get_remaining_time_in_millis()``) less ``LEAVE_MARGIN_SECONDS``. Results travel over
NATS; the returned summary only shows in Lambda's own records.

In the worker image: ``python -m awslambdaric faasopt.lambda_handler.handler`` (the function's
``ImageConfig``, set by the adapter); in a zip package: handler ``faasopt.lambda_handler.handler``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

from faasopt.invocation import deadline_from, payload_from, run_worker


class LambdaContext(Protocol):
    """The part of Lambda's context object the handler uses."""

    def get_remaining_time_in_millis(self) -> int: ...


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run the worker of ``event`` until it leaves or its invocation's time runs out."""
    deadline = deadline_from(context.get_remaining_time_in_millis() / 1000)
    payload = payload_from(event, os.environ)
    return asyncio.run(run_worker(payload, deadline))
