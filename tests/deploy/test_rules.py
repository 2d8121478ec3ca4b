"""deploy/monitoring: promtool accepts and unit-tests every rule; the generated
PrometheusRule and dashboard are current; the dashboard reads only recording rules; the
HPA's adapter query is the recorded one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.manifests import (
    HPA_RULE,
    MONITORING,
    ROOT,
    adapter_rule,
    find,
    member_pattern,
    model_configs,
    render,
    tool,
)

RULES = MONITORING / "rules.yaml"
RULE_TESTS = MONITORING / "rules.test.yaml"
RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def recorded() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def promtool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_rules():
    out = promtool("check", "rules", RULES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_promtool_unit_tests_pass():
    out = promtool("test", "rules", RULE_TESTS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_rule_has_a_unit_test():
    """Each recording rule is evaluated, and each alert seen both firing and quiet."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    exprs = " ".join(t["expr"] for case in tests for t in case.get("promql_expr_test", []))
    alert_tests = [t for case in tests for t in case.get("alert_rule_test", [])]
    for rule in rules():
        if "record" in rule:
            assert rule["record"] in exprs, f"no promql_expr_test for {rule['record']}"
            continue
        mine = [t for t in alert_tests if t["alertname"] == rule["alert"]]
        assert any(t["exp_alerts"] for t in mine), f"{rule['alert']} never tested firing"
        assert any(not t["exp_alerts"] for t in mine), f"{rule['alert']} never tested quiet"


def test_generated_files_are_current():
    """prometheusrule.yaml and grafana-dashboard.json are generate.py's output."""
    out = subprocess.run(
        [sys.executable, str(MONITORING / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rule = find(render("monitoring"), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_dashboard_reads_only_recording_rules():
    board = json.loads(find(render("monitoring"), "ConfigMap")["data"]["grafana-dashboard.json"])
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) == len(board["panels"]) >= 8
    for expr in exprs:
        names = set(re.findall(r"\b[a-z_][a-z0-9_:]*(?=\{)", expr))
        assert names and names <= recorded(), f"{expr} reads {names - recorded()}"
    used = {n for e in exprs for n in RECORDED_NAME.findall(e)}
    assert used == recorded(), f"recording rules without a panel: {recorded() - used}"


def test_the_hpa_metric_is_the_adapters():
    hpa = find(render("cpu"), "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == adapter_rule()["name"]["as"]
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert adapter_rule()["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }


def adapter_query_as_rule() -> str:
    """The adapter's metricsQuery with its templates filled as for every pod."""
    query = adapter_rule()["metricsQuery"]
    query = query.replace("<<.GroupBy>>", "namespace, pod")
    query = query.replace("{<<.LabelMatchers>>}", "").replace("{<<.LabelMatchers>>,", "{")
    return query


def test_adapter_query_is_the_recorded_hpa_signal():
    (rule,) = [r for r in rules() if r.get("record") == HPA_RULE]

    def squash(text: str) -> str:
        return re.sub(r"\s+", "", text)

    assert "<<" not in adapter_query_as_rule()
    assert squash(adapter_query_as_rule()) == squash(rule["expr"])


def test_hpa_signal_tells_ensembles_from_their_members():
    """Its denominator counts requests to ensembles only: every model of the committed
    repository that is not an ensemble is named as a member."""
    (rule,) = [r for r in rules() if r.get("record") == HPA_RULE]
    pattern = member_pattern(rule["expr"])
    assert pattern == member_pattern(adapter_rule()["metricsQuery"])
    configs = model_configs(ROOT / "model_repository")
    assert any(c.platform == "ensemble" for c in configs.values())
    for name, config in configs.items():
        is_member = re.fullmatch(pattern, name) is not None
        assert is_member == (config.platform != "ensemble"), name
