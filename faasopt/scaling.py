"""The paper's scaling experiment (seed 001, Sec. IV) on the simulated and the local platform.

One job, the same B blocks for every worker count W, so every run computes the same iterates and
the same total work: what changes with W is only how the work is spread and what the spreading
costs. Per W it measures what Figs. 4, 5 and 9 show:

- relative speedup and efficiency against a base count (the paper's W = 4), from the solve time
  (the ADMM iterations, cold starts excluded): S = t_base / t_W, E = S / (W / W_base);
- utilization: each worker's compute and idle time per iteration (averaged over iterations, then
  over workers, with the spread among workers as error bars);
- responsiveness: per worker, the fraction of iterations it was among the slowest 10 %.

:func:`run_scaling` computes; :func:`scaling_figures` draws; ``bench/scaling.py`` prints and
writes them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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
