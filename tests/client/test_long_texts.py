"""Long texts served whole: the `reviews` ensembles (the sentiment checkpoint in window
mode, fp32) cut each text into windows, score every window in the classifier and
average them: in the classifier step (`reviews`, CPU configs) or in a third step
(`reviews_steps`, the layout of the native backend's configs). Real review text
throughout: held-out Rotten Tomatoes snippets, alone or joined into long texts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tritonclient.http as httpclient

from berth_client import Classifier
from tests.client.ensembles import LONG, LONG_STEPS
from tests.export.checkpoints import TEST_ROWS, WINDOWS, held_out_texts, rotten_tomatoes
from tests.triton_text import text_input
from training.predict import Predictor

pytestmark = [pytest.mark.server, pytest.mark.slow]
MODELS = pytest.mark.parametrize("model", [LONG, LONG_STEPS])


@pytest.fixture(scope="module")
def predictor(ensemble):
    _, checkpoints = ensemble
    return Predictor(checkpoints[LONG])


def long_texts(checkpoint, count: int, per_text: int = 12, offset: int = 0) -> list[str]:
    """`count` texts of `per_text` consecutive held-out snippets each (~330 tokens: more
    than max_windows windows of 64 tokens, so the cap spreads them)."""
    texts = held_out_texts(checkpoint)
    return [
        " ".join(texts[(offset + i * per_text + j) % len(texts)] for j in range(per_text))
        for i in range(count)
    ]


def infer(server, model: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One request with every text (tritonclient, no client-side splitting)."""
    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer(model, [text_input(httpclient, texts)])
    client.close()
    return result.as_numpy("LOGITS"), result.as_numpy("PROBABILITIES")


def classifier_rows(server, model: str) -> int:
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics(f"{model}_onnx_fp32")["model_stats"][0]
    client.close()
    return int(stats["inference_count"])


@MODELS
def test_multi_window_texts_match_the_reference_predictor(ensemble, predictor, model):
    server, checkpoints = ensemble
    texts = [long_texts(checkpoints[LONG], 1, n, offset=10 * n)[0] for n in (5, 7, 9, 12)]
    windows = predictor.windows(texts)
    counts = np.bincount(windows.text).tolist()
    assert counts[0] >= 2 and counts[-1] == WINDOWS["max_windows"], counts
    reference_logits = predictor.logits(texts)
    reference = predictor.probabilities(texts)
    logits, probs = infer(server, model, texts)
    assert probs.shape == (len(texts), 2)
    assert np.abs(probs - reference).max() <= 1e-3
    assert np.abs(logits - reference_logits).max() <= 1e-3
    with Classifier(server.http_url, model=model) as clf:  # the client, unchanged
        records = clf.predict(texts)
    served = np.array([[r["probabilities"][n] for n in ("negative", "positive")] for r in records])
    assert np.abs(served - reference).max() <= 1e-3


@MODELS
def test_a_batch_mixing_short_and_long_texts(ensemble, predictor, model):
    server, checkpoints = ensemble
    short = held_out_texts(checkpoints[LONG], 6)
    long = long_texts(checkpoints[LONG], 6, per_text=6)
    texts = [t for pair in zip(short, long, strict=True) for t in pair]
    before = classifier_rows(server, model)
    _, probs = infer(server, model, texts)
    rows = classifier_rows(server, model) - before
    assert rows == len(predictor.windows(texts)) > len(texts)
    assert np.abs(probs - predictor.probabilities(texts)).max() <= 1e-3
    # a short text is answered as when it is sent alone: one window, as before windows
    alone = np.concatenate([infer(server, model, [t])[1] for t in short[:2]])
    assert np.abs(probs[[0, 2]] - alone).max() <= 1e-5


@MODELS
def test_64_long_texts_in_one_request(ensemble, predictor, model):
    """64 texts × max_windows windows: the classifier and the aggregation step accept
    max_batch_size × max_windows rows."""
    server, checkpoints = ensemble
    texts = long_texts(checkpoints[LONG], 64)
    windows = predictor.windows(texts)
    assert len(windows) == 64 * WINDOWS["max_windows"]
    before = classifier_rows(server, model)
    _, probs = infer(server, model, texts)
    assert classifier_rows(server, model) - before == len(windows)
    assert probs.shape == (64, 2)
    assert np.abs(probs - predictor.probabilities(texts)).max() <= 1e-3


def sentiment_of_rows(predictor, texts: list[str]) -> np.ndarray:
    """positive − negative logit of each text read as one window."""
    return np.diff(predictor.window_logits(predictor.encode(texts)), axis=1)[:, 0]


def ending(texts, labels, scores, label: str, tokens: int, count_tokens) -> str:
    """Held-out snippets of `label` the model reads most clearly so, up to `tokens`."""
    sign = 1 if label == "positive" else -1
    picked, used = [], 0
    for i in np.argsort(-sign * scores):
        if labels[i] == label and used + count_tokens(texts[i]) <= tokens:
            picked.append(texts[i])
            used += count_tokens(texts[i])
    return " ".join(picked)


def test_the_last_sentences_decide(ensemble, predictor):
    """A prefix the model reads as neutral (consecutive held-out snippets, ~64 tokens:
    the whole first window), then ~56 tokens of clearly positive or clearly negative
    snippets. Both texts share their head, so a head-only reading gives them one label;
    served whole they get the label of their endings."""
    server, _ = ensemble
    rows = rotten_tomatoes()[:TEST_ROWS]
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    scores = sentiment_of_rows(predictor, texts)

    def count_tokens(text: str) -> int:
        return len(predictor.tokenizer.encode(text, add_special_tokens=False).ids)

    budget = predictor.config.max_length - 2
    prefixes = []
    for start in range(200):
        stop = start + 1
        while count_tokens(" ".join(texts[start:stop])) < budget:
            stop += 1
        prefixes.append(" ".join(texts[start:stop]))
    prefix = prefixes[int(np.argmin(np.abs(sentiment_of_rows(predictor, prefixes))))]
    endings = {
        label: ending(texts, labels, scores, label, 56, count_tokens)
        for label in ("positive", "negative")
    }
    long = {label: f"{prefix} {end}" for label, end in endings.items()}
    head = predictor.tokenizer.encode(prefix, add_special_tokens=False).ids[:budget]
    for text in long.values():  # the first window is the prefix alone
        assert predictor.windows([text]).ids[0][1:-1] == head
    head_only = Predictor(predictor.checkpoint, config=replace(predictor.config, max_windows=1))
    heads = {r["label"] for r in head_only.predict(list(long.values()))}
    assert len(heads) == 1  # read by its head alone, one of the two is wrong
    with Classifier(server.http_url, model=LONG) as clf:
        served = {label: clf.predict(text)["label"] for label, text in long.items()}
    assert served == {"positive": "positive", "negative": "negative"}
