"""A killed `faasopt run` resumes from its last checkpoint and ends where an uninterrupted run
ends; a corrupt or foreign checkpoint is refused with a clear error."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import faasopt
from faasopt import checkpoint
from faasopt.cli import app
from faasopt.nats_client import connect, disconnect
from faasopt.platforms.nats_server import NatsServer, free_port

LONG = {
    "spec": {
        "problem": {"data": {"synthetic": {"samples": 4000, "features": 150, "density": 0.04}}},
        "algorithm": {
            "admm": {"primalTolerance": 1e-8, "dualTolerance": 1e-8, "maxIterations": 400}
        },
        "workers": {"count": 2},
    }
}


def _kill_after(path, out, iteration: int, *options: str) -> None:
    """Run the CLI with --out, SIGKILL it once it printed round ``iteration``."""
    cli = subprocess.Popen(
        [sys.executable, "-m", "faasopt.cli", "run", str(path), "--out", str(out), "--no-plots",
         "--no-progress", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    for line in cli.stderr:
        if line.startswith(f"iter {iteration:4d}"):
            cli.send_signal(signal.SIGKILL)
            break
    cli.wait(30)
    cli.stderr.close()
    assert cli.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def test_killed_run_resumes_to_the_same_final_iterate(manifest, tmp_path):
    path = manifest(LONG)
    whole = faasopt.run(path, quiet_workers=True)
    assert whole.converged and whole.iterations > 40

    out = tmp_path / "run"
    _kill_after(path, out, 33)
    resumed = faasopt.run(path, out=out, resume=True, quiet_workers=True)

    assert resumed.converged and resumed.iterations == whole.iterations
    assert np.array_equal(resumed.solution, whole.solution)
    trace = [e["objective"] for e in resumed.report["trace"]]
    assert trace == [e["objective"] for e in whole.report["trace"]]


def _store_garbage(out, job: str, data: bytes) -> None:
    async def put():
        with NatsServer(jetstream_dir=out / "nats") as server:
            nc = await connect(server.url, "test")
            try:
                await checkpoint.JetStreamStore(nc).save(checkpoint.key(job), data)
            finally:
                await disconnect(nc)

    asyncio.run(put())


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda data: data[:-8] + b"\x00" * 8, "fail their checksum"),
        (lambda data: b"not a checkpoint at all", "corrupt"),
        (lambda data: data.replace(b"default/test", b"default/othr"), "belongs to job"),
    ],
    ids=["flipped-bytes", "garbage", "foreign-job"],
)
def test_a_bad_checkpoint_is_refused(manifest, tmp_path, tamper, message):
    path = manifest(LONG)
    out = tmp_path / "run"
    _kill_after(path, out, 15)

    async def read():
        with NatsServer(jetstream_dir=out / "nats") as server:
            nc = await connect(server.url, "test")
            try:
                return await checkpoint.JetStreamStore(nc).load("default.test")
            finally:
                await disconnect(nc)

    data = asyncio.run(read())
    assert data is not None
    _store_garbage(out, "default/test", tamper(data))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--resume"])
    assert result.exit_code == 2
    assert message in result.output


def test_a_checkpoint_of_another_problem_is_refused(manifest, tmp_path):
    out = tmp_path / "run"
    _kill_after(manifest(LONG), out, 15)
    changed = manifest({**LONG, "spec": {**LONG["spec"], "problem": {"l1": 2.0}}}, "b.yaml")
    result = CliRunner().invoke(app, ["run", str(changed), "--out", str(out), "--resume"])
    assert result.exit_code == 2
    assert "for another problem" in result.output and "without --resume" in result.output


def test_resume_without_a_checkpoint_or_without_out(manifest, tmp_path):
    path = manifest(LONG)
    nothing = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path), "--resume"])
    assert nothing.exit_code == 2 and "no checkpoint of default/test" in nothing.output
    no_out = CliRunner().invoke(app, ["run", str(path), "--resume"])
    assert no_out.exit_code == 2 and "needs --out or --checkpoint-store" in no_out.output


@pytest.fixture
def s3(monkeypatch):
    """A real S3 HTTP endpoint on loopback (moto's server) with an empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket="checkpoints")
    try:
        yield boto3.client("s3")
    finally:
        server.stop()


def test_checkpoints_in_s3_resume_a_killed_run(manifest, tmp_path, s3):
    path = manifest(LONG)
    whole = faasopt.run(path, quiet_workers=True)
    store = "s3://checkpoints/runs/"
    _kill_after(path, tmp_path / "first", 25, "--checkpoint-store", store)
    saved = s3.list_objects_v2(Bucket="checkpoints", Prefix="runs/")["Contents"]
    assert [o["Key"] for o in saved] == ["runs/default.test"]

    resumed = faasopt.run(path, checkpoint_store=store, resume=True, quiet_workers=True)
    assert resumed.converged and np.array_equal(resumed.solution, whole.solution)
    assert resumed.iterations == whole.iterations

    s3.put_object(Bucket="checkpoints", Key="runs/default.test", Body=b"scribbles")
    refused = CliRunner().invoke(app, ["run", str(path), "--checkpoint-store", store, "--resume"])
    assert refused.exit_code == 2 and "corrupt" in refused.output


@pytest.mark.parametrize(
    ("algorithm", "problem"),
    [
        ({"sgd": {"optimizer": {"method": "adam", "learningRate": 0.05}, "batchSize": 32,
                  "stop": {"maxEpochs": 3.0}}}, {}),
        ({"kmeans": {"tolerance": 0.0}},
         {"loss": "kmeans", "l1": None, "kmeans": {"k": 6},
          "data": {"synthetic": None, "blobs": {"samples": 6000, "features": 8, "centers": 6,
                                                "spread": 3.0, "seed": 3}}}),
    ],
    ids=["GA-SGD", "k-means"],
)  # fmt: skip
def test_other_algorithms_resume_to_the_same_model(manifest, tmp_path, algorithm, problem):
    spec = {**LONG["spec"], "algorithm": algorithm}
    path = manifest({"spec": {**spec, "problem": {**LONG["spec"]["problem"], **problem}}})
    whole = faasopt.run(path, quiet_workers=True)
    assert whole.iterations > 20

    out = tmp_path / "run"
    _kill_after(path, out, 18, "--workers", "2")
    ran = []
    resumed = faasopt.run(path, out=out, resume=True, quiet_workers=True, on_round=ran.append)
    assert 0 < len(ran) < whole.iterations  # from a checkpoint, not from the start
    assert resumed.report["status"] == whole.report["status"]
    assert np.array_equal(resumed.solution, whole.solution)
    trace = [e["objective"] for e in resumed.report["trace"]]
    assert trace == [e["objective"] for e in whole.report["trace"]]
