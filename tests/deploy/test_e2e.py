"""A real Prometheus (Debian's package, loopback) scrapes a real tritonserver serving the
ensemble during a short `python -m loadtest` run; then the HPA's query and every
dashboard panel's query must return series with plausible values, and Prometheus,
Triton and Locust must count the same requests. Also: Locust's master and worker run
exactly as the Kubernetes Job and worker Deployment run them, and `python -m loadtest
--processes` (Locust workers on one machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from loadtest import triton_stats
from loadtest.run import main as loadtest_main
from loadtest.slo import read_locust_json
from serving.server import free_port
from tests.client.ensembles import SINGLE
from tests.deploy.manifests import (
    HPA_RULE,
    MONITORING,
    ROOT,
    adapter_rule,
    container,
    find,
    member_pattern,
    model_configs,
    render,
)
from tests.deploy.prometheus import Prometheus, prometheus

pytestmark = [pytest.mark.server, pytest.mark.slow]

NAMESPACE = "berth"
POD = "berth-triton-0"  # the target labels a ServiceMonitor would add
JOB = "berth-triton"  # the Service's name, the job a ServiceMonitor scrapes as
LOAD_SECONDS = 12
USERS = 8
IMAGE_LOCUSTFILE = "/opt/berth/loadtest/locustfile.py"
US_CEILING = 1e7  # 10 s: anything above is not a plausible per-request figure here


def scrape_config(metrics_url: str) -> dict:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "rules.yaml")],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {"targets": [metrics_url], "labels": {"namespace": NAMESPACE, "pod": POD}}
                ],
            }
        ],
    }


def manifest_command(kind: str, name: str, replace: dict[str, str], add: list[str]) -> list[str]:
    """The Locust command of a loadtest manifest, run here: the repository's locustfile,
    local addresses, a short run. Every replaced flag must be in the manifest."""
    command = container(render("loadtest"), kind, name)["command"]
    assert command[0] == "locust" and IMAGE_LOCUSTFILE in command
    out = [sys.executable, "-m", "locust"]
    for arg in command[1:-1]:
        flag = arg.split("=", 1)[0]
        if arg == IMAGE_LOCUSTFILE:
            arg = str(ROOT / "loadtest" / "locustfile.py")
        elif flag in replace:
            arg = f"{flag}={replace.pop(flag)}"
        out.append(arg)
    assert not replace, f"not in the {name} manifest: {sorted(replace)}"
    return [*out, *add, command[-1]]


def run_distributed_locust(http_url: str, workdir, seconds: int, users: int) -> list[dict]:
    """Master + one worker as deploy/kubernetes/loadtest runs them; the master's --json."""
    port = str(free_port())
    master = manifest_command(
        "Job", "berth-locust-master",
        {"--expect-workers": "1", "--expect-workers-max-wait": "60", "--users": str(users),
         "--spawn-rate": str(users), "--run-time": f"{seconds}s",
         "--host": f"http://{http_url}"},
        ["--master-bind-host=127.0.0.1", f"--master-bind-port={port}"],
    )  # fmt: skip
    worker = manifest_command(
        "Deployment", "berth-locust-worker",
        {"--master-host": "127.0.0.1", "--master-port": port}, [],
    )  # fmt: skip
    env = {**os.environ, **find(render("loadtest"), "ConfigMap")["data"], "PYTHONPATH": str(ROOT)}
    log = (workdir / "locust.log").open("w")
    with log:
        proc = subprocess.Popen(master, stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT)
        helper = subprocess.Popen(worker, stdout=log, stderr=log, env=env, cwd=ROOT)
        try:
            out, _ = proc.communicate(timeout=seconds + 120)
        finally:
            for p in (proc, helper):
                if p.poll() is None:
                    p.terminate()
                p.wait(timeout=30)
    assert proc.returncode == 0, (workdir / "locust.log").read_text()[-3000:]
    return json.loads(out)


def wait_for_final_scrape(prom: Prometheus, expected: int, timeout: float = 30.0) -> float:
    """Until Prometheus holds the ensemble's final success count; then one more rule
    evaluation. Returns the count's sample time."""
    expr = f'nv_inference_request_success{{job="{JOB}",model="{SINGLE}"}}'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (series,) = prom.query(f"timestamp({expr})") or [None]
        if series and int(prom.values(expr)[SINGLE]) == expected:
            scraped = float(series["value"][1])
            prom.wait_until(f"timestamp({HPA_RULE}) > {scraped}", timeout=15)
            return scraped
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never saw {expected} successes\n{prom.log_tail()}")


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def members(repository) -> dict[str, int]:
    """The ensemble's step models → their max_batch_size."""
    configs = model_configs(repository)
    steps = configs[SINGLE].ensemble_scheduling.step
    return {s.model_name: configs[s.model_name].max_batch_size for s in steps}


def check_panel(record: str, values: dict[str, float], served: int, steps: dict[str, int]):
    """Plausible values for one recording rule after a Locust run of `served` requests
    through the ensemble whose step models are `steps`."""
    for key, value in values.items():
        assert value >= 0, f"{record}: {key} = {value}"
    models = {SINGLE, *steps}
    if record == "namespace_model:nv_inference_request_success:rate1m":
        ensemble = values[SINGLE]
        # rate over 1m of a load shorter than the window: between count/90 and count/5
        assert served / 90 < ensemble < served / 5, (ensemble, served)
        assert all(close(values[m], ensemble, 0.2) for m in steps), values
    elif record.endswith(":nv_inference_request_failure:rate1m"):
        assert set(values.values()) == {0.0}
    elif record.endswith(":ratio_rate1m"):
        assert models <= values.keys() and set(values.values()) == {0.0}
    elif record.endswith(":nv_inference_queue_duration_us:per_request_rate1m"):
        assert all(0 < values[m] < US_CEILING for m in steps), values
    elif record == HPA_RULE:
        assert 0 < values[POD] < US_CEILING
    elif record.endswith(":per_execution_rate1m"):
        assert all(0 < values[m] < US_CEILING for m in models), values
    elif record.endswith(":nv_inference_batch_size:mean_rate1m"):
        # one text per Locust request; other suites share the session's server and may
        # have sent a few multi-text requests inside the one-minute window
        assert 1.0 <= values[SINGLE] < 1.5, values
        assert all(1.0 <= values[m] <= size for m, size in steps.items()), values
    elif record.endswith(":nv_inference_pending_request_count:sum"):
        assert models <= values.keys() and all(v == int(v) for v in values.values())
    elif record.endswith(":resets15m"):
        assert values == {POD: 0.0}
    else:
        raise AssertionError(f"no plausibility check for {record}")


def dashboard_queries() -> list[tuple[str, str]]:
    """(recording rule, query) of every panel, variables as Grafana would fill them."""
    board = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    out = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$namespace", NAMESPACE).replace("$model", ".*")
            out.append((expr.split("{")[0], expr))
    return out


def hpa_query() -> str:
    """The adapter's metricsQuery as prometheus-adapter sends it for this pod."""
    query = adapter_rule()["metricsQuery"]
    matchers = f'namespace="{NAMESPACE}",pod=~"{POD}"'
    return query.replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", "pod")


def run_loadtest(http_url: str, report_dir) -> int:
    """A short `python -m loadtest` run; the number of requests Locust counted."""
    code = loadtest_main(["--host", http_url, "--model", SINGLE, "--client", "fast",
                          "--users", str(USERS), "--duration", f"{LOAD_SECONDS}s",
                          "--max-failure-rate", "0", "--report-dir", str(report_dir)])  # fmt: skip
    stats = read_locust_json(report_dir / "locust_final.json")
    assert code == 0 and stats.failures == 0, stats
    return stats.requests


def test_prometheus_sees_the_load_locust_puts_on_triton(ensemble, tmp_path):
    server, _ = ensemble
    with prometheus(scrape_config(server.metrics_url), tmp_path / "prometheus") as prom:
        prom.wait_until(f'up{{job="{JOB}"}} == 1')
        counter = f'nv_inference_request_success{{job="{JOB}",model="{SINGLE}"}}'
        prom.wait_until(counter)
        before = triton_stats.snapshot(server.http_url)[SINGLE]["requests"]
        assert int(prom.values(counter)[SINGLE]) == before
        locust_count = run_loadtest(server.http_url, tmp_path / "loadtest")
        after = triton_stats.snapshot(server.http_url)[SINGLE]["requests"]
        scraped = wait_for_final_scrape(prom, after)
        # Prometheus, Triton's own statistics and Locust count the same requests.
        assert int(prom.values(counter, at=scraped)[SINGLE]) - before == after - before
        assert after - before == locust_count > 0

        steps = members(server.model_repository)
        for record, expr in dashboard_queries():
            values = prom.values(expr)
            assert values, f"panel query {expr} returned no series"
            check_panel(record, values, locust_count, steps)

        (recorded,) = prom.query(f"timestamp({HPA_RULE})")
        at = float(recorded["value"][1])
        hpa = prom.values(hpa_query(), at=at)
        assert hpa.keys() == {POD} and 0 < hpa[POD] < US_CEILING
        assert close(hpa[POD], prom.values(HPA_RULE, at=at)[POD], 1e-9)
        # its denominator: requests to the ensembles the server has, nothing else
        ensembles = {n for n, c in model_configs(server.model_repository).items()
                     if c.platform == "ensemble"}  # fmt: skip
        pattern = member_pattern(adapter_rule()["metricsQuery"])
        counted = prom.values(f'nv_inference_request_success{{job="{JOB}",model!~"{pattern}"}}')
        assert counted.keys() == ensembles
        assert prom.query('ALERTS{alertstate="firing"}') == []


def test_locust_runs_as_the_kubernetes_manifests_run_it(ensemble, tmp_path):
    """The Job's master and the Deployment's worker commands work with this Locust and
    this locustfile. Their count is a lower bound: a headless master quits 0.5 s after
    telling the workers to, and a worker's last report can miss that (Locust 2.47)."""
    server, _ = ensemble
    before = triton_stats.snapshot(server.http_url)[SINGLE]["requests"]
    stats = run_distributed_locust(server.http_url, tmp_path, seconds=4, users=4)
    served = triton_stats.snapshot(server.http_url)[SINGLE]["requests"] - before
    (entry,) = [s for s in stats if s["name"] == f"{SINGLE} [snippets]"]
    assert entry["num_failures"] == 0
    assert 0 < entry["num_requests"] <= served


def test_loadtest_with_several_locust_processes(ensemble, tmp_path, capsys):
    server, _ = ensemble
    code = loadtest_main(["--host", server.http_url, "--model", SINGLE, "--client", "fast",
                          "--users", "4", "--duration", "3s", "--processes", "2",
                          "--max-failure-rate", "0", "--report-dir", str(tmp_path)])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    stats = read_locust_json(tmp_path / "locust_final.json")
    assert stats.requests > 0 and stats.failures == 0
    assert "--processes 2" in capsys.readouterr().out


def test_prometheus_config_is_valid(tmp_path):
    """The scrape configuration above is one promtool accepts (rules included)."""
    from tests.deploy.manifests import tool

    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config("127.0.0.1:8002")))
    out = subprocess.run([tool("promtool"), "check", "config", str(config)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
