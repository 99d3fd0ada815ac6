"""The simulated platform's round time against local runs of the same job (issue #6).

The sim's iterates are those of a local run, bit for bit (tests/test_sim.py asserts it); its
times are predictions. This compares the predicted median round time with the measured one, for
W = 2 and 4 local worker processes, as a ratio: the issue's target is within 30 %. It is a
benchmark, not a test: this machine's 2 shared cores change the speed of local workers several-
fold from minute to minute (measured 1.3x to 3.9x the x-steps' CPU time), so the comparison is
measured and written down, never asserted.

The machine's speed at the time of the local run is an input: the sim's ``cpu_slowdown`` is the
slowest local worker's compute over the sim's at full speed (medians over rounds, the first left
out). What is compared is then the rest of the round: messages, the coordinator's queue and
reduce. The sim runs ``--repeat`` times at each speed and the medians count.

``--algorithm sgd`` compares MLLess's training instead (MA-SGD with ISP, ``benchkit.MLLESS_SGD``,
3 epochs) on the same data: rounds of one minibatch step, bound by messages rather than compute,
the regime where scale-in pays on SGD (``bench/scalein.py --algorithm sgd``).

    .venv/bin/python bench/sim_vs_local.py [--algorithm sgd] [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
from pathlib import Path

import yaml
from benchkit import MLLESS_SGD

import faasopt
from faasopt.plan import plan_job
from faasopt.sim import SimSettings, load_data, median_round_seconds, simulate
from faasopt.spec import TrainingJob

JOB = {
    "apiVersion": "faasopt.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "sim-vs-local"},
    "spec": {
        "problem": {
            "data": {"synthetic": {"samples": 60000, "features": 2000, "density": 0.005, "seed": 7}}
        },
        "workers": {"count": 4},
    },
}


def median_slowest_compute(report: dict) -> float:
    """The median over rounds (the first left out) of the slowest worker's compute."""
    return statistics.median(
        max(t["compute"] for t in entry["perWorker"].values()) for entry in report["trace"][1:]
    )


def compare(job: TrainingJob, workers: int, repeat: int) -> dict:
    """Measured and predicted median round seconds of ``job`` on ``workers`` local workers."""
    local = faasopt.run(job, workers=workers, quiet_workers=True)
    plan = plan_job(job, workers)
    data = load_data(plan)
    full_speed = [simulate(plan, data=data).report for _ in range(repeat)]
    slowdown = median_slowest_compute(local.report) / statistics.median(
        map(median_slowest_compute, full_speed)
    )
    sims = [simulate(plan, SimSettings(cpu_slowdown=slowdown), data=data) for _ in range(repeat)]
    measured = median_round_seconds(local.report)
    predicted = statistics.median(median_round_seconds(s.report) for s in sims)
    return {
        "workers": workers,
        "measuredRoundSeconds": measured,
        "predictedRoundSeconds": predicted,
        "ratio": predicted / measured,
        "withinTarget": abs(predicted / measured - 1) <= 0.30,
        "cpuSlowdown": slowdown,
        "sameIterates": [e["objective"] for e in sims[0].report["trace"]]
        == [e["objective"] for e in local.report["trace"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--algorithm", choices=("admm", "sgd"), default="admm")
    parser.add_argument("--out", help="default: bench/results/sim_vs_local[_sgd].json")
    args = parser.parse_args()
    document = JOB
    if args.algorithm == "sgd":
        sgd = {**MLLESS_SGD, "stop": {"maxEpochs": 3.0}}
        document = {**JOB, "spec": {**JOB["spec"], "algorithm": {"sgd": sgd}}}
    out = args.out or f"bench/results/sim_vs_local{'_sgd' if args.algorithm == 'sgd' else ''}.json"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.yaml"
        path.write_text(yaml.safe_dump(document))
        job = TrainingJob.from_yaml(path)
        rows = [compare(job, workers, args.repeat) for workers in (2, 4)]
    print(f"{'W':>3} {'measured s':>11} {'predicted s':>12} {'ratio':>6} {'within 30 %':>11}")
    for r in rows:
        print(
            f"{r['workers']:>3} {r['measuredRoundSeconds']:>11.4f} "
            f"{r['predictedRoundSeconds']:>12.4f} {r['ratio']:>6.2f} {r['withinTarget']!s:>11}"
        )
    figures = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadAverage": os.getloadavg(),
        "repeat": args.repeat,
        "algorithm": args.algorithm,
        "rows": rows,
    }
    Path(out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
