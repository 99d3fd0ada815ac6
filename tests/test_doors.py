"""The local door onto the simulated platform and the scaling benchmark: `faasopt run` and
`faasopt.run` with `workers.platform: sim`, `faasopt bench scaling`, and the plan's scale-in
settings that every door reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_MANIFEST
from typer.testing import CliRunner

import faasopt
from faasopt.cli import app
from faasopt.plan import plan_job
from faasopt.report import REPORT_FILE, SOLUTION_FILE
from faasopt.runner import DEFAULT_SIM_MODEL, SimModel
from faasopt.scalein import ScaleInSettings
from faasopt.scaling import QUICK, QUICK_COUNTS, ScalingPoint
from faasopt.spec import TrainingJob

SIM = {"spec": {"workers": {"platform": "sim"}}}


def _objectives(report: dict) -> list[float]:
    return [entry["objective"] for entry in report["trace"]]


@pytest.fixture(scope="module")
def local_report() -> dict:
    """The report of a real local run of the base manifest (worker processes, NATS)."""
    return faasopt.run(TrainingJob.from_dict(BASE_MANIFEST), quiet_workers=True).report


def test_faasopt_run_cli_runs_a_sim_job_and_writes_the_report_of_a_run(
    manifest, tmp_path: Path, local_report: dict
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(manifest(SIM)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["predicted"] is True and report["converged"] is True
    assert report["platform"] == "sim"
    assert report["simulation"]["model"] == DEFAULT_SIM_MODEL == "lambda"
    assert _objectives(report) == _objectives(local_report)
    assert set(local_report) <= set(report)
    assert np.load(out / SOLUTION_FILE).shape == (report["features"],)
    assert (out / "report.html").is_file() and (out / "objective.png").is_file()
    assert "predicted by the sim, model lambda" in result.stdout
    assert "simulating on a virtual clock" in result.stderr
    assert result.stderr.count("s predicted") == report["iterations"]


def test_faasopt_run_api_runs_a_sim_job_with_the_model_asked_for(
    manifest, tmp_path: Path, local_report: dict
) -> None:
    result = faasopt.run(manifest(SIM), sim_model="local", out=tmp_path)
    report = result.report
    assert report["predicted"] is True and report["simulation"]["model"] == "local"
    assert report["simulation"]["settings"]["cores"] == 2  # this machine's model
    assert _objectives(report) == _objectives(local_report)
    assert result.out == tmp_path
    assert json.loads((tmp_path / REPORT_FILE).read_text())["objective"] == result.objective
    np.testing.assert_array_equal(np.load(tmp_path / SOLUTION_FILE), result.solution)


def test_a_sim_job_has_no_checkpoints_or_metrics(manifest, tmp_path: Path) -> None:
    path = str(manifest(SIM))
    result = CliRunner().invoke(app, ["run", path, "--resume", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "spec.workers.platform: sim runs in this process" in result.stderr
    assert "no resume" in result.stderr
    bad = CliRunner().invoke(app, ["run", path, "--sim-model", "azure"])
    assert bad.exit_code == 2
    words = " ".join(re.sub("[│╭╮╰╯─]", " ", bad.stderr).split())  # rich's box, unwrapped
    assert f"must be one of {', '.join(SimModel)}, got 'azure'" in words


def test_the_manifests_budget_reaches_the_sim_through_the_plan(manifest, tmp_path: Path) -> None:
    path = manifest({**SIM, "spec": {**SIM["spec"], "budget": {"dollars": 1e-9}}})
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path), "--no-plots"])
    assert result.exit_code == 2
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["error"].startswith("BudgetExceeded")


def test_the_plan_carries_the_scale_in_settings_of_the_manifest(manifest) -> None:
    scale_in = {
        "policy": "auto",
        "intervalSeconds": 30.0,
        "deltaSeconds": 15.0,
        "threshold": 0.2,
        "kneeTolerance": 0.02,
        "kneePatience": 3,
        "ewmaSpan": 10,
        "minWorkers": 2,
        "minFitPoints": 6,
        "idleShare": 0.4,
        "windowRounds": 8,
    }
    spec = {
        "scaleIn": scale_in,
        "budget": {"dollars": 2.5},
        "runPolicy": {"activeDeadlineSeconds": 600},
    }
    plan = plan_job(TrainingJob.from_yaml(manifest({"spec": spec})))
    assert plan.scale_in == ScaleInSettings(
        policy="auto",
        interval_seconds=30.0,
        delta_seconds=15.0,
        threshold=0.2,
        knee_tolerance=0.02,
        knee_patience=3,
        ewma_span=10,
        min_workers=2,
        min_fit_points=6,
        idle_share=0.4,
        window_rounds=8,
        budget_dollars=2.5,
        deadline_seconds=600.0,
    )
    assert plan_job(TrainingJob.from_yaml(manifest())).scale_in == ScaleInSettings()


@pytest.mark.timeout(120)
def test_bench_scaling_quick_writes_the_table_json_and_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["bench", "scaling", "--quick", "--local", ""])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "scaling_quick.json").read_text())
    points = [ScalingPoint(**p) for p in data["points"]]
    assert [(p.platform, p.workers) for p in points] == [("sim", w) for w in QUICK_COUNTS]
    assert all(p.rounds == QUICK["rounds"] for p in points)
    assert (points[0].speedup, points[0].efficiency) == (1.0, 1.0)
    for p in points[1:]:
        assert p.speedup == pytest.approx(points[0].solve_seconds / p.solve_seconds)
        assert p.efficiency == pytest.approx(p.speedup / (p.workers / QUICK_COUNTS[0]))
    assert data["blocks"] == QUICK["blocks"] and data["variants"] == {}
    assert data["comparison"]["efficiencyAt64"] == points[-1].efficiency
    for image in data["images"]:
        assert (tmp_path / image).stat().st_size > 0
    assert len(data["images"]) == 3
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [int(r[1]) for r in rows if r[:1] == ["sim"] and r[1].isdigit()] == list(QUICK_COUNTS)
    assert "sim vs the paper" in result.stdout
