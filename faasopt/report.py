"""The run report: the public contract of ``report.json`` (names are kept across versions)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from faasopt.coordinator import Outcome
from faasopt.plan import JobPlan
from faasopt.solvers.admm import Status

REPORT_FILE = "report.json"
SOLUTION_FILE = "solution.npy"


def build_report(
    plan: JobPlan, outcome: Outcome, wall_seconds: float, coordinator_rss_bytes: int
) -> dict[str, Any]:
    """The report of one run.

    ``speedup`` is the per-run estimate of DESIGN.md: the workers' compute seconds summed over
    the solve, divided by the solve's elapsed seconds; ``efficiency`` is speedup / workers. The
    paper's relative speedup between worker counts needs several runs.
    """
    last = outcome.rounds[-1].record if outcome.rounds else None
    compute = sum(t.compute for r in outcome.rounds for t in r.timings.values())
    speedup = compute / outcome.solve_seconds if outcome.solve_seconds > 0 else 0.0
    evaluations = sum(r.record.gradient_evaluations for r in outcome.rounds)
    status = outcome.status.value if outcome.error is None and outcome.status else "failed"
    return {
        "job": {"namespace": plan.namespace, "name": plan.name},
        "status": status,
        "error": outcome.error,
        "converged": outcome.error is None and outcome.status is Status.CONVERGED,
        "iterations": len(outcome.rounds),
        "objective": outcome.objective,
        "primalResidual": last.primal_residual if last else None,
        "dualResidual": last.dual_residual if last else None,
        "primalTolerance": plan.settings.primal_tolerance,
        "dualTolerance": plan.settings.dual_tolerance,
        "rho": last.rho if last else plan.settings.rho,
        "rhoChanges": outcome.rho_changes,
        "wallSeconds": wall_seconds,
        "solveSeconds": outcome.solve_seconds,
        "speedup": speedup,
        "efficiency": speedup / plan.workers,
        "workers": plan.workers,
        "blocks": plan.n_blocks,
        "rows": plan.rows,
        "features": plan.features,
        "platform": plan.platform,
        "rotations": 0,
        "replacements": outcome.replacements,
        "gradientEvaluations": evaluations,
        "fullGradientEquivalents": evaluations / plan.n_blocks,
        "nonzeros": int(np.count_nonzero(outcome.z)),
        "coldStarts": [
            {
                "worker": w.name,
                "blocks": list(w.blocks),
                "seconds": w.cold_start_seconds,
                "loadSeconds": w.load_seconds,
                "replaces": w.replaces,
                "ended": w.ended,
            }
            for w in outcome.workers
        ],
        "peakRssBytes": {
            "coordinator": coordinator_rss_bytes,
            "workers": {w.name: w.peak_rss_bytes for w in outcome.workers if w.ended is None},
        },
        "messagesRejected": outcome.rejected,
        "trace": [
            {
                "iteration": r.record.iteration,
                "objective": r.record.objective,
                "primalResidual": r.record.primal_residual,
                "dualResidual": r.record.dual_residual,
                "rho": r.record.rho,
                "workers": len(r.timings),
                "gradientEvaluations": r.record.gradient_evaluations,
                "elapsedSeconds": r.elapsed_seconds,
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


def write_report(out: Path, report: dict[str, Any], solution: np.ndarray) -> None:
    """Write ``report.json`` and ``solution.npy`` into ``out`` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=_finite) + "\n")
    np.save(out / SOLUTION_FILE, solution)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
