"""The seed papers' comparisons on this machine: LambdaML's Figure 7 and MLLess's Figure 4.

1. **Logistic regression, ADMM vs MA-SGD vs GA-SGD** (LambdaML, seed 003, Figure 7: ADMM fastest,
   then MA-SGD, GA-SGD slowest). One synthetic problem, the same B blocks and W workers for all
   three. The yardstick is the full objective F(x) = sum loss + l1 ||x||_1 relative to
   liblinear's optimum (scikit-learn, C = 1 / l1, no intercept): rounds and seconds until the
   returned model is within a gap of it (a loose and a tight gap).
2. **PMF, ISP v = 0.7 vs BSP** (MLLess, seed 002, Figure 4: up to 3x faster on MovieLens).
   syntheticRatings of MovieLens-100K's shape, MA-SGD with Nesterov momentum and one local step
   a round (MLLess's loop), significance 0.7 against 0 and nothing else changed: model bytes sent,
   rounds and seconds until the held-out RMSE of the returned model is under a threshold.

How the two halves of each measurement are obtained:

- **Rounds (and bytes)** come from the in-process references, the same functions the coordinator
  and workers call (``faasopt.solvers.sgd``: GradientAveraging, ModelAveraging, the block steps;
  ``faasopt.solvers.admm.reference_admm``), with the yardstick evaluated after every round on the
  model a run stopped there would return (SGD: ``final_model``, the shared x plus the blocks'
  unsent updates; ADMM: z). report.json has only the minibatch loss (SGD) per round, not F nor
  the test RMSE, hence this.
- **Seconds** come from real ``faasopt.run`` jobs on local worker processes (nats-server, W
  workers), stopped right after the round that reaches the tight threshold: the time to a
  threshold is the trace's ``elapsedSeconds`` (since the solve started, cold starts excluded) at
  the round that produced the model. Every distributed run is checked against the reference: SGD's
  per-round minibatch losses must be equal bit for bit, ADMM's F(z_k) too (``sameAsReference``).

ADMM round k's trace entry holds F(z_k) of the z broadcast for it, so z_k (k >= 1) is the model
after k rounds and its time is the end of round k - 1's entry. SGD's round k entry ends with the
model after k + 1 rounds.

Settings (so that no algorithm is tuned to lose): ADMM runs the spec's defaults (bench/
algorithms.py's fastest configuration) with the stopping tolerances out of the way. Each SGD
variant gets the best of the same grid, as LambdaML tuned "the optimal learning rate for each ML
model in the range from 0.001 to 1": optimizer sgd, nesterov or adam, four learning rates each,
MLLess's per-epoch inverse-sqrt schedule, 128 rows a minibatch per block; MA-SGD takes one pass
over its block per round (LambdaML's MA-SGD). The best candidate has the fewest rounds to the
tight gap (then to the loose one, then the lowest gap). For PMF the learning rate is the best of a
grid for BSP, by rounds to the tight threshold, and ISP runs with it (MLLess changed only v). The
PMF thresholds are set from the best held-out RMSE any BSP candidate reached in the budget: 10 %
and 5 % above it (MLLess stopped at an RMSE of 0.82 on ML-10M/20M, near the end of its curves).

Timing is noisy on a shared machine: ``--repeat R`` runs the distributed jobs R times (the order
of the algorithms rotated) and reports medians of times and of ratios; rounds and bytes are
deterministic. Nothing is asserted.

    .venv/bin/python bench/seeds_comparison.py [--quick] [--repeat R] [--out FILE]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy, as workers run (faasopt.payload.WORKER_ENV)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from benchkit import liblinear, machine  # noqa: E402

import faasopt  # noqa: E402
from faasopt.algorithms.sgd import problem_from_wire  # noqa: E402
from faasopt.data import block_bounds, load_blocks  # noqa: E402
from faasopt.data.source import holdout_ratings  # noqa: E402
from faasopt.plan import plan_job  # noqa: E402
from faasopt.solvers import sgd as S  # noqa: E402
from faasopt.solvers.admm import reference_admm  # noqa: E402
from faasopt.solvers.pmf import rmse  # noqa: E402
from faasopt.spec import TrainingJob  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "seeds_comparison.json"

LR_GAPS = (0.05, 0.01)
"""Relative gaps F(x) / F* - 1 to reach: loose, tight."""
PMF_MARGINS = (0.10, 0.05)
"""Held-out RMSE thresholds: the best BSP RMSE of the grid times 1 + margin (loose, tight)."""
SGD_GRID = {
    "sgd": (3.0, 10.0, 30.0, 100.0),
    "nesterov": (0.3, 1.0, 3.0, 10.0),
    "adam": (0.01, 0.03, 0.1, 0.3),
}
"""Learning rates per optimizer for logistic regression, the same for GA-SGD and MA-SGD."""
PMF_RATES = (2.0, 4.0, 8.0, 16.0)
"""Nesterov learning rates for PMF (BSP picks, ISP reuses)."""
ISP_V = 0.7

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        # the quickstart's problem (examples/quickstart.yaml, examples/sgd-logistic.yaml)
        "logistic": {"samples": 20000, "features": 2000, "density": 0.005, "seed": 7},
        "l1": 1.0,
        "lrEpochs": 30.0,
        "admmRounds": 100,
        # MovieLens-100K's shape: 943 users, 1682 items, 100 000 ratings (6.3 % dense)
        "ratings": {"users": 943, "items": 1682, "rank": 10, "ratings": 100000, "noise": 0.5,
                    "seed": 1, "holdout": 10000},
        "pmf": {"rank": 10, "regularization": 0.5},
        "pmfBatch": 250,
        "pmfEpochs": 20.0,
    },
    "quick": {
        "logistic": {"samples": 4000, "features": 400, "density": 0.02, "seed": 7},
        "l1": 1.0,
        "lrEpochs": 15.0,
        "admmRounds": 60,
        "ratings": {"users": 300, "items": 400, "rank": 5, "ratings": 20000, "noise": 0.5,
                    "seed": 1, "holdout": 2000},
        "pmf": {"rank": 5, "regularization": 0.5},
        "pmfBatch": 100,
        "pmfEpochs": 10.0,
    },
}  # fmt: skip


# ----------------------------------------------------------------------------- jobs


def manifest(name: str, problem: dict, algorithm: dict, workers: int, blocks: int) -> dict:
    return {
        "apiVersion": "faasopt.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "problem": problem,
            "algorithm": algorithm,
            "workers": {"count": workers, "blocks": blocks},
        },
    }


def job_of(document: dict) -> TrainingJob:
    return TrainingJob.from_dict(document)


def logistic_problem(size: dict) -> dict:
    return {"loss": "logistic", "l1": size["l1"], "data": {"synthetic": size["logistic"]}}


def pmf_problem(size: dict) -> dict:
    return {"loss": "pmf", "pmf": size["pmf"], "data": {"syntheticRatings": size["ratings"]}}


def sgd_rounds_stop(plan, rounds: int) -> float:
    """maxEpochs that ends an SGD run right after ``rounds`` rounds, computed as the coordinator
    computes a record's epochs (so the float is the same)."""
    rows = np.diff(block_bounds(plan.rows, plan.n_blocks)).tolist()
    epoch_steps = S.steps_per_epoch(max(rows), plan.settings.batch_size)
    round_steps = plan.settings.local_steps(max(rows))
    return rounds * round_steps / epoch_steps


def with_sgd_stop(document: dict, max_epochs: float) -> dict:
    doc = json.loads(json.dumps(document))
    doc["spec"]["algorithm"]["sgd"]["stop"] = {"maxEpochs": max_epochs}
    return doc


# ----------------------------------------------------------------------------- in process


def sgd_curve(plan, blocks, measure, stop_at=None, budget_seconds=None) -> dict[str, Any]:
    """Run the reference SGD round by round; ``measure(x)`` of the model a run stopped after each
    round would return. Stops early when ``stop_at(value)`` holds or the model is not finite."""
    problem, settings = problem_from_wire(plan.problem), plan.settings
    rows = [problem.rows(b) for b in blocks]
    values, losses, sent, wire_dense = [], [], [], []
    started = time.perf_counter()
    if settings.variant is S.Variant.GRADIENT_AVERAGING:
        core = S.GradientAveraging(problem, settings, rows)
        states = None
    else:
        core = S.ModelAveraging(problem, settings, rows)
        states = [S.initial_block_state(settings, problem.n_params) for _ in blocks]
    with np.errstate(all="ignore"):
        while not core.done:
            if states is None:
                record = core.reduce(
                    [
                        S.gradient_block_step(problem, b, i, core.x, core.round, settings)
                        for i, b in enumerate(blocks)
                    ]
                )
                model = core.x
            else:
                steps = [
                    S.model_block_step(
                        problem, b, i, core.x, states[i], core.round, settings, len(blocks)
                    )
                    for i, b in enumerate(blocks)
                ]
                states = [s for _, s in steps]
                record = core.reduce([m for m, _ in steps])
                model = S.final_model(core.x, states)
            value = measure(model) if np.all(np.isfinite(model)) else math.inf
            values.append(value if math.isfinite(value) else math.inf)
            losses.append(record.loss)
            sent.append(record.bytes_sent)
            wire_dense.append(record.dense_bytes)
            if not math.isfinite(value) or (stop_at is not None and stop_at(value)):
                break
            if budget_seconds is not None and time.perf_counter() - started > budget_seconds:
                break
    return {
        "values": values,
        "losses": losses,
        "bytesSent": sent,
        "denseBytes": wire_dense,
        "seconds": time.perf_counter() - started,
        "epochs": core.history[-1].epochs if core.history else 0.0,
    }


def first_round(values: list[float], threshold: float) -> int | None:
    """Rounds (1-based) until the value is at or under the threshold; None if never."""
    return next((i + 1 for i, v in enumerate(values) if v <= threshold), None)


# ----------------------------------------------------------------------------- distributed


def distributed(document: dict) -> dict[str, Any]:
    """One real run: local worker processes over nats-server; the report's figures we need."""
    started = time.perf_counter()
    result = faasopt.run(job_of(document), quiet_workers=True)
    report = result.report
    return {
        "status": report["status"],
        "error": report["error"],
        "rounds": report["iterations"],
        "wallSeconds": report["wallSeconds"],
        "solveSeconds": report["solveSeconds"],
        "harnessSeconds": time.perf_counter() - started,
        "elapsed": [e["elapsedSeconds"] for e in report["trace"]],
        "objectives": [e["objective"] for e in report["trace"]],
        "bytesSent": [e.get("bytesSent") for e in report["trace"]],
        "wireBytes": [e.get("wireBytes") for e in report["trace"]],
        "denseBytes": [e.get("denseBytes") for e in report["trace"]],
        "objective": report["objective"],
        "testRmse": report.get("testRmse"),
        "solution": result.solution,
    }


def seconds_at(run: dict, models_rounds: int | None, admm: bool) -> float | None:
    """Seconds since the solve started until the model after ``models_rounds`` rounds existed."""
    if models_rounds is None:
        return None
    if models_rounds == 0:
        return 0.0
    elapsed = run["elapsed"]
    if models_rounds > len(elapsed):
        return None
    return float(elapsed[models_rounds - 1])


def median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# ----------------------------------------------------------------------------- logistic


def logistic_part(size: dict, workers: int, blocks_n: int, repeat: int, echo) -> dict[str, Any]:
    problem = logistic_problem(size)
    # blocks as every job cuts them (same source, same B)
    base = manifest("lr-ga", problem, {"sgd": {"variant": "gradientAveraging"}}, workers, blocks_n)
    plan0 = plan_job(job_of(base))
    blocks = load_blocks(plan0.source, range(plan0.n_blocks), plan0.n_blocks)
    A = sp.vstack([b.A for b in blocks]).tocsr()
    y = np.concatenate([b.y for b in blocks])
    l1 = size["l1"]

    def F(x: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -y * (A @ x)).sum() + l1 * np.abs(x).sum())

    t = time.perf_counter()
    w, _ = liblinear(A, y, l1)
    f_star = F(w)
    echo(
        f"logistic: {A.shape[0]} x {A.shape[1]}, {A.nnz} nonzeros, l1 {l1}, B = {blocks_n}, "
        f"W = {workers}; liblinear F* = {f_star:.6f} ({np.count_nonzero(w)} nonzeros, "
        f"{time.perf_counter() - t:.2f} s)"
    )
    tight = f_star * (1 + LR_GAPS[1])

    def gap(x: np.ndarray) -> float:
        return F(x) / f_star - 1

    rows_per_block = A.shape[0] // blocks_n
    epoch_steps = S.steps_per_epoch(rows_per_block, 128)
    algorithms: dict[str, Any] = {}

    # ADMM: the spec's defaults, stopping tolerances out of the way
    admm_spec = {"primalTolerance": 1e-12, "dualTolerance": 1e-12}
    admm_doc = manifest(
        "lr-admm",
        problem,
        {"admm": {**admm_spec, "maxIterations": size["admmRounds"]}},
        workers,
        blocks_n,
    )
    admm_plan = plan_job(job_of(admm_doc))
    t = time.perf_counter()
    admm_ref = reference_admm(blocks, admm_plan.settings, stop_when=lambda r: r.objective <= tight)
    admm_values = [r.objective / f_star - 1 for r in admm_ref.history]
    # entry k holds F(z_k), z_k being the model after k rounds: rounds = entry index
    admm_rounds = [(None if (k := first_round(admm_values, g)) is None else k - 1) for g in LR_GAPS]
    echo(
        f"  ADMM (spec defaults): gaps by round {[f'{v:.2e}' for v in admm_values]}, "
        f"rounds to {LR_GAPS}: {admm_rounds} ({time.perf_counter() - t:.2f} s in process)"
    )
    algorithms["ADMM"] = {
        "settings": admm_doc["spec"]["algorithm"],
        "gapByModelRound": admm_values,
        "rounds": dict(zip(map(str, LR_GAPS), admm_rounds, strict=True)),
        "referenceObjectives": [r.objective for r in admm_ref.history],
    }

    # SGD: the best of the grid per variant
    for variant, label in (("modelAveraging", "MA-SGD"), ("gradientAveraging", "GA-SGD")):
        candidates = []
        for method, rates in SGD_GRID.items():
            for lr in rates:
                sgd = {
                    "variant": variant,
                    "optimizer": {
                        "method": method,
                        "learningRate": lr,
                        "schedule": "inverseSqrt",
                        "decayEvery": epoch_steps,
                    },
                    "batchSize": 128,
                    "stop": {"maxEpochs": size["lrEpochs"]},
                }
                doc = manifest(f"lr-{label.lower()}", problem, {"sgd": sgd}, workers, blocks_n)
                plan = plan_job(job_of(doc))
                curve = sgd_curve(plan, blocks, gap, stop_at=lambda v: v <= LR_GAPS[1])
                reached = [first_round(curve["values"], g) for g in LR_GAPS]
                best_gap = min(curve["values"])
                echo(
                    f"  {label} {method:8s} lr {lr:<6g} rounds to {LR_GAPS}: {reached}, "
                    f"lowest gap {best_gap:.2e} in {len(curve['values'])} rounds "
                    f"({curve['seconds']:.1f} s)"
                )
                candidates.append(
                    {
                        "method": method,
                        "learningRate": lr,
                        "rounds": dict(zip(map(str, LR_GAPS), reached, strict=True)),
                        "lowestGap": best_gap,
                        "roundsRun": len(curve["values"]),
                        "_doc": doc,
                        "_curve": curve,
                        "_key": (
                            reached[1] if reached[1] is not None else math.inf,
                            reached[0] if reached[0] is not None else math.inf,
                            best_gap,
                        ),
                    }
                )
        best = min(candidates, key=lambda c: c["_key"])
        echo(f"  {label}: best {best['method']} lr {best['learningRate']:g}")
        algorithms[label] = {
            "settings": best["_doc"]["spec"]["algorithm"],
            "gapByModelRound": best["_curve"]["values"],
            "rounds": best["rounds"],
            "referenceLosses": best["_curve"]["losses"],
            "grid": [{k: v for k, v in c.items() if not k.startswith("_")} for c in candidates],
            "_doc": best["_doc"],
        }

    # distributed runs, stopped right after the round that reached the tightest gap reached
    names = list(algorithms)
    for name in names:
        a = algorithms[name]
        reached = [r for r in a["rounds"].values() if r is not None]
        a["runRounds"] = max(reached) if reached else None
        a["runs"] = []
    for rep in range(repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            a = algorithms[name]
            if a["runRounds"] is None:
                continue
            if name == "ADMM":
                if a["runRounds"] == 0:
                    continue
                doc = json.loads(json.dumps(admm_doc))
                doc["spec"]["algorithm"]["admm"]["maxIterations"] = a["runRounds"]
            else:
                plan = plan_job(job_of(a["_doc"]))
                doc = with_sgd_stop(a["_doc"], sgd_rounds_stop(plan, a["runRounds"]))
            run = distributed(doc)
            if name == "ADMM":
                ref = a["referenceObjectives"][: len(run["objectives"])]
                same = run["objectives"] == ref
            else:
                same = run["objectives"] == a["referenceLosses"][: len(run["objectives"])]
            entry = {
                "status": run["status"],
                "error": run["error"],
                "rounds": run["rounds"],
                "sameAsReference": bool(same and run["rounds"] == a["runRounds"]),
                "wallSeconds": run["wallSeconds"],
                "solveSeconds": run["solveSeconds"],
                "secondsPerRound": (
                    statistics.median(np.diff([0.0, *run["elapsed"]])) if run["elapsed"] else None
                ),
                "finalGap": F(run["solution"]) / f_star - 1,
                "seconds": {
                    str(g): seconds_at(run, r, name == "ADMM")
                    for g, r in zip(LR_GAPS, a["rounds"].values(), strict=True)
                },
            }
            a["runs"].append(entry)
            echo(
                f"  run {rep + 1}/{repeat} {name}: {entry['rounds']} rounds, "
                f"{entry['solveSeconds']:.3f} s solve, to gaps {entry['seconds']}, "
                f"same as reference: {entry['sameAsReference']}"
            )

    summary: dict[str, Any] = {}
    for a in algorithms.values():
        a.pop("_doc", None)
        a["medianSeconds"] = {
            str(g): median([r["seconds"][str(g)] for r in a["runs"]]) for g in LR_GAPS
        }
        a["medianSecondsPerRound"] = median([r["secondsPerRound"] for r in a["runs"]])
    for g in map(str, LR_GAPS):
        per = {}
        for other in ("MA-SGD", "GA-SGD"):
            rounds = ratio(algorithms[other]["rounds"][g], algorithms["ADMM"]["rounds"][g])
            seconds = [
                ratio(o["seconds"][g], d["seconds"][g])
                for o, d in zip(algorithms[other]["runs"], algorithms["ADMM"]["runs"], strict=False)
            ]
            per[f"{other}/ADMM"] = {"rounds": rounds, "seconds": median(seconds)}
        rounds = ratio(algorithms["GA-SGD"]["rounds"][g], algorithms["MA-SGD"]["rounds"][g])
        seconds = [
            ratio(o["seconds"][g], d["seconds"][g])
            for o, d in zip(
                algorithms["GA-SGD"]["runs"], algorithms["MA-SGD"]["runs"], strict=False
            )
        ]
        per["GA-SGD/MA-SGD"] = {"rounds": rounds, "seconds": median(seconds)}
        summary[g] = per
    return {
        "problem": {
            "synthetic": size["logistic"],
            "l1": l1,
            "rows": int(A.shape[0]),
            "features": int(A.shape[1]),
            "nonzeros": int(A.nnz),
            "blocks": blocks_n,
            "workers": workers,
        },
        "optimum": {"objective": f_star, "nonzeros": int(np.count_nonzero(w))},
        "gaps": list(LR_GAPS),
        "algorithms": algorithms,
        "ratios": summary,
    }


# ----------------------------------------------------------------------------- PMF


def pmf_part(size: dict, workers: int, blocks_n: int, repeat: int, echo) -> dict[str, Any]:
    problem = pmf_problem(size)

    def doc_for(lr: float, v: float) -> dict:
        sgd = {
            "variant": "modelAveraging",
            "optimizer": {"method": "nesterov", "learningRate": lr},
            "batchSize": size["pmfBatch"],
            "syncEvery": 1,
            "significance": v,
            "stop": {"maxEpochs": size["pmfEpochs"]},
        }
        return manifest("pmf-isp" if v else "pmf-bsp", problem, {"sgd": sgd}, workers, blocks_n)

    plan0 = plan_job(job_of(doc_for(PMF_RATES[0], 0.0)))
    blocks = load_blocks(plan0.source, range(plan0.n_blocks), plan0.n_blocks)
    holdout = holdout_ratings(plan0.source)
    pmf = problem_from_wire(plan0.problem)
    r = size["ratings"]
    echo(
        f"PMF: {r['users']} users x {r['items']} items, {r['ratings']} ratings (true rank "
        f"{r['rank']}, noise {r['noise']}), {r['holdout']} held out; model rank "
        f"{size['pmf']['rank']}, {pmf.n_params} parameters; B = {blocks_n}, W = {workers}"
    )

    def test_rmse(x: np.ndarray) -> float:
        return rmse(pmf, x, holdout)

    grid = []
    for lr in PMF_RATES:
        plan = plan_job(job_of(doc_for(lr, 0.0)))
        curve = sgd_curve(plan, blocks, test_rmse)
        echo(
            f"  BSP lr {lr:g}: best test RMSE {min(curve['values']):.4f} in "
            f"{len(curve['values'])} rounds ({curve['seconds']:.1f} s)"
        )
        grid.append({"learningRate": lr, "curve": curve})
    best_rmse = min(min(c["curve"]["values"]) for c in grid)
    thresholds = [round(best_rmse * (1 + m), 4) for m in PMF_MARGINS]
    for c in grid:
        c["rounds"] = [first_round(c["curve"]["values"], t) for t in thresholds]
    chosen = min(
        grid,
        key=lambda c: (
            c["rounds"][1] if c["rounds"][1] is not None else math.inf,
            c["rounds"][0] if c["rounds"][0] is not None else math.inf,
        ),
    )
    lr = chosen["learningRate"]
    echo(
        f"  thresholds {[round(t, 4) for t in thresholds]} (best BSP RMSE {best_rmse:.4f} + "
        f"{PMF_MARGINS}); chosen lr {lr:g}"
    )
    curves = {"BSP": chosen["curve"]}
    isp_plan = plan_job(job_of(doc_for(lr, ISP_V)))
    curves["ISP"] = sgd_curve(isp_plan, blocks, test_rmse)
    variants: dict[str, Any] = {}
    for name, v in (("BSP", 0.0), ("ISP", ISP_V)):
        c = curves[name]
        rounds = [first_round(c["values"], t) for t in thresholds]
        cum = np.cumsum(c["bytesSent"]).tolist()
        dense = np.cumsum(c["denseBytes"]).tolist()
        variants[name] = {
            "significance": v,
            "learningRate": lr,
            "rmseByRound": c["values"],
            "bestRmse": min(c["values"]),
            "rounds": dict(zip(map(str, thresholds), rounds, strict=True)),
            "bytesSent": {
                str(t): (cum[k - 1] if k else None) for t, k in zip(thresholds, rounds, strict=True)
            },
            "denseBytes": {
                str(t): (dense[k - 1] if k else None)
                for t, k in zip(thresholds, rounds, strict=True)
            },
            "referenceLosses": c["losses"],
            "_doc": doc_for(lr, v),
            "runs": [],
        }
        echo(
            f"  {name} (v = {v}): rounds to {[round(t, 4) for t in thresholds]}: {rounds}, "
            f"best RMSE {min(c['values']):.4f}"
        )
    n_params = pmf.n_params
    for rep in range(repeat):
        order = ["BSP", "ISP"] if rep % 2 == 0 else ["ISP", "BSP"]
        for name in order:
            a = variants[name]
            reached = [k for k in a["rounds"].values() if k is not None]
            if not reached:
                continue
            run_rounds = max(reached)
            plan = plan_job(job_of(a["_doc"]))
            doc = with_sgd_stop(a["_doc"], sgd_rounds_stop(plan, run_rounds))
            run = distributed(doc)
            same = run["objectives"] == a["referenceLosses"][: len(run["objectives"])]
            wire = np.cumsum(run["wireBytes"]).tolist()
            sent = np.cumsum(run["bytesSent"]).tolist()
            entry = {
                "status": run["status"],
                "error": run["error"],
                "rounds": run["rounds"],
                "sameAsReference": bool(same and run["rounds"] == run_rounds),
                "wallSeconds": run["wallSeconds"],
                "solveSeconds": run["solveSeconds"],
                "testRmseAtEnd": run["testRmse"],
                "secondsPerRound": (
                    statistics.median(np.diff([0.0, *run["elapsed"]])) if run["elapsed"] else None
                ),
                "seconds": {t: seconds_at(run, k, False) for t, k in a["rounds"].items()},
                "wireBytes": {
                    t: (wire[k - 1] if k and k <= len(wire) else None)
                    for t, k in a["rounds"].items()
                },
                "bytesSent": {
                    t: (sent[k - 1] if k and k <= len(sent) else None)
                    for t, k in a["rounds"].items()
                },
            }
            a["runs"].append(entry)
            echo(
                f"  run {rep + 1}/{repeat} {name}: {entry['rounds']} rounds, "
                f"{entry['solveSeconds']:.3f} s solve, to thresholds {entry['seconds']}, "
                f"same as reference: {entry['sameAsReference']}"
            )
    ratios: dict[str, Any] = {}
    for t in map(str, thresholds):
        bsp, isp = variants["BSP"], variants["ISP"]
        bsp_rounds, isp_rounds = bsp["rounds"][t], isp["rounds"][t]
        broadcast = 8 * n_params * workers  # the dense x to every worker, each round
        total = {
            n: (
                None
                if variants[n]["rounds"][t] is None
                else variants[n]["bytesSent"][t] + variants[n]["rounds"][t] * broadcast
            )
            for n in ("BSP", "ISP")
        }
        ratios[t] = {
            "rounds": ratio(isp_rounds, bsp_rounds),
            "bytesSent": ratio(isp["bytesSent"][t], bsp["bytesSent"][t]),
            "bytesWithBroadcast": ratio(total["ISP"], total["BSP"]),
            "wireBytes": ratio(
                *(
                    variants[n]["runs"][0]["wireBytes"][t] if variants[n]["runs"] else None
                    for n in ("ISP", "BSP")
                )
            ),
            "seconds": median(
                [
                    ratio(i["seconds"][t], b["seconds"][t])
                    for i, b in zip(isp["runs"], bsp["runs"], strict=False)
                ]
            ),
        }
        for name in ("BSP", "ISP"):
            variants[name]["medianSeconds"] = {
                tt: median([r["seconds"][tt] for r in variants[name]["runs"]])
                for tt in map(str, thresholds)
            }
            variants[name]["medianSecondsPerRound"] = median(
                [r["secondsPerRound"] for r in variants[name]["runs"]]
            )
    for a in variants.values():
        a.pop("_doc", None)
    return {
        "problem": {
            "syntheticRatings": size["ratings"],
            "pmf": size["pmf"],
            "parameters": n_params,
            "batchSize": size["pmfBatch"],
            "blocks": blocks_n,
            "workers": workers,
        },
        "bestBspRmse": best_rmse,
        "margins": list(PMF_MARGINS),
        "thresholds": thresholds,
        "grid": [
            {
                "learningRate": c["learningRate"],
                "bestRmse": min(c["curve"]["values"]),
                "rounds": c["rounds"],
            }
            for c in grid
        ],
        "variants": variants,
        "ratios": ratios,
    }


# ----------------------------------------------------------------------------- output


def _fmt(value: Any, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table(results: dict[str, Any]) -> str:
    lines = []
    if "logistic" in results:
        lines += _logistic_table(results["logistic"])
    if "pmf" in results:
        lines += _pmf_table(results["pmf"])
    return "\n".join(lines)


def _logistic_table(lr: dict[str, Any]) -> list[str]:
    lines = []
    gaps = [str(g) for g in lr["gaps"]]
    lines.append(
        f"\nLogistic regression ({lr['problem']['rows']} x {lr['problem']['features']}, "
        f"B = {lr['problem']['blocks']}, W = {lr['problem']['workers']}): rounds / median "
        f"seconds to a gap F/F* - 1 (model after the round)"
    )
    head = " | ".join(f"gap {float(g):.0%}: rounds, s" for g in gaps)
    lines.append(f"| algorithm | settings | {head} | s/round |")
    for name, a in lr["algorithms"].items():
        settings = a["settings"]
        if "sgd" in settings:
            o = settings["sgd"]["optimizer"]
            what = f"{o['method']} lr {o['learningRate']:g}"
        else:
            what = "spec defaults"
        cells = " | ".join(
            f"{_fmt(a['rounds'][g], 'd')}, {_fmt(a['medianSeconds'][g], '.3f')}" for g in gaps
        )
        lines.append(f"| {name} | {what} | {cells} | {_fmt(a['medianSecondsPerRound'], '.4f')} |")
    lines.append("ratios (rounds, median seconds):")
    for g in gaps:
        parts = [
            f"{k} {_fmt(v['rounds'])}, {_fmt(v['seconds'])}" for k, v in lr["ratios"][g].items()
        ]
        lines.append(f"  gap {float(g):.0%}: " + "; ".join(parts))
    return lines


def _pmf_table(pm: dict[str, Any]) -> list[str]:
    lines = []
    lines.append(
        f"\nPMF ({pm['problem']['syntheticRatings']['users']} x "
        f"{pm['problem']['syntheticRatings']['items']}, "
        f"{pm['problem']['syntheticRatings']['ratings']} ratings): to a held-out RMSE threshold"
    )
    lines.append("| variant | threshold | rounds | model MB sent | median s | s/round |")
    for name, a in pm["variants"].items():
        for t in map(str, pm["thresholds"]):
            b = a["bytesSent"][t]
            lines.append(
                f"| {name} | {float(t):.4f} | {_fmt(a['rounds'][t], 'd')} | "
                f"{_fmt(None if b is None else b / 1e6, '.1f')} | "
                f"{_fmt(a['medianSeconds'][t], '.3f')} | "
                f"{_fmt(a['medianSecondsPerRound'], '.4f')} |"
            )
    for t, v in pm["ratios"].items():
        lines.append(
            f"  ISP/BSP at {float(t):.4f}: rounds {_fmt(v['rounds'])}, model bytes "
            f"{_fmt(v['bytesSent'])} (on the wire {_fmt(v['wireBytes'])}), with the broadcast "
            f"{_fmt(v['bytesWithBroadcast'])}, "
            f"seconds {_fmt(v['seconds'])}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problems (~1-2 min)")
    parser.add_argument("--repeat", type=int, default=1, help="distributed runs per algorithm")
    parser.add_argument("--workers", type=int, default=4, help="workers (= blocks)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument(
        "--parts", default="logistic,pmf", help="comma-separated subset of logistic,pmf"
    )
    parser.add_argument("--lr-samples", type=int, default=None, help="logistic rows")
    parser.add_argument("--lr-features", type=int, default=None, help="logistic features")
    parser.add_argument("--lr-density", type=float, default=None, help="logistic density")
    parser.add_argument("--lr-epochs", type=float, default=None, help="SGD budget (epochs)")
    args = parser.parse_args(argv)
    size = json.loads(json.dumps(SIZES["quick" if args.quick else "full"]))
    for arg, key in (("lr_samples", "samples"), ("lr_features", "features")):
        if getattr(args, arg) is not None:
            size["logistic"][key] = getattr(args, arg)
    if args.lr_density is not None:
        size["logistic"]["density"] = args.lr_density
    if args.lr_epochs is not None:
        size["lrEpochs"] = args.lr_epochs
    out = args.out or DEFAULT_OUT.with_stem(
        "seeds_comparison_quick" if args.quick else "seeds_comparison"
    )
    parts = [p for p in args.parts.split(",") if p]

    def echo(text: str) -> None:
        print(text, flush=True)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "bench": "seeds_comparison",
        "quick": args.quick,
        "repeat": args.repeat,
        "machine": machine(),
    }
    if "logistic" in parts:
        results["logistic"] = logistic_part(size, args.workers, args.workers, args.repeat, echo)
    if "pmf" in parts:
        results["pmf"] = pmf_part(size, args.workers, args.workers, args.repeat, echo)
    results["seconds"] = time.perf_counter() - started
    results["machine"]["loadAverageAtEnd"] = list(os.getloadavg())
    echo(table(results))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(results), indent=1, allow_nan=False) + "\n")
    echo(f"\nwrote {out} ({results['seconds']:.0f} s)")
    return 0


def _finite(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite floats (never reached) to None."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


if __name__ == "__main__":
    sys.exit(main())
