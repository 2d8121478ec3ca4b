"""Text sampling from the real Rotten Tomatoes data (and from a held-out split file)."""

from __future__ import annotations

import json
import statistics

import pytest

from loadtest.data import (
    concatenate,
    load_texts,
    read_rotten_tomatoes,
    read_texts_file,
    rotten_tomatoes_path,
)
from training.sources import CORPORA, rotten_tomatoes_file


@pytest.fixture(scope="module")
def reviews():
    return read_rotten_tomatoes()


def test_reviews_come_from_the_packaged_corpus_without_plot_rows(reviews):
    # 13,905 rows: 7,403 fresh + 5,405 rotten reviews, 1,097 plot summaries dropped
    assert len(reviews) == 7403 + 5405
    assert all(text and movie for movie, text in reviews)
    lengths = [len(t.split()) for _, t in reviews]
    assert 10 < statistics.mean(lengths) < 30  # review snippets, not plot synopses


def test_snippets_are_shuffled_and_reproducible():
    a = load_texts(limit=50, seed=1)
    assert a == load_texts(limit=50, seed=1)
    assert a != load_texts(limit=50, seed=2)
    assert len(set(a)) > 45


def test_long_scenario_concatenates_one_movies_reviews(reviews):
    texts = load_texts(scenario="long")
    words = [len(t.split()) for t in texts]
    assert len(texts) > 100
    assert min(words) >= 100 and max(words) <= 190
    by_movie = {}
    for movie, text in reviews:
        by_movie.setdefault(movie, []).append(text)
    movie_reviews = next(iter(by_movie.values()))
    joined = concatenate([movie_reviews])[0]
    assert joined.startswith(movie_reviews[0].split()[0])


def test_concatenate_stops_at_the_budget():
    assert concatenate([["a b c", "d e", "f g h"]], max_words=5) == ["a b c d e"]
    assert concatenate([["a b c d e f g"]], max_words=3) == ["a b c"]


def test_texts_file_formats(tmp_path):
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text(
        json.dumps({"text": "good", "label": "fresh"})
        + "\n"
        + json.dumps({"text": "bad", "label": "rotten"})
        + "\n"
    )
    assert read_texts_file(jsonl) == ["good", "bad"]
    csv_file = tmp_path / "t.csv"
    csv_file.write_text('text,label\n"one, two",x\nthree,y\n')
    assert read_texts_file(csv_file) == ["one, two", "three"]
    txt = tmp_path / "t.txt"
    txt.write_text("alpha\n\nbeta\n")
    assert sorted(load_texts(txt)) == ["alpha", "beta"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no texts"):
        read_texts_file(tmp_path / "empty.txt")


def test_unknown_scenario():
    with pytest.raises(ValueError, match="scenario"):
        load_texts(scenario="medium")


def test_json_lines_texts_may_hold_unicode_line_separators(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = [{"text": "one\u2028line"}, {"text": "two"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert read_texts_file(path) == ["one\u2028line", "two"]


def test_reviews_are_the_rotten_tomatoes_corpus_of_the_registry(reviews):
    """loadtest reads the corpus file with the standard library alone (its image has no
    training package); it must stay the file and the reviews training's corpus reads."""
    assert rotten_tomatoes_path() == rotten_tomatoes_file()
    corpus = {row["text"] for _, row in CORPORA["rotten_tomatoes"].rows().rows}
    assert {text for _, text in reviews} == corpus  # the same reviews, duplicates aside


def test_text_picker_draws_uniformly_or_with_zipf_like_repeats():
    import random
    from collections import Counter

    from loadtest.data import TextPicker

    uniform = TextPicker(100, rng=random.Random(0))
    counts = Counter(uniform() for _ in range(20_000))
    assert set(counts) == set(range(100)) and max(counts.values()) < 2 * 200
    zipf = TextPicker(100, 1.0, rng=random.Random(0))
    draws = [zipf() for _ in range(20_000)]
    counts = Counter(draws)
    harmonic = sum(1 / k for k in range(1, 101))
    assert abs(counts[0] / 20_000 - 1 / harmonic) < 0.01  # rank 1: 1/H_100 = 19.3 %
    assert counts[0] > counts[1] > counts[9] and all(0 <= d < 100 for d in draws)
    # the expected share of repeats matches a drawn stream's
    stream = draws[:2_000]
    seen: set[int] = set()
    repeats = 0
    for d in stream:
        repeats += d in seen
        seen.add(d)
    assert abs(zipf.repeat_share(2_000) - repeats / 2_000) < 0.02
    assert zipf.repeat_share(2_000) > uniform.repeat_share(2_000) > 0.9  # 100 texts only
    assert TextPicker(1_000_000).repeat_share(100) < 0.001
    with pytest.raises(ValueError):
        TextPicker(10, -1.0)
