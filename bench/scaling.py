"""The paper's scaling experiment (seed 001, Sec. IV, Figs. 4, 5 and 9) on `sim` and `local`.

The paper's instance (N = 600 000, d = 10 000, density 0.001, lambda1 = 1) in B = 256 blocks for
every W, run for the paper's 23 rounds: the same iterates and the same work at every W. On `sim`
with Lambda-like parameters (``faasopt.sim.LAMBDA``, 2048 MB workers) for W = 4 ... 256, and on
`local` (worker processes here) for W = 2 and 4. Prints a table, writes
``bench/results/scaling.json`` and PNG plots beside it. It never asserts. The experiment is
``faasopt.scaling.bench_scaling``; ``faasopt bench scaling`` is the same with the CLI's defaults.

    .venv/bin/python bench/scaling.py             # the full run, a few minutes
    .venv/bin/python bench/scaling.py --quick     # a smoke run on a small instance, ~30 s
"""

from __future__ import annotations

import os

from faasopt.payload import WORKER_ENV

os.environ.update(WORKER_ENV)  # one BLAS thread, before numpy loads, as the workers run

import argparse
from pathlib import Path

from faasopt.scaling import bench_name, bench_scaling

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small instance, W up to 64")
    parser.add_argument(
        "--local", help="worker counts on local, e.g. 2,4 ('' for none; default LOCAL_COUNTS)"
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/scaling.json)")
    parser.add_argument(
        "--no-variants", action="store_true", help="skip the runs with other model parameters"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    bench_scaling(
        args.out or RESULTS / f"{bench_name(args.quick)}.json",
        quick=args.quick,
        local_counts=None if args.local is None else [int(w) for w in args.local.split(",") if w],
        variants=not args.no_variants,
        echo=lambda line: print(line, flush=True),
    )


if __name__ == "__main__":
    main()
