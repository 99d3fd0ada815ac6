"""The run report: the public contract of ``report.json`` (names are kept across versions)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faasopt import cost
from faasopt.algorithms import StepRecord
from faasopt.coordinator import Outcome
from faasopt.data.source import holdout_ratings
from faasopt.plan import JobPlan
from faasopt.solvers.admm import RoundRecord
from faasopt.solvers.pmf import PmfProblem, rmse

REPORT_FILE = "report.json"
SOLUTION_FILE = "solution.npy"
SLOWEST_SHARE = 0.1
"""Responsiveness (seed 001, Sec. II-B, Fig. 9): a round's slowest ceil(10 % of W) workers."""
CONVERGED = frozenset({"converged", "lossThreshold"})
"""Statuses of a run that met its goal: ADMM's and k-means' tolerances, SGD's loss threshold.
An SGD run without a loss threshold trains for its budget: any end of it meets the goal."""


def slowest(delays: Mapping[str, float], share: float = SLOWEST_SHARE) -> list[str]:
    """The workers among the slowest ``share`` of one round (at least one), by delay.

    A worker's delay is the time from the broadcast of z_k to the reception of its results
    (compute + communication, Sec. II-B); ties go to the later name, so the choice is stable.
    """
    count = math.ceil(share * len(delays))
    return sorted(delays, key=lambda name: (delays[name], name), reverse=True)[:count]


def build_report(
    plan: JobPlan,
    outcome: Outcome,
    wall_seconds: float,
    coordinator_rss_bytes: int,
    price: cost.Price | None = None,
) -> dict[str, Any]:
    """The report of one run.

    ``speedup`` is the per-run estimate of DESIGN.md: the workers' compute seconds summed over
    the solve (``computeSeconds``, the rounds the trace does not list included), divided by the
    solve's elapsed seconds; ``efficiency`` is speedup / workers. The paper's relative speedup
    between worker counts needs several runs. ``responsiveness`` maps
    each worker to the fraction of rounds it was among the slowest 10 % (seed 001, Fig. 9).
    The bill uses ``price`` (default: the prices of the plan's platform, :mod:`faasopt.cost`).
    """
    compute = outcome.untraced_compute_seconds
    compute += sum(t.compute for r in outcome.rounds for t in r.timings.values())
    speedup = compute / outcome.solve_seconds if outcome.solve_seconds > 0 else 0.0
    status = outcome.status.value if outcome.error is None and outcome.status else "failed"
    price = price or cost.price_of(plan.platform)
    bill = cost.job_cost(price, plan.memory_mb, outcome.lifetimes, wall_seconds)
    decisions = {d["iteration"]: d for d in (outcome.scale_in or {}).get("decisions", [])}
    return {
        "job": {"namespace": plan.namespace, "name": plan.name},
        "algorithm": plan.algorithm,
        "status": status,
        "error": outcome.error,
        "converged": outcome.error is None and (status in CONVERGED or _budget_is_goal(plan)),
        "iterations": len(outcome.rounds),
        "objective": outcome.objective,
        **_algorithm_figures(plan, outcome),
        "wallSeconds": wall_seconds,
        "solveSeconds": outcome.solve_seconds,
        "computeSeconds": compute,
        "speedup": speedup,
        "efficiency": speedup / plan.workers,
        "workers": plan.workers,
        "blocks": plan.n_blocks,
        "rows": plan.rows,
        "features": plan.features,
        "platform": plan.platform,
        "rotations": outcome.rotations,
        "replacements": outcome.replacements,
        "stragglers": {
            "speculated": outcome.speculations,
            "copiesWon": outcome.speculation_wins,
        },
        **bill.to_dict(),  # costDollars, dollarsPerWorker, alwaysOnDollars, perfPerDollar
        "scaleIn": outcome.scale_in or {"policy": "none", "evictions": 0, "decisions": []},
        "nonzeros": int(np.count_nonzero(outcome.z)),
        "coldStarts": [
            {
                "worker": w.name,
                "blocks": list(w.blocks),
                "seconds": w.cold_start_seconds,
                "loadSeconds": w.load_seconds,
                "replaces": w.replaces,
                "rotates": w.rotates,
                "ended": w.ended,
            }
            for w in outcome.workers
        ],
        "peakRssBytes": {
            "coordinator": coordinator_rss_bytes,
            "workers": {w.name: w.peak_rss_bytes for w in outcome.workers if w.ended is None},
        },
        "messagesRejected": outcome.rejected,
        "responsiveness": _responsiveness(outcome),
        "trace": [
            {
                "iteration": r.record.iteration,
                "objective": r.record.objective,
                **round_figures(r.record),
                "workers": len(r.timings),
                "elapsedSeconds": r.elapsed_seconds,
                "costDollars": r.dollars,
                "scaleIn": decisions.get(r.record.iteration),
                "perWorker": {
                    name: {
                        "compute": t.compute,
                        "idle": t.idle,
                        "communication": t.communication,
                    }
                    for name, t in sorted(r.timings.items())
                },
            }
            for r in outcome.rounds
        ],
    }


def _budget_is_goal(plan: JobPlan) -> bool:
    """An SGD run without ``stop.lossThreshold`` (LambdaML's fixed epochs)."""
    return plan.algorithm == "sgd" and plan.settings.stop.loss_threshold is None


def round_figures(record: RoundRecord | StepRecord) -> dict[str, Any]:
    """A round's figures of its algorithm, camelCase, as the trace, progress and status show them
    (besides its iteration and objective)."""
    if isinstance(record, StepRecord):
        return dict(record.details)
    return {
        "primalResidual": record.primal_residual,
        "dualResidual": record.dual_residual,
        "rho": record.rho,
        "gradientEvaluations": record.gradient_evaluations,
        "blockGradientEvaluations": list(record.block_gradient_evaluations),
        "solverIterations": list(record.solver_iterations),
        "gradientTolerance": record.gradient_tolerance,
        "rhoBlocks": list(record.rho_blocks),
    }


def _algorithm_figures(plan: JobPlan, outcome: Outcome) -> dict[str, Any]:
    """The run's figures of its algorithm: ADMM's residuals and gradient work, SGD's bytes
    with and without the significance filter, k-means' number of clusters."""
    if plan.algorithm == "sgd":
        details = [r.record.details for r in outcome.rounds]
        return {
            "variant": str(plan.settings.variant),
            "significance": plan.settings.significance,
            "epochs": details[-1]["epochs"] if details else 0.0,
            "entriesSent": sum(d["entriesSent"] for d in details),
            "bytesSent": sum(d["bytesSent"] for d in details),
            "denseBytes": sum(d["denseBytes"] for d in details),
            "wireBytes": sum(d["wireBytes"] for d in details),
            **_test_rmse(plan, outcome),
        }
    if plan.algorithm == "kmeans":
        return {"clusters": plan.settings.k}
    last = outcome.rounds[-1].record if outcome.rounds else None
    evaluations = sum(r.record.gradient_evaluations for r in outcome.rounds)
    return {
        "primalResidual": last.primal_residual if last else None,
        "dualResidual": last.dual_residual if last else None,
        "primalTolerance": plan.settings.primal_tolerance,
        "dualTolerance": plan.settings.dual_tolerance,
        "rho": last.rho if last else plan.settings.rho,
        "rhoChanges": outcome.rho_changes,
        "gradientEvaluations": evaluations,
        "fullGradientEquivalents": evaluations / plan.n_blocks,
    }


def _test_rmse(plan: JobPlan, outcome: Outcome) -> dict[str, float]:
    """PMF's RMSE on the held-out ratings of its data source, when it has some."""
    holdout = holdout_ratings(plan.source) if "pmf" in (plan.problem or {}) else None
    if holdout is None:
        return {}
    return {"testRmse": rmse(PmfProblem(**plan.problem["pmf"]), outcome.z, holdout)}


def _responsiveness(outcome: Outcome) -> dict[str, float]:
    """Per worker, the fraction of rounds in which it was among the slowest (Fig. 9)."""
    counts: Counter[str] = Counter({w.name: 0 for w in outcome.workers})
    for r in outcome.rounds:
        counts.update(slowest({n: t.compute + t.communication for n, t in r.timings.items()}))
    rounds = len(outcome.rounds)
    return {name: n / rounds if rounds else 0.0 for name, n in sorted(counts.items())}


def write_report(out: Path, report: dict[str, Any], solution: np.ndarray) -> None:
    """Write ``report.json`` and ``solution.npy`` into ``out`` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=_finite) + "\n")
    np.save(out / SOLUTION_FILE, solution)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's headline figures as (name, text) rows: the CLI's summary and report.html."""
    worker_compute = report.get("computeSeconds")
    if worker_compute is None:  # a report written before computeSeconds: its listed rounds
        trace = report["trace"]
        worker_compute = sum(t["compute"] for e in trace for t in e["perWorker"].values())
    objective = report["objective"]
    seconds = [s["seconds"] for s in report["coldStarts"] if s["seconds"] is not None]
    algorithm = report.get("algorithm", "admm")
    if algorithm == "admm":
        figures = [
            ("primal residual", _tol(report["primalResidual"], report["primalTolerance"])),
            ("dual residual", _tol(report["dualResidual"], report["dualTolerance"])),
            ("nonzeros", f"{report['nonzeros']} of {report['features']}"),
        ]
    elif algorithm == "sgd":
        sent, dense = report["bytesSent"], report["denseBytes"]
        figures = [
            ("variant", f"{report['variant']}, significance {report['significance']:g}"),
            ("epochs", f"{report['epochs']:.2f}"),
            ("model traffic", f"{sent} B of {dense} B dense ({sent / max(dense, 1):.1%})"),
        ]
        if "testRmse" in report:
            figures.append(("test RMSE", f"{report['testRmse']:.4g}"))
    else:
        figures = [("clusters", str(report["clusters"]))]
    work = (
        [("gradient work", f"{report['fullGradientEquivalents']:.1f} full-gradient equivalents")]
        if algorithm == "admm"
        else []
    )
    return [
        ("job", f"{report['job']['namespace']}/{report['job']['name']}"),
        ("algorithm", algorithm),
        ("status", report["status"] + (f": {report['error']}" if report["error"] else "")),
        ("iterations", str(report["iterations"])),
        ("objective", f"{objective:.10g}" if objective is not None else "-"),
        *figures,
        ("workers / blocks", f"{report['workers']} / {report['blocks']}"),
        *work,
        ("wall time", f"{report['wallSeconds']:.2f} s (solve {report['solveSeconds']:.2f} s)"),
        ("worker compute", f"{worker_compute:.2f} s, speedup {report['speedup']:.2f}"),
        ("cold start", f"{min(seconds):.2f}-{max(seconds):.2f} s" if seconds else "-"),
        ("cost", f"${report['costDollars']:.6f} on {report['platform']} prices"),
        ("scale-in", f"{report['scaleIn']['policy']}, {report['scaleIn']['evictions']} evicted"),
    ]


def _tol(value: float | None, tolerance: float) -> str:
    return "-" if value is None else f"{value:.3e} (tolerance {tolerance:g})"
