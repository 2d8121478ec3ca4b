"""Bad input through the served ensemble: raw tritonclient (HTTP and gRPC) and berth-client.

Every case gets a specific error (HTTP 400 / gRPC INVALID_ARGUMENT, 404 / NOT_FOUND for
unknown models) whose message says what to fix, or a documented result (empty and
whitespace-only texts are classified as `[CLS] [SEP]`); after each one the server is
still up and answers a good request exactly as before. RELIABILITY.md, "Bad input".
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from berth_client import Classifier, InvalidInputError, ModelNotFoundError
from serving.tokenizer_model import model as tokenizer_model
from tests.reliability.served import (
    ATOL,
    GOOD_TEXT,
    MAX_TEXT_BYTES,
    MODEL,
    classifier_requests,
    http_or_grpc,
)
from tests.serving import fake_pb_utils
from tests.triton_text import text_input

pytestmark = pytest.mark.server

OBJ = np.object_
TEN_MB = b"word " * (2 * 1024 * 1024)  # 10 MiB of valid UTF-8
BAD_UTF8 = b"ok \xff\xfe broken"
STATUS = {
    "invalid": {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"},
    "not_found": {"http": "404", "grpc": "StatusCode.NOT_FOUND"},
}


# case → (inputs builder, model, version, expected status kind, message fragments)
CASES = {
    "10MB text": (
        lambda tc: [text_input(tc, np.array([[TEN_MB]], dtype=OBJ))],
        MODEL, "", "invalid",
        ["TEXT[0] is 10,485,760 bytes", f"limit of {MAX_TEXT_BYTES:,} bytes", "max_text_bytes"],
    ),
    "invalid UTF-8": (
        lambda tc: [text_input(tc, np.array([[BAD_UTF8]], dtype=OBJ))],
        MODEL, "", "invalid",
        ["TEXT[0] is not valid UTF-8", "0xff at offset 3", "encode the text as UTF-8"],
    ),
    "invalid UTF-8 in row 2": (
        lambda tc: [text_input(tc, np.array([[b"fine"], [b"also fine"], [BAD_UTF8]], dtype=OBJ))],
        MODEL, "", "invalid", ["TEXT[2] is not valid UTF-8"],
    ),
    "FP32 for TEXT": (
        lambda tc: [text_input(tc, np.ones((1, 1), np.float32), "FP32")],
        MODEL, "", "invalid", ["data-type is 'FP32'", "expects 'BYTES'"],
    ),
    "INT32 for TEXT": (
        lambda tc: [text_input(tc, np.ones((1, 1), np.int32), "INT32")],
        MODEL, "", "invalid", ["data-type is 'INT32'", "expects 'BYTES'"],
    ),
    "shape [1] (no batch dim)": (
        lambda tc: [text_input(tc, np.array([GOOD_TEXT.encode()], dtype=OBJ))],
        MODEL, "", "invalid", ["unexpected shape for input 'TEXT'", "Expected [-1,1], got [1]"],
    ),
    "shape [1, 2]": (
        lambda tc: [text_input(tc, np.array([[b"a", b"b"]], dtype=OBJ))],
        MODEL, "", "invalid", ["unexpected shape for input 'TEXT'", "got [1,2]"],
    ),
    "batch 65 > max_batch_size 64": (
        lambda tc: [text_input(tc, np.array([[b"x"]] * 65, dtype=OBJ))],
        MODEL, "", "invalid", ["batch-size must be <= 64"],
    ),
    "missing input": (
        lambda tc: [],
        MODEL, "", "invalid", ["missing required input(s) ['TEXT']"],
    ),
    "wrong input name": (
        lambda tc: [text_input(tc, np.array([[b"x"]], dtype=OBJ), name="text")],
        MODEL, "", "invalid", ["unexpected inference input 'text'"],
    ),
    "unknown model": (
        lambda tc: [text_input(tc, np.array([[b"x"]], dtype=OBJ))],
        "no_such_model", "", "not_found", ["unknown model: 'no_such_model'"],
    ),
    "unknown version": (
        lambda tc: [text_input(tc, np.array([[b"x"]], dtype=OBJ))],
        MODEL, "99", "not_found", ["'sentiment' version 99 is not found"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", list(CASES))
def test_raw_tritonclient_gets_a_specific_error(served, protocol, case):
    """Each bad request fails alone with its own status and message, and never reaches
    the classifier models (their request counts do not move); the server stays up."""
    build, model, version, kind, fragments = CASES[case]
    tc = http_or_grpc(protocol)
    client = tc.InferenceServerClient(served.http_url if protocol == "http" else served.grpc_url)
    before = classifier_requests(served.http_url)
    started = time.perf_counter()
    try:
        with pytest.raises(Exception) as info:
            client.infer(model, build(tc), model_version=version)
    finally:
        client.close()
    # a figure, not a bound (RELIABILITY.md, "Bad input"): the time to refuse it
    print(f"\n{case} over {protocol}: refused in {time.perf_counter() - started:.3f} s")
    assert str(info.value.status()) == STATUS[kind][protocol], info.value
    for fragment in fragments:
        assert fragment in info.value.message(), (fragment, info.value.message())
    assert classifier_requests(served.http_url) == before  # refused before the classifier
    served.assert_healthy()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_empty_and_whitespace_texts_are_classified_as_cls_sep(served, protocol):
    """Documented behaviour: "" and whitespace-only texts tokenize to [CLS] [SEP] and get
    a normal prediction (the same one), as training's Predictor gives them."""
    probs = served.classify(["", "   ", "\t\n ", GOOD_TEXT], protocol=protocol)
    assert probs.shape == (4, 2) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs[0], probs[1], atol=ATOL)
    np.testing.assert_allclose(probs[0], probs[2], atol=ATOL)
    np.testing.assert_allclose(probs[3], served.reference[0], atol=ATOL)
    served.assert_healthy()


def test_text_at_the_limit_is_accepted(served):
    """The limit is inclusive and counts UTF-8 bytes: exactly max_text_bytes passes
    (truncated to max_length tokens as in training), one byte more is refused."""
    at_limit = ("é" * (MAX_TEXT_BYTES // 2)).encode()
    assert len(at_limit) == MAX_TEXT_BYTES
    probs = served.classify([at_limit.decode()])
    assert probs.shape == (1, 2)
    with pytest.raises(Exception, match=f"{MAX_TEXT_BYTES + 1:,} bytes"):
        served.classify([at_limit.decode() + "x"])
    served.assert_healthy()


def test_bad_request_does_not_fail_its_batch_neighbours(served):
    """Good and bad requests sent concurrently (the tokenizer's dynamic batcher merges
    them into one execute() call): every good one is answered correctly, every bad one
    gets its own 400."""
    import tritonclient.http as th

    def one(bad: bool):
        client = th.InferenceServerClient(served.http_url)
        try:
            data = np.array([[BAD_UTF8 if bad else GOOD_TEXT.encode()]], dtype=OBJ)
            return client.infer(MODEL, [text_input(th, data)]).as_numpy("PROBABILITIES")
        except Exception as exc:
            return exc
        finally:
            client.close()

    kinds = [i % 2 == 1 for i in range(48)]
    with ThreadPoolExecutor(6) as pool:  # below the queue limit of 8: none refused
        results = list(pool.map(one, kinds))
    for bad, result in zip(kinds, results, strict=True):
        if bad:
            assert isinstance(result, Exception) and str(result.status()) == "400"
            assert "not valid UTF-8" in result.message()
        else:
            assert not isinstance(result, Exception), result
            np.testing.assert_allclose(result, served.reference, atol=ATOL)
    served.assert_healthy()


@contextlib.contextmanager
def tokenizer_in_process(tmp_path, minilm_dir, max_text_bytes: int):
    """The served tokenizer model.py, initialized in-process (fake pb_utils) with MiniLM's
    tokenizer and `max_text_bytes`."""
    tokenizer_model.pb_utils, saved = fake_pb_utils, tokenizer_model.pb_utils
    try:
        version = tmp_path / "1"
        version.mkdir()
        shutil.copy(minilm_dir / "tokenizer.json", version / "tokenizer.json")
        model = tokenizer_model.TritonPythonModel()
        config = {"parameters": {"max_text_bytes": {"string_value": str(max_text_bytes)}}}
        model.initialize(
            {"model_config": json.dumps(config), "model_repository": str(tmp_path),
             "model_version": "1"}
        )  # fmt: skip
        yield model
    finally:
        tokenizer_model.pb_utils = saved


def request(*texts: bytes):
    return fake_pb_utils.InferenceRequest(TEXT=np.array([[t] for t in texts], dtype=OBJ))


def test_one_execute_call_answers_good_and_bad_requests_separately(tmp_path, minilm_dir):
    """The same guarantee without timing luck: one execute() call (one dynamic batch)
    holding a good, an oversized, a non-UTF-8 and another good request."""
    with tokenizer_in_process(tmp_path, minilm_dir, 100) as model:
        requests = [request(b"good"), request(b"x" * 101), request(BAD_UTF8),
                    request(b"also good", b"")]  # fmt: skip
        responses = model.execute(requests)
    assert [r.error is None for r in responses] == [True, False, False, True]
    assert "101 bytes, over the limit of 100 bytes" in responses[1].error.message
    assert "not valid UTF-8" in responses[2].error.message
    assert responses[0].output_tensors["input_ids"].shape[0] == 1
    assert responses[3].output_tensors["input_ids"].shape[0] == 2


def test_a_10mb_text_is_refused_without_being_tokenized(tmp_path, minilm_dir):
    """What makes refusing a 10 MB text cheap, asserted by what runs rather than by
    seconds: execute() checks every request's sizes first and hands only the valid
    requests to the tokenization; a batch holding nothing valid tokenizes nothing."""
    with tokenizer_in_process(tmp_path, minilm_dir, MAX_TEXT_BYTES) as model:
        tokenize, tokenized = model.tokenization, []

        def recording(batches):
            tokenized.append([text for batch in batches for text in batch])
            return tokenize(batches)

        model.tokenization = recording
        alone = model.execute([request(TEN_MB)])
        with_neighbour = model.execute([request(TEN_MB), request(b"good")])
    assert tokenized == [["good"]]  # the 10 MB text never reached the tokenizer
    for response in (alone[0], with_neighbour[0]):
        assert "TEXT[0] is 10,485,760 bytes, over the limit" in response.error.message
    assert with_neighbour[1].error is None


# -- berth-client ------------------------------------------------------------------------


@pytest.fixture(params=["http", "grpc"])
def classifier(served, request):
    url = served.http_url if request.param == "http" else served.grpc_url
    with Classifier(url, model=MODEL, protocol=request.param, retries=0) as clf:
        yield clf


def test_client_maps_server_rejections_to_invalid_input_error(served, classifier):
    with pytest.raises(InvalidInputError, match="max_text_bytes") as info:
        classifier.predict(TEN_MB.decode())
    assert "10,485,760 bytes" in str(info.value)  # the server's own message
    served.assert_healthy()


def test_client_refuses_what_it_cannot_send(served, classifier):
    """Caught client-side, before a request: non-str items, bytes, lone surrogates."""
    for bad, match in (
        ([GOOD_TEXT, 3.5], r"texts\[1\] must be a str"),
        (b"raw bytes", "decode them first"),
        (["ok", "\ud800"], r"texts\[1\] is not valid Unicode"),
        (None, "must be a str or a list of str"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            classifier.predict(bad)
    served.assert_healthy()


def test_client_empty_text_and_long_lists(served, classifier):
    """ "" and "  " give normal records; 150 texts (> max_batch_size 64) are split into
    requests of 64 by the client; [] gives []."""
    assert classifier.predict([]) == []
    empty, blank = classifier.predict(["", "  "])
    assert empty["label"] in ("negative", "positive")
    assert empty["probabilities"] == pytest.approx(blank["probabilities"], abs=ATOL)
    records = classifier.predict([GOOD_TEXT] * 150)
    assert len(records) == 150
    expected = float(served.reference[0][1])
    assert all(r["probabilities"]["positive"] == pytest.approx(expected, abs=ATOL) for r in records)
    served.assert_healthy()


def test_client_unknown_model_and_version(served, classifier):
    protocol = classifier.protocol
    url = classifier.url
    with Classifier(url, model="no_such_model", protocol=protocol, retries=0) as clf:
        with pytest.raises(ModelNotFoundError, match="'no_such_model' is not served") as info:
            clf.predict(GOOD_TEXT)
        assert any(name.startswith(f"{MODEL} ") for name in info.value.available or [])
    with (
        Classifier(url, model=MODEL, protocol=protocol, retries=0, model_version="99") as clf,
        pytest.raises(ModelNotFoundError, match="version 99"),
    ):
        clf.predict(GOOD_TEXT)
    served.assert_healthy()
