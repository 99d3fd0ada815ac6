"""The paper's scaling experiment (seed 001, Sec. IV, Figs. 4, 5 and 9) on `sim` and `local`.

The paper's instance (N = 600 000, d = 10 000, density 0.001, lambda1 = 1) in B = 256 blocks for
every W, run for the paper's 23 rounds: the same iterates and the same work at every W. On `sim`
with Lambda-like parameters (``faasopt.sim.LAMBDA``, 2048 MB workers) for W = 4 ... 256, and on
`local` (worker processes here) for W = 2 and 4. Prints a table, writes
``bench/results/scaling.json`` and PNG plots beside it. It never asserts.

    .venv/bin/python bench/scaling.py             # the full run, a few minutes
    .venv/bin/python bench/scaling.py --quick     # a smoke run on a small instance, ~30 s
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread, before numpy loads, as the workers run

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

from faasopt.scaling import (  # noqa: E402
    PAPER,
    ScalingPoint,
    paper_job,
    run_scaling,
    scaling_figures,
)
from faasopt.sim import LAMBDA  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "fista-like compute (cpu_slowdown 3.3)": replace(LAMBDA, cpu_slowdown=3.3),
    "compiled coordinator (message_overhead 25 us)": replace(
        LAMBDA, message_overhead_seconds=25e-6
    ),
    "both": replace(LAMBDA, cpu_slowdown=3.3, message_overhead_seconds=25e-6),
}
"""What drives the gap to the paper: x-steps as slow as the paper's FISTA (DESIGN.md: FISTA takes
3-3.6x the time of L-BFGS), and a coordinator that takes in a message in 25 us (the paper's C++
scheduler with ZMQ and several master threads) instead of nats-py's 250 us."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small instance, W up to 64")
    parser.add_argument("--local", default="2,4", help="worker counts on local ('' for none)")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/scaling.json)")
    parser.add_argument(
        "--no-variants", action="store_true", help="skip the runs with other model parameters"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    name = "scaling_quick" if args.quick else "scaling"
    out = args.out or RESULTS / f"{name}.json"
    if args.quick:
        job = paper_job(blocks=64, rounds=10, samples=60_000, features=2_000, name="scaling-quick")
        counts = [4, 8, 16, 32, 64]
    else:
        job = paper_job()
        counts = [4, 8, 16, 32, 64, 128, 256]
    local = [int(w) for w in args.local.split(",") if w]
    print(
        f"{'platform':8} {'W':>4} {'solve s':>8} {'speedup':>8} {'eff.':>6} "
        f"{'compute/it':>10} {'idle/it':>9} {'comm/it':>9} {'cold p50':>8} {'$':>9}"
    )

    def show(p: ScalingPoint) -> None:
        print(
            f"{p.platform:8} {p.workers:4d} {p.solve_seconds:8.3f} {'':>8} {'':>6} "
            f"{p.compute_per_round:10.4f} {p.idle_per_round:9.4f} "
            f"{p.communication_per_round:9.4f} {p.cold_start_median or 0:8.2f} "
            f"{p.cost_dollars or 0:9.5f}",
            flush=True,
        )

    started = time.perf_counter()
    points = run_scaling(job, counts, LAMBDA, local, on_point=show)
    seconds = time.perf_counter() - started
    print("\nrelative to W = 4 on the same platform (S = t4 / tW, E = S / (W / 4)):")
    for p in points:
        if p.speedup is not None:
            print(
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
    print(f"\nsim vs the paper: {json.dumps(comparison)}")
    variants = {}
    if not (args.quick or args.no_variants):
        for label, settings in VARIANTS.items():
            ps = run_scaling(job, [4, 64, 256], settings)
            variants[label] = {"sim": asdict(settings), "points": [asdict(p) for p in ps]}
            print(
                f"{label}: "
                + ", ".join(
                    f"W = {p.workers}: solve {p.solve_seconds:.3f} s, S = {p.speedup:.2f}, "
                    f"E = {p.efficiency:.1%}"
                    for p in ps
                ),
                flush=True,
            )
    figures = scaling_figures(points)
    out.parent.mkdir(parents=True, exist_ok=True)
    images = []
    for key, figure in figures.items():
        path = out.with_name(f"{out.stem}_{key}.png")
        figure.savefig(path, dpi=110)
        images.append(path.name)
    spec = job.spec
    out.write_text(
        json.dumps(
            {
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
                "variants": variants,
                "images": images,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out} and {', '.join(images)} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
