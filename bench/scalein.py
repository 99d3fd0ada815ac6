"""Scale-in on the paper's instance: Perf/$ of `auto` (and `idle`) against `none` (seed 002, 6.2).

The paper's instance (N = 600 000, d = 10 000, density 0.001, lambda1 = 1) with W = 24 workers
of 2048 MB and B = 24 blocks, as MLLess's P = 24, on `sim` with Lambda-like parameters and Lambda
prices, run to the paper's stopping rule. Blocks are placement, so every policy computes the same
iterates and reaches the same objective in the same round: the time to that objective is the
solve time, and what a policy changes is how long the rounds take and what the pool costs.

Perf/$ = 1 / (seconds x dollars) (seed 002, Sec. 6.2), reported twice: for the whole job as
report.json gives it (wall time, cold starts included, the whole bill), and for the solve alone
(the rounds, and what workers and always-on machines cost during them), where scale-in acts.
MLLess's schedule (interval 20 s, horizon 10 s) was made for jobs of several minutes; this job
solves in well under a second of virtual time, so the policies also run with the interval scaled
to the same share of the solve as MLLess's (20 s of its ~400 s LR runs: 5 %), horizon half of it.
Smaller pools from the start, without a policy, show what choosing W early could gain. Each
configuration runs ``--repeat`` times (the x-steps' measured CPU time varies from run to run on a
shared machine), with the same cold-start draws for every configuration of one repeat; the
figures are medians.

    .venv/bin/python bench/scalein.py [--workers 24] [--tolerance 0.02] [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread, before numpy loads, as the workers run

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from faasopt import cost  # noqa: E402
from faasopt.plan import plan_job  # noqa: E402
from faasopt.scalein import ScaleInSettings  # noqa: E402
from faasopt.scaling import paper_job  # noqa: E402
from faasopt.sim import LAMBDA, load_data, plan_job_workers, simulate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MLLESS_INTERVAL_SHARE = 20.0 / 400.0
"""MLLess's scheduling interval as a share of its LR runs' time (20 s of about 400 s, Table 3)."""
FIXED_POOLS = (4, 6, 8, 12, 16)
"""Smaller pools from the start (no policy): the Perf/$ a policy could reach by choosing W early,
as DESIGN.md's model-based policy would."""
TARGET_PERF_PER_DOLLAR = 1.3
TARGET_TIME = 1.10


def solve_bill(report: dict[str, Any]) -> cost.JobCost:
    """What the solve phase cost: each worker from the solve's start to its eviction or end."""
    evicted = {d["victim"]: d["wallSeconds"] for d in report["scaleIn"]["decisions"] if d["victim"]}
    solve = report["solveSeconds"]
    lifetimes = {c["worker"]: evicted.get(c["worker"], solve) for c in report["coldStarts"]}
    price = cost.price_of("sim", models=report["simulation"]["settings"]["prices"])
    return cost.job_cost(price, report["simulation"]["memoryMB"], lifetimes, solve)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    bill = solve_bill(report)
    workers = [e["workers"] for e in report["trace"]]
    return {
        "iterations": report["iterations"],
        "objective": report["objective"],
        "converged": report["converged"],
        "wallSeconds": report["wallSeconds"],
        "solveSeconds": report["solveSeconds"],
        "costDollars": report["costDollars"],
        "perfPerDollar": report["perfPerDollar"],
        "solveDollars": bill.total,
        "solvePerfPerDollar": bill.perf_per_dollar,
        "evictions": report["scaleIn"]["evictions"],
        "workersFirstLast": [workers[0], workers[-1]],
        "workersTrace": workers,
        "kneeIteration": next(
            (d["kneeIteration"] for d in report["scaleIn"]["decisions"] if d["kneeIteration"]),
            None,
        ),
    }


MEDIAN_FIELDS = (
    "wallSeconds",
    "solveSeconds",
    "costDollars",
    "perfPerDollar",
    "solveDollars",
    "solvePerfPerDollar",
)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of ``runs`` (repeats of one configuration): medians of the timed and costed
    ones; the rest (iterates, evictions, pool sizes) from the run of median solve Perf/$."""
    middle = sorted(runs, key=lambda r: r["solvePerfPerDollar"])[len(runs) // 2]
    return {
        **middle,
        **{key: statistics.median(r[key] for r in runs) for key in MEDIAN_FIELDS},
        "repeats": [{key: r[key] for key in (*MEDIAN_FIELDS, "evictions")} for r in runs],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=24, help="W = B")
    parser.add_argument(
        "--tolerance", type=float, default=0.02, help="eps_r = eps_s (the paper's: 0.02)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration; medians")
    parser.add_argument("--out", type=Path, default=RESULTS / "scalein.json")
    args = parser.parse_args(argv)
    job = paper_job(blocks=args.workers, rounds=1000, tolerance=args.tolerance, name="scalein")
    plan = plan_job(job)
    data = load_data(plan)
    baseline = simulate(plan, LAMBDA, data=data).report
    interval = MLLESS_INTERVAL_SHARE * baseline["solveSeconds"]
    scaled = {"interval_seconds": interval, "delta_seconds": interval / 2}
    policies = {
        "auto (MLLess schedule: 20 s / 10 s)": ScaleInSettings(policy="auto"),
        f"auto (interval {interval * 1e3:.0f} ms)": ScaleInSettings(policy="auto", **scaled),
        "idle (20 s)": ScaleInSettings(policy="idle"),
        f"idle (interval {interval * 1e3:.0f} ms)": ScaleInSettings(policy="idle", **scaled),
    }
    runs: dict[str, list[dict[str, Any]]] = {"none": [summary(baseline)]}
    for repeat in range(args.repeat):
        sim = replace(LAMBDA, seed=repeat)  # the same cold starts for every policy in a repeat
        if repeat:
            runs["none"].append(summary(simulate(plan, sim, data=data).report))
        for name, settings in policies.items():
            runs.setdefault(name, []).append(
                summary(simulate(plan, sim, settings, data=data).report)
            )
        for workers in FIXED_POOLS:
            if workers < args.workers:
                report = simulate(plan_job_workers(plan, workers), sim, data=data).report
                runs.setdefault(f"none, W = {workers} from the start", []).append(summary(report))
    results = {name: medians(rs) for name, rs in runs.items()}
    none = results["none"]
    print(
        f"W = B = {args.workers}, {none['iterations']} rounds, objective {none['objective']:.6f}, "
        f"medians of {args.repeat} runs"
    )
    print(
        f"{'policy':36} {'evict':>5} {'W':>7} {'wall s':>7} {'solve s':>7} {'$':>9} "
        f"{'Perf/$':>7} {'ratio':>6} {'solve Perf/$':>12} {'ratio':>6} {'time':>6}"
    )
    for name, r in results.items():
        r["perfPerDollarRatio"] = r["perfPerDollar"] / none["perfPerDollar"]
        r["solvePerfPerDollarRatio"] = r["solvePerfPerDollar"] / none["solvePerfPerDollar"]
        r["timeRatio"] = r["solveSeconds"] / none["solveSeconds"]
        r["sameObjective"] = all(
            abs(run["objective"] - none["objective"]) <= 1e-9 * abs(none["objective"])
            for run in runs[name]
        )
        first, last = r["workersFirstLast"]
        print(
            f"{name:36} {r['evictions']:5d} {first:3d}>{last:<3d} {r['wallSeconds']:7.3f} "
            f"{r['solveSeconds']:7.3f} {r['costDollars']:9.6f} {r['perfPerDollar']:7.1f} "
            f"{r['perfPerDollarRatio']:6.2f} {r['solvePerfPerDollar']:12.1f} "
            f"{r['solvePerfPerDollarRatio']:6.2f} {r['timeRatio']:6.2f}"
        )
    print(f"targets: Perf/$ ratio >= {TARGET_PERF_PER_DOLLAR}, time ratio <= {TARGET_TIME}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "workers": args.workers,
                "repeat": args.repeat,
                "tolerance": args.tolerance,
                "blocks": plan.n_blocks,
                "memoryMB": plan.memory_mb,
                "admm": job.spec.algorithm.admm.model_dump(mode="json", by_alias=True),
                "sim": asdict(LAMBDA),
                "policies": {n: asdict(s) for n, s in policies.items()},
                "fixedPools": [w for w in FIXED_POOLS if w < args.workers],
                "targets": {"perfPerDollarRatio": TARGET_PERF_PER_DOLLAR, "timeRatio": TARGET_TIME},
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
