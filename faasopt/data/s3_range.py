"""Byte ranges of an S3 object (``s3://bucket/key``) by ranged GETs through boto3.

Credentials, region and endpoint come from the standard AWS configuration: environment, profiles,
instance or pod roles, ``AWS_ENDPOINT_URL`` for S3-compatible stores such as MinIO or Ceph (on a
cluster, a Kubernetes Secret mapped to those variables). Nothing of them is ever logged.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from faasopt.data.ranges import CHUNK_BYTES, Fetch, Version
from faasopt.errors import DataError

_REASONS = {
    "NoSuchKey": "no such object",
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied: check the credentials and the bucket's policy",
    "InvalidRange": "the object is shorter than indexed: it changed; plan the job again",
}
_STATUS_REASONS = {404: _REASONS["NoSuchKey"], 403: _REASONS["AccessDenied"]}


@functools.lru_cache(maxsize=4)
def _client(configuration: tuple[tuple[str, str], ...]):
    """One client per AWS configuration of the environment (a test may change it)."""
    del configuration  # the cache key: boto3 reads the environment itself
    return boto3.session.Session().client("s3")


def _current_client():
    return _client(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))


def _reason(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    reason = _REASONS.get(code) or _STATUS_REASONS.get(status)
    return reason or f"S3 error {code or status}: {error.get('Message', '')}".rstrip(": ")


def fetch_s3(uri: str, start: int, stop: int | None) -> Fetch:
    """A GET of the object's bytes ``[start, stop)`` (``stop=None``: to the end)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise DataError("expected s3://bucket/key", path=uri)
    request = {"Bucket": bucket, "Key": key}
    if start or stop is not None:
        request["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
    try:
        response = _current_client().get_object(**request)
    except ClientError as exc:
        raise DataError(_reason(exc), path=uri) from None
    except NoCredentialsError:
        raise DataError(
            "no AWS credentials found (environment, profile or role)", path=uri
        ) from None
    except BotoCoreError as exc:
        raise DataError(f"cannot reach S3: {exc}", path=uri) from None
    content_range = response.get("ContentRange")  # bytes first-last/total
    size = int(content_range.rpartition("/")[2]) if content_range else response["ContentLength"]
    body = response["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        except BotoCoreError as exc:
            raise DataError(f"read failed: {exc}", path=uri) from None

    return Fetch(chunks(), Version(size, response.get("ETag")), body.close)
