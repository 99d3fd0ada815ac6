"""Scale-in on the paper's instance: Perf/$ of `auto` (and `idle`) against `none` (seed 002, 6.2).

The paper's instance (N = 600 000, d = 10 000, density 0.001, lambda1 = 1) with W = 24 workers
of 2048 MB and B = 24 blocks, as MLLess's P = 24, on `sim` with Lambda-like parameters and Lambda
prices, run to the paper's stopping rule (or ``--tolerance``). Blocks are placement, so every
configuration computes the same iterates and reaches the same objective in the same round (checked
to 1e-9): the time to that objective is the solve time, and what a policy changes is how long the
rounds take and what the pool costs.

Perf/$ = 1 / (seconds x dollars) (seed 002, Sec. 6.2), reported twice: for the whole job as
report.json gives it (wall time, cold starts included, the whole bill), and for the solve alone
(the rounds, and what workers and always-on machines cost during them), where scale-in acts.

Configurations: `none`; `auto` with its default `model` rule and with MLLess's rule, and `idle`,
each with the paper's schedule (interval 20 s, horizon 10 s) and with the interval scaled to the
same share of the solve as MLLess's (20 s of its ~400 s LR runs: 5 %), horizon half of it (this job
solves in well under a second of virtual time); the `model` rule with one victim per decision
(``Tracker(max_victims=1)``, as MLLess evicts); "hindsight": the most idle workers evicted down to
12, 8 or 6 in one go after the round `auto` declares the knee (carried out a round later, as a
decision is), a schedule chosen knowing every round's time (a bound for post-knee scale-in, not a
policy); smaller pools from the start without a policy (not a scale-in: what choosing W before the
job would give). The bound printed last is the whole-job Perf/$ ratio if every worker-second after
the knee were free and the run took as long: a bound where a smaller pool's rounds are no faster
(ADMM on this instance, whose rounds are compute; not SGD's message-bound rounds, where fewer
workers are also faster).

``--algorithm sgd`` runs MLLess's own setting instead (seed 002, Table 1: LR by minibatch SGD
with Adam under its ISP filter, v = 0.7) on the same data and pool: MA-SGD with one local step a
round (``syncEvery: 1``), 1000 rows a block a round, stopped once the minibatch loss stays under
``--loss-threshold`` for 10 rounds (MLLess stops LR at a loss, BCE 0.58 on Criteo), or after
``--epochs`` without a threshold (LambdaML's fixed budget). Its rounds are short (a minibatch, one
sparse update), so they are bound by messages, not compute, which is MLLess's case for scale-in
(its step time grows with the pool, Sec. 4.2); how far past the knee the run goes sets what any
scale-in can save.

One run of `auto` warms the process up first and is not counted. Each configuration runs
``--repeat`` times. Within one repeat every configuration has the same cold-start draws and the
same measured CPU times for the same work (``simulate(..., cpu_seconds=...)``, paired runs;
``--unpaired`` measures afresh), so the ratios compare policies, not the moments the machine was
busy. Ratios are medians over repeats of each repeat's ratio to its own `none` run; the other
figures are medians.

    .venv/bin/python bench/scalein.py [--workers 24] [--tolerance 0.02] [--repeat 3]
                                      [--unpaired] [--out FILE]
    .venv/bin/python bench/scalein.py --algorithm sgd [--loss-threshold 0.285 | --epochs 10]
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
from itertools import pairwise  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchkit import MLLESS_SGD  # noqa: E402

from faasopt import cost, scalein  # noqa: E402
from faasopt.plan import plan_job  # noqa: E402
from faasopt.scalein import ScaleInSettings  # noqa: E402
from faasopt.scaling import paper_job  # noqa: E402
from faasopt.sim import LAMBDA, load_data, plan_job_workers, simulate  # noqa: E402
from faasopt.spec import TrainingJob  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MLLESS_INTERVAL_SHARE = 20.0 / 400.0
"""MLLess's scheduling interval as a share of its LR runs' time (20 s of about 400 s, Table 3)."""
FIXED_POOLS = (4, 6, 8, 12, 16)
"""Smaller pools from the start (no policy): what choosing W before the job could gain; not a
scale-in (nothing is evicted) and not open to `auto`, which never acts before the knee."""
HINDSIGHT_POOLS = (12, 8, 6)
"""Pools to shrink to, all at once, at the round the knee is declared: the best any post-knee
scale-in could do with perfect foresight of the round times (a bound, not a policy)."""
TARGET_PERF_PER_DOLLAR = 1.3
TARGET_TIME = 1.10


SGD_LOSS = 0.285
"""The default loss to stop at: reached in about 4 epochs, some 40 rounds after the knee (the
minibatch loss levels off near 0.275)."""


def sgd_job(
    blocks: int, loss_threshold: float | None, epochs: float | None, name: str
) -> TrainingJob:
    """The paper's instance, trained as MLLess trains LR: until the minibatch loss stays under
    ``loss_threshold`` for 10 rounds (within 40 epochs), or for ``epochs``."""
    stop = (
        {"lossThreshold": loss_threshold, "holdRounds": 10, "maxEpochs": 40.0}
        if loss_threshold is not None
        else {"maxEpochs": epochs}
    )
    paper = paper_job(blocks=blocks, name=name)
    spec = paper.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec["algorithm"] = {"sgd": {**MLLESS_SGD, "stop": stop}}
    document = {"apiVersion": paper.api_version, "kind": paper.kind, "metadata": {"name": name}}
    return TrainingJob.from_dict({**document, "spec": spec})


def solve_bill(report: dict[str, Any]) -> cost.JobCost:
    """What the solve phase cost: each worker from the solve's start to its eviction or end.

    A decision is carried out a round or two after the round it was taken on (while the next
    ran; MA-SGD's victims answer once more): the n-th eviction is the n-th drop of the trace's
    pool size, at the end of the last round the victims were in (decisions not carried out
    retired nobody)."""
    trace = report["trace"]
    drops = [a["elapsedSeconds"] for a, b in pairwise(trace) if b["workers"] < a["workers"]]
    carried_out = [d["retired"] for d in report["scaleIn"]["decisions"] if d["retired"]]
    # no drop left: evicted after the last listed round (MA's flush), billed to the end
    evicted = {
        victim: at for retired, at in zip(carried_out, drops, strict=False) for victim in retired
    }
    solve = report["solveSeconds"]
    lifetimes = {c["worker"]: evicted.get(c["worker"], solve) for c in report["coldStarts"]}
    price = cost.price_of("sim", models=report["simulation"]["settings"]["prices"])
    return cost.job_cost(price, report["simulation"]["memoryMB"], lifetimes, solve)


class Schedule(scalein.Tracker):
    """Evict the most idle workers down to ``workers`` after round ``at``, keep otherwise."""

    def __init__(self, at: int, workers: int) -> None:
        super().__init__(ScaleInSettings(policy="none"), max_victims=None)
        self.at, self.workers = at, workers

    @property
    def active(self) -> bool:
        return True

    def after_round(self, observation, spend=None, stale=False):
        self.observations.append(observation)
        n = len(observation.workers)
        action, victims = scalein.Action.KEEP, ()
        if observation.iteration == self.at and n > self.workers and not stale:
            action = scalein.Action.EVICT
            victims = tuple(scalein.idle_order(self.observations, 10)[: n - self.workers])
        decision = scalein.Decision(
            observation.iteration,
            observation.wall_seconds,
            n,
            action,
            scalein.Reason.POLICY_NONE,
            victims=victims,
        )
        self.decisions.append(decision)
        return decision


def post_knee_bound(report: dict[str, Any], knee_round: int) -> float:
    """Whole-job Perf/$ over ``report``'s (a run without scale-in) if every worker-second after
    round ``knee_round`` were free, the run as long: no post-knee scale-in that does not also
    shorten the rounds can beat it."""
    trace = report["trace"]
    after = report["solveSeconds"] - trace[knee_round]["elapsedSeconds"]
    price = cost.price_of("sim", models=report["simulation"]["settings"]["prices"])
    rate = cost.rates(price, report["simulation"]["memoryMB"]).per_worker
    free = rate * after * trace[knee_round]["workers"]
    return report["costDollars"] / (report["costDollars"] - free)


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
        "kneeDeclared": next(
            (d["iteration"] for d in report["scaleIn"]["decisions"] if d["kneeIteration"]),
            None,
        ),
        "evictionRounds": [
            [d["iteration"], len(d.get("victims") or [])]
            for d in report["scaleIn"]["decisions"]
            if d["action"] == "evict"
        ],
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
    parser.add_argument(
        "--unpaired",
        action="store_true",
        help="measure every run's CPU times afresh (default: the runs of one repeat share them)",
    )
    parser.add_argument("--algorithm", choices=("admm", "sgd"), default="admm")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--loss-threshold", type=float, help=f"sgd: stop under it ({SGD_LOSS})")
    stop.add_argument("--epochs", type=float, help="sgd: stop after these epochs")
    parser.add_argument("--out", type=Path, help="default: bench/results/scalein[_sgd].json")
    args = parser.parse_args(argv)
    if args.algorithm == "admm":
        job = paper_job(blocks=args.workers, rounds=1000, tolerance=args.tolerance, name="scalein")
    else:
        threshold = args.loss_threshold if args.loss_threshold is not None else SGD_LOSS
        threshold = None if args.epochs is not None else threshold
        job = sgd_job(args.workers, threshold, args.epochs, name="scalein")
    out = args.out or RESULTS / ("scalein.json" if args.algorithm == "admm" else "scalein_sgd.json")
    plan = plan_job(job)
    data = load_data(plan)
    runs: dict[str, list[dict[str, Any]]] = {}
    bounds: list[float] = []
    policies: dict[str, ScaleInSettings] = {}
    # a run first, not counted: a process's first run pays one-time costs (lazy imports, the
    # first touch of the data, the policy's first fits) that would land on repeat 1's clock
    simulate(plan, LAMBDA, ScaleInSettings(policy="auto"), data=data, cpu_seconds={})
    for repeat in range(args.repeat):
        sim = replace(LAMBDA, seed=repeat)  # the same cold starts for every policy in a repeat
        shared: dict | None = None if args.unpaired else {}  # and the same CPU times

        def run(settings=None, *, workers=None, tracker=None, _sim=sim, _shared=shared):
            target = plan if workers is None else plan_job_workers(plan, workers)
            return simulate(
                target, _sim, settings, data=data, cpu_seconds=_shared, tracker=tracker
            ).report

        baseline = run()
        runs.setdefault("none", []).append(summary(baseline))
        if not policies:  # the schedule, scaled to this job from the first repeat's solve time
            interval = MLLESS_INTERVAL_SHARE * baseline["solveSeconds"]
            scaled = {"interval_seconds": interval, "delta_seconds": interval / 2}
            ms = f"{interval * 1e3:.0f} ms"
            policies = {
                "auto (model; 20 s)": ScaleInSettings(policy="auto"),
                f"auto (model; {ms})": ScaleInSettings(policy="auto", **scaled),
                "auto (MLLess; 20 s)": ScaleInSettings(policy="auto", rule="mlless"),
                f"auto (MLLess; {ms})": ScaleInSettings(policy="auto", rule="mlless", **scaled),
                "idle (20 s)": ScaleInSettings(policy="idle"),
                f"idle ({ms})": ScaleInSettings(policy="idle", **scaled),
            }
        for name, settings in policies.items():
            runs.setdefault(name, []).append(summary(run(settings)))
        for name in list(policies)[:2]:  # the model rule one victim at a time, as MLLess
            one = scalein.Tracker(policies[name], max_victims=1, ahead=1)
            runs.setdefault(f"{name}, 1 victim", []).append(summary(run(tracker=one)))
        knee = runs["auto (model; 20 s)"][-1]["kneeDeclared"]
        if knee is not None:
            bounds.append(post_knee_bound(baseline, knee))
            for workers in HINDSIGHT_POOLS:
                report = run(tracker=Schedule(knee, workers))
                name = f"hindsight: {args.workers} > {workers} at the knee"
                runs.setdefault(name, []).append(summary(report))
        for workers in FIXED_POOLS:
            if workers < args.workers:
                report = run(workers=workers)
                runs.setdefault(f"none, W = {workers} from the start", []).append(summary(report))
    results = {name: medians(rs) for name, rs in runs.items()}
    none = results["none"]
    print(
        f"{args.algorithm}, W = B = {args.workers}, {none['iterations']} rounds, "
        f"objective {none['objective']:.6f}, "
        f"medians of {args.repeat} runs ({'unpaired' if args.unpaired else 'paired'} CPU times)"
    )
    print(
        f"{'configuration':36} {'evict':>5} {'W':>7} {'wall s':>7} {'solve s':>7} {'$':>9} "
        f"{'Perf/$':>7} {'ratio':>6} {'solve Perf/$':>12} {'ratio':>6} {'time':>6}"
    )
    for name, r in results.items():
        paired = zip(runs[name], runs["none"], strict=True)
        ratios = [
            (
                run["perfPerDollar"] / base["perfPerDollar"],
                run["solvePerfPerDollar"] / base["solvePerfPerDollar"],
                run["solveSeconds"] / base["solveSeconds"],
            )
            for run, base in paired
        ]
        r["perfPerDollarRatio"] = statistics.median(x[0] for x in ratios)
        r["solvePerfPerDollarRatio"] = statistics.median(x[1] for x in ratios)
        r["timeRatio"] = statistics.median(x[2] for x in ratios)
        r["ratiosByRepeat"] = [
            {"perfPerDollar": a, "solvePerfPerDollar": b, "time": c} for a, b, c in ratios
        ]
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
    bound = statistics.median(bounds) if bounds else None
    if bound is not None:
        print(
            f"bound on the whole-job Perf/$ ratio of any scale-in after the knee (round "
            f"{none.get('kneeDeclared') or results['auto (model; 20 s)']['kneeDeclared']}): "
            f"{bound:.2f} (every worker-second after it free, rounds no faster)"
        )
    print(
        "ratios: medians over repeats of each repeat's ratio to its own none run; "
        f"targets: Perf/$ ratio >= {TARGET_PERF_PER_DOLLAR}, time ratio <= {TARGET_TIME}"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "workers": args.workers,
                "repeat": args.repeat,
                "paired": not args.unpaired,
                "tolerance": args.tolerance if args.algorithm == "admm" else None,
                "blocks": plan.n_blocks,
                "memoryMB": plan.memory_mb,
                "algorithm": job.spec.algorithm.model_dump(
                    mode="json", by_alias=True, exclude_none=True
                ),
                "sim": asdict(LAMBDA),
                "policies": {n: asdict(s) for n, s in policies.items()},
                "fixedPools": [w for w in FIXED_POOLS if w < args.workers],
                "hindsightPools": list(HINDSIGHT_POOLS),
                "postKneeBound": bound,
                "postKneeBoundByRepeat": bounds,
                "targets": {"perfPerDollarRatio": TARGET_PERF_PER_DOLLAR, "timeRatio": TARGET_TIME},
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
