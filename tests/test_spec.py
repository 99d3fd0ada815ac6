"""The TrainingJob spec: defaults, wire names, and a table of bad manifests that exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from faasopt.cli import app
from faasopt.errors import SpecError
from faasopt.solvers.admm import Penalty, Schedule, Stopping
from faasopt.spec import TrainingJob

runner = CliRunner()


def test_defaults_are_the_fastest_measured_with_the_papers_stopping_rule(manifest):
    job = TrainingJob.from_yaml(manifest())
    admm = job.spec.algorithm.admm
    assert (admm.rho, admm.penalty, admm.max_iterations) == (1.0, Penalty.SPECTRAL, 100)
    assert (admm.relaxation, admm.stopping) == (1.8, Stopping.ABSOLUTE)
    assert (admm.primal_tolerance, admm.dual_tolerance) == (0.02, 0.02)
    assert (admm.absolute_tolerance, admm.relative_tolerance) == (1e-6, 1e-4)
    local = admm.local_solver
    assert (local.method, local.gradient_tolerance, local.relative_improvement) == (
        "lbfgs",
        1.0,
        1e-12,
    )
    assert (local.tolerance_schedule, local.schedule_factor) == (Schedule.RESIDUALS, 1.0)
    assert local.min_iterations == 1
    assert job.spec.workers.block_count == job.spec.workers.count == 2
    assert job.spec.workers.time_limit_seconds == 900 and job.spec.workers.memory_mb == 512
    assert job.metadata.namespace == "default"
    assert job.spec.problem.l2 == 0.0 and job.spec.scale_in.policy == "none"


def test_wire_names_are_camel_case_and_round_trip(manifest):
    job = TrainingJob.from_yaml(manifest({"spec": {"workers": {"memoryMB": 1024, "blocks": 4}}}))
    wire = job.to_dict()
    assert wire["spec"]["workers"]["memoryMB"] == 1024
    assert wire["spec"]["algorithm"]["admm"]["localSolver"]["gradientTolerance"] == 1.0
    assert wire["spec"]["algorithm"]["admm"]["localSolver"]["toleranceSchedule"] == "residuals"
    assert wire["spec"]["runPolicy"]["backoffLimit"] == 3
    assert TrainingJob.from_dict(wire).to_dict() == wire


def test_python_api_raises_the_same_errors():
    with pytest.raises(SpecError) as info:
        TrainingJob.from_dict(
            {"metadata": {"name": "x"}, "spec": {"problem": {"l1": -1, "data": {}}}}
        )
    text = str(info.value)
    assert "spec.problem.l1: must be >= 0, got -1" in text
    assert "spec.problem.data: exactly one of synthetic, libsvm must be given, got none" in text


SYN = {"synthetic": {"samples": 100, "features": 10, "density": 0.1}}
BAD = [
    # (patch, text expected in the error)
    ({"spec": {"problem": {"l1": -1}}}, "spec.problem.l1: must be >= 0, got -1"),
    ({"spec": {"problem": {"l2": "big"}}}, "spec.problem.l2: must be a number, got 'big'"),
    ({"spec": {"problem": {"loss": "hinge"}}}, "spec.problem.loss: must be one of 'logistic'"),
    ({"spec": {"problem": {"data": {"libsvm": {"uri": "x.svm"}}}}}, "exactly one of synthetic"),
    ({"spec": {"problem": {"data": None}}}, "spec.problem.data: required field is missing"),
    ({"spec": {"problem": {"data": {"synthetic": None}}}}, "got none"),
    (
        {"spec": {"problem": {"data": {"synthetic": {"density": 0}}}}},
        "spec.problem.data.synthetic.density: must be > 0",
    ),
    (
        {"spec": {"problem": {"data": {"synthetic": {"samples": 2.5}}}}},
        "spec.problem.data.synthetic.samples: must be an integer",
    ),
    ({"spec": {"problem": {"lambda1": 1}}}, "spec.problem.lambda1: unknown field"),
    ({"spec": {"algorithm": {"admm": {"primalTolerance": -0.1}}}}, "primalTolerance: must be > 0"),
    ({"spec": {"algorithm": {"admm": {"dualTolerance": 0}}}}, "dualTolerance: must be > 0"),
    ({"spec": {"algorithm": {"admm": {"rho": 0}}}}, "spec.algorithm.admm.rho: must be >= 1e-06, got 0"),
    ({"spec": {"algorithm": {"admm": {"rho": 1e7}}}}, "spec.algorithm.admm.rho: must be <= 1e+06"),
    ({"spec": {"algorithm": {"admm": {"relaxation": 2.0}}}}, "spec.algorithm.admm.relaxation: must be <= 1.9, got 2.0"),
    ({"spec": {"algorithm": {"admm": {"relaxation": 0.5}}}}, "spec.algorithm.admm.relaxation: must be >= 1, got 0.5"),
    ({"spec": {"algorithm": {"admm": {"relaxation": "1.5"}}}}, "spec.algorithm.admm.relaxation: must be a number"),
    ({"spec": {"algorithm": {"admm": {"stopping": "boyd"}}}}, "spec.algorithm.admm.stopping: must be one of 'absolute' or 'relative'"),
    ({"spec": {"algorithm": {"admm": {"relativeTolerance": 0}}}}, "spec.algorithm.admm.relativeTolerance: must be > 0"),
    ({"spec": {"algorithm": {"admm": {"localSolver": {"toleranceSchedule": "exact"}}}}}, "localSolver.toleranceSchedule: must be one of 'fixed' or 'residuals'"),
    ({"spec": {"algorithm": {"admm": {"localSolver": {"scheduleFactor": 0}}}}}, "localSolver.scheduleFactor: must be > 0"),
    ({"spec": {"algorithm": {"admm": {"penalty": "magic"}}}}, "admm.penalty: must be one of"),
    ({"spec": {"algorithm": {"admm": {"maxIterations": 0}}}}, "maxIterations: must be >= 1"),
    (
        {"spec": {"algorithm": {"admm": {"localSolver": {"method": "newton"}}}}},
        "localSolver.method: must be one of 'lbfgs' or 'fista'",
    ),
    (
        {"spec": {"algorithm": {"admm": {"localSolver": {"gradientTolerance": -1}}}}},
        "localSolver.gradientTolerance: must be > 0",
    ),
    ({"spec": {"workers": {"count": 0}}}, "spec.workers.count: must be >= 1, got 0"),
    ({"spec": {"workers": {"count": "4"}}}, "spec.workers.count: must be an integer, got '4'"),
    ({"spec": {"workers": {"count": True}}}, "spec.workers.count: must be an integer, got True"),
    ({"spec": {"problem": {"l1": "2"}}}, "spec.problem.l1: must be a number, got '2'"),
    ({"spec": {"runPolicy": {"suspend": "yes"}}}, "spec.runPolicy.suspend: must be true or false, got 'yes'"),
    ({"spec": {"runPolicy": {"suspend": 1}}}, "spec.runPolicy.suspend: must be true or false, got 1"),
    ({"spec": {"workers": {"count": 4, "blocks": 2}}}, "spec.workers.blocks: must be >= count (4)"),
    ({"spec": {"workers": {"platform": "cloudrun"}}}, "spec.workers.platform: must be one of 'auto', 'local', 'sim', 'pods', 'knative', 'openfaas' or 'lambda'"),
    ({"spec": {"workers": {"memoryMB": 10}}}, "spec.workers.memoryMB: must be >= 64"),
    ({"spec": {"workers": {"replicas": 3}}}, "spec.workers.replicas: unknown field"),
    ({"spec": {"runPolicy": {"suspend": "maybe"}}}, "spec.runPolicy.suspend: must be true or false"),
    ({"kind": "Job"}, "kind: must be one of 'TrainingJob'"),
    ({"apiVersion": "v1"}, "apiVersion: must be one of 'faasopt.dev/v1alpha1'"),
    ({"metadata": {"name": "Bad_Name"}}, "metadata.name: must be a DNS-1123 label"),
    ({"metadata": None}, "metadata: required field is missing"),
    ({"spec": {"problem": {"data": {"libsvm": {"uri": "ftp://h/f"}, "synthetic": None}}}}, "spec.problem.data.libsvm.uri: must be a path, s3://bucket/key or http(s)://host/path, got 'ftp://h/f'"),
    (
        {"spec": {"problem": {"data": {"libsvm": {"uri": "missing.svm"}, "synthetic": None}}}},
        "missing.svm: file not found",
    ),
    (
        {"spec": {"problem": {"data": {"libsvm": {"uri": "bad.svm"}, "synthetic": None}}}},
        "bad.svm:2:",
    ),
    (
        {"spec": {"problem": {"data": {"synthetic": {"samples": 3}}}, "workers": {"count": 2, "blocks": 4}}},
        "spec.workers.blocks: must be <= the data's rows (3), got 4",
    ),
    ({"spec": {"scaleIn": {"policy": "auto", "intervalSeconds": 5.0, "deltaSeconds": 10.0}}}, "spec.scaleIn: deltaSeconds (10) must be <= intervalSeconds (5)"),
    ({"spec": {"scaleIn": {"policy": "auto", "minWorkers": 3}}}, "spec.scaleIn.minWorkers: must be <= workers.count (2), got 3"),
    ({"spec": {"scaleIn": {"policy": "sometimes"}}}, "spec.scaleIn.policy: must be one of 'none', 'auto' or 'idle'"),
    ({"spec": {"budget": {"dollars": 0.0}}}, "spec.budget.dollars: must be > 0"),
    ({"spec": {"workers": {"platform": "pods"}}}, "spec.workers.platform: pods workers are started by the operator on a cluster, not by `faasopt run`"),
]  # fmt: skip


@pytest.mark.parametrize(("patch", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_manifest_exits_1_naming_the_field(manifest, tmp_path, patch, expected):
    (tmp_path / "bad.svm").write_text("+1 1:0.5 3:1\n-1 2:x\n")
    path = manifest(patch)
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 1, result.output
        assert expected in result.output.replace("\n", " ")


def test_bad_manifests_table_is_large_enough():
    assert len(BAD) >= 20


def test_not_yaml_and_not_a_mapping(tmp_path):
    (tmp_path / "a.yaml").write_text("spec: [unclosed\n")
    (tmp_path / "b.yaml").write_text("- just\n- a list\n")
    a = runner.invoke(app, ["validate", str(tmp_path / "a.yaml")])
    b = runner.invoke(app, ["validate", str(tmp_path / "b.yaml")])
    assert a.exit_code == b.exit_code == 1
    assert "a.yaml:2: not valid YAML" in a.output
    assert "a manifest must be a mapping, got list" in b.output


def test_every_problem_is_listed_at_once(manifest):
    path = manifest({"spec": {"problem": {"l1": -1}, "workers": {"count": 0, "bogus": 1}}})
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    for text in ("spec.problem.l1", "spec.workers.count", "spec.workers.bogus"):
        assert text in result.output


def test_real_cli_process_exits_1_on_stderr(manifest):
    path = manifest({"spec": {"problem": {"l1": -1}}})
    proc = subprocess.run(
        [sys.executable, "-m", "faasopt.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "spec.problem.l1: must be >= 0, got -1" in proc.stderr
    assert proc.stdout == ""


def test_admm_settings_carry_every_field(manifest):
    patch = {"penalty": "balanced", "relaxation": 1.5, "stopping": "relative",
             "absoluteTolerance": 1e-7, "relativeTolerance": 1e-3,
             "localSolver": {"toleranceSchedule": "fixed", "scheduleFactor": 2.0}}  # fmt: skip
    job = TrainingJob.from_yaml(manifest({"spec": {"algorithm": {"admm": patch}}}))
    s = job.admm_settings()
    assert (s.penalty, s.relaxation, s.stopping) == (Penalty.BALANCED, 1.5, Stopping.RELATIVE)
    assert (s.absolute_tolerance, s.relative_tolerance) == (1e-7, 1e-3)
    assert (s.tolerance_schedule, s.schedule_factor) == (Schedule.FIXED, 2.0)


def test_validate_accepts_the_examples():
    for path in ("examples/quickstart.yaml",):
        result = runner.invoke(app, ["validate", path])
        assert result.exit_code == 0, result.output
        assert "valid" in result.output
        assert yaml.safe_load(Path(path).read_text())["kind"] == "TrainingJob"
