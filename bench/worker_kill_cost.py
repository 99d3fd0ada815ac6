"""What a worker's death costs: the same job run clean and with `kill -9` of one worker.

    .venv/bin/python bench/worker_kill_cost.py [--trials 3] [--kill-after 5]

Prints, per trial, the killed round's duration against the same round undisturbed, the
replacement's cold start, and both solve times; the iterates are the same either way (the fault
tests assert it). A benchmark, not a test: it prints and never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
from pathlib import Path

import psutil
import yaml

import faasopt
from faasopt.payload import PAYLOAD_ENV

MANIFEST = {
    "apiVersion": "faasopt.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "kill-cost"},
    "spec": {
        "problem": {
            "data": {"synthetic": {"samples": 60000, "features": 2000, "density": 0.005, "seed": 3}}
        },
        "algorithm": {"admm": {"primalTolerance": 1e-3, "dualTolerance": 1e-3}},
        "workers": {"count": 2},
    },
}


def kill(worker: str) -> None:
    """SIGKILL this process's worker process named ``worker``."""
    for child in psutil.Process().children(recursive=True):
        try:
            payload = child.environ().get(PAYLOAD_ENV)
        except psutil.Error:
            continue
        if payload and json.loads(payload)["worker"] == worker:
            os.kill(child.pid, signal.SIGKILL)


def round_seconds(result) -> list[float]:
    elapsed = [entry["elapsedSeconds"] for entry in result.report["trace"]]
    return [b - a for a, b in zip([0.0, *elapsed], elapsed, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kill-after", type=int, default=5, help="kill w1 after this round")
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "job.yaml"
    path.write_text(yaml.safe_dump(MANIFEST))
    k = args.kill_after + 1  # the round that meets the dead worker

    def on_round(report) -> None:
        if report.record.iteration == args.kill_after:
            kill("w1")

    for trial in range(args.trials):
        clean = faasopt.run(path, quiet_workers=True)
        hit = faasopt.run(path, quiet_workers=True, on_round=on_round)
        cold = [c["seconds"] for c in hit.report["coldStarts"] if c["replaces"]]
        same = [e["objective"] for e in clean.report["trace"]] == [
            e["objective"] for e in hit.report["trace"]
        ]
        print(
            f"trial {trial}: median round {statistics.median(round_seconds(clean)):.3f} s; "
            f"round {k}: {round_seconds(clean)[k]:.3f} s clean, {round_seconds(hit)[k]:.3f} s "
            f"with the kill (replacement cold start {cold[0]:.3f} s); solve "
            f"{clean.report['solveSeconds']:.2f} s vs {hit.report['solveSeconds']:.2f} s; "
            f"same objectives: {same}"
        )


if __name__ == "__main__":
    main()
