"""Bytes of a data file by range, wherever it lives: a local path, ``s3://bucket/key`` or ``http(s)://``.

One reader (`faasopt.data.libsvm`) works over all three. The planner reads a file once, whole, to
index it; a worker reads only its blocks' byte ranges. Every read reports the `Version` of the file
it saw, and a worker's read names the version the planner indexed: a file changed in between is a
DataError, never silently misread.

A backend turns ``(uri, start, stop)`` into a `Fetch` (chunks as they arrive and the version they
belong to); `RangeReader` is the one stream over all backends: it drops bytes a server sent before
``start`` (one that ignores Range requests), stops at ``stop``, counts what was fetched and refuses
a short read.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from faasopt.errors import DataError

CHUNK_BYTES = 1 << 16
"""Bytes asked of a backend at a time."""


@dataclass(frozen=True)
class Version:
    """One state of a file: its size in bytes and the store's tag for it.

    ``etag`` is the S3 or HTTP ETag, else the HTTP Last-Modified date, or a local file's mtime in
    nanoseconds; None when the server gives neither (then only the size can tell a change).
    ``size`` is None only when a server streams a whole file without saying its length.
    """

    size: int | None
    etag: str | None


@dataclass(frozen=True)
class Fetch:
    """What a backend returns for one request: the bytes as they arrive and their version."""

    chunks: Iterator[bytes]
    version: Version
    close: Callable[[], None]
    skip: int = 0
    """Leading bytes of ``chunks`` before the asked ``start`` (a server that ignored Range)."""


def display(uri: str) -> str:
    """``uri`` as it may be printed: without a query string or user info (they may be secrets)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return uri
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "..." if parts.query else "", ""))


def _fetch_local(path: str, start: int, stop: int | None) -> Fetch:
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the reader)
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
    stat = os.fstat(handle.fileno())
    handle.seek(start)
    end = stat.st_size if stop is None else stop

    def chunks() -> Iterator[bytes]:
        position = start
        while position < end and (chunk := handle.read(min(CHUNK_BYTES, end - position))):
            position += len(chunk)
            yield chunk

    return Fetch(chunks(), Version(stat.st_size, str(stat.st_mtime_ns)), handle.close)


def _fetch(uri: str, start: int, stop: int | None) -> Fetch:
    scheme = uri.partition("://")[0] if "://" in uri else ""
    if scheme == "s3":
        from faasopt.data.s3_range import fetch_s3  # boto3 only for runs that read S3

        return fetch_s3(uri, start, stop)
    if scheme in ("http", "https"):
        from faasopt.data.http_range import fetch_http

        return fetch_http(uri, start, stop)
    return _fetch_local(uri, start, stop)


class RangeReader(io.RawIOBase):
    """Bytes ``[start, stop)`` of a file (``stop=None``: to its end) as a binary stream.

    Attributes
    ----------
    version
        The version of the file the bytes belong to.
    fetched
        Bytes that came from the store, including any a server sent before ``start``.
    sha256
        The running SHA-256 of the bytes read so far.
    """

    def __init__(
        self, uri: str, start: int = 0, stop: int | None = None, expect: Version | None = None
    ) -> None:
        super().__init__()
        self.name = display(uri)
        self.start = start
        self._close: Callable[[], None] = lambda: None
        fetch = _fetch(uri, start, stop)
        self._close = fetch.close
        self.version = fetch.version
        if expect is not None and (
            fetch.version.etag != expect.etag or fetch.version.size not in (None, expect.size)
        ):
            self.close()
            raise DataError(
                f"the file changed since it was indexed: expected size {expect.size} and tag "
                f"{expect.etag}, found {fetch.version.size} and {fetch.version.etag}; "
                "plan the job again",
                path=self.name,
            )
        end = stop if stop is not None else fetch.version.size
        self._left = None if end is None else end - start
        self._skip = fetch.skip
        self._chunks = fetch.chunks
        self._buffer = memoryview(b"")
        self.fetched = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        """Load the next wanted bytes into the buffer; False at the end of the range."""
        while True:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                if self._left:
                    raise DataError(
                        f"truncated read: {self._left} bytes missing of the range from byte "
                        f"{self.start}",
                        path=self.name,
                    ) from None
                return False
            self.fetched += len(chunk)
            if self._skip >= len(chunk):
                self._skip -= len(chunk)
                continue
            view = memoryview(chunk)[self._skip :]
            self._skip = 0
            if self._left is not None:
                view = view[: self._left]
                self._left -= len(view)
            self._buffer = view
            self.sha256.update(view)
            return True

    def readinto(self, buffer) -> int:
        if not self._buffer and (self._left == 0 or not self._next_chunk()):
            return 0
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._close()
        super().close()


def open_range(
    uri: str, start: int = 0, stop: int | None = None, expect: Version | None = None
) -> io.BufferedReader:
    """Bytes ``[start, stop)`` of the file at ``uri``, buffered; its `RangeReader` is ``.raw``.

    ``expect``: the version the caller indexed; another one is a DataError. Errors of the store
    (missing, forbidden, unreachable, truncated) are DataErrors naming ``uri`` and the reason.
    """
    return io.BufferedReader(RangeReader(uri, start, stop, expect), CHUNK_BYTES)
