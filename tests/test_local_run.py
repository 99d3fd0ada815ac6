"""Distributed runs with a real nats-server and real worker processes, checked against the
in-process reference and scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import liblinear, objective

import faasopt
from faasopt.data import synthetic_blocks
from faasopt.solvers.admm import reference_admm
from faasopt.spec import TrainingJob

SYN = {"samples": 3000, "features": 120, "density": 0.05, "seed": 21}
TIGHT_ADMM = {
    "primalTolerance": 1e-7,
    "dualTolerance": 1e-7,
    "maxIterations": 3000,
    "localSolver": {"gradientTolerance": 1e-9, "relativeImprovement": 0},
}
PAPER_ADMM: dict = {}  # the defaults: the paper's tolerances


def _job(manifest, **workers):
    return TrainingJob.from_yaml(
        manifest({"spec": {"problem": {"data": {"synthetic": SYN}}, "workers": workers}})
    )


def _trace(result) -> np.ndarray:
    return np.array([entry["objective"] for entry in result.report["trace"]])


def test_distributed_run_reproduces_the_reference(manifest):
    job = _job(manifest, count=2, blocks=4)
    result = faasopt.run(job, quiet_workers=True)
    blocks = synthetic_blocks(**SYN, block_ids=range(4), blocks=4)
    reference = reference_admm(blocks, job.admm_settings())
    assert result.converged and reference.converged
    assert result.iterations == reference.iterations
    expected = np.array([r.objective for r in reference.history])
    np.testing.assert_allclose(_trace(result), expected, rtol=1e-12)
    np.testing.assert_allclose(result.solution, reference.z, rtol=0, atol=1e-12)
    assert result.objective == pytest.approx(reference.objective, rel=1e-12)


def test_blocks_not_workers_same_iterates_for_1_2_4_workers(manifest):
    job = _job(manifest, count=4, blocks=4)
    runs = {w: faasopt.run(job, workers=w, quiet_workers=True) for w in (1, 2, 4)}
    assert {r.iterations for r in runs.values()} == {runs[4].iterations}
    for w in (1, 2):
        np.testing.assert_allclose(_trace(runs[w]), _trace(runs[4]), rtol=1e-9)
        assert runs[w].report["workers"] == w and runs[w].report["blocks"] == 4
    assert all(len(e["perWorker"]) == 2 for e in runs[2].report["trace"])


def test_tight_run_matches_liblinear_to_1e_6(manifest):
    patch = {
        "spec": {
            "problem": {"data": {"synthetic": SYN}},
            "algorithm": {"admm": TIGHT_ADMM},
            "workers": {"count": 2},
        }
    }
    result = faasopt.run(manifest(patch), quiet_workers=True)
    parts = synthetic_blocks(**SYN, block_ids=range(2), blocks=2)
    A = sp.vstack([b.A for b in parts]).tocsr()
    y = np.concatenate([b.y for b in parts])
    best = objective(A, y, liblinear(A, y, 1.0), 1.0)
    assert result.converged
    assert objective(A, y, result.solution, 1.0) == pytest.approx(best, rel=1e-6)
    assert result.objective == pytest.approx(objective(A, y, result.solution, 1.0), rel=1e-12)


@pytest.mark.parametrize(
    ("admm", "rel"), [(TIGHT_ADMM, 1e-6), (PAPER_ADMM, 1e-3)], ids=["tight", "paper"]
)
def test_libsvm_file_run_matches_liblinear(manifest, tmp_path, admm, rel):
    rng = np.random.default_rng(4)
    A = sp.random(900, 40, density=0.15, random_state=rng, format="csr")
    w = rng.normal(size=40)
    y = np.where(A @ w + rng.normal(size=900) > 0, 1.0, -1.0)
    lines = []
    for i in range(900):
        row = A.getrow(i)
        feats = " ".join(f"{j + 1}:{v:.17g}" for j, v in zip(row.indices, row.data, strict=True))
        lines.append(f"{int(y[i]):+d} {feats}")
    (tmp_path / "train.svm").write_text("\n".join(lines) + "\n")
    patch = {
        "spec": {
            "problem": {"l1": 0.5, "data": {"synthetic": None, "libsvm": {"uri": "train.svm"}}},
            "algorithm": {"admm": admm},
            "workers": {"count": 3},
        }
    }
    result = faasopt.run(manifest(patch), quiet_workers=True)
    assert result.converged and result.report["rows"] == 900
    best = objective(A, y, liblinear(A, y, 0.5), 0.5)
    assert objective(A, y, result.solution, 0.5) == pytest.approx(best, rel=rel)


def test_report_contract_and_files(manifest, tmp_path):
    out = tmp_path / "out"
    result = faasopt.run(_job(manifest, count=2), out=out, quiet_workers=True)
    report = json.loads((out / "report.json").read_text())
    assert np.array_equal(np.load(out / "solution.npy"), result.solution)
    for key in (
        "converged", "iterations", "objective", "primalResidual", "dualResidual", "wallSeconds",
        "speedup", "efficiency", "workers", "blocks", "rotations", "trace", "coldStarts",
    ):  # fmt: skip
        assert key in report, key
    assert report["converged"] is True and report["status"] == "converged"
    assert report["iterations"] == len(report["trace"]) > 1
    assert report["primalResidual"] <= 0.02 and report["dualResidual"] <= 0.02
    first = report["trace"][0]
    assert first["objective"] == pytest.approx(SYN["samples"] * np.log(2))  # F(z_0 = 0)
    for entry in report["trace"]:
        assert set(entry["perWorker"]) == {"w0", "w1"}
        for t in entry["perWorker"].values():
            assert t["compute"] > 0 and t["idle"] >= 0 and t["communication"] >= 0
        assert entry["gradientEvaluations"] >= 2
    assert [c["worker"] for c in report["coldStarts"]] == ["w0", "w1"]
    assert all(0 < c["seconds"] < 60 for c in report["coldStarts"])
    assert report["messagesRejected"] == {}
    assert all(rss > 10_000_000 for rss in report["peakRssBytes"]["workers"].values())


def test_not_converging_is_a_reported_result(manifest):
    result = faasopt.run(
        manifest({"spec": {"algorithm": {"admm": {"maxIterations": 3}}}}), quiet_workers=True
    )
    assert not result.converged
    assert result.report["status"] == "maxIterations" and result.iterations == 3
    assert result.report["primalResidual"] > 0.02 or result.report["dualResidual"] > 0.02


def test_active_deadline_ends_the_run_as_failed(manifest):
    patch = {
        "spec": {
            "algorithm": {
                "admm": {"maxIterations": 10**6, "primalTolerance": 1e-30, "dualTolerance": 1e-30}
            },
            # Long enough for the workers to start on a loaded machine, then to run some rounds.
            "runPolicy": {"activeDeadlineSeconds": 8},
        }
    }
    result = faasopt.run(manifest(patch), quiet_workers=True)
    assert result.report["status"] == "failed" and not result.converged
    assert "exceeded its active deadline of 8 s" in result.report["error"]
    assert result.iterations > 0  # it ran, then the deadline stopped it


def test_peak_memory_is_each_processes_own(manifest):
    """A worker's figure is its own, not the peak it inherited from a large parent."""
    ballast = np.ones(400 * 2**20 // 8)  # 400 MB in the coordinator's process
    result = faasopt.run(_job(manifest, count=2), quiet_workers=True)
    workers = result.report["peakRssBytes"]["workers"].values()
    assert all(20e6 < rss < 300e6 for rss in workers), list(workers)
    assert result.report["peakRssBytes"]["coordinator"] >= ballast.nbytes
