"""The generated CRD: upstream-valid, structural, in step with spec.py on good and bad manifests.

No API server runs here. ``admission_problems`` stands in for its validation of a TrainingJob, from
real parts: the CRD's own schema, applied defaults, jsonschema (Draft 4, the dialect OpenAPI 3.0
schemas extend) with unknown fields closed as strict field validation does, and the CEL rules
evaluated by cel-python. The API server's name validation and routing by kind are not emulated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import BASE_MANIFEST, merge
from test_spec import BAD, KM, PMF
from typer.testing import CliRunner

from faasopt.cli import app
from faasopt.crd import PHASES, RULES, TrainingJobStatus, apply_defaults, build_crd, render_crd
from faasopt.errors import DataError, SpecError
from faasopt.plan import plan_job
from faasopt.spec import TrainingJob

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "crds" / "trainingjob.yaml"
K8S_VERSION = "1.35"
SCHEMA = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

SPEC_ONLY = {
    # BAD rows the CRD schema cannot reject, with who rejects them on a cluster
    "kind: must be one of 'TrainingJob'": "the API server: another kind is another resource",
    "apiVersion: must be one of 'faasopt.dev/v1alpha1'": "the API server: another group/version",
    "metadata.name: must be a DNS-1123 label": "the API server's object name validation",
    "metadata: required field is missing": "the API server: every object needs metadata.name",
    "missing.svm: file not found": "only a reader of the data can know (the operator's validate)",
    "bad.svm:2:": "only a reader of the data can know (the operator's validate)",
    "missing.txt: file not found": "only a reader of the data can know (the operator's validate)",
    "bad.txt:2: expected integer ids and a numeric rating, got '1 x 3'": "only a reader of the data "
    "can know (the operator's validate)",
    "spec.workers.platform: pods workers are started by the operator on a cluster, not by `faasopt run`": "nobody: valid on a cluster, only `faasopt run` refuses it",
}
GOOD = [
    {},
    {"spec": {"workers": {"count": 2, "blocks": 8}}},
    {"spec": {"problem": {"data": {"synthetic": {"samples": 8}}}, "workers": {"count": 8}}},
    {"spec": {"problem": {"l1": 0, "l2": 2.5, "loss": "logistic"}}},
    {"spec": {"problem": {"data": {"synthetic": None, "libsvm": {"uri": "ok.svm"}}}}},
    {"spec": {"problem": {"data": {"synthetic": None, "libsvm": {"uri": "file://ok.svm"}}}}},
    {"spec": {"algorithm": {"admm": {"penalty": "fixed", "localSolver": {"method": "fista"}}}}},
    {"spec": {"runPolicy": {"activeDeadlineSeconds": 60, "suspend": True, "backoffLimit": 0}}},
    {"metadata": {"labels": {"team": "ml"}, "annotations": {"a": "b"}}},
]


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected, as strict field validation does."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out:
        out["properties"] = {k: _closed(v) for k, v in out["properties"].items()}
        if "metadata" not in out["properties"]:  # ObjectMeta is Kubernetes' own, left open
            out["additionalProperties"] = False
    if "items" in out:
        out["items"] = _closed(out["items"])
    return out


VALIDATOR = jsonschema.Draft4Validator(_closed(SCHEMA))
CEL = celpy.Environment()


def _cel_problems(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    problems = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = CEL.program(CEL.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if not (isinstance(result, celpy.celtypes.BoolType) and result):  # errors count as false
            problems.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    for name, child in schema.get("properties", {}).items():
        if isinstance(value, dict) and name in value:
            problems += _cel_problems(child, value[name], f"{path}.{name}")
    return problems


def admission_problems(document: dict[str, Any]) -> list[str]:
    """Why the CRD schema would refuse ``document``: defaults first, then schema, then CEL."""
    defaulted = apply_defaults(SCHEMA, document)
    problems = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in VALIDATOR.iter_errors(defaulted)
    ]
    return problems or _cel_problems(SCHEMA, defaulted, "")


def library_problems(document: dict[str, Any], base_dir: Path) -> list[str]:
    """Why ``faasopt validate`` would refuse it (spec.py, then the plan that reads the data)."""
    try:
        plan_job(TrainingJob.from_dict(document, base_dir=base_dir))
    except SpecError as exc:
        return [str(p) for p in exc.problems]
    except DataError as exc:
        return [str(exc)]
    return []


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "bad.svm").write_text("+1 1:0.5 3:1\n-1 2:x\n")
    (tmp_path / "bad.txt").write_text("0 0 4\n1 x 3\n")
    (tmp_path / "ok.svm").write_text("".join(f"{(-1) ** i:+d} 1:0.5 3:{i}\n" for i in range(8)))
    return tmp_path


def test_checked_in_crd_is_the_generated_one():
    assert CRD_FILE.read_text() == render_crd(), (
        "crds/trainingjob.yaml is stale; regenerate it: .venv/bin/faasopt crd > crds/trainingjob.yaml"
    )


def test_faasopt_crd_prints_it_on_stdout():
    result = CliRunner().invoke(app, ["crd"])
    assert result.exit_code == 0
    assert result.stdout == CRD_FILE.read_text()


def test_crd_is_valid_against_the_upstream_apiextensions_schema():
    document = yaml.safe_load(CRD_FILE.read_text())
    assert kubernetes_validate.validate(document, K8S_VERSION, strict=True) == K8S_VERSION


def test_names_scope_status_and_printer_columns():
    spec = build_crd()["spec"]
    assert build_crd()["metadata"]["name"] == "trainingjobs.faasopt.dev"
    assert (spec["group"], spec["scope"]) == ("faasopt.dev", "Namespaced")
    assert spec["names"] == {
        "kind": "TrainingJob",
        "listKind": "TrainingJobList",
        "plural": "trainingjobs",
        "singular": "trainingjob",
        "shortNames": ["tj"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Phase",
        "Iteration",
        "Objective",
        "Primal",
        "Dual",
        "Workers",
        "Cost",
        "Age",
    ]
    assert columns["Primal"] == ".status.primalResidual"
    assert columns["Age"] == ".metadata.creationTimestamp"
    status = SCHEMA["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"][:-1]:  # each points at a status field
        assert column["jsonPath"].removeprefix(".status.") in status


def _structural_violations(schema: dict[str, Any], path: str, in_junctor: bool) -> list[str]:
    """Kubernetes' structural schema rules (docs: "Specifying a structural schema")."""
    problems = []
    if in_junctor:
        banned = {"type", "default", "description", "nullable", "additionalProperties"}
        problems += [f"{path}: {key} inside oneOf/anyOf/allOf/not" for key in banned & set(schema)]
    elif "type" not in schema and "x-kubernetes-preserve-unknown-fields" not in schema:
        problems.append(f"{path}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: properties and additionalProperties")
    if "$ref" in schema:
        problems.append(f"{path}: $ref")
    for name, child in schema.get("properties", {}).items():
        problems += _structural_violations(child, f"{path}.{name}", in_junctor)
    if "items" in schema:
        problems += _structural_violations(schema["items"], f"{path}[]", in_junctor)
    for junctor in ("oneOf", "anyOf", "allOf"):
        for i, option in enumerate(schema.get(junctor, [])):
            problems += _structural_violations(option, f"{path}.{junctor}[{i}]", True)
    return problems


def test_schema_is_structural_and_keeps_nothing_unknown():
    assert _structural_violations(SCHEMA, "", False) == []
    assert "x-kubernetes-preserve-unknown-fields" not in CRD_FILE.read_text()


def test_defaults_are_the_same_as_spec_py(data_dir):
    minimal = merge(BASE_MANIFEST, {"spec": {"workers": None}})
    from_crd = apply_defaults(SCHEMA, minimal)["spec"]
    assert from_crd == TrainingJob.from_dict(minimal).to_dict()["spec"]
    assert from_crd["algorithm"]["admm"]["localSolver"]["relativeImprovement"] == 1e-12
    assert from_crd["workers"] == {
        "platform": "auto",
        "count": 4,
        "timeLimitSeconds": 900,
        "memoryMB": 512,
        "straggler": {"policy": "none", "slowness": 3.0, "minSeconds": 1.0},
    }


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_admitted_by_the_crd_schema(path):
    assert admission_problems(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("patch", GOOD, ids=[str(g) for g in GOOD])
def test_good_manifests_pass_both(patch, data_dir):
    document = merge(BASE_MANIFEST, patch)
    assert library_problems(document, data_dir) == []
    assert admission_problems(document) == []


@pytest.mark.parametrize(("patch", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_manifests_are_refused_by_both(patch, expected, data_dir):
    document = merge(BASE_MANIFEST, patch)
    assert any(expected in p for p in library_problems(document, data_dir))
    if expected in SPEC_ONLY:
        assert admission_problems(document) == [], SPEC_ONLY[expected]
    else:
        assert admission_problems(document) != []


def test_spec_only_rows_are_still_in_the_table():
    assert set(SPEC_ONLY) <= {expected for _, expected in BAD}


def test_cel_rules_say_what_spec_py_says():
    many_blocks = merge(BASE_MANIFEST, {"spec": {"workers": {"count": 4, "blocks": 2}}})

    def uri(value: str) -> dict[str, Any]:
        patch = {"spec": {"problem": {"data": {"synthetic": None, "libsvm": {"uri": value}}}}}
        return merge(BASE_MANIFEST, patch)

    too_few_rows = merge(
        BASE_MANIFEST,
        {"spec": {"problem": {"data": {"synthetic": {"samples": 3}}}, "workers": {"count": 4}}},
    )
    assert admission_problems(many_blocks) == [".spec.workers.blocks: blocks must be >= count"]
    for good in ("a/b.svm", "file:///d/b.svm", "s3://b/k/x.svm", "https://h/f?s=1", "http://h:8/f"):
        assert admission_problems(uri(good)) == [], good
    for bad in ("ftp://h/f", "s3://b", "s3://b/", "https://u:p@h/f", "http://"):
        assert admission_problems(uri(bad)) == [
            ".spec.problem.data.libsvm.uri: must be a path, s3://bucket/key or "
            "http(s)://host/path without user:password@"
        ], bad
    assert admission_problems(too_few_rows) == [
        ".spec.workers: workers.blocks (count when unset) must be <= problem.data.synthetic.samples"
    ]


def _models(model) -> list:
    """Every pydantic model reachable from ``model``'s fields."""
    found = [model]
    for field in model.model_fields.values():
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                found += [m for m in _models(candidate) if m not in found]
    return found


def test_every_spec_py_validator_has_a_crd_counterpart():
    counterparts = {
        "Data._exactly_one": [("Data", None)],
        "Libsvm._supported_uri": [("Libsvm", "uri")],
        "Ratings._local_uri": [("Ratings", "uri")],
        "TrainingJob._cross_field": [
            ("Workers", None),
            ("Problem", None),
            ("TrainingJobSpec", None),
        ],
        "ScaleIn._delta_within_interval": [("ScaleIn", None)],
        "Algorithm._exactly_one": [("Algorithm", None)],
        "Sgd._model_averaging_only": [("Sgd", None)],
        # defaults the API server cannot give (they depend on another field): it keeps the field
        # absent and spec.py fills it when it reads the object, so both accept the same documents
        "Algorithm._admm_by_default": [],  # algorithm: {} (absent: the CRD's default, admm: {})
        "Problem._pmf_defaults": [],  # loss: pmf without pmf
    }
    validators = {
        f"{model.__name__}.{name}"
        for model in _models(TrainingJob)
        for kind in ("model_validators", "field_validators")
        for name in getattr(model.__pydantic_decorators__, kind)
        if model.__name__ != "Metadata"  # names are the API server's (SPEC_ONLY)
    }
    assert validators == set(counterparts), (
        "a validator changed in spec.py: mirror it in faasopt.crd.RULES and list it here"
    )
    assert {key for keys in counterparts.values() for key in keys} == set(RULES)


def test_status_schema_takes_what_the_operator_writes():
    status = TrainingJobStatus(
        phase="Running",
        conditions=[
            {
                "type": "Running",
                "status": "True",
                "reason": "WorkersStarted",
                "message": "4 of 4 workers running",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
        iteration=3,
        objective=1234.5,
        primal_residual=0.5,
        dual_residual=0.25,
        rho=2.0,
        workers=4,
        speedup=3.2,
        cost_dollars=0.01,
        start_time="2026-01-01T00:00:00Z",
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    document = merge(BASE_MANIFEST, {"status": status})
    assert admission_problems(document) == []
    assert admission_problems(merge(document, {"status": {"phase": "Done"}})) != []
    schema = SCHEMA["properties"]["status"]["properties"]
    assert schema["phase"]["enum"] == list(PHASES)
    assert schema["conditions"]["items"]["required"] == ["type", "status"]
    assert schema["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert schema["startTime"] == {"type": "string", "format": "date-time"}


# ---- the algorithms of issue #10 ----

GOOD_NEW = [
    {"spec": {"algorithm": {}}},
    {"spec": {"algorithm": {"sgd": {}}}},
    {"spec": {"algorithm": {"sgd": {"variant": "modelAveraging", "syncEvery": 2, "significance": 0.7}}}},
    {"spec": {"algorithm": {"sgd": {"variant": "modelAveraging", "significance": 0}}}},
    {"spec": {"algorithm": {"sgd": {"significance": 0, "optimizer": {"method": "adam", "momentum": 0}}}}},
    {"spec": {"problem": PMF, "algorithm": {"sgd": {"stop": {"lossThreshold": 0.02, "maxSeconds": 60}}}}},
    {"spec": {"problem": {**PMF, "pmf": {"rank": 3, "offset": -1.5}, "l1": 1, "l2": 0}, "algorithm": {"sgd": {}}}},
    {"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "r.txt", "shuffleSeed": 1}}}, "algorithm": {"sgd": {}}}},
    {"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "file://r.txt"}}}, "algorithm": {"sgd": {}}}},
    {"spec": {"problem": KM, "algorithm": {"kmeans": {"criterion": "inertia", "tolerance": 0}}}},
    {"spec": {"problem": {"loss": "kmeans", "kmeans": {"k": 2}}, "algorithm": {"kmeans": {}}, "scaleIn": {"policy": "idle"}}},
    {"spec": {"problem": {**KM, "kmeans": {"k": 40}}, "algorithm": {"kmeans": {}}, "workers": {"count": 40}}},
]  # fmt: skip
"""Valid for spec.py (and plan_job, with data_dir's r.txt) and for the CRD."""


@pytest.mark.parametrize("patch", GOOD_NEW, ids=[str(g) for g in GOOD_NEW])
def test_good_manifests_of_the_new_algorithms_pass_both(patch, data_dir):
    (data_dir / "r.txt").write_text("".join(f"{i % 5} {i % 3} {i % 4 + 1}\n" for i in range(9)))
    document = merge(BASE_MANIFEST, patch)
    assert library_problems(document, data_dir) == []
    assert admission_problems(document) == []


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"spec": {"algorithm": {"admm": {}, "sgd": {}}}}, [".spec.algorithm: exactly one of admm, sgd, kmeans must be given"]),
        ({"spec": {"problem": PMF}}, [".spec.algorithm: loss pmf is trained by sgd"]),
        ({"spec": {"problem": PMF, "algorithm": {"kmeans": {}}}}, [".spec.algorithm: loss pmf is trained by sgd", ".spec.algorithm: loss kmeans is trained by kmeans, and kmeans trains only loss kmeans"]),
        ({"spec": {"problem": KM, "algorithm": {"sgd": {}}}}, [".spec.algorithm: loss kmeans is trained by kmeans, and kmeans trains only loss kmeans"]),
        ({"spec": {"problem": {"loss": "pmf"}, "algorithm": {"sgd": {}}}}, [".spec.problem.data: ratings data (ratings, syntheticRatings) is for loss pmf, and loss pmf needs it"]),
        ({"spec": {"problem": {**KM, "loss": "logistic", "kmeans": None}, "algorithm": {"sgd": {}}}}, [".spec.problem.data.blobs: blobs have no labels: for loss kmeans only"]),
        ({"spec": {"problem": {"pmf": {}}}}, [".spec.problem.pmf: pmf is for loss pmf only"]),
        ({"spec": {"problem": {"loss": "kmeans"}, "algorithm": {"kmeans": {}}}}, [".spec.problem.kmeans: kmeans is for loss kmeans only, and required by it"]),
        ({"spec": {"problem": {**PMF, "l1": 0.5, "l2": 1}, "algorithm": {"sgd": {}}}}, [".spec.problem.l1: l1 applies to loss logistic only", ".spec.problem.l2: l2 applies to loss logistic only"]),
        ({"spec": {"problem": {**KM, "kmeans": {"k": 41}}, "algorithm": {"kmeans": {}}}}, [".spec.problem.kmeans.k: kmeans.k must be <= data.blobs.samples"]),
        ({"spec": {"problem": {"loss": "kmeans", "kmeans": {"k": 2001}}, "algorithm": {"kmeans": {}}}}, [".spec.problem.kmeans.k: kmeans.k must be <= data.synthetic.samples"]),
        ({"spec": {"problem": KM, "algorithm": {"kmeans": {}}, "workers": {"count": 41}}}, [".spec.workers: workers.blocks (count when unset) must be <= problem.data.blobs.samples"]),
        ({"spec": {"problem": PMF, "algorithm": {"sgd": {}}, "workers": {"blocks": 301}}}, [".spec.workers: workers.blocks (count when unset) must be <= problem.data.syntheticRatings.ratings"]),
        ({"spec": {"algorithm": {"sgd": {"syncEvery": 1}}}}, [".spec.algorithm.sgd.syncEvery: syncEvery needs variant modelAveraging: GA-SGD syncs every step"]),
        ({"spec": {"algorithm": {"sgd": {"significance": 0.7}}}}, [".spec.algorithm.sgd.significance: significance > 0 needs variant modelAveraging"]),
        ({"spec": {"problem": {"loss": "pmf", "data": {"synthetic": None, "ratings": {"uri": "https://h/r.txt"}}}, "algorithm": {"sgd": {}}}}, [".spec.problem.data.ratings.uri: must be a local path (s3:// and http(s):// ratings files are not supported yet)"]),
    ],
)  # fmt: skip
def test_cel_rules_of_the_new_algorithms_say_what_spec_py_says(patch, expected):
    document = merge(BASE_MANIFEST, patch)
    assert admission_problems(document) == expected
    with pytest.raises(SpecError):
        TrainingJob.from_dict(document)


def test_crd_defaults_of_the_new_algorithms_are_spec_pys():
    for patch in ({"spec": {"algorithm": {"sgd": {}}}}, {"spec": {"problem": KM, "algorithm": {"kmeans": {}}}}):  # fmt: skip
        document = merge(BASE_MANIFEST, patch)
        assert (
            apply_defaults(SCHEMA, document)["spec"]
            == TrainingJob.from_dict(document).to_dict()["spec"]
        )
    # pmf's defaults depend on loss: the API server leaves pmf absent and spec.py fills it
    document = merge(BASE_MANIFEST, {"spec": {"problem": PMF, "algorithm": {"sgd": {}}}})
    stored = apply_defaults(SCHEMA, document)
    assert "pmf" not in stored["spec"]["problem"]
    assert TrainingJob.from_dict(stored).to_dict() == TrainingJob.from_dict(document).to_dict()
    assert SCHEMA["properties"]["spec"]["properties"]["algorithm"]["default"] == {"admm": {}}
