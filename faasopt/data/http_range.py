"""Byte ranges of an HTTP(S) resource by Range requests (urllib3), streamed.

A server that answers a Range request with 206 sends only the range. One that ignores Range
(200, the whole body) is read from the start up to the range's end, dropping the bytes before it,
with a warning that says so. Certificates are verified against the system's trust store
(``SSL_CERT_FILE`` names another). Credentials never travel in the URL (the manifest refuses user
info), and the query string, which may carry a signature, is never printed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

import urllib3
from urllib3.exceptions import HTTPError

from faasopt.data.ranges import CHUNK_BYTES, Fetch, Version, display
from faasopt.errors import DataError

log = logging.getLogger("faasopt.data")

RETRIES = urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(502, 503, 504))
"""Connection errors and gateway failures are retried 3 times, 0.2 s apart and doubling."""
TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
"""Seconds to connect, and to wait for each piece of the body."""
_REASONS = {
    401: "access denied (HTTP 401)",
    403: "access denied (HTTP 403)",
    404: "not found (HTTP 404)",
    410: "not found (HTTP 410)",
    416: "the resource is shorter than indexed (HTTP 416): it changed; plan the job again",
}


@functools.cache
def _pool() -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=RETRIES, timeout=TIMEOUT)


def _total(content_range: str | None) -> int | None:
    """The full size in ``Content-Range: bytes first-last/total``, None for ``*`` or none."""
    total = (content_range or "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def fetch_http(url: str, start: int, stop: int | None) -> Fetch:
    """A GET of the resource's bytes ``[start, stop)`` (``stop=None``: to the end)."""
    name = display(url)
    headers = {}
    if start or stop is not None:
        headers["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
    try:
        response = _pool().request("GET", url, headers=headers, preload_content=False)
    except HTTPError as exc:
        reason = str(getattr(exc, "reason", None) or exc).split(": ", 1)[-1]  # not the URL
        raise DataError(f"cannot reach the server: {reason}", path=name) from None

    def close() -> None:
        response.close()
        response.release_conn()

    status = response.status
    if status not in (200, 206):
        close()
        reason = _REASONS.get(status, f"HTTP {status} {response.reason or ''}".rstrip())
        raise DataError(reason, path=name)
    etag = response.headers.get("ETag") or response.headers.get("Last-Modified")
    if status == 206:
        first = response.headers.get("Content-Range", "").removeprefix("bytes ").partition("-")[0]
        if first != str(start):
            close()
            raise DataError(f"asked for bytes from {start}, got bytes from {first}", path=name)
        size, skip = _total(response.headers.get("Content-Range")), 0
    else:
        length = response.headers.get("Content-Length")
        size, skip = (int(length) if length and length.isdigit() else None), start
        if headers:
            log.warning(
                "%s: the server ignores Range requests; reading from byte 0 to reach bytes %d-%s",
                name,
                start,
                "end" if stop is None else stop,
            )
        elif "bytes" not in response.headers.get("Accept-Ranges", ""):
            log.warning(
                "%s: the server does not announce Range support; workers may read from byte 0",
                name,
            )

    def chunks() -> Iterator[bytes]:
        try:
            yield from response.stream(CHUNK_BYTES)
        except HTTPError as exc:  # its first argument, when a string, says what (not the URL)
            detail = (
                exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
            )
            raise DataError(f"read failed: {detail}", path=name) from None

    return Fetch(chunks(), Version(size, etag), close, skip)
