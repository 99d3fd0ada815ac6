"""Every example manifest runs as it is and converges."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import faasopt
from faasopt.platforms.nats_server import free_port

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "libsvm.yaml"}


@pytest.fixture
def data_of(monkeypatch):
    """Serve an example's s3:// data from a real S3 endpoint on loopback (moto's server)."""
    servers = []

    def serve(path: Path) -> None:
        libsvm = yaml.safe_load(path.read_text())["spec"]["problem"]["data"].get("libsvm", {})
        uri = libsvm.get("uri", "")
        if not uri.startswith("s3://"):
            return
        import boto3
        from moto.server import ThreadedMotoServer

        port = free_port()
        servers.append(ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False))
        servers[-1].start()
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        client = boto3.client("s3")
        client.create_bucket(Bucket=bucket)
        client.upload_file(str(path.parent / "data" / Path(key).name), bucket, key)

    yield serve
    for server in servers:
        server.stop()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_converges(path, tmp_path, data_of):
    data_of(path)
    result = faasopt.run(path, out=tmp_path, quiet_workers=True)
    assert result.converged, result.report["status"]
    assert (tmp_path / "report.json").exists() and (tmp_path / "solution.npy").exists()
    assert result.report["nonzeros"] > 0
