"""The container layout end to end: the repository `python -m export` publishes, served
by its default `config.pbtxt` files exactly as the stock NVIDIA container serves them
(`TritonServer(container_configs=True)`, i.e. `python -m serving --container-configs`),
with berth's onnxruntime runner strict: it refuses what the native backend refuses.

The same repository as the client tests' (`ensemble`: sentiment int8, tags multi-label,
reviews in window mode), in a second server: parity with the reference predictor, long
texts in windows (aggregated in a third step, as the native backend needs), bad input,
a dead stub, and the refusal of a configuration only the pip layout may use.
"""

from __future__ import annotations

import queue
import shutil
import time

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from berth_client import Classifier
from berth_core.names import FLAT_MODEL_FILE
from serving.server import TritonServer, TritonServerError
from tests.client.ensembles import LONG, LONG_STEPS, MULTI, SINGLE
from tests.client.test_long_texts import infer, long_texts
from tests.export.checkpoints import held_out_texts
from tests.serving.statistics import settled_counts
from tests.triton_text import text_input
from training.predict import Predictor

pytestmark = [pytest.mark.server, pytest.mark.slow]
HANG_S = 90  # ends a wait that would otherwise hang; not a speed target


@pytest.fixture(scope="module")
def container(ensemble):
    """(server, checkpoints): the client tests' repository, in the container layout."""
    pip_server, checkpoints = ensemble
    with TritonServer(pip_server.model_repository, container_configs=True, watchdog=True) as server:
        yield server, checkpoints


def config(server, model: str) -> dict:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return client.get_model_config(model)
    finally:
        client.close()


def test_the_default_configs_are_served(container):
    """Padded batches and no berth extension: what the native backend takes; exported
    with --container-ragged (`reviews_steps`), ragged batches in the only form it takes
    (flat graph inputs, Triton's BATCH_ITEM_SHAPE batch input)."""
    server, _ = container
    assert server.model_config_name is None
    classifier = config(server, f"{SINGLE}_onnx_int8")
    assert [(i["name"], i.get("allow_ragged_batch", False)) for i in classifier["input"]] == [
        ("input_ids", False),
        ("attention_mask", False),
    ]
    assert config(server, f"{SINGLE}_tokenizer")["parameters"]["padding"]["string_value"] == (
        "batch"
    )
    flat = config(server, f"{LONG_STEPS}_onnx_fp32")
    assert all(i["allow_ragged_batch"] for i in flat["input"])
    assert flat["default_model_filename"] == FLAT_MODEL_FILE
    assert [b["kind"] for b in flat["batch_input"]] == ["BATCH_ITEM_SHAPE"]
    assert "ragged_run_cost_tokens" not in flat["parameters"]
    tokenizer = config(server, f"{LONG_STEPS}_tokenizer")
    assert tokenizer["parameters"]["padding"]["string_value"] == "per_request"
    steps = config(server, LONG)["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == [f"{LONG}_tokenizer", f"{LONG}_onnx_fp32",
                                                f"{LONG}_aggregate"]  # fmt: skip


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_match_the_reference_predictor(container, protocol):
    """fp32 (`reviews`) to 1e-3 of the PyTorch predictor; the int8 multi-label `tags`
    within int8's distance of it (as in the pip layout's tests)."""
    server, checkpoints = container
    url = server.http_url if protocol == "http" else server.grpc_url
    texts = held_out_texts(checkpoints[LONG])[:40]
    reference = Predictor(checkpoints[LONG]).probabilities(texts)
    with Classifier(url, model=LONG, protocol=protocol) as clf:
        served = np.array([[r["probabilities"][n] for n in ("negative", "positive")]
                           for r in clf.predict(texts)])  # fmt: skip
    assert np.abs(served - reference).max() <= 1e-3
    tags = Predictor(checkpoints[MULTI])
    with Classifier(url, model=MULTI, protocol=protocol) as clf:
        records = clf.predict(texts)
    expected = tags.predict(texts)
    agree = np.mean([r["labels"] == e["labels"] for r, e in zip(records, expected, strict=True)])
    assert agree >= 0.9
    for record, wanted in zip(records, expected, strict=True):
        for label, p in wanted["probabilities"].items():
            assert abs(record["probabilities"][label] - p) < 0.05  # int8 vs fp32 PyTorch


@pytest.mark.parametrize("model", [LONG, LONG_STEPS])
def test_long_texts_are_read_in_windows(container, model):
    """Window mode on the native backend's layout, padded (`reviews`) and on the flat
    graph (`reviews_steps`): rows are windows, aggregated by `<name>_aggregate`, as the
    reference predictor aggregates them."""
    server, checkpoints = container
    predictor = Predictor(checkpoints[model])
    texts = [long_texts(checkpoints[model], 1, n, offset=10 * n)[0] for n in (5, 9, 12)]
    assert np.bincount(predictor.windows(texts).text).min() >= 2
    logits, probs = infer(server, model, [*texts, "short"])
    assert np.abs(probs - predictor.probabilities([*texts, "short"])).max() <= 1e-3
    assert np.abs(logits - predictor.logits([*texts, "short"])).max() <= 1e-3


def test_requests_of_different_lengths_share_a_batch(container):
    """The flat graph (--container-ragged) lets the classifier's dynamic batcher merge
    requests of any length (padded batches merge only equal shapes), and each answer is
    the one the text gets alone."""
    server, _ = container
    texts = [("great " * n).strip() + " film" for n in (1, 3, 9, 17, 30, 2, 12, 25)] * 2
    model = f"{LONG_STEPS}_onnx_fp32"
    before = settled_counts(server, model)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    done: queue.Queue = queue.Queue()
    for index, text in enumerate(texts):  # one request per text, all in flight together
        inp = text_input(grpcclient, [text])
        client.async_infer(
            LONG_STEPS,
            [inp],
            callback=lambda result, error, i=index: done.put((i, result, error)),
            request_id=str(index),
        )
    answers = sorted(done.get(timeout=HANG_S) for _ in texts)
    client.close()
    assert all(e is None for _, _, e in answers), [str(e) for _, _, e in answers if e]
    after = settled_counts(server, model, at_least=before[0] + len(texts))
    inferences, runs = (a - b for a, b in zip(after, before, strict=True))
    assert inferences >= len(texts) and runs < len(texts) / 2, (inferences, runs)
    with Classifier(server.http_url, model=LONG_STEPS) as clf:
        alone = np.array([list(clf.predict(t)["probabilities"].values()) for t in texts[:8]])
    together = np.concatenate([r.as_numpy("PROBABILITIES") for _, r, _ in answers[:8]])
    assert np.abs(together - alone).max() <= 1e-5  # fp32: padding inside the graph is masked


def test_bad_input_fails_alone_and_the_server_stays_up(container):
    server, _ = container
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        inp = text_input(httpclient, [b"fine", b"\xff\xfe bad"])
        with pytest.raises(InferenceServerException, match=r"TEXT\[1\] is not valid UTF-8"):
            client.infer(SINGLE, [inp])
    finally:
        client.close()
    with Classifier(server.http_url, model=SINGLE) as clf:
        assert clf.predict("a gripping, funny film")["label"] in ("negative", "positive")


def stubs_of(server: TritonServer, model: str) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(server.process.pid).children(recursive=True)
        if "triton_python_backend_stub" in " ".join(p.cmdline())
        and f"/{model}/" in " ".join(p.cmdline())
    ]


def test_a_dead_stub_is_recovered(container):
    """SIGKILL the stubs of the tokenizer and of the int8 classifier: the watchdog reloads
    both models in the same server, the strict runner taking the configuration of the
    reload as it took the first, and the next requests are answered."""
    server, _ = container
    reloads, restarts, old_pid = server.reloads, server.restarts, server.process.pid
    stubs = stubs_of(server, f"{SINGLE}_tokenizer") + stubs_of(server, f"{SINGLE}_onnx_int8")
    assert stubs
    for stub in stubs:
        stub.kill()
    deadline = time.monotonic() + HANG_S
    while server.reloads < reloads + 2 and server.restarts == restarts:
        assert time.monotonic() < deadline, f"hung: no reload within {HANG_S} s"
        time.sleep(0.25)
    assert (server.reloads, server.restarts) == (reloads + 2, restarts), server.log_tail[-3000:]
    assert server.process.pid == old_pid and server.container_configs
    with Classifier(server.http_url, model=SINGLE) as clf:
        assert clf.predict("a gripping, funny film")["label"] in ("negative", "positive")
    assert config(server, f"{SINGLE}_onnx_int8")["input"][0].get("allow_ragged_batch") is False


def test_a_pip_only_configuration_is_refused_as_the_native_backend_would(container, tmp_path):
    """A classifier whose default config takes ragged batches on a [batch, sequence]
    graph: the container would not load it, nor does the strict runner; the pip layout
    serves the same files."""
    pip_server, _ = container
    repository = tmp_path / "repository"
    for model in (SINGLE, f"{SINGLE}_tokenizer", f"{SINGLE}_onnx_int8"):
        shutil.copytree(pip_server.model_repository / model, repository / model, symlinks=True)
    classifier = repository / f"{SINGLE}_onnx_int8"
    shutil.copy(classifier / "configs/pip.pbtxt", classifier / "config.pbtxt")
    with pytest.raises(TritonServerError, match=r"ragged"):
        TritonServer(repository, container_configs=True, startup_timeout=120).start().stop()
    with TritonServer(repository) as served, Classifier(served.http_url, model=SINGLE) as clf:
        assert clf.predict("a gripping, funny film")["label"] in ("negative", "positive")


def test_check_repository_judges_each_layout_as_triton_would(container, tmp_path, capsys):
    """`python -m serving.check_repository`, without serving: the default and GPU configs
    pass, the pip configs (ragged, `windows` input) are refused, and a typo in a GPU
    config's TensorRT parameters is caught here though no GPU can load it."""
    from serving.check_repository import check_repository, main

    pip_server, _ = container
    repository = pip_server.model_repository
    assert check_repository(repository) == {}
    assert check_repository(repository, "gpu") == {}
    refused = check_repository(repository, "pip")
    assert f"{SINGLE}_onnx_int8" in refused and f"{LONG}_onnx_fp32" in refused
    assert {v.rule for v in refused[f"{LONG}_onnx_fp32"]} >= {"ort.ragged-batch"}

    copy = tmp_path / "repository"
    for model in (SINGLE, f"{SINGLE}_tokenizer", f"{SINGLE}_onnx_fp32", f"{SINGLE}_onnx_int8"):
        shutil.copytree(repository / model, copy / model, symlinks=True)
    gpu = copy / f"{SINGLE}_onnx_fp32" / "configs" / "gpu.pbtxt"
    gpu.write_text(gpu.read_text().replace("trt_engine_cache_enable", "trt_engine_cache_enabled"))
    assert main(["--model-repository", str(copy)]) == 0
    assert main(["--model-repository", str(copy), "--model-config-name", "gpu"]) == 1
    assert "trt_engine_cache_enabled" in capsys.readouterr().err
    assert main(["--model-repository", str(tmp_path / "missing")]) == 2
