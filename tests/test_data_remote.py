"""LIBSVM data a function can reach: S3 through a real S3 endpoint on loopback (moto's server),
HTTP through a real HTTP server on loopback with and without Range support. Workers read only
their blocks' bytes; a changed, corrupt, missing, forbidden or unreachable file is a DataError
that names it and says why."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import logging
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import BASE_MANIFEST, merge

import faasopt
from faasopt.data import load_blocks
from faasopt.data.ranges import CHUNK_BYTES
from faasopt.errors import DataError, SpecError
from faasopt.plan import JobPlan, plan_job
from faasopt.platforms.nats_server import free_port
from faasopt.spec import TrainingJob

HEADER = "# a header comment\n"


def _libsvm_text(rows: int = 1200, features: int = 30) -> bytes:
    rng = np.random.default_rng(11)
    w = rng.normal(size=features)
    lines = [HEADER.rstrip()]
    for _ in range(rows):
        cols = np.flatnonzero(rng.random(features) < 0.2)
        values = rng.normal(size=cols.size)
        label = 1 if values @ w[cols] + rng.normal() > 0 else -1
        pairs = " ".join(f"{j + 1}:{v:.17g}" for j, v in zip(cols, values, strict=True))
        lines.append(f"{label:+d} {pairs}")
    return ("\n".join(lines) + "\n").encode()


TEXT = _libsvm_text()
SHA256 = hashlib.sha256(TEXT).hexdigest()


def _patch(uri: str, **libsvm) -> dict:
    return {
        "spec": {
            "problem": {"l1": 0.5, "data": {"synthetic": None, "libsvm": {"uri": uri, **libsvm}}},
            "workers": {"count": 2, "blocks": 4},
        }
    }


def _plan(manifest, uri: str, **libsvm) -> JobPlan:
    return plan_job(TrainingJob.from_yaml(manifest(_patch(uri, **libsvm))))


def _reads(plan: JobPlan) -> dict[str, tuple[int, int]]:
    """Per worker: (bytes it fetched loading its blocks, as a worker does; its blocks' bytes and
    the line end before each, which a read checks)."""
    offsets = plan.source["libsvm"]["offsets"]
    out = {}
    for worker, ids in plan.assignment.items():
        blocks = load_blocks(plan.source, ids, plan.n_blocks)
        share = sum(offsets[b + 1] - offsets[b] + 1 for b in ids)
        out[worker] = (sum(b.fetched_bytes for b in blocks), share)
    return out


def _same_blocks(plan: JobPlan, local: JobPlan) -> None:
    ids = range(plan.n_blocks)
    for ours, theirs in zip(
        load_blocks(plan.source, ids, plan.n_blocks),
        load_blocks(local.source, ids, local.n_blocks),
        strict=True,
    ):
        assert (ours.A != theirs.A).nnz == 0 and np.array_equal(ours.y, theirs.y)


@pytest.fixture
def local_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.svm"
    path.write_bytes(TEXT)
    return path


# --- S3 ----------------------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch) -> Iterator:
    """A real S3 HTTP endpoint on loopback (moto's server), a bucket ``data`` holding the file."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket="data")
        client.put_object(Bucket="data", Key="train.svm", Body=TEXT)
        yield client
    finally:
        server.stop()


def test_a_job_on_s3_data_has_the_iterates_of_the_local_file(manifest, local_file, s3):
    on_s3 = faasopt.run(manifest(_patch("s3://data/train.svm"), "s3.yaml"), quiet_workers=True)
    local = faasopt.run(manifest(_patch(str(local_file)), "local.yaml"), quiet_workers=True)
    assert on_s3.converged and local.converged
    assert on_s3.report["rows"] == 1200 and on_s3.iterations == local.iterations
    assert [e["objective"] for e in on_s3.report["trace"]] == [
        e["objective"] for e in local.report["trace"]
    ]
    assert np.array_equal(on_s3.solution, local.solution)


def test_an_s3_worker_reads_only_its_blocks_bytes(manifest, local_file, s3):
    plan = _plan(manifest, "s3://data/train.svm")
    index = plan.source["libsvm"]
    assert index["size"] == len(TEXT) and index["sha256"] == SHA256
    assert index["etag"] == s3.head_object(Bucket="data", Key="train.svm")["ETag"]
    _same_blocks(plan, _plan(manifest, str(local_file)))
    for worker, (fetched, share) in _reads(plan).items():
        print(f"s3 {worker}: fetched {fetched} bytes, its blocks {share}, file {len(TEXT)}")
        assert fetched == share < 0.51 * len(TEXT)


def test_a_changed_s3_object_is_detected(manifest, s3):
    plan = _plan(manifest, "s3://data/train.svm")
    s3.put_object(Bucket="data", Key="train.svm", Body=TEXT.replace(b"+1 ", b"-1 "))  # same size
    with pytest.raises(DataError) as err:
        load_blocks(plan.source, [1], plan.n_blocks)
    assert str(err.value).startswith("s3://data/train.svm: the file changed since it was indexed")


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("s3://data/missing.svm", "s3://data/missing.svm: no such object"),
        ("s3://nobucket/train.svm", "s3://nobucket/train.svm: no such bucket"),
    ],
)
def test_a_missing_s3_object_is_a_data_error(manifest, s3, uri, reason):
    with pytest.raises(DataError) as err:
        _plan(manifest, uri)
    assert str(err.value) == reason


def test_a_forbidden_s3_object_is_a_data_error(manifest, monkeypatch):
    """moto's server does not enforce policies: botocore's Stubber answers 403 as S3 does."""
    import boto3
    from botocore.stub import Stubber

    from faasopt.data import s3_range

    client = boto3.client("s3", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error("get_object", "AccessDenied", "Access Denied", 403)
    monkeypatch.setattr(s3_range, "_current_client", lambda: client)
    with stubber, pytest.raises(DataError) as err:
        _plan(manifest, "s3://data/train.svm")
    assert str(err.value) == (
        "s3://data/train.svm: access denied: check the credentials and the bucket's policy"
    )


def test_an_unreachable_s3_endpoint_is_a_data_error(manifest, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the standard AWS configuration is honoured
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with pytest.raises(DataError) as err:
        _plan(manifest, "s3://data/train.svm")
    assert str(err.value).startswith("s3://data/train.svm: cannot reach S3: Could not connect")


def test_without_credentials_s3_says_so(manifest, s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(DataError) as err:
        _plan(manifest, "s3://data/train.svm")
    assert str(err.value) == (
        "s3://data/train.svm: no AWS credentials found (environment, profile or role)"
    )


# --- HTTP --------------------------------------------------------------------------------------


class FileServer(ThreadingHTTPServer):
    """A real HTTP/1.1 server on 127.0.0.1 serving ``files`` by path, in a thread.

    ``ranges``: answer Range requests with 206 (else the whole file, 200). ``truncate``: ``cut``
    sends half the body announced and closes; ``short`` answers a range with half of it, saying
    so in Content-Length. ``/forbidden`` answers 403. ``log`` has (path, status, bytes sent).
    """

    daemon_threads = True

    def __init__(self, ranges: bool, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _FileHandler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "http" if tls is None else "https"
        self.ranges = ranges
        self.files: dict[str, bytes] = {}
        self.truncate: str | None = None
        self.log: list[tuple[str, int, int]] = []
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def handle_error(self, request, client_address) -> None:
        """A reader that stopped early resets its connection: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}{path}"


class _FileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        body = self.server.files.get(path)
        if body is None:
            self._send(403 if path == "/forbidden" else 404, b"", {})
            return
        headers = {"ETag": f'"{hashlib.sha256(body).hexdigest()[:16]}"'}
        wanted = self.headers.get("Range") if self.server.ranges else None
        status, part = 200, body
        if self.server.ranges:
            headers["Accept-Ranges"] = "bytes"
        if wanted:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            end = min(int(last) + 1 if last else len(body), len(body))
            status, part = 206, body[int(first) : end]
            headers["Content-Range"] = f"bytes {first}-{end - 1}/{len(body)}"
        if self.server.truncate == "short" and status == 206:
            part = part[: len(part) // 2]
        self._send(status, part, headers)

    def _send(self, status: int, part: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.server.truncate == "cut":
            part = part[: len(part) // 2]
            self.close_connection = True
        with contextlib.suppress(ConnectionError):  # a reader that stopped early (no ranges)
            self.wfile.write(part)
        self.server.log.append((self.path, status, len(part)))

    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def _serving(server: FileServer) -> Iterator[FileServer]:
    server.files["/train.svm"] = TEXT
    server.thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.thread.join()


@pytest.fixture(params=[True, False], ids=["ranges", "no-ranges"])
def http(request) -> Iterator[FileServer]:
    """A real HTTP server on loopback serving the file at /train.svm, with or without ranges."""
    with _serving(FileServer(ranges=request.param)) as server:
        yield server


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[FileServer, Path]]:
    """An HTTPS server on loopback with ranges, and the self-signed certificate it proves."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "faasopt test server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    with _serving(FileServer(ranges=True, tls=tls)) as server:
        yield server, cert_file


def test_http_blocks_are_the_local_files(manifest, local_file, http, caplog):
    with caplog.at_level(logging.WARNING, logger="faasopt.data"):
        plan = _plan(manifest, http.url("/train.svm"), sha256=SHA256)
        _same_blocks(plan, _plan(manifest, str(local_file)))
    announced = [r.message for r in caplog.records if "does not announce Range" in r.message]
    ignored = [r.message for r in caplog.records if "ignores Range requests" in r.message]
    assert len(announced) == (0 if http.ranges else 1)
    assert len(ignored) == (0 if http.ranges else 4)  # each block, even 0 (after the header)
    statuses = [status for _, status, _ in http.log]
    assert statuses == [200] + [206 if http.ranges else 200] * 4


def test_an_http_worker_reads_its_share_or_up_to_its_end(manifest, http):
    plan = _plan(manifest, http.url("/train.svm"))
    offsets = plan.source["libsvm"]["offsets"]
    http.log.clear()
    reads = _reads(plan)
    for worker, (fetched, share) in reads.items():
        print(f"http ranges={http.ranges} {worker}: fetched {fetched}, its blocks {share}")
    if http.ranges:
        assert all(fetched == share for fetched, share in reads.values())
        assert sum(sent for _, _, sent in http.log) == sum(f for f, _ in reads.values())
        return
    for worker, ids in plan.assignment.items():  # each block from byte 0 to its end (or a chunk
        ends = [offsets[b + 1] for b in ids]  # more, as it came), dropping what is before it
        most = sum(min(end + CHUNK_BYTES, len(TEXT)) for end in ends)
        assert sum(ends) <= reads[worker][0] <= most


def test_https_is_verified_and_read_by_range(manifest, local_file, https, monkeypatch):
    server, certificate = https
    with pytest.raises(DataError) as err:  # the system's CAs do not know the test server
        _plan(manifest, server.url("/train.svm"))
    assert "cannot reach the server" in str(err.value) and "CERTIFICATE_VERIFY_FAILED" in str(
        err.value
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    plan = _plan(manifest, server.url("/train.svm"), sha256=SHA256)
    _same_blocks(plan, _plan(manifest, str(local_file)))
    assert all(fetched == share for fetched, share in _reads(plan).values())


@pytest.mark.parametrize("http", [True], ids=["ranges"], indirect=True)
def test_an_http_job_has_the_iterates_of_the_local_file(manifest, local_file, http):
    over_http = faasopt.run(manifest(_patch(http.url("/train.svm")), "h.yaml"), quiet_workers=True)
    local = faasopt.run(manifest(_patch(str(local_file)), "local.yaml"), quiet_workers=True)
    assert over_http.converged and np.array_equal(over_http.solution, local.solution)
    served = sum(sent for _, status, sent in http.log if status == 206)
    print(f"http job: planner read {len(TEXT)} bytes, workers {served} with ranges")
    assert served == len(TEXT) - len(HEADER) + 4  # every row once, and a line end per block


def test_a_wrong_sha256_is_a_data_error(manifest, http):
    with pytest.raises(DataError) as err:
        _plan(manifest, http.url("/train.svm"), sha256="ab" * 32)
    assert str(err.value) == f"{http.url('/train.svm')}: expected SHA-256 {'ab' * 32}, " + (
        f"the file has {SHA256}"
    )


def test_a_changed_http_file_is_detected(manifest, http):
    plan = _plan(manifest, http.url("/train.svm"))
    http.files["/train.svm"] = TEXT.replace(b"+1 ", b"-1 ")  # same size, another ETag
    with pytest.raises(DataError) as err:
        load_blocks(plan.source, [2], plan.n_blocks)
    assert str(err.value).startswith(
        f"{http.url('/train.svm')}: the file changed since it was indexed"
    )


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/missing.svm", "not found (HTTP 404)"), ("/forbidden", "access denied (HTTP 403)")],
)
def test_missing_and_forbidden_http_files(manifest, http, path, reason):
    with pytest.raises(DataError) as err:
        _plan(manifest, http.url(path) + "?X-Amz-Signature=secret")
    assert str(err.value) == f"{http.url(path)}?...: {reason}"  # the query may be a credential


def test_an_unreachable_http_server_is_a_data_error(manifest):
    url = f"http://127.0.0.1:{free_port()}/train.svm"
    with pytest.raises(DataError) as err:
        _plan(manifest, url)
    assert str(err.value).startswith(f"{url}: cannot reach the server:")
    assert "Connection refused" in str(err.value)


@pytest.mark.parametrize(
    ("http", "truncate"),
    [(True, "cut"), (False, "cut"), (True, "short")],
    ids=["ranges-cut", "no-ranges-cut", "ranges-short"],
    indirect=["http"],
)
def test_a_truncated_read_is_a_data_error(manifest, http, truncate):
    plan = _plan(manifest, http.url("/train.svm"))
    http.truncate = truncate
    with pytest.raises(DataError) as err:
        load_blocks(plan.source, [3], plan.n_blocks)
    message = "read failed: Connection broken" if truncate == "cut" else "truncated read:"
    assert str(err.value).startswith(f"{http.url('/train.svm')}: {message}")


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("s3://bucket/some/key.svm", True),
        ("https://example.org/data/train.svm?sig=x", True),
        ("http://example.org/train.svm", True),
        ("ftp://h/f", False),
        ("s3://bucket", False),
        ("https://user:pw@example.org/train.svm", False),
    ],
)
def test_the_manifest_accepts_s3_and_http_uris_only_without_credentials(uri, accepted):
    document = merge(BASE_MANIFEST, _patch(uri))
    if accepted:
        assert TrainingJob.from_dict(document).spec.problem.data.libsvm.uri == uri
        return
    with pytest.raises(SpecError) as err:
        TrainingJob.from_dict(document)
    assert str(err.value).startswith("spec.problem.data.libsvm.uri: must be")
    assert "pw" not in str(err.value)
