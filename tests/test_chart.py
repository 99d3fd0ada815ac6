"""The Helm chart, rendered by the real Helm engine (helm-python-sdk: Helm's Go SDK in a wheel).

Every rendered object of every documented variant is validated against the upstream Kubernetes
schemas (kubernetes-validate, strict). The ServiceMonitor has no upstream schema in that package:
it is checked against the fields of the Prometheus Operator's CRD that the chart uses, transcribed
below (monitoring.coreos.com_servicemonitors.yaml, operator 0.84).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from botocore.credentials import EnvProvider

from faasopt.crd import render_crd
from faasopt.metrics import METRICS_PORT_ENV
from faasopt.platforms import aws_lambda, knative, openfaas
from faasopt.platforms.pods import (
    NATS_TOKEN_ENV,
    NATS_TOKEN_KEY,
    NATS_URL_ENV,
    SETTINGS_ENV,
    PodSettings,
)

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "faasopt"
K8S_VERSION = "1.35"
NAMESPACE = "faasopt"
EXTERNAL = {"enabled": False, "external": {"url": "nats://nats.infra:4222", "secretName": "tok"}}
VARIANTS = {
    "default": {},
    "external-nats": {"nats": EXTERNAL},
    "external-nats-no-auth": {"nats": {"enabled": False, "external": {"url": "nats://n:4222"}}},
    "existing-secret": {"nats": {"existingSecret": "my-nats"}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"r": "p"}}}},
    "prometheus-rule": {"metrics": {"prometheusRule": {"enabled": True, "labels": {"r": "p"}}}},
    "dashboard-elsewhere": {
        "metrics": {
            "grafanaDashboard": {
                "namespace": "monitoring",
                "labels": {"grafana_dashboard": "faasopt"},
                "annotations": {"grafana_folder": "ML"},
            }
        }
    },
    "no-dashboard": {"metrics": {"grafanaDashboard": {"enabled": False}}},
    "job-namespaces": {"operator": {"jobNamespaces": ["ml", "research"]}},
    "own-service-account": {"serviceAccount": {"create": False, "name": "ops"}},
    "scheduling": {
        "operator": {
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
        }
    },
    "knative": {"platforms": {"knative": {"enabled": True, "maxTimeoutSeconds": 900}}},
    "openfaas": {
        "platforms": {
            "openfaas": {
                "enabled": True,
                "passwordSecret": {"name": "gateway-auth"},
                "namespace": "fn",
                "natsSecret": "nats-token",
            }
        }
    },
    "lambda": {
        "platforms": {
            "lambda": {
                "enabled": True,
                "imageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/faasopt:0.1.0",
                "roleArn": "arn:aws:iam::123456789012:role/faasopt-worker",
                "region": "eu-west-1",
                "credentialsSecret": "aws",
            }
        }
    },
    "all-platforms-in-job-namespaces": {
        "operator": {"jobNamespaces": ["ml", "research"]},
        "platforms": {
            "knative": {"enabled": True},
            "openfaas": {"enabled": True, "callbackHost": "faasopt-callback.faasopt.svc"},
            "lambda": {"enabled": True, "zip": "s3://bucket/faasopt.zip"},
        },
    },
}
SERVICE_MONITOR = {  # the upstream CRD's schema, for the fields the chart sets
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "honorLabels": {"type": "boolean"},
                            "interval": {
                                "type": "string",
                                "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                        },
                    },
                },
            },
        },
    },
}


_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "properties": {
        "record": {"type": "string"},
        "alert": {"type": "string"},
        "expr": {"type": "string"},
        "for": {"type": "string", "pattern": r"^(0|(([0-9]+)[ywdhms]+)+)$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
PROMETHEUS_RULE = {  # the upstream CRD's schema (monitoring.coreos.com_prometheusrules.yaml, 0.84)
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string"},
                            "rules": {"type": "array", "items": _RULE},
                        },
                    },
                }
            },
        },
    },
}
MONITORING = {"ServiceMonitor": SERVICE_MONITOR, "PrometheusRule": PROMETHEUS_RULE}
"""Prometheus Operator kinds: no upstream schema in kubernetes-validate, transcribed above."""


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders with ``values`` (Helm validates them against the schema)."""
    manifests = chart.render(values, name="faasopt", namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in manifests.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def notes(chart, values: dict[str, Any]) -> str:
    rendered = chart.render(values, name="faasopt", namespace=NAMESPACE, is_install=True)
    return rendered["faasopt/templates/NOTES.txt"]


def one(
    objects: list[dict[str, Any]], kind: str, namespace: str = NAMESPACE, suffix: str = ""
) -> dict[str, Any]:
    """The one object of ``kind`` in ``namespace`` whose name ends with ``suffix``."""
    (found,) = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"].get("namespace") == namespace
        and o["metadata"]["name"].endswith(suffix)
    ]
    return found


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def operator_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_is_valid_kubernetes(chart, variant):
    objects = render(chart, VARIANTS[variant])
    assert objects
    for obj in objects:
        if obj["kind"] in MONITORING:
            jsonschema.Draft7Validator(MONITORING[obj["kind"]]).validate(obj)
        else:
            assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION


def test_default_install(chart):
    objects = render(chart, {})
    assert kinds(objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "faasopt" for o in objects)


def test_the_crd_is_the_generated_one(chart):
    (crd,) = chart.crds
    assert crd["filename"] == "faasopt/crds/trainingjob.yaml"
    assert crd["data"] == render_crd(), (
        "charts/faasopt/crds/trainingjob.yaml is stale: cp crds/trainingjob.yaml charts/faasopt/crds/"
    )


def test_operator_runs_restricted_with_probes(chart):
    pod = one(render(chart, {}), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz", "--namespace=faasopt"]
    assert container["image"] == "faasopt/operator:0.1.0"


def test_operator_env_gives_the_pods_platform_its_settings(chart):
    objects = render(chart, {"worker": {"image": {"tag": "dev"}, "cpu": "500m"}})
    env = operator_env(objects)
    assert set(SETTINGS_ENV.values()) | {NATS_URL_ENV, NATS_TOKEN_ENV} <= set(env)
    plain = {name: value for name, value in env.items() if isinstance(value, str)}
    settings = PodSettings.from_env(plain, memory_mb=512, time_limit_seconds=None)
    assert settings == PodSettings(
        image="faasopt/worker:dev", nats_secret="faasopt-nats", cpu="500m", memory_mb=512
    )
    assert env[NATS_URL_ENV] == "nats://faasopt-nats.faasopt.svc:4222"
    assert env[NATS_TOKEN_ENV] == {"secretKeyRef": {"name": "faasopt-nats", "key": NATS_TOKEN_KEY}}


def test_rbac_is_least_privilege(chart):
    objects = render(chart, {})
    cluster = one(objects, "ClusterRole", namespace=None)
    assert cluster["rules"] == [
        {
            "apiGroups": ["faasopt.dev"],
            "resources": ["trainingjobs"],
            "verbs": ["get", "list", "watch", "patch", "delete"],  # delete: the TTL
        },
        {
            "apiGroups": ["faasopt.dev"],
            "resources": ["trainingjobs/status"],
            "verbs": ["get", "patch", "update"],
        },
    ]
    assert one(objects, "Role")["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["faasopt-nats"],
            "verbs": ["get"],
        },
    ]
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    for binding in ("RoleBinding", "ClusterRoleBinding"):
        subject = {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        found = one(
            objects, binding, namespace=None if binding.startswith("Cluster") else NAMESPACE
        )
        assert found["subjects"] == [subject]


def test_nats_runs_the_official_image_with_a_generated_token(chart):
    objects = render(chart, {})
    secret = one(objects, "Secret")
    token = base64.b64decode(secret["data"][NATS_TOKEN_KEY]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", token)
    nats = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    (container,) = nats["containers"]
    assert container["image"] == "nats:2.10-alpine"
    assert container["env"] == [
        {
            "name": "NATS_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "token"}},
        }
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = one(objects, "ConfigMap", suffix="-nats")["data"]["nats.conf"]
    assert "authorization {\n  token: $NATS_TOKEN\n}" in config
    assert "max_payload: 8MB" in config
    (service,) = [
        o
        for o in objects
        if o["metadata"]["name"] == secret["metadata"]["name"] and o["kind"] == "Service"
    ]
    assert service["spec"]["ports"] == [{"name": "client", "port": 4222, "targetPort": "client"}]


def test_external_nats(chart):
    objects = render(chart, VARIANTS["external-nats"])
    assert not {"StatefulSet", "Secret"} & set(kinds(objects))
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"] == [
        "faasopt-dashboard"
    ]
    env = operator_env(objects)
    assert env[NATS_URL_ENV] == "nats://nats.infra:4222"
    assert env[NATS_TOKEN_ENV] == {"secretKeyRef": {"name": "tok", "key": NATS_TOKEN_KEY}}
    assert one(objects, "Role")["rules"][-1]["resourceNames"] == ["tok"]
    no_auth = render(chart, VARIANTS["external-nats-no-auth"])
    assert NATS_TOKEN_ENV not in operator_env(no_auth)
    assert operator_env(no_auth)[SETTINGS_ENV["nats_secret"]] == ""
    assert all(r["resources"] != ["secrets"] for r in one(no_auth, "Role")["rules"])


def test_nats_disabled_needs_an_external_url(chart):
    with pytest.raises(helm.HelmRenderError, match=r"nats\.external\.url is required"):
        render(chart, {"nats": {"enabled": False}})


def test_existing_secret_is_used_and_not_generated(chart):
    objects = render(chart, VARIANTS["existing-secret"])
    assert "Secret" not in kinds(objects)
    assert operator_env(objects)[SETTINGS_ENV["nats_secret"]] == "my-nats"
    (nats,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert nats["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "my-nats"


def test_service_monitor_selects_the_metrics_service(chart):
    assert "ServiceMonitor" not in kinds(render(chart, {}))
    objects = render(chart, VARIANTS["service-monitor"])
    monitor = one(objects, "ServiceMonitor")
    (service,) = [
        o for o in objects if o["kind"] == "Service" and "metrics" in o["metadata"]["name"]
    ]
    assert monitor["metadata"]["labels"]["r"] == "p"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    ]
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_prometheus_rule_carries_the_plain_rules_file(chart):
    assert "PrometheusRule" not in kinds(render(chart, {}))
    rule = one(render(chart, VARIANTS["prometheus-rule"]), "PrometheusRule")
    plain = yaml.safe_load((CHART / "files" / "faasopt-rules.yaml").read_text())
    assert rule["spec"]["groups"] == plain["groups"]
    assert rule["metadata"]["labels"]["r"] == "p"
    alerts = [r["alert"] for g in plain["groups"] for r in g["rules"] if "alert" in r]
    assert {"FaasoptJobStalled", "FaasoptWorkersIdleMoreThanCompute"} <= set(alerts)


def test_the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar(chart):
    dashboard = json.loads((CHART / "files" / "faasopt-dashboard.json").read_text())
    default = one(render(chart, {}), "ConfigMap", suffix="-dashboard")
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(default["data"]["faasopt-dashboard.json"]) == dashboard
    moved = one(
        render(chart, VARIANTS["dashboard-elsewhere"]), "ConfigMap", "monitoring", "-dashboard"
    )
    assert moved["metadata"]["labels"]["grafana_dashboard"] == "faasopt"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "ML"}
    names = [o["metadata"]["name"] for o in render(chart, VARIANTS["no-dashboard"])]
    assert "faasopt-dashboard" not in names


def test_job_namespaces_get_a_role_and_the_same_token(chart):
    objects = render(chart, VARIANTS["job-namespaces"])
    roles = sorted(o["metadata"]["namespace"] for o in objects if o["kind"] == "Role")
    assert roles == ["ml", "research"]
    secrets = {
        o["metadata"]["namespace"]: o["data"]["token"] for o in objects if o["kind"] == "Secret"
    }
    assert set(secrets) == {"faasopt", "ml", "research"}
    assert len(set(secrets.values())) == 1
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"][1:] == ["--namespace=ml", "--namespace=research"]


def test_values_schema_rejects_unknown_keys(chart):
    for bad in (
        {"operator": {"replicas": 2}},
        {"nats": {"external": {"token": "x"}}},
        {"extra": 1},
    ):
        report = helm.lint(CHART, bad)
        assert any("not allowed" in error for error in report["errors"]), report
        with pytest.raises(helm.HelmValuesError, match="not allowed"):
            render(chart, bad)


def test_lint_passes_with_default_values():
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def _open_objects(schema: dict[str, Any], path: str) -> list[str]:
    found = []
    if "properties" in schema and schema.get("additionalProperties") is not False:
        found.append(path)
    is_map = schema.get("type") == "object" and "properties" not in schema
    if is_map and schema.get("additionalProperties") != {"type": "string"}:  # string maps only
        found.append(path)
    for name, child in schema.get("properties", {}).items():
        found += _open_objects(child, f"{path}.{name}")
    for name, child in schema.get("definitions", {}).items():
        found += _open_objects(child, f"#{name}")
    if isinstance(schema.get("items"), dict):
        found += _open_objects(schema["items"], f"{path}[]")
    return found


def test_values_schema_is_closed_at_every_level_and_every_value_is_commented():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _open_objects(schema, "") == []
    lines = (CHART / "values.yaml").read_text().splitlines()
    parents: list[tuple[int, bool]] = []  # (indent, commented) of the mappings we are in
    for i, line in enumerate(lines):
        key = re.match(r"^(\s*)([A-Za-z]+):\s*(\S.*)?$", line)
        if not key:
            continue
        indent = len(key.group(1))
        parents = [p for p in parents if p[0] < indent]
        commented = lines[i - 1].strip().startswith("#") or any(c for _, c in parents)
        if key.group(3) is None:  # a parent mapping: its keys may share its comment
            parents.append((indent, commented))
        else:
            assert commented, f"values.yaml:{i + 1}: {key.group(2)} has no comment"


def test_chart_version_and_notes(chart):
    assert chart.version == "0.1.16"
    text = notes(chart, {})
    commands = re.findall(r"^\s+\d\. (kubectl .*)$", text, re.M)
    assert commands == [
        "kubectl apply -n faasopt -f examples/quickstart.yaml",
        "kubectl get trainingjobs -n faasopt --watch",
        "kubectl describe trainingjob quickstart -n faasopt",
    ]


SERVERLESS = {"knative": knative, "openfaas": openfaas, "lambda": aws_lambda}
"""The platforms the chart switches on under ``platforms.<name>``, by their module."""
AWS_CREDENTIALS = (EnvProvider.ACCESS_KEY, EnvProvider.SECRET_KEY, "AWS_SESSION_TOKEN")
"""boto3's standard names (botocore's EnvProvider), filled from platforms.lambda's Secret."""


def resolved(env: dict[str, Any]) -> dict[str, str]:
    """The operator's environment as the kubelet fills it: a secret's value is
    ``<secret>/<key>``, the Pod's IP 10.0.0.7."""
    values = {}
    for name, value in env.items():
        if isinstance(value, str):
            values[name] = value
        elif "secretKeyRef" in value:
            values[name] = "{name}/{key}".format(**value["secretKeyRef"])
        else:
            assert value == {"fieldRef": {"fieldPath": "status.podIP"}}, name
            values[name] = "10.0.0.7"
    return values


@pytest.mark.parametrize("variant", ["default", *SERVERLESS, "all-platforms-in-job-namespaces"])
def test_the_operator_env_is_exactly_the_enabled_platforms_settings(chart, variant):
    """Every name the chart renders is one a platform module reads (SETTINGS_ENV), boto3's
    credentials or the operator's own; a platform that is off adds none."""
    enabled = VARIANTS[variant].get("platforms", {})
    expected = set(SETTINGS_ENV.values()) | {NATS_URL_ENV, NATS_TOKEN_ENV, METRICS_PORT_ENV}
    for name, module in SERVERLESS.items():
        if name in enabled:
            expected |= set(module.SETTINGS_ENV.values())
    if "name" not in enabled.get("openfaas", {}).get("passwordSecret", {}):
        expected.discard(openfaas.SETTINGS_ENV["password"])  # a gateway without auth
    lambda_values = enabled.get("lambda", {})
    if not lambda_values.get("region"):
        expected.discard(aws_lambda.SETTINGS_ENV["region"])  # boto3 reads it too: unset, not ""
    if lambda_values.get("credentialsSecret"):
        expected |= set(AWS_CREDENTIALS)
    assert set(operator_env(render(chart, VARIANTS[variant]))) == expected


def test_knative_settings_and_rbac_come_with_the_platform(chart):
    objects = render(chart, VARIANTS["knative"])
    env = resolved(operator_env(objects))
    settings = knative.KnativeSettings.from_env(env, memory_mb=1024, time_limit_seconds=1200)
    assert settings == knative.KnativeSettings(
        image="faasopt/worker:0.1.0",
        nats_secret="faasopt-nats",
        memory_mb=1024,
        time_limit_seconds=1200,
        max_timeout_seconds=900,
    )
    assert settings.timeout_seconds == 900
    rule = {
        "apiGroups": [knative.GROUP],
        "resources": [knative.PLURAL],
        "verbs": ["create", "get", "update", "delete", "list"],
    }
    assert rule in one(objects, "Role")["rules"]
    for variant in ("default", "openfaas", "lambda"):
        rules = one(render(chart, VARIANTS[variant]), "Role")["rules"]
        assert all(knative.GROUP not in r["apiGroups"] for r in rules), variant
    many = render(chart, VARIANTS["all-platforms-in-job-namespaces"])
    roles = [o for o in many if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml", "research"]
    assert all(rule in r["rules"] for r in roles)


def test_openfaas_settings_with_the_password_from_a_secret(chart):
    objects = render(chart, VARIANTS["openfaas"])
    env = operator_env(objects)
    password = openfaas.SETTINGS_ENV["password"]
    assert env[password] == {"secretKeyRef": {"name": "gateway-auth", "key": "basic-auth-password"}}
    assert env[openfaas.SETTINGS_ENV["callback_host"]] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }
    settings = openfaas.OpenFaasSettings.from_env(
        resolved(env), memory_mb=512, time_limit_seconds=300
    )
    assert settings == openfaas.OpenFaasSettings(
        gateway="http://gateway.openfaas:8080",
        image="faasopt/worker-openfaas:0.1.0",
        callback_host="10.0.0.7",
        callback_port=8081,
        username="admin",
        password="gateway-auth/basic-auth-password",
        namespace="fn",
        nats_secret="nats-token",
        cpu="1",
        memory_mb=512,
        time_limit_seconds=300,
    )
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {"name": "callback", "containerPort": 8081} in container["ports"]
    named = operator_env(render(chart, VARIANTS["all-platforms-in-job-namespaces"]))
    assert named[openfaas.SETTINGS_ENV["callback_host"]] == "faasopt-callback.faasopt.svc"
    assert password not in named  # no Secret named: a gateway without auth


def test_lambda_settings_with_credentials_from_a_secret(chart):
    env = operator_env(render(chart, VARIANTS["lambda"]))
    for name in AWS_CREDENTIALS:
        ref = {"name": "aws", "key": name, **({"optional": True} if "SESSION" in name else {})}
        assert env[name] == {"secretKeyRef": ref}
    settings = aws_lambda.LambdaSettings.from_env(
        resolved(env), memory_mb=2048, time_limit_seconds=600
    )
    assert settings == aws_lambda.LambdaSettings(
        image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/faasopt:0.1.0",
        role_arn="arn:aws:iam::123456789012:role/faasopt-worker",
        region="eu-west-1",
        memory_mb=2048,
        time_limit_seconds=600,
    )
    zipped = operator_env(render(chart, VARIANTS["all-platforms-in-job-namespaces"]))
    assert resolved(zipped)[aws_lambda.SETTINGS_ENV["zip_file"]] == "s3://bucket/faasopt.zip"
    assert not set(AWS_CREDENTIALS) & set(zipped)  # the standard chain (e.g. IRSA)


@pytest.mark.parametrize(
    "given", [{}, {"imageUri": "1.dkr.ecr/x:1", "zip": "s3://b/k.zip"}], ids=["none", "both"]
)
def test_lambda_needs_exactly_one_package(chart, given):
    with pytest.raises(helm.HelmRenderError, match="exactly one of imageUri and zip"):
        render(chart, {"platforms": {"lambda": {"enabled": True, **given}}})
