"""The TrainingJob CustomResourceDefinition, generated from the pydantic models of ``spec.py``.

``spec.py`` is the one source of the spec's fields, types, defaults and bounds; this module only
translates its JSON Schema into the structural OpenAPI v3 subset Kubernetes accepts:

- ``$ref`` inlined, ``Optional`` unwrapped (an absent field is Kubernetes' "None"), ``const``
  as a one-value ``enum``, pydantic's numeric ``exclusiveMinimum`` as OpenAPI 3.0's boolean form;
- ``additionalProperties: false`` dropped: Kubernetes prunes unknown fields, and rejects them under
  strict field validation (``kubectl apply``'s default);
- object defaults that equal "every field at its default" written as ``{}``, so the API server
  fills nested defaults field by field;
- spec.py's named validators mirrored in ``RULES`` (a structural ``oneOf`` of ``required``, or a
  CEL rule); tests run the bad-manifest table through both sides to keep them equal.

The ``status`` the operator writes is modelled here (``TrainingJobStatus``) and goes through the
same translation.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from faasopt.spec import API_VERSION, KIND, SOURCES, TrainingJobSpec

GROUP, VERSION = API_VERSION.split("/")
PLURAL, SINGULAR, SHORT_NAMES = "trainingjobs", "trainingjob", ["tj"]
NAME = f"{PLURAL}.{GROUP}"
Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]
PHASES: tuple[str, ...] = get_args(Phase)

RULES: dict[tuple[str, str | None], dict[str, Any]] = {
    # (model, field or None for the whole object) -> what the CRD adds there
    ("Data", None): {  # Data._exactly_one
        "oneOf": [{"required": [name]} for name in SOURCES],
    },
    ("Libsvm", "uri"): {  # Libsvm._supported_uri
        "x-kubernetes-validations": [
            {
                "rule": "!self.contains('://') || self.startsWith('file://')"
                " || self.matches('^s3://[^/]+/.+$') || self.matches('^https?://[^/@]+(/.*)?$')",
                "message": "must be a path, s3://bucket/key or http(s)://host/path without "
                "user:password@",
            }
        ]
    },
    ("Ratings", "uri"): {  # Ratings._local_uri
        "x-kubernetes-validations": [
            {
                "rule": "!self.contains('://') || self.startsWith('file://')",
                "message": "must be a local path (s3:// and http(s):// ratings files are not "
                "supported yet)",
            }
        ]
    },
    ("Algorithm", None): {  # Algorithm._exactly_one (none: spec.py fills admm)
        "x-kubernetes-validations": [
            {
                "rule": "(has(self.admm) ? 1 : 0) + (has(self.sgd) ? 1 : 0) "
                "+ (has(self.kmeans) ? 1 : 0) <= 1",
                "message": "exactly one of admm, sgd, kmeans must be given",
            }
        ]
    },
    ("Sgd", None): {  # Sgd._model_averaging_only
        "x-kubernetes-validations": [
            {
                "rule": "self.variant == 'modelAveraging' || !has(self.syncEvery)",
                "message": "syncEvery needs variant modelAveraging: GA-SGD syncs every step",
                "fieldPath": ".syncEvery",
            },
            {
                "rule": "self.variant == 'modelAveraging' || double(self.significance) == 0.0",
                "message": "significance > 0 needs variant modelAveraging",
                "fieldPath": ".significance",
            },
        ]
    },
    ("Problem", None): {  # TrainingJob._cross_field (spec._combination_problems)
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.pmf) || self.loss == 'pmf'",
                "message": "pmf is for loss pmf only",
                "fieldPath": ".pmf",
            },
            {
                "rule": "has(self.kmeans) == (self.loss == 'kmeans')",
                "message": "kmeans is for loss kmeans only, and required by it",
                "fieldPath": ".kmeans",
            },
            {
                "rule": "self.loss == 'logistic' || double(self.l1) == 1.0",
                "message": "l1 applies to loss logistic only",
                "fieldPath": ".l1",
            },
            {
                "rule": "self.loss == 'logistic' || double(self.l2) == 0.0",
                "message": "l2 applies to loss logistic only",
                "fieldPath": ".l2",
            },
            {
                "rule": "(has(self.data.ratings) || has(self.data.syntheticRatings)) "
                "== (self.loss == 'pmf')",
                "message": "ratings data (ratings, syntheticRatings) is for loss pmf, and loss "
                "pmf needs it",
                "fieldPath": ".data",
            },
            {
                "rule": "!has(self.data.blobs) || self.loss == 'kmeans'",
                "message": "blobs have no labels: for loss kmeans only",
                "fieldPath": ".data.blobs",
            },
            *(
                {
                    "rule": f"!has(self.kmeans) || !has(self.data.{kind}) "
                    f"|| self.kmeans.k <= self.data.{kind}.samples",
                    "message": f"kmeans.k must be <= data.{kind}.samples",
                    "fieldPath": ".kmeans.k",
                }
                for kind in ("synthetic", "blobs")
            ),
        ]
    },
    ("Workers", None): {  # TrainingJob._cross_field
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.blocks) || self.blocks >= self.count",
                "message": "blocks must be >= count",
                "fieldPath": ".blocks",
            }
        ]
    },
    ("ScaleIn", None): {  # ScaleIn._delta_within_interval
        "x-kubernetes-validations": [
            {
                "rule": "self.deltaSeconds <= self.intervalSeconds",
                "message": "deltaSeconds must be <= intervalSeconds",
                "fieldPath": ".deltaSeconds",
            }
        ]
    },
    ("TrainingJobSpec", None): {  # B <= rows where the spec knows the rows: plan.plan_job says it
        # for synthetic data, TrainingJob._cross_field for blobs and syntheticRatings
        "x-kubernetes-validations": [
            {  # TrainingJob._cross_field
                "rule": "!has(self.scaleIn) || !has(self.scaleIn.minWorkers) || "
                "self.scaleIn.minWorkers <= self.workers.count",
                "message": "scaleIn.minWorkers must be <= workers.count",
                "fieldPath": ".scaleIn.minWorkers",
            },
            *(
                {
                    "rule": f"!has(self.problem.data.{kind}) || "
                    "(has(self.workers.blocks) ? self.workers.blocks : self.workers.count) "
                    f"<= self.problem.data.{kind}.{rows}",
                    "message": "workers.blocks (count when unset) must be <= "
                    f"problem.data.{kind}.{rows}",
                    "fieldPath": ".workers",
                }
                for kind, rows in (
                    ("synthetic", "samples"),
                    ("blobs", "samples"),
                    ("syntheticRatings", "ratings"),
                )
            ),
            {  # TrainingJob._cross_field (spec._combination_problems)
                "rule": "self.problem.loss != 'pmf' || has(self.algorithm.sgd)",
                "message": "loss pmf is trained by sgd",
                "fieldPath": ".algorithm",
            },
            {
                "rule": "(self.problem.loss == 'kmeans') == has(self.algorithm.kmeans)",
                "message": "loss kmeans is trained by kmeans, and kmeans trains only loss kmeans",
                "fieldPath": ".algorithm",
            },
            {  # TrainingJob._cross_field (spec._combination_problems)
                "rule": "!has(self.algorithm.sgd) || !has(self.algorithm.sgd.variant) || "
                "self.algorithm.sgd.variant != 'modelAveraging' || "
                "!has(self.workers.straggler) || !has(self.workers.straggler.policy) || "
                "self.workers.straggler.policy != 'speculate'",
                "message": "straggler policy speculate needs stateless blocks: not modelAveraging",
                "fieldPath": ".workers.straggler.policy",
            },
        ]
    },
}
"""spec.py's validators as the CRD says them, keyed by pydantic model name and field alias."""

_KEPT = ("description", "type", "format", "enum", "minLength", "maxLength", "pattern")
_KEPT += ("minimum", "maximum", "minItems", "maxItems")


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(_Status):
    """One observation, after the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(min_length=1, description="CamelCase kind, e.g. Running, Succeeded.")
    status: Literal["True", "False", "Unknown"]
    reason: str | None = Field(None, description="CamelCase reason, e.g. DeadlineExceeded.")
    message: str | None = Field(None, description="Human-readable detail; names the field.")
    last_transition_time: datetime | None = Field(None, description="When status last changed.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation this condition was set from."
    )


class TrainingJobStatus(_Status):
    """What the operator reports about a TrainingJob (the ``status`` subresource)."""

    phase: Phase | None = None
    conditions: list[Condition] | None = None
    iteration: int | None = Field(None, ge=0, description="ADMM rounds completed.")
    objective: float | None = Field(None, description="Objective at the latest z.")
    primal_residual: float | None = Field(None, ge=0, description="r of the latest round.")
    dual_residual: float | None = Field(None, ge=0, description="s of the latest round.")
    rho: float | None = Field(None, gt=0, description="Penalty of the next round.")
    workers: int | None = Field(None, ge=0, description="Active workers.")
    speedup: float | None = Field(None, ge=0, description="Worker compute seconds / elapsed.")
    cost_dollars: float | None = Field(None, ge=0, description="Cost so far, in US dollars.")
    restarts: int | None = Field(None, ge=0, description="Coordinator restarts (backoffLimit).")
    start_time: datetime | None = None
    completion_time: datetime | None = None


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Iteration", "type": "integer", "jsonPath": ".status.iteration"},
    {"name": "Objective", "type": "number", "jsonPath": ".status.objective"},
    {"name": "Primal", "type": "number", "jsonPath": ".status.primalResidual"},
    {"name": "Dual", "type": "number", "jsonPath": ".status.dualResidual"},
    {"name": "Workers", "type": "integer", "jsonPath": ".status.workers"},
    {"name": "Cost", "type": "number", "jsonPath": ".status.costDollars"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural(model: type[BaseModel], used: set | None = None) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model, with ``RULES`` applied.

    ``used`` collects the keys of the rules that found their place.
    """
    source = model.model_json_schema(by_alias=True)
    return _convert(source, source.get("$defs", {}), set() if used is None else used)


def _convert(node: dict[str, Any], defs: dict[str, Any], used: set) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if "anyOf" in node:  # Optional[X]: the field may be absent, never null
        (inner,) = [option for option in node["anyOf"] if option.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _convert({**inner, **rest}, defs, used)
    out = {key: copy.deepcopy(node[key]) for key in _KEPT if key in node}
    if "const" in node:
        out["enum"] = [node["const"]]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[inclusive], out[bound] = node[bound], True
    if node.get("type") == "array":
        out["items"] = _convert(node["items"], defs, used)
    if "properties" in node:
        model = node.get("title")
        out["properties"] = {}
        for name, child in node["properties"].items():
            out["properties"][name] = _convert(child, defs, used)
            out["properties"][name].update(_rules((model, name), used))
        if node.get("required"):
            out["required"] = list(node["required"])
        out.update(_rules((model, None), used))
    if node.get("default") is not None:
        out["default"] = _minimal_default(out, _without_none(node["default"]))
    return out


def _minimal_default(schema: dict[str, Any], default: Any) -> Any:
    """``default`` without the fields the schema's own nested defaults fill with the same value.

    So ``{"admm": {...every field at its default}}`` is written ``{"admm": {}}`` and the API
    server fills the rest field by field.
    """
    if not isinstance(default, dict) or "properties" not in schema:
        return default
    out = {}
    for name, value in default.items():
        child = schema["properties"].get(name, {})
        if "default" in child and apply_defaults(child, child["default"]) == value:
            continue
        out[name] = _minimal_default(child, value)
    return out


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _rules(key: tuple[str, str | None], used: set) -> dict[str, Any]:
    if key in RULES:
        used.add(key)
        return copy.deepcopy(RULES[key])
    return {}


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in, as the API server does before validating."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    out = dict(value)
    for name, child in schema["properties"].items():
        if name not in out and "default" in child:
            out[name] = copy.deepcopy(child["default"])
        if name in out:
            out[name] = apply_defaults(child, out[name])
    return out


def build_crd() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of ``trainingjobs.faasopt.dev``."""
    used: set[tuple[str, str | None]] = set()
    spec = structural(TrainingJobSpec, used)
    if unused := set(RULES) - used:
        raise LookupError(f"CRD rules for models or fields spec.py no longer has: {unused}")
    spec["description"] = "What to solve and how; the same document `faasopt run` reads."
    status = structural(TrainingJobStatus)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model trained by distributed optimization on "
                            "serverless functions.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    """``build_crd()`` as the YAML ``faasopt crd`` prints and ``crds/trainingjob.yaml`` holds."""
    header = "# Generated from faasopt/spec.py by `faasopt crd`; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
