"""The tokenizer Triton model runs training's tokenization, with bucketed padding."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import berth_core
from berth_core.encoding import encode, load_tokenizer, pad, pad_token_id
from berth_core.names import (
    SAMPLE_MAX_BYTES_ENV,
    SAMPLE_MAX_TEXTS_ENV,
    SAMPLE_RATE_ENV,
    SAMPLE_TEXTS_ENV,
)
from serving.tokenizer_model import model as tokenizer_model
from tests.serving import fake_pb_utils

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "a gripping, funny film",
    "",
    "Ünïcödé and emoji 🎬 work too",
    "the plot " * 80,  # longer than max_length: truncated as trained
    "short",
]


@pytest.fixture
def version_dir(tmp_path, minilm_dir) -> Path:
    """A tokenizer version directory laid out as export publishes it."""
    d = tmp_path / "1"
    d.mkdir()
    shutil.copy(ROOT / "serving/tokenizer_model/model.py", d / "model.py")
    berth_core.copy_to(d)
    shutil.copy(minilm_dir / "tokenizer.json", d / "tokenizer.json")
    return d


@pytest.mark.parametrize("truncation", ["head", "head+tail"])
def test_served_tokenization_equals_training(version_dir, truncation):
    tok = tokenizer_model.Tokenization(
        version_dir, max_length=48, truncation=truncation, head_tokens=10, bucket=16
    )
    path = str(version_dir / "tokenizer.json")
    reference = load_tokenizer(path)
    expected = encode(reference, TEXTS, 48, truncation, 10)
    batches = [TEXTS[:2], TEXTS[2:3], TEXTS[3:]]
    outputs = tok(batches)
    ids = np.concatenate([o[0] for o in outputs])
    mask = np.concatenate([o[1] for o in outputs])
    exp_ids, exp_mask = pad(expected, pad_token_id(path, reference), ids.shape[1])
    np.testing.assert_array_equal(ids, exp_ids)
    np.testing.assert_array_equal(mask, exp_mask)
    # the mask comes from the real tokens, never from the shipped tokenizer's fixed padding
    assert mask.sum(1).tolist() == [len(row) for row in expected]


def test_one_batch_is_padded_to_one_bucketed_length(version_dir):
    tok = tokenizer_model.Tokenization(version_dir, max_length=128, bucket=16)
    outputs = tok([["short"], ["a somewhat longer review of a film, with more words in it"]])
    widths = {ids.shape[1] for ids, _ in outputs}
    assert widths == {16}
    long = tok([["word " * 40]])[0][0]
    assert long.shape[1] == 48  # 42 tokens → next multiple of 16
    capped = tok([["word " * 500]])[0][0]
    assert capped.shape[1] == 128


def test_per_request_padding_pads_each_request_to_its_own_length(version_dir):
    path = str(version_dir / "tokenizer.json")
    reference = load_tokenizer(path)
    tok = tokenizer_model.Tokenization(version_dir, max_length=48, bucket=8, padding="per_request")
    batches = [["short"], [TEXTS[0], "short"], [TEXTS[3]], ["word " * 5]]
    outputs = tok(batches)
    for batch, (ids, mask) in zip(batches, outputs, strict=True):
        expected = encode(reference, batch, 48)
        longest = max(len(row) for row in expected)
        assert ids.shape == mask.shape == (len(batch), min(48, -(-longest // 8) * 8))
        exp_ids, exp_mask = pad(expected, pad_token_id(path, reference), ids.shape[1])
        np.testing.assert_array_equal(ids, exp_ids)
        np.testing.assert_array_equal(mask, exp_mask)
        assert ids.dtype == mask.dtype == np.int64
    assert [ids.shape[1] for ids, _ in outputs] == [8, 8, 48, 8]
    exact = tokenizer_model.Tokenization(version_dir, bucket=1, padding="per_request")
    ((ids, mask),) = exact([["word " * 5]])
    assert ids.shape == (1, 7) and mask.tolist() == [[1] * 7]  # [CLS] 5 words [SEP]
    with pytest.raises(ValueError, match="padding"):
        tokenizer_model.Tokenization(version_dir, padding="ragged")


def test_triton_model_end_to_end_in_process(version_dir, triton_model):
    model = triton_model(
        tokenizer_model, version_dir, max_length="32", truncation="head", bucket="8"
    )
    texts = np.array([[t.encode()] for t in TEXTS[:3]], dtype=object)
    responses = model.execute(
        [
            fake_pb_utils.InferenceRequest(TEXT=texts[:2]),
            fake_pb_utils.InferenceRequest(TEXT=texts[2:]),
        ]
    )
    shapes = [r.output_tensors["input_ids"].shape for r in responses]
    assert shapes == [(2, 16), (1, 16)]
    assert all(r.output_tensors["attention_mask"].dtype == np.int64 for r in responses)


@pytest.mark.parametrize("padding", ["per_request", "batch"])
def test_windows_are_rows_with_their_text_and_weight(version_dir, padding):
    """Window mode: each request's rows are its texts' windows, exactly as training cuts
    them, with a `windows` array (text within the request, weight) for aggregation."""
    from berth_core.encoding import encode_windows

    path = str(version_dir / "tokenizer.json")
    reference = load_tokenizer(path)
    tok = tokenizer_model.Tokenization(
        version_dir, max_length=32, bucket=8, padding=padding, window_stride=24, max_windows=3
    )
    batches = [["short", "word " * 70], ["word " * 40], ["a gripping film"]]
    outputs = tok(batches)
    for batch, (ids, mask, windows) in zip(batches, outputs, strict=True):
        expected = encode_windows(reference, batch, 32, 24, 3)
        assert windows.dtype == np.int64 and windows.shape == (len(expected), 2)
        assert windows[:, 0].tolist() == expected.text.tolist()
        assert windows[:, 1].tolist() == expected.weight.tolist()
        exp_ids, exp_mask = pad(expected.ids, pad_token_id(path, reference), ids.shape[1])
        np.testing.assert_array_equal(ids, exp_ids)
        np.testing.assert_array_equal(mask, exp_mask)
    assert [len(w) for _, _, w in outputs] == [1 + 3, 2, 1]  # 70 words: capped at 3


def test_window_mode_end_to_end_in_process(version_dir, triton_model):
    model = triton_model(
        tokenizer_model,
        version_dir,
        max_length="32",
        bucket="8",
        window_stride="24",
        max_windows="4",
    )
    texts = np.array([[b"short"], [("word " * 50).encode()]], dtype=object)
    (response,) = model.execute([fake_pb_utils.InferenceRequest(TEXT=texts)])
    outputs = response.output_tensors
    assert outputs["input_ids"].shape == (3, 32)
    assert outputs["windows"].tolist() == [[0, 3], [1, 30], [1, 20]]


# --------------------------------------------------------------------------- text sample

SAMPLE_VARIABLES = (SAMPLE_TEXTS_ENV, SAMPLE_RATE_ENV, SAMPLE_MAX_TEXTS_ENV, SAMPLE_MAX_BYTES_ENV)


def _requests(*texts: bytes):
    return [fake_pb_utils.InferenceRequest(TEXT=np.array([[t]], dtype=object)) for t in texts]


def test_the_served_tokenizer_samples_nothing_unless_asked(
    version_dir, triton_model, tmp_path, monkeypatch
):
    for name in SAMPLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    model = triton_model(tokenizer_model, version_dir, max_length="32")
    model.execute(_requests(b"a gripping film", b"dull"))
    assert model.sample is None and sorted(tmp_path.rglob("*")) == before


def test_the_served_tokenizer_samples_the_valid_texts_it_receives(
    version_dir, triton_model, tmp_path, monkeypatch
):
    path = tmp_path / "samples" / "texts.jsonl"
    path.parent.mkdir()
    monkeypatch.setenv(SAMPLE_TEXTS_ENV, str(path))
    monkeypatch.setenv(SAMPLE_RATE_ENV, "1")
    model = triton_model(tokenizer_model, version_dir, max_length="32", max_text_bytes="40")
    text = "Ünïcödé review,\non two lines"
    responses = model.execute(_requests(b"a film", b"x" * 41, text.encode(), b"a film"))
    assert [r.error is None for r in responses] == [True, False, True, True]
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert written == [{"text": "a film"}, {"text": text}]  # refused and repeated texts: not


def test_a_sample_that_cannot_be_written_never_fails_a_request(
    version_dir, triton_model, tmp_path, monkeypatch
):
    monkeypatch.setenv(SAMPLE_TEXTS_ENV, str(tmp_path / "gone" / "texts.jsonl"))
    monkeypatch.setenv(SAMPLE_RATE_ENV, "1")
    model = triton_model(tokenizer_model, version_dir, max_length="32")
    responses = model.execute(_requests(b"a film", b"another"))
    assert all(r.error is None and r.output_tensors["input_ids"].size for r in responses)
    assert "cannot write" in model.sample.stopped


def test_admission_refuses_beyond_its_rate_before_tokenizing(
    version_dir, triton_model, tmp_path, monkeypatch
):
    """A bucket of 2 at 4 requests/s shared by 2 instances: the third request of a batch is
    refused UNAVAILABLE with the rate named, neither tokenized nor sampled, and after
    half a second one more is admitted. A bad request still gets INVALID_ARG."""
    path = tmp_path / "texts.jsonl"
    monkeypatch.setenv(SAMPLE_TEXTS_ENV, str(path))
    monkeypatch.setenv(SAMPLE_RATE_ENV, "1")
    config = {"instance_group": [{"count": 2, "kind": "KIND_CPU"}]}
    model = triton_model(tokenizer_model, version_dir, config, max_length="32",
                         max_text_bytes="40", admission_rate="8", admission_burst="2")  # fmt: skip
    now = [0.0]
    model.admission.clock = lambda: now[0]
    model.admission.stamp = 0.0
    responses = model.execute(_requests(b"first", b"x" * 41, b"third", b"fourth"))
    errors = [r.error for r in responses]
    assert errors[0] is None and responses[0].output_tensors["input_ids"].size
    assert errors[1].code == "INVALID_ARG"  # admitted, then refused as too long
    assert [e.code for e in errors[2:]] == ["UNAVAILABLE"] * 2
    assert "over the admission rate (4 requests/s per tokenizer instance)" in errors[2].message
    assert [json.loads(line)["text"] for line in path.read_text().splitlines()] == ["first"]
    now[0] += 0.5  # two more tokens, capped at the burst
    assert [r.error is None for r in model.execute(_requests(b"a", b"b", b"c"))] == [
        True, True, False,
    ]  # fmt: skip


def test_admission_is_off_unless_asked(version_dir, triton_model):
    model = triton_model(tokenizer_model, version_dir, max_length="32")
    assert model.admission is None
    assert all(r.error is None for r in model.execute(_requests(*[b"a film"] * 200)))


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"admission_rate": "fast"}, "parameter 'admission_rate' must be a number, got 'fast'"),
        ({"max_text_bytes": "1MiB"}, "parameter 'max_text_bytes' must be an integer, got '1MiB'"),
        ({"max_length": "12.5"}, "parameter 'max_length' must be an integer, got '12.5'"),
    ],
)
def test_a_hand_edited_parameter_that_does_not_parse_is_named(
    version_dir, triton_model, parameters, message
):
    with pytest.raises(ValueError, match=re.escape(message)):
        triton_model(tokenizer_model, version_dir, **parameters)


def test_serve_passes_the_sample_settings_to_the_stubs(tmp_path, monkeypatch):
    """`python -m serving --sample-texts` puts the settings in the server's environment,
    which the tokenizer's stub processes inherit (as `docker run -e` does)."""
    import serving.server as server_module
    from serving.__main__ import parse_args, start_server

    class Started(Exception):
        pass

    def popen(command, env, **options):
        raise Started(env)

    for name in SAMPLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(server_module.subprocess, "Popen", popen)
    environments = []
    for flags in ([], ["--sample-texts", str(tmp_path / "texts.jsonl"), "--sample-rate", "0.5"]):
        server = start_server(parse_args(["--model-repository", str(tmp_path), *flags]))
        server._backend_dir = tmp_path
        with pytest.raises(Started) as started:
            server._start_process()
        environments.append(started.value.args[0])
    assert not set(SAMPLE_VARIABLES) & set(environments[0])
    assert environments[1][SAMPLE_TEXTS_ENV] == str(tmp_path / "texts.jsonl")
    assert environments[1][SAMPLE_RATE_ENV] == "0.5"


def test_serve_refuses_to_sample_with_a_tokenizer_published_before_sampling(tmp_path):
    """The served model.py is the copy export put in the version directory: an older one
    would sample nothing, silently."""
    from serving.__main__ import parse_args

    for version, copy in (("1", False), ("2", True)):
        (tmp_path / "news_tokenizer" / version / "berth_core").mkdir(parents=True)
        if copy:
            berth_core.copy_to(tmp_path / "news_tokenizer" / version)
    flags = ["--model-repository", str(tmp_path), "--sample-texts", str(tmp_path / "t.jsonl")]
    assert parse_args(flags).sample_texts == tmp_path / "t.jsonl"  # version 2 is served
    (tmp_path / "news_tokenizer" / "10").mkdir()
    with pytest.raises(SystemExit):
        parse_args(flags)
