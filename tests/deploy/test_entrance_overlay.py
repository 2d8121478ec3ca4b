"""deploy/kubernetes/overlays/cpu-entrance: the entrance (serving/entrance.py) as an
nginx container beside Triton in each pod. Its nginx.conf is the one berth renders,
real nginx accepts it, and the rendered objects route clients through it."""

from __future__ import annotations

import importlib.util
import subprocess

from export.triton_config import ServingSettings
from serving.entrance import render
from tests.deploy.manifests import KUBERNETES, find, tool
from tests.deploy.manifests import render as kustomize

OVERLAY = KUBERNETES / "overlays" / "cpu-entrance"


def generator():
    spec = importlib.util.spec_from_file_location("entrance_generate", OVERLAY / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_conf_is_what_berth_renders():
    """Regenerate with `python deploy/kubernetes/overlays/cpu-entrance/generate.py`."""
    assert generator().main(["--check"]) == 0


def test_real_nginx_accepts_the_pods_conf(tmp_path):
    """The pod's settings, paths under a temporary prefix instead of the pod's /tmp."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(generator().POD, prefix=tmp_path, error_log="stderr"))
    checked = subprocess.run(
        [tool("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr


def test_clients_reach_triton_only_through_the_entrance():
    objects = kustomize("cpu-entrance")
    pod = find(objects, "Deployment", "berth-triton")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"triton", "entrance"}
    triton, entrance = containers["triton"], containers["entrance"]
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1"} <= set(triton["args"])
    assert "--metrics-address=127.0.0.1" not in triton["args"]  # Prometheus scrapes it

    entrance_ports = {p["name"]: p["containerPort"] for p in entrance["ports"]}
    service = {p["name"]: p["targetPort"] for p in find(objects, "Service")["spec"]["ports"]}
    assert service == {"http": "entrance-http", "grpc": "entrance-grpc", "metrics": "metrics"}
    settings = generator().POD
    assert entrance_ports == {
        "entrance-http": settings.http_port,
        "entrance-grpc": settings.grpc_port,
    }

    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config_map["data"]["nginx.conf"] == (OVERLAY / "nginx.conf").read_text()
    volume = next(v for v in pod["volumes"] if v.get("configMap"))
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert entrance["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in entrance["volumeMounts"]} == {"/tmp", "/etc/berth-entrance"}
    conf = "/etc/berth-entrance/nginx.conf"
    assert entrance["command"][:5] == ["nginx", "-p", "/tmp", "-c", conf]
    # Guaranteed QoS, as the cpu overlay asks of Triton
    assert entrance["resources"]["requests"] == entrance["resources"]["limits"]


def test_the_pod_limit_stays_below_the_published_queue_depth():
    """Above the models' queue depth Triton would refuse, after tokenizing, requests the
    entrance admitted (at 128 in flight: 36,000 of them in 30 s, RELIABILITY.md)."""
    depth = ServingSettings().max_queue_size
    assert 1 <= generator().POD.max_in_flight < depth
