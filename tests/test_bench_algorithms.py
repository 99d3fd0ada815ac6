"""`faasopt bench algorithms`: the door finds the benchmark, which measures what it says."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from faasopt.cli import _bench_script, app
from faasopt.data import synthetic_blocks
from faasopt.solvers.admm import AdmmSettings, RoundRecord


def test_the_cli_door_opens_on_the_script():
    result = CliRunner().invoke(app, ["bench", "algorithms", "--help"])
    assert result.exit_code == 0 and "--quick" in result.output


def test_round_bytes_are_the_real_frames_of_one_round():
    bench = _bench_script("algorithms")
    record = RoundRecord(3, 1.0, 0.1, 0.1, 2.0, 40, (10,) * 4, (4,) * 4, 0.5)
    size = bench.round_bytes(record, n_blocks=4, features=1000)
    arrays = 4 * 2 * 8 * 1000  # z to each of 4 workers, x_b back from each
    assert arrays < size < arrays + 4 * 2 * 1024  # plus a header under 1 kB per frame


def test_a_configuration_runs_to_both_milestones():
    bench = _bench_script("algorithms")
    blocks = synthetic_blocks(1200, 40, 0.1, 5, range(4), 4)
    A, y = bench.stacked(blocks)
    x, _ = bench.liblinear(A, y, 1.0)
    reference = bench.objective(A, y, x, 1.0)
    problem = bench.Problem("tiny", "tiny", blocks, 1.0)
    run = bench.run_configuration(problem, AdmmSettings(), reference, max_rounds=200)
    assert set(run["milestones"]) == {"paper", "gap"}
    assert run["milestones"]["gap"]["gap"] <= bench.GAP and run["finalGap"] <= bench.GAP
    work = [t["fullGradientEquivalents"] for t in run["trace"]]
    assert np.all(np.diff(work) > 0) and run["trace"][-1]["iterations"] == run["rounds"]
