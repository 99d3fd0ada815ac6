"""The TrainingJob spec: defaults, wire names, and a table of bad manifests that exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BASE_MANIFEST, merge
from typer.testing import CliRunner

from faasopt.cli import app
from faasopt.errors import SpecError
from faasopt.solvers.admm import Penalty, Schedule, Stopping
from faasopt.solvers.kmeans import Criterion, KMeansSettings
from faasopt.solvers.pmf import PmfProblem
from faasopt.solvers.sgd import (
    Method,
    OptimizerSettings,
    RateSchedule,
    SgdSettings,
    StopRule,
    Variant,
)
from faasopt.spec import Admm, TrainingJob

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
    assert (
        "spec.problem.data: exactly one of synthetic, libsvm, ratings, syntheticRatings, blobs "
        "must be given, got none"
    ) in text


SYN = {"synthetic": {"samples": 100, "features": 10, "density": 0.1}}
SR = {"syntheticRatings": {"users": 30, "items": 20, "rank": 2, "ratings": 300}}
BLOBS = {"blobs": {"samples": 40, "features": 3, "centers": 4}}
PMF = {"loss": "pmf", "data": {"synthetic": None, **SR}}
"""A pmf problem on synthetic ratings: patch ``algorithm`` with ``sgd`` to make it valid."""
KM = {"loss": "kmeans", "kmeans": {"k": 4}, "data": {"synthetic": None, **BLOBS}}
"""A kmeans problem on blobs: patch ``algorithm`` with ``kmeans`` to make it valid."""
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
    # the algorithms of issue #10 and the combinations that make no sense
    ({"spec": {"algorithm": {"admm": {}, "sgd": {}}}}, "spec.algorithm: exactly one of admm, sgd, kmeans must be given, got admm, sgd"),
    ({"spec": {"algorithm": {"sgd": {}, "kmeans": {}}, "problem": KM}}, "spec.algorithm: exactly one of admm, sgd, kmeans must be given, got sgd, kmeans"),
    ({"spec": {"problem": PMF}}, "spec.algorithm: loss pmf is trained by sgd, got admm (the default when no algorithm is given)"),
    ({"spec": {"problem": PMF, "algorithm": {"admm": {"rho": 2.0}}}}, "spec.algorithm: loss pmf is trained by sgd, got admm"),
    ({"spec": {"problem": PMF, "algorithm": {"kmeans": {}}}}, "spec.algorithm: loss pmf is trained by sgd, got kmeans"),
    ({"spec": {"problem": KM}}, "spec.algorithm: loss kmeans is trained by kmeans, got admm"),
    ({"spec": {"problem": KM, "algorithm": {"sgd": {}}}}, "spec.algorithm: loss kmeans is trained by kmeans, got sgd"),
    ({"spec": {"algorithm": {"kmeans": {}}}}, "spec.algorithm: loss logistic is trained by admm or sgd, got kmeans"),
    ({"spec": {"problem": {"loss": "pmf"}, "algorithm": {"sgd": {}}}}, "spec.problem.data.synthetic: loss pmf needs ratings or syntheticRatings data, got synthetic"),
    ({"spec": {"problem": {"data": {"synthetic": None, **SR}}}}, "spec.problem.data.syntheticRatings: ratings data is for loss pmf only, got loss logistic"),
    ({"spec": {"problem": {"data": {"synthetic": None, "ratings": {"uri": "r.txt"}}}}}, "spec.problem.data.ratings: ratings data is for loss pmf only, got loss logistic"),
    ({"spec": {"problem": {**KM, "loss": "logistic"}, "algorithm": {"sgd": {}}}}, "spec.problem.data.blobs: blobs have no labels: for loss kmeans only, got loss logistic"),
    ({"spec": {"problem": {**PMF, "data": {"synthetic": None, **BLOBS}}, "algorithm": {"sgd": {}}}}, "spec.problem.data.blobs: blobs have no labels: for loss kmeans only, got loss pmf"),
    ({"spec": {"problem": {"pmf": {"rank": 3}}}}, "spec.problem.pmf: is for loss pmf only, got loss logistic"),
    ({"spec": {"problem": {"kmeans": {"k": 3}}}}, "spec.problem.kmeans: is for loss kmeans only, got loss logistic"),
    ({"spec": {"problem": {"loss": "kmeans"}, "algorithm": {"kmeans": {}}}}, "spec.problem.kmeans: required when loss is kmeans (k)"),
    ({"spec": {"problem": {**KM, "kmeans": {}}, "algorithm": {"kmeans": {}}}}, "spec.problem.kmeans.k: required field is missing"),
    ({"spec": {"problem": {**PMF, "l1": 0.5}, "algorithm": {"sgd": {}}}}, "spec.problem.l1: applies to loss logistic only (loss pmf has pmf.regularization), got 0.5"),
    ({"spec": {"problem": {**KM, "l2": 2.0}, "algorithm": {"kmeans": {}}}}, "spec.problem.l2: applies to loss logistic only (loss kmeans has none), got 2"),
    ({"spec": {"problem": {**KM, "kmeans": {"k": 41}}, "algorithm": {"kmeans": {}}}}, "spec.problem.kmeans.k: must be <= the data's rows (40), got 41"),
    ({"spec": {"problem": {"loss": "kmeans", "kmeans": {"k": 101}, "data": {"synthetic": {"samples": 100}}}, "algorithm": {"kmeans": {}}}}, "spec.problem.kmeans.k: must be <= the data's rows (100), got 101"),
    ({"spec": {"problem": KM, "algorithm": {"kmeans": {}}, "workers": {"count": 2, "blocks": 41}}}, "spec.workers.blocks: must be <= the data's rows (40), got 41"),
    ({"spec": {"problem": PMF, "algorithm": {"sgd": {}}, "workers": {"count": 2, "blocks": 301}}}, "spec.workers.blocks: must be <= the data's ratings (300), got 301"),
    ({"spec": {"problem": {"pmf": {"rank": 0}, **PMF}, "algorithm": {"sgd": {}}}}, "spec.problem.pmf.rank: must be >= 1, got 0"),
    ({"spec": {"problem": {"pmf": {"initScale": 0}, **PMF}, "algorithm": {"sgd": {}}}}, "spec.problem.pmf.initScale: must be > 0, got 0"),
    ({"spec": {"problem": {"pmf": {"regularization": -1}, **PMF}, "algorithm": {"sgd": {}}}}, "spec.problem.pmf.regularization: must be >= 0, got -1"),
    ({"spec": {"problem": {"loss": "kmeans", "kmeans": {"k": 0}, "data": {"synthetic": None, **BLOBS}}, "algorithm": {"kmeans": {}}}}, "spec.problem.kmeans.k: must be >= 1, got 0"),
    ({"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "s3://b/r.txt"}}}, "algorithm": {"sgd": {}}}}, "spec.problem.data.ratings.uri: must be a local path (s3:// and http(s):// ratings files are not supported yet), got 's3://b/r.txt'"),
    ({"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "r.txt", "sha256": "abc"}}}, "algorithm": {"sgd": {}}}}, "spec.problem.data.ratings.sha256"),
    ({"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "r.txt", "shuffleSeed": -1}}}, "algorithm": {"sgd": {}}}}, "spec.problem.data.ratings.shuffleSeed: must be >= 0, got -1"),
    ({"spec": {"problem": {**PMF, "data": {"synthetic": None, "syntheticRatings": {**SR["syntheticRatings"], "noise": -0.5}}}, "algorithm": {"sgd": {}}}}, "spec.problem.data.syntheticRatings.noise: must be >= 0, got -0.5"),
    ({"spec": {"problem": {**PMF, "data": {"synthetic": None, "syntheticRatings": {**SR["syntheticRatings"], "users": 0}}}, "algorithm": {"sgd": {}}}}, "spec.problem.data.syntheticRatings.users: must be > 0, got 0"),
    ({"spec": {"problem": {**PMF, "data": {"synthetic": None, "syntheticRatings": {**SR["syntheticRatings"], "holdout": -1}}}, "algorithm": {"sgd": {}}}}, "spec.problem.data.syntheticRatings.holdout: must be >= 0, got -1"),
    ({"spec": {"problem": {**KM, "data": {"synthetic": None, "blobs": {**BLOBS["blobs"], "spread": 0}}}, "algorithm": {"kmeans": {}}}}, "spec.problem.data.blobs.spread: must be > 0, got 0"),
    ({"spec": {"problem": {**KM, "data": {"synthetic": None, "blobs": {**BLOBS["blobs"], "centers": 0}}}, "algorithm": {"kmeans": {}}}}, "spec.problem.data.blobs.centers: must be > 0, got 0"),
    ({"spec": {"problem": {"data": {**SR}}}}, "spec.problem.data: exactly one of synthetic, libsvm, ratings, syntheticRatings, blobs must be given, got synthetic, syntheticRatings"),
    ({"spec": {"algorithm": {"sgd": {"significance": 0.7}}}}, "spec.algorithm.sgd.significance: significance > 0 needs variant modelAveraging: under gradientAveraging the step is taken at the coordinator, so no block has an update of its own to filter"),
    ({"spec": {"algorithm": {"sgd": {"syncEvery": 4}}}}, "spec.algorithm.sgd.syncEvery: syncEvery needs variant modelAveraging: GA-SGD syncs every step"),
    ({"spec": {"algorithm": {"sgd": {"variant": "modelAveraging"}}, "workers": {"straggler": {"policy": "speculate"}}}}, "spec.workers.straggler.policy: speculate needs stateless blocks; under modelAveraging each block keeps its optimizer and unsent updates on its worker, which a copy would fork"),
    ({"spec": {"algorithm": {"sgd": {"variant": "modelAveraging", "syncEvery": 0}}}}, "spec.algorithm.sgd.syncEvery: must be >= 1, got 0"),
    ({"spec": {"algorithm": {"sgd": {"variant": "modelAveraging", "significance": -0.1}}}}, "spec.algorithm.sgd.significance: must be >= 0, got -0.1"),
    ({"spec": {"algorithm": {"sgd": {"variant": "elastic"}}}}, "spec.algorithm.sgd.variant: must be one of 'gradientAveraging' or 'modelAveraging', got 'elastic'"),
    ({"spec": {"algorithm": {"sgd": {"batchSize": 0}}}}, "spec.algorithm.sgd.batchSize: must be >= 1, got 0"),
    ({"spec": {"algorithm": {"sgd": {"optimizer": {"method": "rmsprop"}}}}}, "spec.algorithm.sgd.optimizer.method: must be one of 'sgd', 'momentum', 'nesterov' or 'adam', got 'rmsprop'"),
    ({"spec": {"algorithm": {"sgd": {"optimizer": {"learningRate": 0}}}}}, "spec.algorithm.sgd.optimizer.learningRate: must be > 0, got 0"),
    ({"spec": {"algorithm": {"sgd": {"optimizer": {"momentum": 1.0}}}}}, "spec.algorithm.sgd.optimizer.momentum: must be < 1, got 1.0"),
    ({"spec": {"algorithm": {"sgd": {"optimizer": {"beta2": -0.1}}}}}, "spec.algorithm.sgd.optimizer.beta2: must be >= 0, got -0.1"),
    ({"spec": {"algorithm": {"sgd": {"optimizer": {"schedule": "linear"}}}}}, "spec.algorithm.sgd.optimizer.schedule: must be one of 'constant', 'step', 'inverseSqrt' or 'cosine', got 'linear'"),
    ({"spec": {"algorithm": {"sgd": {"optimizer": {"decayFactor": 1.5}}}}}, "spec.algorithm.sgd.optimizer.decayFactor: must be <= 1, got 1.5"),
    ({"spec": {"algorithm": {"sgd": {"optimizer": {"decayEvery": 0}}}}}, "spec.algorithm.sgd.optimizer.decayEvery: must be >= 1, got 0"),
    ({"spec": {"algorithm": {"sgd": {"stop": {"holdRounds": 0}}}}}, "spec.algorithm.sgd.stop.holdRounds: must be >= 1, got 0"),
    ({"spec": {"algorithm": {"sgd": {"stop": {"maxEpochs": 0}}}}}, "spec.algorithm.sgd.stop.maxEpochs: must be > 0, got 0"),
    ({"spec": {"algorithm": {"sgd": {"stop": {"lossThreshold": -1}}}}}, "spec.algorithm.sgd.stop.lossThreshold: must be >= 0, got -1"),
    ({"spec": {"algorithm": {"sgd": {"epochs": 3}}}}, "spec.algorithm.sgd.epochs: unknown field"),
    ({"spec": {"problem": KM, "algorithm": {"kmeans": {"criterion": "labels"}}}}, "spec.algorithm.kmeans.criterion: must be one of 'centroids' or 'inertia', got 'labels'"),
    ({"spec": {"problem": KM, "algorithm": {"kmeans": {"tolerance": -1}}}}, "spec.algorithm.kmeans.tolerance: must be >= 0, got -1"),
    ({"spec": {"problem": KM, "algorithm": {"kmeans": {"maxIterations": 0}}}}, "spec.algorithm.kmeans.maxIterations: must be >= 1, got 0"),
    ({"spec": {"problem": KM, "algorithm": {"kmeans": {"k": 3}}}}, "spec.algorithm.kmeans.k: unknown field"),
    ({"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "missing.txt"}}}, "algorithm": {"sgd": {}}}}, "missing.txt: file not found"),
    ({"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "bad.txt"}}}, "algorithm": {"sgd": {}}}}, "bad.txt:2: expected integer ids and a numeric rating, got '1 x 3'"),
]  # fmt: skip


@pytest.mark.parametrize(("patch", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_manifest_exits_1_naming_the_field(manifest, tmp_path, patch, expected):
    (tmp_path / "bad.svm").write_text("+1 1:0.5 3:1\n-1 2:x\n")
    (tmp_path / "bad.txt").write_text("0 0 4\n1 x 3\n")
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


# ---- the algorithms of issue #10: defaults, settings, and manifests of before unchanged ----


def _job(patch: dict) -> TrainingJob:
    return TrainingJob.from_dict(merge(BASE_MANIFEST, patch))


@pytest.mark.parametrize("name", ["quickstart.yaml", "libsvm.yaml", "libsvm-s3.yaml"])
def test_manifests_of_before_still_mean_admm_on_logistic_loss(name):
    job = TrainingJob.from_yaml(Path("examples") / name)
    wire = job.to_dict()["spec"]
    assert job.algorithm_name == "admm" and list(wire["algorithm"]) == ["admm"]
    assert set(wire["problem"]) == {"loss", "l1", "l2", "data"}
    assert wire["problem"]["loss"] == "logistic"
    assert job.admm_settings().max_iterations == job.spec.algorithm.admm.max_iterations


def test_no_algorithm_and_an_empty_one_mean_admm_with_its_defaults():
    for patch in ({}, {"spec": {"algorithm": {}}}, {"spec": {"algorithm": {"admm": None}}}):
        job = _job(patch)
        assert job.algorithm_name == "admm"
        assert job.spec.algorithm.admm == Admm()
        assert (job.spec.algorithm.sgd, job.spec.algorithm.kmeans) == (None, None)
        assert job.to_dict()["spec"]["algorithm"] == {
            "admm": Admm().model_dump(mode="json", by_alias=True, exclude_none=True)
        }
        assert job.spec.problem.pmf is None and job.spec.problem.kmeans is None


def test_sgd_defaults_are_the_dataclasses_defaults():
    job = _job({"spec": {"algorithm": {"sgd": {}}}})
    assert job.algorithm_name == "sgd"
    assert job.sgd_settings() == SgdSettings()
    assert job.spec.algorithm.admm is None
    assert job.to_dict()["spec"]["algorithm"] == {
        "sgd": {
            "variant": "gradientAveraging",
            "optimizer": {
                "method": "sgd",
                "learningRate": 0.1,
                "momentum": 0.9,
                "beta1": 0.9,
                "beta2": 0.999,
                "epsilon": 1e-8,
                "schedule": "constant",
                "decayEvery": 1,
                "decayFactor": 0.5,
                "horizon": 1000,
            },
            "batchSize": 128,
            "significance": 0.0,
            "seed": 0,
            "stop": {"holdRounds": 10, "maxEpochs": 10.0},
        }
    }


def test_sgd_settings_carry_every_field():
    sgd = {
        "variant": "modelAveraging",
        "optimizer": {"method": "nesterov", "learningRate": 0.05, "momentum": 0.8, "beta1": 0.5,
                      "beta2": 0.99, "epsilon": 1e-6, "schedule": "inverseSqrt",
                      "decayEvery": 7, "decayFactor": 0.25, "horizon": 99},
        "batchSize": 32, "syncEvery": 3, "significance": 0.7, "seed": 5,
        "stop": {"lossThreshold": 0.02, "holdRounds": 4, "maxEpochs": 2.5, "maxSeconds": 60},
    }  # fmt: skip
    job = _job({"spec": {"problem": PMF, "algorithm": {"sgd": sgd}}})
    assert job.sgd_settings() == SgdSettings(
        variant=Variant.MODEL_AVERAGING,
        optimizer=OptimizerSettings(
            method=Method.NESTEROV,
            learning_rate=0.05,
            momentum=0.8,
            beta1=0.5,
            beta2=0.99,
            epsilon=1e-6,
            schedule=RateSchedule.INVERSE_SQRT,
            decay_every=7,
            decay_factor=0.25,
            horizon=99,
        ),
        batch_size=32,
        sync_every=3,
        significance=0.7,
        seed=5,
        stop=StopRule(loss_threshold=0.02, hold_rounds=4, max_epochs=2.5, max_seconds=60.0),
    )
    assert TrainingJob.from_dict(job.to_dict()).to_dict() == job.to_dict()


def test_pmf_is_filled_with_its_defaults_and_makes_the_problem():
    job = _job({"spec": {"problem": PMF, "algorithm": {"sgd": {}}}})
    wire = job.to_dict()["spec"]["problem"]
    assert wire["pmf"] == {
        "rank": 10,
        "regularization": 0.05,
        "offset": 0.0,
        "seed": 0,
        "initScale": 0.1,
    }
    assert wire["data"] == {
        "syntheticRatings": {
            "users": 30,
            "items": 20,
            "rank": 2,
            "ratings": 300,
            "noise": 0.0,
            "seed": 0,
            "holdout": 0,
        }
    }
    problem = job.pmf_problem(30, 20, 300)
    assert problem == PmfProblem(n_users=30, n_items=20, rank=10, n_rows=300)
    custom = {"rank": 3, "regularization": 0.1, "offset": 3.5, "seed": 2, "initScale": 0.01}
    job = _job({"spec": {"problem": {**PMF, "pmf": custom}, "algorithm": {"sgd": {}}}})
    assert job.pmf_problem(30, 20, 300) == PmfProblem(
        n_users=30, n_items=20, rank=3, n_rows=300, l2=0.1, offset=3.5, seed=2, init_scale=0.01
    )


def test_kmeans_settings_take_k_from_the_problem():
    job = _job({"spec": {"problem": KM, "algorithm": {"kmeans": {}}}})
    assert job.algorithm_name == "kmeans"
    assert job.kmeans_settings() == KMeansSettings(k=4)
    assert job.to_dict()["spec"]["algorithm"] == {
        "kmeans": {"maxIterations": 300, "tolerance": 1e-4, "criterion": "centroids", "seed": 0}
    }
    assert job.to_dict()["spec"]["problem"]["data"]["blobs"] == {
        "samples": 40,
        "features": 3,
        "centers": 4,
        "spread": 1.0,
        "seed": 0,
    }
    patch = {"maxIterations": 20, "tolerance": 0.0, "criterion": "inertia", "seed": 9}
    job = _job({"spec": {"problem": KM, "algorithm": {"kmeans": patch}}})
    assert job.kmeans_settings() == KMeansSettings(
        k=4, max_iterations=20, tolerance=0.0, criterion=Criterion.INERTIA, seed=9
    )


@pytest.mark.parametrize(
    ("patch", "ok"),
    [
        ({"spec": {"problem": {"loss": "kmeans", "kmeans": {"k": 3}}, "algorithm": {"kmeans": {}}}}, "synthetic data for k-means"),
        ({"spec": {"algorithm": {"sgd": {"optimizer": {"method": "adam"}}}}}, "logistic by GA-SGD"),
        ({"spec": {"algorithm": {"sgd": {"variant": "modelAveraging", "syncEvery": 1, "significance": 0.7}}}}, "logistic by MA-SGD with ISP"),
        ({"spec": {"problem": {**PMF, "l1": 1.0, "l2": 0.0}, "algorithm": {"sgd": {}}}}, "l1 and l2 at their defaults"),
        ({"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "file:///r.txt", "shuffleSeed": 3}}}, "algorithm": {"sgd": {}}}}, "a ratings file"),
        ({"spec": {"problem": KM, "algorithm": {"kmeans": {}}, "scaleIn": {"policy": "auto"}}}, "k-means with scale-in"),
        ({"spec": {"problem": {**KM, "kmeans": {"k": 40}}, "algorithm": {"kmeans": {}}, "workers": {"count": 40}}}, "k and blocks at the rows"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_combinations_that_make_sense_are_accepted(patch, ok):
    assert _job(patch).spec is not None, ok


def test_settings_of_another_algorithm_are_refused_naming_it():
    sgd = _job({"spec": {"algorithm": {"sgd": {}}}})
    admm = _job({})
    for call, path in (
        (sgd.admm_settings, "spec.algorithm.admm: not given: this job is trained by sgd"),
        (sgd.kmeans_settings, "spec.algorithm.kmeans: not given: this job is trained by sgd"),
        (admm.sgd_settings, "spec.algorithm.sgd: not given: this job is trained by admm"),
        (
            lambda: admm.pmf_problem(1, 1, 1),
            "spec.problem.pmf: not given: this job's loss is logistic",
        ),
    ):
        with pytest.raises(SpecError) as info:
            call()
        assert str(info.value) == path


def test_combination_problems_are_listed_at_once():
    patch = {"spec": {"problem": {"loss": "pmf", "l2": 1.0, "kmeans": {"k": 2}}}}
    with pytest.raises(SpecError) as info:
        _job(patch)
    assert [str(p) for p in info.value.problems] == [
        "spec.algorithm: loss pmf is trained by sgd, got admm (the default when no algorithm "
        "is given)",
        "spec.problem.data.synthetic: loss pmf needs ratings or syntheticRatings data, got synthetic",
        "spec.problem.kmeans: is for loss kmeans only, got loss pmf",
        "spec.problem.l2: applies to loss logistic only (loss pmf has pmf.regularization), got 1",
    ]
