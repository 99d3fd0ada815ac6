"""ADMM configurations side by side, counted in work: rounds, gradient equivalents, bytes, time.

For each problem it computes a reference objective with scikit-learn's liblinear (tol 1e-10; its
objective ``C sum loss + ||w||_1`` is ours divided by lambda1, so ``C = 1 / lambda1``), then runs
every configuration with ``faasopt.solvers.admm.reference_admm`` (the very functions the
distributed coordinator and workers call) and records, per round, the objective at z_k, the
local gradient evaluations and the bytes the round would put on the wire. Each run goes on until
both milestones are met, and both are reported:

- ``paper``: the paper's absolute tolerances, r <= 0.02 and s <= 0.02;
- ``gap``: a relative objective gap to the reference of at most 1e-6.

Work is counted as full-gradient equivalents (local gradient evaluations of all blocks / B) and
ADMM rounds (one broadcast and one gather each); bytes are the sizes of the real protocol frames
(``faasopt.protocol.encode``) of one round with one worker per block: the broadcast delivered to
B workers plus B results. Wall time is the in-process reference's (blocks one after the other),
noisy on a shared machine. Ratios compare with the paper's configuration (its penalty rule,
FISTA, eps_g = 1e-2) and with the plain L-BFGS baseline (the paper's penalty rule, L-BFGS with a
fixed tight tolerance). Results go to ``bench/results/algorithms.json`` and a PNG of the objective
gap against rounds and against gradient work.

    .venv/bin/faasopt bench algorithms [--quick] [--out FILE]
    .venv/bin/python bench/algorithms.py [--quick] [--out FILE]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy: scipy's L-BFGS-B is slower with threaded BLAS

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from benchkit import liblinear  # noqa: E402

from faasopt import protocol as p  # noqa: E402
from faasopt.data import Block, block_bounds, synthetic_blocks  # noqa: E402
from faasopt.solvers.admm import (  # noqa: E402
    AdmmSettings,
    Penalty,
    RoundRecord,
    Schedule,
    reference_admm,
)
from faasopt.solvers.local import LocalSolverSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "algorithms.json"
GAP = 1e-6
PAPER_TOLERANCE = 0.02
PAPER_CONFIG, BASELINE = "paper-fista", "lbfgs-baseline"
DEFAULT_CONFIG = "default"
MAX_ROUNDS = 300
QUICK_ROUNDS = 40
BUDGET_SECONDS = 90.0
"""A configuration that has not met both milestones after this long is stopped (6 s quick)."""
STRONG = 0.85
"""lambda1 of the strongly regularized case, as a share of lambda_max."""
QUICK_CONFIGS = (PAPER_CONFIG, BASELINE, DEFAULT_CONFIG)
NATS_MAX_PAYLOAD = 1 << 20


@dataclass(frozen=True)
class Problem:
    name: str
    description: str
    blocks: list[Block]
    l1: float


def configurations() -> dict[str, AdmmSettings]:
    """The configurations compared, by name; ``default`` is the spec's default."""
    from faasopt.spec import Admm

    loose = LocalSolverSettings(gradient_tolerance=1.0)
    fast = dict(relaxation=1.8, tolerance_schedule=Schedule.RESIDUALS, local=loose)
    spec = Admm()
    default = AdmmSettings(
        rho=spec.rho,
        penalty=spec.penalty,
        relaxation=spec.relaxation,
        tolerance_schedule=spec.local_solver.tolerance_schedule,
        schedule_factor=spec.local_solver.schedule_factor,
        local=LocalSolverSettings(gradient_tolerance=spec.local_solver.gradient_tolerance),
    )
    return {
        PAPER_CONFIG: AdmmSettings(local=LocalSolverSettings(method="fista")),
        "paper-lbfgs": AdmmSettings(),
        BASELINE: AdmmSettings(local=LocalSolverSettings(gradient_tolerance=1e-4)),
        "spectral": AdmmSettings(penalty=Penalty.SPECTRAL),
        "relaxed": AdmmSettings(relaxation=1.8),
        "scheduled": AdmmSettings(tolerance_schedule=Schedule.RESIDUALS, local=loose),
        "balanced+relaxed+scheduled": AdmmSettings(penalty=Penalty.BALANCED, **fast),
        "spectral+relaxed+scheduled": AdmmSettings(penalty=Penalty.SPECTRAL, **fast),
        DEFAULT_CONFIG: default,
    }


def libsvm_like(
    rows: int, features: int, per_row: int, informative: int, seed: int, n_blocks: int
) -> list[Block]:
    """A seeded text-like set as LIBSVM ships them: few nonzeros per row, feature frequencies
    falling as 1/rank, positive values, rows of unit norm, labels from a sparse true model."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(features) + 10.0)
    cols = rng.choice(features, size=(rows, per_row), p=weights / weights.sum())
    values = 1.0 + rng.exponential(size=(rows, per_row))
    A = sp.csr_matrix(
        (values.ravel(), cols.ravel(), np.arange(0, rows * per_row + 1, per_row)),
        shape=(rows, features),
    )
    A.sum_duplicates()
    A = sp.csr_matrix(A.multiply(1.0 / np.sqrt(A.multiply(A).sum(axis=1))))
    truth = np.zeros(features)
    truth[rng.choice(features, informative, replace=False)] = rng.standard_normal(informative)
    margin = A @ truth
    y = np.where(margin + 0.1 * margin.std() * rng.standard_normal(rows) >= 0, 1.0, -1.0)
    bounds = block_bounds(rows, n_blocks)
    return [
        Block(b, A[bounds[b] : bounds[b + 1]].tocsr(), y[bounds[b] : bounds[b + 1]])
        for b in range(n_blocks)
    ]


def problems(quick: bool) -> list[Problem]:
    """The paper's instance, a tall-sparse and a wide text-like set, and two hard cases."""
    s = 10 if quick else 1
    B = 16
    paper = synthetic_blocks(600_000 // s, 10_000 // s, 0.001 * s, 1, range(B), B)
    small = synthetic_blocks(60_000 // s, 2_000 // s, 0.005 * s, 2, range(B), B)
    scaled = [Block(b.index, (b.A * 1e3).tocsr(), b.y) for b in small]
    return [
        Problem(
            "paper", f"synthetic {600_000 // s} x {10_000 // s}, density {0.001 * s}", paper, 1.0
        ),
        Problem(
            "tall-sparse",
            f"text-like {400_000 // s} x {2_000 // s}, 8 nonzeros per row",
            libsvm_like(400_000 // s, 2_000 // s, 8, 200 // s, 3, B),
            1.0,
        ),
        Problem(
            "wide",
            f"text-like {20_000 // s} x {60_000 // s}, 60 nonzeros per row",
            libsvm_like(20_000 // s, 60_000 // s, 60, 500 // s, 4, B),
            1.0,
        ),
        Problem("scaled-1e3", "the small synthetic set with features x 1e3", scaled, 1.0),
        Problem("strong-l1", "the small synthetic set, lambda1 = 0.85 lambda_max", small, 0.0),
    ]


def stacked(blocks: list[Block]) -> tuple[sp.csr_matrix, np.ndarray]:
    return sp.vstack([b.A for b in blocks]).tocsr(), np.concatenate([b.y for b in blocks])


def objective(A: sp.csr_matrix, y: np.ndarray, x: np.ndarray, l1: float) -> float:
    return float(np.logaddexp(0.0, -y * (A @ x)).sum() + l1 * np.abs(x).sum())


def strong_l1(A: sp.csr_matrix, y: np.ndarray) -> float:
    """0.85 lambda_max (lambda_max = ||A^T y||_inf / 2 makes x = 0 optimal): a few % nonzeros."""
    return STRONG * float(np.abs(A.T @ y).max()) / 2.0


def round_bytes(record: RoundRecord, n_blocks: int, features: int) -> int:
    """Bytes of one round's real frames, one worker per block: B broadcasts received, B results."""
    rho = record.rho_blocks or (record.rho,) * n_blocks
    tolerance = (record.gradient_tolerance or 0.0,) * n_blocks
    iterate = p.Iterate(record.iteration, tuple(rho), tolerance, np.zeros(features))
    result = p.Result(
        worker=f"w{n_blocks - 1}",
        iteration=record.iteration,
        blocks=(n_blocks - 1,),
        loss_at_z=(1.0,),
        gradient_evaluations=(record.block_gradient_evaluations or (0,))[:1],
        solver_iterations=(record.solver_iterations or (0,))[:1],
        compute_seconds=0.1,
        idle_seconds=0.01,
        x=np.zeros((1, features)),
    )

    def size(message: p.Message) -> int:
        return sum(map(len, p.encode(message, "default/bench", "w0", 1, NATS_MAX_PAYLOAD)))

    return n_blocks * (size(iterate) + size(result))


def run_configuration(
    problem: Problem,
    settings: AdmmSettings,
    reference: float,
    max_rounds: int,
    budget_seconds: float = BUDGET_SECONDS,
) -> dict:
    """One configuration until both milestones are met (or ``max_rounds`` or the time budget
    ran out); the trace and the milestones."""
    B, d = len(problem.blocks), problem.blocks[0].A.shape[1]
    settings = dataclasses.replace(
        settings,
        l1=problem.l1,
        max_iterations=max_rounds,
        primal_tolerance=1e-300,  # the milestones decide when to stop
        dual_tolerance=1e-300,
    )
    seen: list[tuple[RoundRecord, float]] = []
    met: dict[str, int] = {}  # milestone -> index of the round that met it
    started = time.perf_counter()

    def observe(record: RoundRecord) -> bool:
        seen.append((record, time.perf_counter() - started))
        paper = max(record.primal_residual, record.dual_residual) <= PAPER_TOLERANCE
        if paper and record.iteration > 0:  # round 0 compares the start with itself
            met.setdefault("paper", len(seen) - 1)
        if (record.objective - reference) / abs(reference) <= GAP:
            met.setdefault("gap", len(seen) - 1)
        return len(met) == 2 or seen[-1][1] > budget_seconds

    result = reference_admm(problem.blocks, settings, stop_when=observe)
    trace, evaluations, wire = [], 0, 0
    for record, seconds in seen:
        evaluations += record.gradient_evaluations
        wire += round_bytes(record, B, d)
        trace.append(
            {
                "iterations": record.iteration + 1,
                "fullGradientEquivalents": evaluations / B,
                "bytes": wire,
                "seconds": seconds,
                "gap": (record.objective - reference) / abs(reference),
                "rho": record.rho,
            }
        )
    A, y = stacked(problem.blocks)
    return {
        "milestones": {name: trace[i] for name, i in met.items()},
        "finalGap": (objective(A, y, result.z, problem.l1) - reference) / abs(reference),
        "rounds": result.iterations,
        "trace": trace,
    }


def ratios(runs: dict[str, dict], milestone: str) -> dict[str, dict[str, float | None]]:
    """Per configuration: paper configuration's and baseline's work over its own (> 1: less)."""
    keys = ("iterations", "fullGradientEquivalents", "bytes", "seconds")
    out = {}
    for name, run in runs.items():
        mine = run["milestones"].get(milestone)
        row = {}
        for other, label in ((PAPER_CONFIG, "vsPaper"), (BASELINE, "vsBaseline")):
            theirs = runs[other]["milestones"].get(milestone)
            for key in keys:
                value = None
                if mine and theirs and mine[key] > 0:
                    value = theirs[key] / mine[key]
                row[f"{label}.{key}"] = value
        out[name] = row
    return out


def measure(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    configs = configurations()
    if quick:
        configs = {name: configs[name] for name in QUICK_CONFIGS}
    results: dict[str, Any] = {"quick": quick, "gap": GAP, "problems": {}}
    for problem in problems(quick):
        if only and problem.name not in only:
            continue
        A, y = stacked(problem.blocks)
        if problem.l1 == 0.0:
            problem = dataclasses.replace(problem, l1=strong_l1(A, y))
        x_ref, seconds = liblinear(A, y, problem.l1)
        reference = objective(A, y, x_ref, problem.l1)
        entry = {
            "description": problem.description,
            "rows": A.shape[0],
            "features": A.shape[1],
            "blocks": len(problem.blocks),
            "l1": problem.l1,
            "reference": {
                "objective": reference,
                "seconds": seconds,
                "nonzeros": int(np.count_nonzero(x_ref)),
            },
            "runs": {},
        }
        print(f"\n{problem.name}: {problem.description}, lambda1 {problem.l1:.4g}, "
              f"liblinear {seconds:.1f} s, {entry['reference']['nonzeros']} nonzeros",
              flush=True)  # fmt: skip
        for name, settings in configs.items():
            rounds, budget = (QUICK_ROUNDS, 6.0) if quick else (MAX_ROUNDS, BUDGET_SECONDS)
            entry["runs"][name] = run_configuration(problem, settings, reference, rounds, budget)
            print(f"  {name:28s} done", flush=True)
        entry["ratios"] = {m: ratios(entry["runs"], m) for m in ("paper", "gap")}
        results["problems"][problem.name] = entry
        print_table(problem.name, entry)
    return results


def print_table(name: str, entry: dict[str, Any]) -> None:
    header = (
        f"{'configuration':28s} {'milestone':9s} {'rounds':>6s} {'grad eq':>8s} {'MB':>7s} "
        f"{'s':>6s} {'gap':>9s}  {'rounds/FGE vs paper':>20s}  {'rounds/FGE vs baseline':>22s}"
    )
    print(f"\n== {name} ==\n{header}")
    for config, run in entry["runs"].items():
        for milestone in ("paper", "gap"):
            point = run["milestones"].get(milestone)
            ratio = entry["ratios"][milestone][config]
            if point is None:
                print(f"{config:28s} {milestone:9s} not reached ({run['rounds']} rounds, budget)")
                continue
            vs = [
                f"{_x(ratio[f'{w}.iterations'])}/{_x(ratio[f'{w}.fullGradientEquivalents'])}"
                for w in ("vsPaper", "vsBaseline")
            ]
            print(
                f"{config:28s} {milestone:9s} {point['iterations']:6d} "
                f"{point['fullGradientEquivalents']:8.1f} {point['bytes'] / 1e6:7.2f} "
                f"{point['seconds']:6.2f} {point['gap']:9.1e}  {vs[0]:>20s}  {vs[1]:>22s}"
            )


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def plot(results: dict[str, Any], path: Path) -> None:
    """Objective gap against rounds and against gradient work, one row per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["problems"])
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 3.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        for config, run in results["problems"][name]["runs"].items():
            gaps = [max(t["gap"], 1e-12) for t in run["trace"]]
            row[0].semilogy([t["iterations"] for t in run["trace"]], gaps, label=config)
            row[1].semilogy([t["fullGradientEquivalents"] for t in run["trace"]], gaps)
        for ax, xlabel in zip(row, ("ADMM rounds", "full-gradient equivalents"), strict=True):
            ax.axhline(GAP, color="grey", linestyle=":")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("relative objective gap")
            ax.set_title(name)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="problems 10x smaller, 3 configurations (~1 min)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument("--problems", default="", help="comma-separated subset of problems")
    args = parser.parse_args(argv)
    out = args.out or DEFAULT_OUT.with_stem("algorithms_quick" if args.quick else "algorithms")
    results = measure(args.quick, [n for n in args.problems.split(",") if n] or None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
