"""bench/seeds_comparison.py in a reduced --quick: the JSON's shape and that every distributed run
matched its in-process reference. No timing is asserted (bench/README.md)."""

from __future__ import annotations

import json

from faasopt.cli import _bench_script

TINY = {
    "logistic": {"samples": 1200, "features": 120, "density": 0.05, "seed": 7},
    "l1": 1.0,
    "lrEpochs": 10.0,
    "admmRounds": 30,
    "ratings": {"users": 80, "items": 60, "rank": 3, "ratings": 4000, "noise": 0.3, "seed": 1,
                "holdout": 500},
    "pmf": {"rank": 3, "regularization": 0.5},
    "pmfBatch": 50,
    "pmfEpochs": 8.0,
}  # fmt: skip


def test_seeds_comparison_quick_writes_its_json(tmp_path, monkeypatch):
    bench = _bench_script("seeds_comparison")
    monkeypatch.setitem(bench.SIZES, "quick", TINY)
    monkeypatch.setattr(bench, "SGD_GRID", {"nesterov": (3.0, 10.0)})
    monkeypatch.setattr(bench, "PMF_RATES", (1.0, 2.0))
    out = tmp_path / "seeds.json"
    assert bench.main(["--quick", "--workers", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["quick"] is True and results["repeat"] == 1
    assert {"date", "cpus", "commit"} <= set(results["machine"])

    lr = results["logistic"]
    gaps = [str(g) for g in lr["gaps"]]
    assert set(lr["algorithms"]) == {"ADMM", "MA-SGD", "GA-SGD"}
    assert lr["optimum"]["objective"] > 0
    for name, a in lr["algorithms"].items():
        assert set(a["rounds"]) == set(gaps) == set(a["medianSeconds"]), name
        assert a["rounds"][gaps[-1]] is not None, name  # the tight gap is reached
        assert len(a["runs"]) == 1, name
        run = a["runs"][0]
        assert run["sameAsReference"] is True, name  # distributed iterates = reference's
        assert run["status"] != "failed" and run["error"] is None, name
        assert run["finalGap"] <= lr["gaps"][-1] + 1e-12, name
    for g in gaps:
        assert set(lr["ratios"][g]) == {"MA-SGD/ADMM", "GA-SGD/ADMM", "GA-SGD/MA-SGD"}
        assert all(set(v) == {"rounds", "seconds"} for v in lr["ratios"][g].values())
    assert [c["method"] for c in lr["algorithms"]["GA-SGD"]["grid"]] == ["nesterov"] * 2

    pmf = results["pmf"]
    thresholds = [str(t) for t in pmf["thresholds"]]
    assert len(thresholds) == 2 and pmf["thresholds"][0] > pmf["thresholds"][1]
    assert set(pmf["variants"]) == {"BSP", "ISP"}
    assert pmf["variants"]["ISP"]["significance"] == 0.7
    for name, v in pmf["variants"].items():
        assert set(v["rounds"]) == set(thresholds), name
        assert len(v["runs"]) == 1 and v["runs"][0]["sameAsReference"] is True, name
    for t in thresholds:
        assert set(pmf["ratios"][t]) == {
            "rounds",
            "bytesSent",
            "wireBytes",
            "bytesWithBroadcast",
            "seconds",
        }
