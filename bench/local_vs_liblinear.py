"""faasopt on one machine against scikit-learn's liblinear and the in-process reference ADMM.

Side by side in one run, on the paper's instance by default (N = 600 000, d = 10 000, density
0.001, lambda1 = 1, seed 1, B = 16 blocks):

1. data generation (``faasopt.data.synthetic_blocks``) of the whole instance, and its bytes;
2. scikit-learn's liblinear (tol 1e-8) on the stacked data;
3. ``faasopt.solvers.admm.reference_admm`` in this process (the paper's tolerances, L-BFGS);
4. ``faasopt run`` as a subprocess with 1, 2 and 4 workers (NATS and worker start-up included).

Every objective is computed here with one formula on the full data,
``sum log(1 + exp(-y A x)) + l1 ||x||_1``, and compared with liblinear's. The script prints a
table and the ratios DESIGN.md targets, and writes every figure to
``bench/results/local_vs_liblinear.json``. It never asserts: the machine is shared and noisy, so
the figures are for reading, and only ratios measured in the same run mean much.

    .venv/bin/python bench/local_vs_liblinear.py [--samples N --features D --density P
        --blocks B --repeat R --out FILE]
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread everywhere, before numpy is imported: scipy's L-BFGS-B makes many tiny
# BLAS calls that multi-threaded OpenBLAS slows down several times. The faasopt subprocesses
# inherit these variables (and the workers also set threadpool_limits(1) themselves).
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import yaml  # noqa: E402
from benchkit import machine as benchkit_machine  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from faasopt.data import synthetic_blocks  # noqa: E402
from faasopt.plan import assign_blocks  # noqa: E402
from faasopt.solvers.admm import AdmmSettings, reference_admm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "local_vs_liblinear.json"
MB = 1024 * 1024

# Targets (DESIGN.md and the brief of this benchmark); reported, never asserted.
TARGET_FAASOPT_VS_REFERENCE = 1.2  # (a) 1-worker wall / reference wall incl. generation, <=
TARGET_SPEEDUP_1_TO_2 = 1.7  # (b) 1-worker wall / 2-worker wall, >=
TARGET_GAP = 1e-6  # (c) relative objective gap to liblinear, <
TARGET_COORDINATOR_RSS = 300 * MB  # (d) coordinator peak RSS, <
WORKER_RSS_FACTOR, WORKER_RSS_SLACK = 2, 150 * MB  # (d) worker peak RSS < 2 x blocks + 150 MB
TARGET_GENERATION_SECONDS = 1.0  # (e) generating the whole instance, <


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="faasopt vs scikit-learn liblinear vs the in-process reference ADMM.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=600_000, help="N, rows")
    parser.add_argument("--features", type=int, default=10_000, help="d, columns")
    parser.add_argument("--density", type=float, default=0.001, help="share of nonzeros per row")
    parser.add_argument("--l1", type=float, default=1.0, help="lambda1")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generator")
    parser.add_argument("--blocks", type=int, default=16, help="B, data blocks")
    parser.add_argument(
        "--workers",
        type=lambda s: [int(w) for w in s.split(",") if w],
        default=[1, 2, 4],
        help="comma-separated worker counts for `faasopt run`",
    )
    parser.add_argument("--repeat", type=int, default=1, help="repeat timed parts; take medians")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if not args.workers or any(w < 1 or w > args.blocks for w in args.workers):
        parser.error(f"--workers must be in [1, blocks={args.blocks}]")
    return args


def objective(A: sp.csr_matrix, y: np.ndarray, x: np.ndarray, l1: float) -> float:
    """The one formula every method is scored with: sum log(1 + exp(-y Ax)) + l1 ||x||_1."""
    return float(np.logaddexp(0.0, -y * (A @ x)).sum() + l1 * np.abs(x).sum())


def relative_gap(value: float, reference: float) -> float:
    """(value - reference) / |reference|: negative when ``value`` is the better objective."""
    return (value - reference) / abs(reference)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def faasopt_executable() -> str:
    """The ``faasopt`` script of the venv this Python runs in."""
    candidate = Path(sys.executable).parent / "faasopt"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("faasopt")
    if found is None:
        sys.exit("cannot find the faasopt command next to this Python or on PATH")
    return found


def python_startup_seconds() -> float:
    """A fresh interpreter importing what the faasopt command imports: a floor under any run."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import faasopt.cli, faasopt.runner, faasopt.worker"], check=True
    )
    return time.perf_counter() - started


# --- the four contenders ---------------------------------------------------------------------


def time_generation(args: argparse.Namespace) -> tuple[float, list]:
    started = time.perf_counter()
    blocks = synthetic_blocks(
        args.samples, args.features, args.density, args.seed, range(args.blocks), args.blocks
    )
    return time.perf_counter() - started, blocks


def run_liblinear(A: sp.csr_matrix, y: np.ndarray, l1: float) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(
        l1_ratio=1,
        solver="liblinear",
        C=1.0 / l1,
        fit_intercept=False,
        tol=1e-8,
        max_iter=1000,
        random_state=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        started = time.perf_counter()
        model.fit(A, y)
        seconds = time.perf_counter() - started
    x = np.ascontiguousarray(model.coef_.ravel(), dtype=np.float64)
    return {
        "seconds": seconds,
        "x": x,
        "iterations": int(np.max(model.n_iter_)),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)],
    }


def run_reference(blocks: list, settings: AdmmSettings) -> dict[str, Any]:
    started = time.perf_counter()
    result = reference_admm(blocks, settings)
    seconds = time.perf_counter() - started
    evaluations = sum(r.gradient_evaluations for r in result.history)
    return {
        "seconds": seconds,
        "x": np.array(result.z),
        "converged": result.converged,
        "status": result.status.value,
        "iterations": result.iterations,
        "gradientEvaluations": evaluations,
        "fullGradientEquivalents": evaluations / len(blocks),
        "reportedObjective": result.objective,
    }


def write_manifest(folder: Path, args: argparse.Namespace, workers: int) -> Path:
    s = AdmmSettings(l1=args.l1)
    manifest = {
        "apiVersion": "faasopt.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": f"bench-w{workers}"},
        "spec": {
            "problem": {
                "loss": "logistic",
                "l1": args.l1,
                "data": {
                    "synthetic": {
                        "samples": args.samples,
                        "features": args.features,
                        "density": args.density,
                        "seed": args.seed,
                    }
                },
            },
            "algorithm": {
                "admm": {
                    "rho": s.rho,
                    "penalty": s.penalty.value,
                    "relaxation": s.relaxation,  # the reference's settings, not the defaults
                    "maxIterations": s.max_iterations,
                    "primalTolerance": s.primal_tolerance,
                    "dualTolerance": s.dual_tolerance,
                    "localSolver": {
                        "method": s.local.method,
                        "gradientTolerance": s.local.gradient_tolerance,
                        "relativeImprovement": s.local.relative_improvement,
                        "minIterations": s.local.min_iterations,
                        "maxIterations": s.local.max_iterations,
                        "toleranceSchedule": s.tolerance_schedule.value,
                    },
                }
            },
            "workers": {"platform": "local", "count": workers, "blocks": args.blocks},
        },
    }
    path = folder / f"bench-w{workers}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def run_faasopt(
    args: argparse.Namespace, workers: int, block_bytes: list[int], scratch: Path
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"w{workers}-", dir=scratch))
    manifest = write_manifest(folder, args, workers)
    out = folder / "out"
    command = [
        faasopt_executable(),
        "run",
        str(manifest),
        "--out",
        str(out),
        "--no-progress",
        "--no-plots",
    ]  # plots are the report's, not the runtime's cost
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - started
    (folder / "stderr.txt").write_text(done.stderr)
    report_path = out / "report.json"
    if not report_path.exists():
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        raise RuntimeError(f"faasopt run with {workers} workers exited {done.returncode}")
    report = json.loads(report_path.read_text())
    x = np.load(out / "solution.npy")

    assignment = assign_blocks(args.blocks, workers)
    worker_bytes = {w: sum(block_bytes[b] for b in ids) for w, ids in assignment.items()}
    worker_rss = report["peakRssBytes"]["workers"]
    per_worker = {
        name: {
            metric: sum(r["perWorker"].get(name, {}).get(metric, 0.0) for r in report["trace"])
            for metric in ("compute", "idle", "communication")
        }
        for name in assignment
    }
    cold = {c["worker"]: c for c in report["coldStarts"]}
    return {
        "workers": workers,
        "exitCode": done.returncode,
        "seconds": seconds,
        "wallSeconds": report["wallSeconds"],
        "solveSeconds": report["solveSeconds"],
        "outsideSolveSeconds": seconds - report["solveSeconds"],
        "converged": report["converged"],
        "status": report["status"],
        "error": report["error"],
        "iterations": report["iterations"],
        "gradientEvaluations": report["gradientEvaluations"],
        "fullGradientEquivalents": report["fullGradientEquivalents"],
        "reportedObjective": report["objective"],
        "speedupEstimate": report["speedup"],
        "messagesRejected": report["messagesRejected"],
        "coordinatorRssBytes": report["peakRssBytes"]["coordinator"],
        "workerRssBytes": worker_rss,
        "workerBlockBytes": worker_bytes,
        "workerRssTargetBytes": {
            w: WORKER_RSS_FACTOR * b + WORKER_RSS_SLACK for w, b in worker_bytes.items()
        },
        "perWorkerSeconds": per_worker,
        "coldStarts": {
            name: {"seconds": cold[name]["seconds"], "loadSeconds": cold[name]["loadSeconds"]}
            for name in assignment
            if name in cold
        },
        "x": x,
    }


def _passes(blocks: list, passes: int) -> float:
    from faasopt.solvers.logistic import logistic_loss_grad

    x = np.full(blocks[0].A.shape[1], 1e-3)
    started = time.perf_counter()
    for _ in range(passes):
        for b in blocks:
            logistic_loss_grad(b.A, b.y, x)
    return time.perf_counter() - started


def parallel_ceiling(blocks: list, workers: int = 2, target_seconds: float = 1.0) -> dict:
    """What ``workers`` processes can gain on this machine, with no ADMM and no messaging.

    Each of ``workers`` forked processes makes the same number of loss-and-gradient passes over
    its contiguous share of the blocks (as `assign_blocks` places them); first one share alone,
    then all shares at once. ``ceiling = workers * alone / together``: the 1-to-W wall ratio a
    perfectly balanced, communication-free run could reach here.
    """
    import multiprocessing as mp

    shares = [[blocks[b] for b in ids] for ids in assign_blocks(len(blocks), workers).values()]
    one = _passes(shares[0], 1)
    passes = max(3, round(target_seconds / max(one, 1e-4)))
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        alone = pool.apply(_passes, (shares[0], passes))
    with ctx.Pool(workers) as pool:
        started = time.perf_counter()
        each = pool.starmap(_passes, [(share, passes) for share in shares])
        together = time.perf_counter() - started
    return {
        "workers": workers,
        "passes": passes,
        "aloneSeconds": alone,
        "togetherSeconds": together,
        "eachSeconds": each,
        "ceiling": workers * alone / together,
    }


# --- the run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threadpool_limits(1)
    settings = AdmmSettings(l1=args.l1)
    machine = benchkit_machine()
    print(
        f"faasopt vs liblinear: N={args.samples} d={args.features} density={args.density} "
        f"l1={args.l1} seed={args.seed} B={args.blocks} workers={args.workers} "
        f"repeat={args.repeat}; {machine['cpus']} cpus, load {machine['loadAverage']}",
        flush=True,
    )

    startup = python_startup_seconds()
    gen_s, ref_s, lib_s = [], [], []
    ceilings: list[dict[str, Any]] = []
    fa_runs: dict[int, list[dict[str, Any]]] = {w: [] for w in args.workers}
    A = y = None
    lib = ref = None
    with tempfile.TemporaryDirectory(prefix="faasopt-bench-") as tmp:
        scratch = Path(tmp)
        # Interleave the contenders in each repeat so that drifting load hits all of them alike.
        for rep in range(args.repeat):
            tag = f"[{rep + 1}/{args.repeat}]"
            seconds, blocks = time_generation(args)
            gen_s.append(seconds)
            print(f"{tag} generation {seconds:.3f} s", flush=True)
            if A is None:
                A = sp.vstack([b.A for b in blocks], format="csr")
                y = np.concatenate([b.y for b in blocks])
                block_bytes = [b.nbytes for b in blocks]
            lib = run_liblinear(A, y, args.l1)
            lib_s.append(lib["seconds"])
            print(f"{tag} liblinear {lib['seconds']:.3f} s", flush=True)
            ref = run_reference(blocks, settings)
            ref_s.append(ref["seconds"])
            print(f"{tag} reference ADMM {ref['seconds']:.3f} s", flush=True)
            ceilings.append(parallel_ceiling(blocks, 2))
            print(
                f"{tag} parallel ceiling, 2 processes: {ceilings[-1]['ceiling']:.2f}x",
                flush=True,
            )
            del blocks
            for w in args.workers:
                run = run_faasopt(args, w, block_bytes, scratch)
                fa_runs[w].append(run)
                print(
                    f"{tag} faasopt run, {w} worker(s): {run['seconds']:.3f} s "
                    f"(solve {run['solveSeconds']:.3f} s, exit {run['exitCode']})",
                    flush=True,
                )

    f_lib = objective(A, y, lib["x"], args.l1)
    f_ref = objective(A, y, ref["x"], args.l1)
    gen_med, ref_med, lib_med = median(gen_s), median(ref_s), median(lib_s)
    ref_incl = [g + r for g, r in zip(gen_s, ref_s, strict=True)]
    results: dict[str, Any] = {
        "benchmark": "local_vs_liblinear",
        "command": " ".join([_shown(sys.executable), *sys.argv]),
        "pythonPath": os.environ.get("PYTHONPATH"),
        "machine": machine,
        "instance": {
            "samples": args.samples,
            "features": args.features,
            "density": args.density,
            "l1": args.l1,
            "seed": args.seed,
            "blocks": args.blocks,
            "nonzeros": int(A.nnz),
        },
        "repeat": args.repeat,
        "pythonStartupSeconds": startup,
        "parallelCeiling": {
            "ceiling": median([c["ceiling"] for c in ceilings]),
            "runs": ceilings,
        },
        "generation": {
            "seconds": gen_med,
            "runs": gen_s,
            "bytes": int(sum(block_bytes)),
            "blockBytes": block_bytes,
        },
        "liblinear": {
            "seconds": lib_med,
            "runs": lib_s,
            "iterations": lib["iterations"],
            "objective": f_lib,
            "nonzeros": int(np.count_nonzero(lib["x"])),
            "convergenceWarnings": lib["warnings"],
        },
        "reference": {
            "seconds": ref_med,
            "secondsWithGeneration": median(ref_incl),
            "runs": ref_s,
            "settings": _settings_dict(settings),
            "converged": ref["converged"],
            "status": ref["status"],
            "iterations": ref["iterations"],
            "gradientEvaluations": ref["gradientEvaluations"],
            "fullGradientEquivalents": ref["fullGradientEquivalents"],
            "objective": f_ref,
            "reportedObjective": ref["reportedObjective"],
            "gapToLiblinear": relative_gap(f_ref, f_lib),
            "nonzeros": int(np.count_nonzero(ref["x"])),
        },
        "faasopt": {},
    }
    for w, runs in fa_runs.items():
        # Per-worker figures, cold starts and memory come from the run of median wall time.
        last = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
        f_w = objective(A, y, last["x"], args.l1)
        summary = {k: v for k, v in last.items() if k != "x"}
        for key in ("seconds", "wallSeconds", "solveSeconds", "outsideSolveSeconds"):
            summary[key] = median([r[key] for r in runs])
        summary["coordinatorRssBytes"] = max(r["coordinatorRssBytes"] for r in runs)
        summary["workerRssBytes"] = {
            name: max(r["workerRssBytes"].get(name) or 0 for r in runs)
            for name in last["workerBlockBytes"]
        }
        summary["detailFromRunSeconds"] = last["seconds"]
        summary["runs"] = [
            {k: r[k] for k in ("seconds", "wallSeconds", "solveSeconds", "exitCode")} for r in runs
        ]
        summary["objective"] = f_w
        summary["gapToLiblinear"] = relative_gap(f_w, f_lib)
        summary["maxAbsDifferenceToReference"] = float(np.max(np.abs(last["x"] - ref["x"])))
        summary["nonzeros"] = int(np.count_nonzero(last["x"]))
        results["faasopt"][str(w)] = summary
    results["ratios"] = ratios(results)

    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def _shown(path: str) -> str:
    """``path`` relative to the repository when it is inside it (``.venv/bin/python``)."""
    try:
        return str(Path(path).absolute().relative_to(ROOT))
    except ValueError:
        return path


def _settings_dict(settings: AdmmSettings) -> dict[str, Any]:
    d = asdict(settings)
    d["penalty"] = settings.penalty.value
    return d


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """The targets of this benchmark, each with its measured value and whether it was met."""
    fa = results["faasopt"]
    ref = results["reference"]
    out: dict[str, Any] = {}

    def put(name: str, value: float | None, target: str, met: bool | None) -> None:
        out[name] = {"value": value, "target": target, "met": met}

    one, two = fa.get("1"), fa.get("2")
    if one:
        v = one["seconds"] / ref["secondsWithGeneration"]
        put(
            "a_faasopt1_over_reference_with_generation",
            v,
            f"<= {TARGET_FAASOPT_VS_REFERENCE}",
            v <= TARGET_FAASOPT_VS_REFERENCE,
        )
        put("a_faasopt1_over_reference_solve_only", one["seconds"] / ref["seconds"], "info", None)
        put(
            "a_faasopt1_over_reference_with_generation_and_startup",
            one["seconds"] / (ref["secondsWithGeneration"] + results["pythonStartupSeconds"]),
            "info",
            None,
        )
        put(
            "a_faasopt1_solve_over_reference_solve",
            one["solveSeconds"] / ref["seconds"],
            "info",
            None,
        )
    if one and two:
        v = one["seconds"] / two["seconds"]
        put("b_wall_1_over_2_workers", v, f">= {TARGET_SPEEDUP_1_TO_2}", v >= TARGET_SPEEDUP_1_TO_2)
        put("b_solve_1_over_2_workers", one["solveSeconds"] / two["solveSeconds"], "info", None)
        ceiling = results["parallelCeiling"]["ceiling"]
        put("b_machine_ceiling_2_processes", ceiling, "info", None)
        put("b_wall_1_over_2_workers_per_ceiling", v / ceiling, "info", None)
    if one and fa.get("4"):
        put("b_wall_1_over_4_workers", one["seconds"] / fa["4"]["seconds"], "info", None)
        put("b_solve_1_over_4_workers", one["solveSeconds"] / fa["4"]["solveSeconds"], "info", None)
    put(
        "c_gap_reference",
        ref["gapToLiblinear"],
        f"< {TARGET_GAP:g}",
        ref["gapToLiblinear"] < TARGET_GAP,
    )
    for w, run in fa.items():
        put(
            f"c_gap_faasopt_{w}",
            run["gapToLiblinear"],
            f"< {TARGET_GAP:g}",
            run["gapToLiblinear"] < TARGET_GAP,
        )
    for w, run in fa.items():
        rss = run["coordinatorRssBytes"]
        put(
            f"d_coordinator_rss_mb_{w}",
            rss / MB,
            f"< {TARGET_COORDINATOR_RSS / MB:.0f}",
            rss < TARGET_COORDINATOR_RSS,
        )
        for name, target in run["workerRssTargetBytes"].items():
            got = run["workerRssBytes"].get(name) or 0
            put(
                f"d_worker_rss_mb_{w}_{name}",
                got / MB,
                f"< {target / MB:.0f}",
                bool(got) and got < target,
            )
    gen = results["generation"]["seconds"]
    put(
        "e_generation_seconds",
        gen,
        f"< {TARGET_GENERATION_SECONDS:g}",
        gen < TARGET_GENERATION_SECONDS,
    )
    put(
        "reference_over_liblinear",
        ref["seconds"] / results["liblinear"]["seconds"],
        "info",
        None,
    )
    return out


# --- output ----------------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(140, shutil.get_terminal_size().columns))
    inst = results["instance"]
    lib, ref, fa = results["liblinear"], results["reference"], results["faasopt"]

    table = Table(
        title=(
            f"N={inst['samples']} d={inst['features']} density={inst['density']} "
            f"l1={inst['l1']} B={inst['blocks']}, medians of {results['repeat']}"
        ),
        title_justify="left",
    )
    for column in ("method", "wall s", "solve s", "iters", "grad evals", "objective", "gap"):
        table.add_column(column, justify="right" if column != "method" else "left")
    gen = results["generation"]
    table.add_row(
        "data generation", f"{gen['seconds']:.3f}", "", "", "", f"{gen['bytes'] / MB:.1f} MB", ""
    )
    table.add_row(
        "liblinear (tol 1e-8)",
        f"{lib['seconds']:.3f}",
        f"{lib['seconds']:.3f}",
        str(lib["iterations"]),
        "",
        f"{lib['objective']:.8e}",
        "0",
    )
    table.add_row(
        "reference ADMM (+gen)",
        f"{ref['secondsWithGeneration']:.3f}",
        f"{ref['seconds']:.3f}",
        str(ref["iterations"]),
        f"{ref['gradientEvaluations']} ({ref['fullGradientEquivalents']:.0f}/B)",
        f"{ref['objective']:.8e}",
        f"{ref['gapToLiblinear']:.1e}",
    )
    for w, run in fa.items():
        table.add_row(
            f"faasopt run, {w} worker{'s' if w != '1' else ''}",
            f"{run['seconds']:.3f}",
            f"{run['solveSeconds']:.3f}",
            str(run["iterations"]),
            f"{run['gradientEvaluations']} ({run['fullGradientEquivalents']:.0f}/B)",
            f"{run['objective']:.8e}",
            f"{run['gapToLiblinear']:.1e}",
        )
    console.print(table)

    detail = Table(
        title="faasopt run: where the time and memory go (the run of median wall time; "
        "compute/idle/comm summed over rounds; peak RSS the max over runs)",
        title_justify="left",
    )
    for column in (
        "W",
        "worker",
        "blocks MB",
        "peak RSS MB",
        "RSS target MB",
        "cold start s",
        "load s",
        "compute s",
        "idle s",
        "comm s",
        "outside solve s",
    ):
        detail.add_column(column, justify="right")
    for w, run in fa.items():
        detail.add_row(
            w,
            "coordinator",
            "",
            f"{run['coordinatorRssBytes'] / MB:.0f}",
            f"{TARGET_COORDINATOR_RSS / MB:.0f}",
            "",
            "",
            "",
            "",
            "",
            f"{run['outsideSolveSeconds']:.2f}",
        )
        for name, nbytes in run["workerBlockBytes"].items():
            cold = run["coldStarts"].get(name, {})
            t = run["perWorkerSeconds"][name]
            detail.add_row(
                "",
                name,
                f"{nbytes / MB:.1f}",
                f"{(run['workerRssBytes'].get(name) or 0) / MB:.0f}",
                f"{run['workerRssTargetBytes'][name] / MB:.0f}",
                _fmt(cold.get("seconds")),
                _fmt(cold.get("loadSeconds")),
                f"{t['compute']:.2f}",
                f"{t['idle']:.2f}",
                f"{t['communication']:.2f}",
                "",
            )
    console.print(detail)

    checks = Table(title="targets", title_justify="left")
    for column in ("ratio", "value", "target", "met"):
        checks.add_column(column, justify="left" if column == "ratio" else "right")
    for name, r in results["ratios"].items():
        value = r["value"]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        met = "" if r["met"] is None else ("yes" if r["met"] else "[red]NO[/red]")
        checks.add_row(name, text, r["target"], met)
    console.print(checks)
    console.print(
        f"python start-up + faasopt imports: {results['pythonStartupSeconds']:.2f} s "
        "(paid by every `faasopt run` and by each of its workers, not by the in-process reference)"
    )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
