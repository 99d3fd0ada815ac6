"""One way to connect to NATS, for the coordinator and every worker.

Callbacks log instead of raising or printing tracebacks: a connection that drops because the job
is being torn down (Ctrl-C reaches every process of the group at once) is ordinary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, StaleConnectionError

log = logging.getLogger("faasopt.nats")

OUTAGE_SECONDS = 30.0
"""How long a NATS server may be unreachable before the job gives up on it."""
RECONNECT_WAIT_SECONDS = 0.5
"""Pause between reconnect attempts."""
DRAIN_SECONDS = 2.0
"""Longest wait for outgoing messages to flush when a client leaves."""


async def _on_error(error: Exception) -> None:
    if isinstance(error, StaleConnectionError | ConnectionClosedError | ConnectionResetError):
        log.info("nats connection lost: %s", error)
    else:
        log.warning("nats error: %s", error)


async def connect(
    url: str,
    name: str,
    token: str | None = None,
    on_closed: Callable[[], Awaitable[None]] | None = None,
    outage_seconds: float = OUTAGE_SECONDS,
    user: str | None = None,
) -> Client:
    """A connected client that rides out a server outage of up to ``outage_seconds``.

    Past that it closes (``on_closed`` is called), and a publish raises ConnectionClosedError.
    ``token`` is the server's token, or ``user``'s password when a user is given.
    """
    credentials = {"user": user, "password": token} if user else {"token": token}
    return await nats.connect(
        url,
        name=name,
        **credentials,
        error_cb=_on_error,
        closed_cb=on_closed,
        max_reconnect_attempts=max(1, math.ceil(outage_seconds / RECONNECT_WAIT_SECONDS)),
        reconnect_time_wait=RECONNECT_WAIT_SECONDS,
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
