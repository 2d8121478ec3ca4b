"""docker/: the files' content (no Docker engine here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def test_dockerfile():
    text = (DOCKER / "Dockerfile").read_text()
    instructions = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in instructions
    pip = next(line for line in instructions if "pip install" in line)
    assert '"numpy>=1.26,<2"' in pip and "tokenizers" in pip
    assert "COPY model_repository /models" in instructions
    assert "EXPOSE 8000 8001 8002" in instructions
    assert "COPY serving/liveness.py /opt/berth/liveness.py" in instructions
    assert "CMD python3 /opt/berth/liveness.py --url http://localhost:8000 || exit 1" in text
    assert (
        'CMD ["tritonserver", "--model-repository=/models", "--model-config-name=gpu"]'
        in instructions
    )


def test_compose():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    triton = compose["services"]["triton"]
    assert triton["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert "--model-config-name=gpu" in triton["command"]
    assert "--model-repository=/models" in triton["command"]
    assert triton["shm_size"]
    assert sorted(triton["ports"]) == ["8000:8000", "8001:8001", "8002:8002"]
    assert "../model_repository:/models:ro" in triton["volumes"]
    assert any(v.startswith("trt-cache:/trt-cache") for v in triton["volumes"])
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert triton["healthcheck"]["test"] == [
        "CMD", "python3", "/opt/berth/liveness.py", "--url", "http://localhost:8000"
    ]  # fmt: skip
    assert "trt-cache" in compose["volumes"]


def test_trt_cache_path_matches_the_gpu_configs():
    from export.triton_config import ServingSettings

    assert ServingSettings().trt_cache_dir == "/trt-cache"
    assert "/trt-cache" in (DOCKER / "Dockerfile").read_text()


def test_liveness_check_runs_on_the_standard_library_alone():
    """The container's python3 has none of berth's packages: `-I -S` (no site-packages,
    no user paths) must be enough. Nothing listens on port 1, so it reports not live."""
    out = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "serving" / "liveness.py"), "--url",
         "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "did not answer 200" in out.stderr or "died" in out.stderr
