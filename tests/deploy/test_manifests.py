"""Every manifest renders and validates offline: the Kubernetes kinds against the
schemas kubernetes-validate bundles (strict: unknown fields refused), the custom
resources against the CRDs kept in deploy/crds."""

from __future__ import annotations

import json
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    KUSTOMIZATIONS,
    PLAIN_MANIFESTS,
    crd_files,
    crd_schemas,
    crd_text,
    load_plain,
    render,
    sha256,
    strict,
    tool,
)

# The oldest Kubernetes minor still in wide support and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
CUSTOM_GROUPS = ("monitoring.coreos.com/", "serving.kserve.io/")


def all_objects() -> list[tuple[str, dict]]:
    objects = [(name, o) for name in KUSTOMIZATIONS for o in render(name)]
    objects += [(path.name, o) for path in PLAIN_MANIFESTS for o in load_plain(path)]
    return objects


def object_id(item: tuple[str, dict]) -> str:
    source, obj = item
    return f"{source}:{obj['kind']}/{obj['metadata']['name']}"


def test_kubectl_is_recent_enough():
    """kustomize 5 (kubectl >= 1.27): `labels`, `patches` with targets."""
    out = subprocess.run([tool("kubectl"), "version", "--client", "-o", "json"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    version = json.loads(out.stdout)
    minor = int(re.match(r"\d+", version["clientVersion"]["minor"]).group())
    assert minor >= 27, version
    assert int(version["kustomizeVersion"].lstrip("v").split(".")[0]) >= 5, version


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_every_kustomization_renders(name):
    assert render(name), f"{name} rendered no objects"


def test_the_overlays_render_what_the_issue_asks_for():
    for overlay in ("cpu", "gpu"):
        kinds = sorted(o["kind"] for o in render(overlay))
        assert kinds == sorted([
            "Namespace", "PersistentVolumeClaim", "Deployment", "Service",
            "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor",
        ]), overlay  # fmt: skip
    assert sorted(o["kind"] for o in render("loadtest")) == [
        "ConfigMap",
        "Deployment",
        "Job",
        "Service",
    ]
    assert sorted(o["kind"] for o in render("kserve")) == [
        "InferenceService",
        "Namespace",
        "PersistentVolumeClaim",
    ]


@pytest.mark.parametrize("item", all_objects(), ids=object_id)
def test_object_validates_strictly(item):
    _, obj = item
    if obj["apiVersion"].startswith(CUSTOM_GROUPS):
        schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
        assert schema is not None, f"no CRD kept for {obj['apiVersion']} {obj['kind']}"
        jsonschema.Draft4Validator(strict(schema)).validate(obj)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_strict_crd_validation_refuses_unknown_fields():
    """The check above would catch a typo in a custom resource."""
    (monitor,) = [o for o in render("cpu") if o["kind"] == "ServiceMonitor"]
    schema = strict(crd_schemas()[(monitor["apiVersion"], "ServiceMonitor")])
    typo = {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}}
    with pytest.raises(jsonschema.ValidationError, match="endpoint"):
        jsonschema.Draft4Validator(schema).validate(typo)


def test_strict_kubernetes_validation_refuses_unknown_fields():
    (pdb,) = [o for o in render("cpu") if o["kind"] == "PodDisruptionBudget"]
    typo = {**pdb, "spec": {**pdb["spec"], "maxUnavailabel": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSIONS[-1], strict=True)


def test_crds_are_the_upstream_files():
    for path, digest in crd_files().items():
        assert path.is_file(), path
        assert sha256(crd_text(path)) == digest, f"{path} differs from SHA256SUMS"
    kept = {kind for _, kind in crd_schemas()}
    assert kept == {"ServiceMonitor", "PrometheusRule", "InferenceService"}
