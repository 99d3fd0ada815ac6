"""The Grafana dashboard (charts/faasopt/files/faasopt-dashboard.json), without a Grafana server: its structure is
checked, and every panel's PromQL is parsed by promtool and run on the real Prometheus that
scraped a real run (tests/test_prometheus.py's session fixture)."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from test_prometheus import needs, scraped_run  # noqa: F401  (the shared session fixture)

from faasopt.metrics import SPECS

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_FILE = ROOT / "charts" / "faasopt" / "files" / "faasopt-dashboard.json"
DASHBOARD = json.loads(DASHBOARD_FILE.read_text())
PANELS = DASHBOARD["panels"]
TARGETS = [(panel, target) for panel in PANELS for target in panel["targets"]]
VARIABLES = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
# What Grafana substitutes; the rate window fits a run of a few seconds scraped every second.
SUBSTITUTIONS = {"$namespace": "ml", "$job": "scraped", "$__rate_interval": "1m"}


def _expr(target: dict) -> str:
    expr = target["expr"]
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_panels_have_unique_ids_and_a_grid_place_that_overlaps_no_other():
    ids = [panel["id"] for panel in PANELS]
    assert len(ids) == len(set(ids))
    cells = {}
    for panel in PANELS:
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for cell in itertools.product(
            range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        ):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]


def test_queries_use_the_datasource_and_job_variables():
    assert VARIABLES["datasource"]["type"] == "datasource"
    assert VARIABLES["datasource"]["query"] == "prometheus"
    for name in ("namespace", "job"):
        assert VARIABLES[name]["type"] == "query"
        assert VARIABLES[name]["datasource"]["uid"] == "${datasource}"
        assert VARIABLES[name]["query"]["query"].startswith("label_values(faasopt_")
    for panel, target in TARGETS:
        for holder in (panel, target):
            assert holder["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert target["expr"], panel["title"]
        assert 'namespace="$namespace", job="$job"' in target["expr"], target["expr"]
    for panel in PANELS:
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_metric_names_come_from_faasopt_metrics():
    used = set()
    for _, target in TARGETS:
        for name in re.findall(r"\bfaasopt_[a-z_:]+", target["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            used.add(base if base in SPECS else name)
    assert used <= set(SPECS), used - set(SPECS)
    shown = set(SPECS) - {"faasopt_job_running"}  # running only serves the stall alert
    assert shown <= used, f"not on the dashboard: {shown - used}"


def test_the_seed_figures_have_panels():
    titles = " ".join(p["title"].lower() for p in PANELS)
    for topic in ("objective", "residuals", "workers", "speedup", "efficiency", "stacked"):
        assert topic in titles
    log_panels = [p for p in PANELS if p["title"] in ("Objective", "Residuals")]
    for panel in log_panels:
        assert panel["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"] == "log"
    (stacked,) = [p for p in PANELS if "stacked" in p["title"]]
    assert stacked["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


def test_xy_panels_plot_named_series_against_the_iteration():
    xy = [p for p in PANELS if p["type"] == "xychart"]
    assert {p["title"] for p in xy} == {"Objective vs iteration", "Residuals vs iteration"}
    for panel in xy:
        legends = {t["legendFormat"] for t in panel["targets"]}
        assert panel["transformations"] == [
            {"id": "joinByField", "options": {"byField": "Time", "mode": "outer"}}
        ]
        series = panel["options"]["series"]
        assert {s["x"]["matcher"]["options"] for s in series} == {"iteration"}
        assert {s["y"]["matcher"]["options"] for s in series} == legends - {"iteration"}
        assert panel["fieldConfig"]["defaults"]["custom"]["scaleDistribution"]["type"] == "log"


def test_promtool_parses_every_query(tmp_path):
    """promtool has no plain PromQL check in Debian's 2.42: each query becomes a recording rule."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": _expr(t)}
                    for p, t in TARGETS
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run(
        [needs("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(TARGETS)} rules found" in out.stdout


@pytest.mark.parametrize(
    ("panel", "target"), TARGETS, ids=[f"{p['id']}-{t['refId']}" for p, t in TARGETS]
)
def test_every_query_returns_data_for_the_job(scraped_run, panel, target):  # noqa: F811
    result = scraped_run.query(_expr(target))
    assert result, f"{panel['title']}: no data for {_expr(target)}"
    assert all(s["metric"].get("job", "scraped") == "scraped" for s in result)
    assert any(math.isfinite(float(s["value"][1])) for s in result), result


def test_the_variables_find_the_job(scraped_run):  # noqa: F811
    """label_values(metric, label) as Grafana runs it: the series API at the last scrape."""
    for name, expected in (("namespace", "ml"), ("job", "scraped")):
        query = VARIABLES[name]["query"]["query"].replace("$namespace", "ml")
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query).groups()
        values = {s["metric"][label] for s in scraped_run.query(f"last_over_time({metric}[5m])")}
        assert expected in values
