"""The worker as an HTTP function, for Knative and OpenFaaS (of-watchdog in http mode).

``GET /healthz`` answers 200 while the server runs. ``POST /`` (or ``/invoke``) takes a worker
payload (JSON), runs that worker in this process until it leaves, and answers 200 with a small
summary. The request stays open for the worker's life: that keeps Knative from scaling the
instance away under it, and its end tells the caller the worker is gone. A caller that hangs up
ends its worker. Each request runs its own worker; Knative's ``containerConcurrency: 1`` gives
each its own instance.

Run as ``python -m faasopt.function_app``; it listens on ``$PORT`` (default 8080).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping

from aiohttp import web

from faasopt.invocation import TIME_LIMIT_ENV, BadPayload, deadline_from, payload_from, run_worker

log = logging.getLogger("faasopt.function_app")
DEFAULT_PORT = 8080


def build_app(env: Mapping[str, str]) -> web.Application:
    """The app; ``env`` gives the NATS token (or its file) and the invocation's time limit."""
    limit = float(env[TIME_LIMIT_ENV]) if env.get(TIME_LIMIT_ENV) else None

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def invoke(request: web.Request) -> web.Response:
        try:
            payload = payload_from(await request.read(), env)
        except BadPayload as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("worker %s of %s/%s starts", payload.worker, payload.namespace, payload.job)
        summary = await run_worker(payload, deadline_from(limit))
        log.info("worker %s left after %.1f s", payload.worker, summary["seconds"])
        return web.json_response(summary)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/", invoke)
    app.router.add_post("/invoke", invoke)
    return app


async def start_server(env: Mapping[str, str], host: str, port: int) -> web.AppRunner:
    """Serve the app on ``host:port``; a request whose caller hangs up is cancelled."""
    runner = web.AppRunner(build_app(env), handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _serve_until_terminated(env: Mapping[str, str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = await start_server(env, "0.0.0.0", int(env.get("PORT") or DEFAULT_PORT))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    asyncio.run(_serve_until_terminated(os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
