"""The paper's scaling experiment (seed 001, Sec. IV) on the simulated and the local platform.

One job, the same B blocks for every worker count W, so every run computes the same iterates and
the same total work: what changes with W is only how the work is spread and what the spreading
costs. Per W it measures what Figs. 4, 5 and 9 show:

- relative speedup and efficiency against a base count (the paper's W = 4), from the solve time
  (the ADMM iterations, cold starts excluded): S = t_base / t_W, E = S / (W / W_base);
- utilization: each worker's compute and idle time per iteration (averaged over iterations, then
  over workers, with the spread among workers as error bars);
- responsiveness: per worker, the fraction of iterations it was among the slowest 10 %.

:func:`run_scaling` computes; :func:`scaling_figures` draws; :func:`bench_scaling` runs the whole
experiment, prints its table and writes JSON and PNGs (``faasopt bench scaling`` and
``bench/scaling.py`` are its doors).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

import faasopt
from faasopt.plan import JobPlan, plan_job
from faasopt.sim import LAMBDA, SimSettings, load_data, plan_job_workers, simulate
from faasopt.spec import TrainingJob

PAPER = {"baseWorkers": 4, "efficiencyAt64": 0.74, "speedupAt256": 17.0, "efficiencyAt256": 0.26}
"""Seed 001, Sec. IV: relative to W = 4, 74 % efficiency at W = 64 and a 17x speedup (26 %) at
W = 256."""
PAPER_ROUNDS = 23
"""The paper's runs converged within 23 iterations at every W."""
PAPER_ADMM = {
    "penalty": "paper",
    "relaxation": 1.0,
    "localSolver": {"method": "lbfgs", "toleranceSchedule": "fixed", "gradientTolerance": 0.01},
}
"""The paper's ADMM (seed 001, Sec. III) with the project's L-BFGS x-step, pinned so that the
spec's defaults (the fastest measured configuration) do not change what the benches measure."""


COUNTS = (4, 8, 16, 32, 64, 128, 256)
"""The paper's worker counts (seed 001, Fig. 4)."""
QUICK = {"blocks": 64, "rounds": 10, "samples": 60_000, "features": 2_000}
"""``--quick``: a smaller instance (:func:`paper_job`'s arguments), for W up to 64."""
QUICK_COUNTS = (4, 8, 16, 32, 64)
LOCAL_COUNTS = (2, 4)
"""Worker counts this 2-core machine runs as real local processes."""
COMPILED = {"message_overhead_seconds": 1e-6, "intake_bandwidth": 8e9}
"""Messages taken in 10x faster than by nats-py, by the coordinator and the workers alike (the
paper's C++ scheduler with ZMQ and several master threads)."""
VARIANTS = {
    "fista-like compute (cpu_slowdown 3.3)": replace(LAMBDA, cpu_slowdown=3.3),
    "compiled messaging (10x faster intake)": replace(LAMBDA, **COMPILED),
    "both": replace(LAMBDA, cpu_slowdown=3.3, **COMPILED),
}
"""What drives the gap to the paper: x-steps as slow as the paper's FISTA (DESIGN.md: FISTA takes
3-3.6x the time of L-BFGS), and messages taken in 10x faster."""
VARIANT_COUNTS = (4, 64, 256)


def paper_job(
    blocks: int = 256,
    rounds: int = PAPER_ROUNDS,
    samples: int = 600_000,
    features: int = 10_000,
    density: float = 0.001,
    memory_mb: int = 2048,
    tolerance: float = 0.02,
    name: str = "scaling",
) -> TrainingJob:
    """The paper's instance (lambda1 = 1, seed 1) and ADMM (:data:`PAPER_ADMM`) in B blocks,
    for at most ``rounds`` rounds or until both residuals are under ``tolerance`` (the paper's
    rule and value).

    For the scaling study the rounds are what ends the run, so every W does the same work: the
    paper's rule sums the primal residual over blocks, and with 256 blocks it is not met within
    100 rounds.
    """
    return TrainingJob.from_dict(
        {
            "apiVersion": "faasopt.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "problem": {
                    "l1": 1.0,
                    "data": {
                        "synthetic": {
                            "samples": samples,
                            "features": features,
                            "density": density,
                            "seed": 1,
                        }
                    },
                },
                "algorithm": {
                    "admm": {
                        **PAPER_ADMM,
                        "maxIterations": rounds,
                        "primalTolerance": tolerance,
                        "dualTolerance": tolerance,
                    }
                },
                "workers": {"count": blocks, "blocks": blocks, "memoryMB": memory_mb},
            },
        }
    )


@dataclass(frozen=True)
class ScalingPoint:
    """One run at one worker count; seconds."""

    platform: str
    workers: int
    rounds: int
    solve_seconds: float
    wall_seconds: float
    compute_per_round: float
    """Each worker's mean compute per round, averaged over workers (Fig. 5)."""
    compute_spread: float
    """Standard deviation of the workers' mean compute per round."""
    idle_per_round: float
    idle_spread: float
    communication_per_round: float
    cold_start_median: float | None
    cold_start_max: float | None
    cost_dollars: float | None
    responsiveness: dict[str, float]
    """Per worker: the fraction of rounds it was among the slowest 10 % (Fig. 9)."""
    speedup: float | None = None
    """Relative to the base worker count on the same platform."""
    efficiency: float | None = None

    @classmethod
    def of_report(cls, report: dict[str, Any]) -> ScalingPoint:
        means = {kind: _per_worker_means(report, kind) for kind in ("compute", "idle")}
        communication = _per_worker_means(report, "communication")
        cold = [c["seconds"] for c in report["coldStarts"] if c["seconds"] is not None]
        return cls(
            platform=report["platform"],
            workers=report["workers"],
            rounds=report["iterations"],
            solve_seconds=report["solveSeconds"],
            wall_seconds=report["wallSeconds"],
            compute_per_round=statistics.fmean(means["compute"]),
            compute_spread=statistics.pstdev(means["compute"]),
            idle_per_round=statistics.fmean(means["idle"]),
            idle_spread=statistics.pstdev(means["idle"]),
            communication_per_round=statistics.fmean(communication),
            cold_start_median=statistics.median(cold) if cold else None,
            cold_start_max=max(cold) if cold else None,
            cost_dollars=report.get("costDollars"),
            responsiveness=report["responsiveness"],
        )


def _per_worker_means(report: dict[str, Any], kind: str) -> list[float]:
    """Each worker's mean of ``kind`` seconds over the rounds it took part in."""
    values: dict[str, list[float]] = {}
    for entry in report["trace"]:
        for name, timing in entry["perWorker"].items():
            values.setdefault(name, []).append(timing[kind])
    return [statistics.fmean(v) for v in values.values()]


def relative(points: Sequence[ScalingPoint], base_workers: int) -> list[ScalingPoint]:
    """``points`` with speedup and efficiency against the base count of their platform
    (S = t_base / t_W, E = S / (W / W_base), seed 001 Sec. II-B); None without a base run."""
    base = {p.platform: p for p in points if p.workers == base_workers}
    out = []
    for p in points:
        b = base.get(p.platform)
        if b is None:
            out.append(p)
            continue
        speedup = b.solve_seconds / p.solve_seconds
        efficiency = speedup / (p.workers / base_workers)
        out.append(ScalingPoint(**{**asdict(p), "speedup": speedup, "efficiency": efficiency}))
    return out


def run_scaling(
    job: TrainingJob,
    worker_counts: Sequence[int],
    settings: SimSettings = LAMBDA,
    local_counts: Sequence[int] = (),
    base_workers: int = PAPER["baseWorkers"],
    on_point: Callable[[ScalingPoint], None] | None = None,
) -> list[ScalingPoint]:
    """Run ``job`` on ``sim`` at each of ``worker_counts`` and on ``local`` at ``local_counts``.

    The blocks are loaded once and shared by the simulated runs. Returns the points, simulated
    first, with speedup and efficiency against ``base_workers`` on each platform.
    """
    plan: JobPlan = plan_job(job)
    data = load_data(plan)
    points = []
    for workers in worker_counts:
        report = simulate(plan_job_workers(plan, workers), settings, data=data).report
        points.append(ScalingPoint.of_report(report))
        if on_point is not None:
            on_point(points[-1])
    for workers in local_counts:
        report = faasopt.run(job, workers=workers, quiet_workers=True).report
        points.append(ScalingPoint.of_report(report))
        if on_point is not None:
            on_point(points[-1])
    return relative(points, base_workers)


def scaling_figures(
    points: Sequence[ScalingPoint], responsiveness_at: Sequence[int] = (64, 256)
) -> dict[str, Figure]:
    """Fig. 4 (speedup and efficiency against W), Fig. 5 (idle and compute per iteration
    against W) and Fig. 9 (histograms of responsiveness) as matplotlib Figures by name."""
    platforms = sorted({p.platform for p in points})
    fig4 = Figure(figsize=(10, 4), layout="constrained")
    speed_ax, eff_ax = fig4.subplots(1, 2)
    fig5 = Figure(figsize=(7, 4), layout="constrained")
    util_ax = fig5.add_subplot()
    for i, platform in enumerate(platforms):
        ps = sorted((p for p in points if p.platform == platform), key=lambda p: p.workers)
        w = [p.workers for p in ps]
        rated = [p for p in ps if p.speedup is not None]
        speed_ax.plot([p.workers for p in rated], [p.speedup for p in rated], "o-", label=platform)
        eff_ax.plot([p.workers for p in rated], [p.efficiency for p in rated], "o-", label=platform)
        style = "-" if i == 0 else "--"
        util_ax.errorbar(
            w,
            [p.compute_per_round for p in ps],
            yerr=[p.compute_spread for p in ps],
            fmt="o" + style,
            color="C0",
            capsize=3,
            label=f"compute ({platform})",
        )
        util_ax.errorbar(
            w,
            [p.idle_per_round for p in ps],
            yerr=[p.idle_spread for p in ps],
            fmt="s" + style,
            color="C1",
            capsize=3,
            label=f"idle ({platform})",
        )
    speed_ax.plot([4, 256], [1, 64], ":", color="grey", label="ideal")
    speed_ax.plot([256], [PAPER["speedupAt256"]], "k*", markersize=10, label="paper")
    eff_ax.plot([64, 256], [PAPER["efficiencyAt64"], PAPER["efficiencyAt256"]], "k*", ms=10)
    for ax, what in ((speed_ax, "relative speedup"), (eff_ax, "efficiency")):
        ax.set(xscale="log", xlabel="workers W", ylabel=what, title=f"{what} vs W = 4 (Fig. 4)")
        ax.set_xscale("log", base=2)
        ax.legend()
    speed_ax.set_yscale("log", base=2)
    util_ax.set(xlabel="workers W", ylabel="seconds per iteration", yscale="log")
    util_ax.set_xscale("log", base=2)
    util_ax.set_title("Idle and compute per iteration (Fig. 5)")
    util_ax.legend()

    chosen = [p for p in points if p.platform == "sim" and p.workers in responsiveness_at]
    fig9 = Figure(figsize=(5 * max(len(chosen), 1), 4), layout="constrained")
    for ax, p in zip(np.atleast_1d(fig9.subplots(1, max(len(chosen), 1))), chosen, strict=False):
        ax.hist(list(p.responsiveness.values()), bins=np.linspace(0, 1, 21), color="C2")
        ax.set(
            xlabel="fraction of iterations among the slowest 10 %",
            ylabel="workers",
            title=f"Responsiveness, W = {p.workers} (Fig. 9)",
        )
    return {"speedup_efficiency": fig4, "utilization": fig5, "responsiveness": fig9}


def bench_name(quick: bool) -> str:
    """The results' file stem: ``scaling`` or ``scaling_quick``."""
    return "scaling_quick" if quick else "scaling"


def bench_scaling(
    out: Path,
    *,
    quick: bool = False,
    local_counts: Sequence[int] | None = None,
    variants: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The paper's scaling experiment: print its table with ``echo``, write ``out`` (JSON) and
    the figures beside it (``<stem>_<figure>.png``); return what was written.

    The paper's instance on ``sim`` with :data:`~faasopt.sim.LAMBDA` at :data:`COUNTS` and on
    ``local`` at ``local_counts`` (default :data:`LOCAL_COUNTS`); with ``quick`` the
    :data:`QUICK` instance at :data:`QUICK_COUNTS`. ``variants`` (not with ``quick``) adds the
    runs of
    :data:`VARIANTS` at :data:`VARIANT_COUNTS`.
    """
    job = paper_job(**QUICK, name="scaling-quick") if quick else paper_job()
    counts = QUICK_COUNTS if quick else COUNTS
    echo(
        f"{'platform':8} {'W':>4} {'solve s':>8} {'compute/it':>10} {'idle/it':>9} "
        f"{'comm/it':>9} {'cold p50':>8} {'$':>9}"
    )

    def show(p: ScalingPoint) -> None:
        echo(
            f"{p.platform:8} {p.workers:4d} {p.solve_seconds:8.3f} "
            f"{p.compute_per_round:10.4f} {p.idle_per_round:9.4f} "
            f"{p.communication_per_round:9.4f} {p.cold_start_median or 0:8.2f} "
            f"{p.cost_dollars or 0:9.5f}"
        )

    started = time.perf_counter()
    local_counts = LOCAL_COUNTS if local_counts is None else local_counts
    points = run_scaling(job, counts, LAMBDA, local_counts, on_point=show)
    seconds = time.perf_counter() - started
    base = PAPER["baseWorkers"]
    echo(f"\nrelative to W = {base} on the same platform (S = t{base} / tW, E = S / (W / {base})):")
    for p in points:
        if p.speedup is not None:
            echo(
                f"  {p.platform:6} W = {p.workers:3d}: S = {p.speedup:6.2f}, "
                f"E = {p.efficiency:6.1%}, idle/compute = "
                f"{p.idle_per_round / p.compute_per_round:5.2f}"
            )
    by_w = {p.workers: p for p in points if p.platform == "sim"}
    comparison = {
        "efficiencyAt64": by_w[64].efficiency if 64 in by_w else None,
        "speedupAt256": by_w[256].speedup if 256 in by_w else None,
        "efficiencyAt256": by_w[256].efficiency if 256 in by_w else None,
        "paper": PAPER,
    }
    echo(f"\nsim vs the paper: {json.dumps(comparison)}")
    variant_points = {}
    if variants and not quick:
        for label, settings in VARIANTS.items():
            ps = run_scaling(job, VARIANT_COUNTS, settings)
            variant_points[label] = {"sim": asdict(settings), "points": [asdict(p) for p in ps]}
            echo(
                f"{label}: "
                + ", ".join(
                    f"W = {p.workers}: solve {p.solve_seconds:.3f} s, S = {p.speedup:.2f}, "
                    f"E = {p.efficiency:.1%}"
                    for p in ps
                )
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    images = []
    for key, figure in scaling_figures(points).items():
        path = out.with_name(f"{out.stem}_{key}.png")
        figure.savefig(path, dpi=110)
        images.append(path.name)
    spec = job.spec
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": len(os.sched_getaffinity(0)),
        "loadAverage": list(os.getloadavg()),
        "instance": spec.problem.data.synthetic.model_dump(),
        "blocks": spec.workers.block_count,
        "rounds": spec.algorithm.admm.max_iterations,
        "admm": spec.algorithm.admm.model_dump(mode="json", by_alias=True),
        "memoryMB": spec.workers.memory_mb,
        "sim": asdict(LAMBDA),
        "benchSeconds": seconds,
        "points": [asdict(p) for p in points],
        "comparison": comparison,
        "variants": variant_points,
        "images": images,
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    echo(f"wrote {out} and {', '.join(images)} ({seconds:.0f} s)")
    return results
