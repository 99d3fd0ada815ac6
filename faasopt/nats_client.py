"""One way to connect to NATS, for the coordinator and every worker.

Callbacks log instead of raising or printing tracebacks: a connection that drops because the job
is being torn down (Ctrl-C reaches every process of the group at once) is ordinary.
"""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, StaleConnectionError

log = logging.getLogger("faasopt.nats")

DRAIN_SECONDS = 2.0
"""Longest wait for outgoing messages to flush when a client leaves."""


async def _on_error(error: Exception) -> None:
    if isinstance(error, StaleConnectionError | ConnectionClosedError | ConnectionResetError):
        log.info("nats connection lost: %s", error)
    else:
        log.warning("nats error: %s", error)


async def connect(url: str, name: str, token: str | None = None) -> Client:
    """A connected client that reconnects a few times with nats.py's backoff, then gives up."""
    return await nats.connect(
        url,
        name=name,
        token=token,
        error_cb=_on_error,
        max_reconnect_attempts=10,
        reconnect_time_wait=0.5,
        drain_timeout=DRAIN_SECONDS,
    )


async def disconnect(nc: Client) -> None:
    """Drain when connected (so what was published arrives), else just close: never hang."""
    if nc.is_closed:
        return
    if nc.is_connected:
        try:
            await nc.drain()
            return
        except Exception as exc:  # a dying connection must not hide the caller's own exception
            log.info("nats drain failed: %s", exc)
    await nc.close()
