"""No process outlives `faasopt run`: Ctrl-C, SIGTERM and SIGKILL of the CLI mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

ENDLESS = {
    "spec": {
        "problem": {"data": {"synthetic": {"samples": 8000, "features": 400}}},
        "algorithm": {
            "admm": {"maxIterations": 100000, "primalTolerance": 1e-30, "dualTolerance": 1e-30}
        },
        "workers": {"count": 3},
    }
}


def _start_running_job(path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Start the CLI in its own session and wait until it iterates; return it and its children."""
    cli = subprocess.Popen(
        [sys.executable, "-m", "faasopt.cli", "run", str(path), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in cli.stderr:
        if line.startswith("iter"):
            break
    else:
        pytest.fail(f"the run never iterated (exit {cli.wait()})")
    children = psutil.Process(cli.pid).children(recursive=True)
    names = sorted(p.name() for p in children)
    assert names.count("nats-server") == 1 and len(children) == 4, names
    return cli, children


def _gone(processes: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize(
    ("how", "code"),
    [("ctrl-c", 130), ("sigint", 130), ("sigterm", 128 + signal.SIGTERM)],
)
def test_interrupted_run_stops_workers_and_nats(manifest, how, code):
    cli, children = _start_running_job(manifest(ENDLESS))
    if how == "ctrl-c":  # a terminal sends SIGINT to the whole foreground process group
        os.killpg(cli.pid, signal.SIGINT)
    else:
        cli.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
    assert cli.wait(30) == code
    rest = cli.stderr.read()
    cli.stderr.close()
    assert not _gone(children)
    assert "Traceback" not in rest, rest


def test_killed_cli_takes_its_children_along(manifest):
    cli, children = _start_running_job(manifest(ENDLESS))
    cli.kill()
    cli.wait(10)
    cli.stderr.close()
    assert not _gone(children), "workers or nats-server outlived a SIGKILLed CLI"
    time.sleep(0.1)
