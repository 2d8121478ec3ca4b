"""Only what the ensembles serve is loaded (serving.served_models)."""

from __future__ import annotations

import pytest
import tritonclient.http as httpclient

from serving.served_models import served_view, unused_variants
from serving.server import TritonServer
from tests.client.ensembles import MULTI, SINGLE


def _write(repository, name: str, text: str) -> None:
    (repository / name).mkdir(parents=True, exist_ok=True)
    (repository / name / "config.pbtxt").write_text(text)


def _ensemble(name: str, members: list[str]) -> str:
    steps = "".join(f'step {{ model_name: "{m}" model_version: -1 }}\n' for m in members)
    return f'name: "{name}"\nplatform: "ensemble"\nensemble_scheduling {{\n{steps}}}\n'


def test_variants_no_ensemble_references_are_left_out(tmp_path):
    repo = tmp_path / "repo"
    _write(repo, "s", _ensemble("s", ["s_tokenizer", "s_onnx_int8"]))
    for member in ("s_tokenizer", "s_onnx_int8", "s_onnx_fp32", "s_onnx_fp16", "other"):
        _write(repo, member, f'name: "{member}"\nbackend: "python"\n')
    # a second ensemble over the fp32 classifier keeps it
    _write(repo, "s_exact", _ensemble("s_exact", ["s_tokenizer", "s_onnx_fp32"]))
    (repo / "s_onnx_fp16" / "configs").mkdir()
    (repo / "s" / "configs").mkdir()
    (repo / "s" / "configs" / "gpu.pbtxt").write_text(
        _ensemble("s", ["s_tokenizer", "s_onnx_fp16"])
    )
    assert unused_variants(repo) == {"s_onnx_fp16"}
    assert unused_variants(repo, "gpu") == {"s_onnx_int8"}
    view = served_view(repo, tmp_path / "view")
    assert sorted(p.name for p in view.iterdir()) == [
        "other", "s", "s_exact", "s_onnx_fp32", "s_onnx_int8", "s_tokenizer"
    ]  # fmt: skip
    assert (view / "s_tokenizer").resolve() == (repo / "s_tokenizer").resolve()


def _ready(server: TritonServer, model: str) -> bool:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return client.is_model_ready(model)
    finally:
        client.close()


@pytest.mark.server
@pytest.mark.slow
def test_the_server_loads_only_the_served_variant(ensemble):
    """The shared repository holds fp32 and int8 classifiers; the ensembles run int8."""
    server, _ = ensemble
    for name in (SINGLE, MULTI):
        assert _ready(server, name) and _ready(server, f"{name}_onnx_int8")
        assert not _ready(server, f"{name}_onnx_fp32")


@pytest.mark.server
@pytest.mark.slow
def test_load_unused_variants_loads_the_whole_repository(ensemble):
    server, _ = ensemble
    with TritonServer(server.model_repository, load_unused_variants=True) as everything:
        assert _ready(everything, f"{SINGLE}_onnx_fp32") and _ready(everything, SINGLE)
