"""One resolver decides "local file, corpus or Hub" for every reader: training's splits,
masked-LM text, distillation's unlabelled text and agreement's probes."""

from __future__ import annotations

import pytest

from export.agreement import load_probe
from training.data import (
    OFFLINE_CORPORA,
    DataError,
    DataSpec,
    load_data,
    load_texts,
    offline_rows,
    raw_splits,
)
from training.distill import DistillConfig, unlabelled_texts
from training.sources import CORPORA, Corpus, RawRows, SourceTexts, resolve

TINY_ROWS = [
    (f"tiny row {i}", {"text": f"{word} film number {i}", "label": label})
    for i, (word, label) in enumerate([("a fine", "good"), ("a dull", "bad")] * 10, 1)
]


@pytest.fixture
def tiny_corpus(monkeypatch) -> Corpus:
    """A corpus registered the way every corpus is: one CORPORA entry."""
    corpus = Corpus(
        "tiny",
        "twenty made-up reviews, good/bad",
        lambda: RawRows("tiny.csv", ["text", "label"], list(TINY_ROWS)),
        "no-such-package",
        unlabelled=lambda: SourceTexts("tiny extras", ["an unlabelled plot summary"]),
    )
    monkeypatch.setitem(CORPORA, "tiny", corpus)
    return corpus


@pytest.fixture
def hub(monkeypatch):
    """`datasets.load_dataset` fed a small DatasetDict offline; its calls recorded."""
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["bad", "good"])}
    )
    texts = [row["text"] for _, row in TINY_ROWS]
    ids = [1 if row["label"] == "good" else 0 for _, row in TINY_ROWS]
    loaded = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": texts, "label": ids}, features=features),
            "unsupervised": datasets.Dataset.from_dict(
                {"text": ["no label here"], "label": [-1]}, features=features
            ),
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or loaded)
    return calls


def test_offline_corpora_are_the_installed_entries_of_the_registry():
    assert OFFLINE_CORPORA == ("rotten_tomatoes", "bbc_news", "imdb_reviews")
    assert set(OFFLINE_CORPORA) < set(CORPORA)
    assert all(name == corpus.name for name, corpus in CORPORA.items())


def test_a_path_that_exists_is_a_file_even_when_named_like_a_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("bbc_news").kind == "corpus"
    assert resolve("bbc_news").corpus is CORPORA["bbc_news"]
    (tmp_path / "bbc_news").write_text("text,label\n")
    source = resolve("bbc_news")
    assert (source.kind, source.name, source.corpus) == ("file", "bbc_news", None)
    # read as a file (no extension), never as the corpus
    with pytest.raises(DataError, match="bbc_news: unknown file type"):
        load_data(DataSpec(dataset="bbc_news"))
    with pytest.raises(DataError, match="bbc_news: unknown file type"):
        load_probe("bbc_news", "text", "label", None, 0)


def test_an_unknown_name_goes_to_the_hub_and_code_is_trusted_only_when_asked(hub):
    source = resolve("someone/reviews")
    assert (source.kind, source.name) == ("hub", "someone/reviews")
    assert hub == []  # resolving reads nothing
    data = load_data(DataSpec(dataset="someone/reviews"))
    assert hub == [(("someone/reviews", None), {})]
    assert data.labels == ["bad", "good"] and data.name == "reviews"
    load_data(DataSpec(dataset="someone/reviews", dataset_config="full", trust_remote_code=True))
    assert hub[-1] == (("someone/reviews", "full"), {"trust_remote_code": True})
    # masked-LM text: every split, the unlabelled one too
    texts = load_texts(DataSpec(dataset="someone/reviews"))
    assert texts == ("someone/reviews", [row["text"] for _, row in TINY_ROWS] + ["no label here"])
    assert hub[-1] == (("someone/reviews", None), {})


def test_readers_that_take_no_hub_dataset_say_what_they_take(hub):
    with pytest.raises(DataError, match="--source 'someone/reviews': no such file or corpus") as e:
        load_probe("someone/reviews", "text", "label", None, 0)
    assert all(name in str(e.value) for name in CORPORA)
    with pytest.raises(DataError, match="--unlabelled-corpus 'someone/reviews': no such corpus"):
        unlabelled_texts(DistillConfig(unlabelled_corpus=["someone/reviews"]), None)
    assert hub == []


def test_unknown_unlabelled_corpus_lists_the_known_ones(tiny_corpus):
    config = DistillConfig(unlabelled_corpus=["imdb_reviewz"], offline_unlabelled=False)
    with pytest.raises(DataError, match="--unlabelled-corpus 'imdb_reviewz'") as error:
        unlabelled_texts(config, None)
    for name in ("rotten_tomatoes", "bbc_news", "imdb_reviews", "imdb_test", "tiny"):
        assert name in str(error.value)


def test_a_registered_corpus_serves_every_reader(tiny_corpus, tmp_path):
    texts = [row["text"] for _, row in TINY_ROWS]
    # training: its fixed columns, whatever --text-column / --label-column say
    data = load_data(DataSpec(dataset="tiny", text_column="review", label_column="stars"))
    assert data.labels == ["bad", "good"] and data.name == "tiny"
    assert sorted(data.train.texts + data.validation.texts + data.test.texts) == sorted(texts)
    assert raw_splits(DataSpec(dataset="tiny"))["train"].rows == TINY_ROWS
    assert offline_rows("tiny").rows == TINY_ROWS
    # masked-LM pretraining
    assert load_texts(DataSpec(dataset="tiny")) == ("tiny.csv", texts)
    # distillation: what ships with it when it is the labelled data, and by name
    config = DistillConfig(unlabelled_corpus=["tiny"])
    assert unlabelled_texts(config, "tiny") == [
        ("tiny extras", ["an unlabelled plot summary"]),
        ("tiny.csv", texts),
    ]
    assert unlabelled_texts(DistillConfig(offline_unlabelled=False), "tiny") == []
    # agreement: texts with their labels, a seeded sample
    probe = load_probe("tiny", "text", "label", None, 0)
    assert probe.texts == texts and probe.labels == [r["label"] for _, r in TINY_ROWS]
    sample = load_probe("tiny", "text", "label", 5, 1)
    assert len(sample.texts) == 5 and sample == load_probe("tiny", "text", "label", 5, 1)


def test_shipped_text_comes_only_with_the_labelled_data_it_ships_with(tiny_corpus, tmp_path):
    """A --train-file run whose --dataset still names a corpus (the teacher run recorded
    the default) trains on the file: the corpus's unlabelled text is not added."""
    train = tmp_path / "train.csv"
    train.write_text("text,label\nfine,good\n")
    assert unlabelled_texts(DistillConfig(train_file=str(train)), "tiny") == []
    assert unlabelled_texts(DistillConfig(), "someone/reviews") == []  # nothing loaded


def test_files_serve_every_reader(tmp_path):
    lines = tmp_path / "extra.txt"
    lines.write_text("first text\n\nsecond text\n")
    table = tmp_path / "reviews.csv"
    table.write_text("review,stars\ngreat,good\npoor,bad\n")
    # a file given as --dataset is read as one for masked-LM text too
    assert load_texts(DataSpec(dataset=str(lines))) == (str(lines), ["first text", "second text"])
    # --unlabelled-file: --text-column, else the first column
    config = DistillConfig(unlabelled_file=[str(lines), str(table)], offline_unlabelled=False)
    assert unlabelled_texts(config, None) == [
        (str(lines), ["first text", "second text"]),
        (str(table), ["great", "poor"]),
    ]
    with pytest.raises(DataError, match=r"missing\.txt: no such file; check the path"):
        unlabelled_texts(DistillConfig(unlabelled_file=[str(tmp_path / "missing.txt")]), None)
    probe = load_probe(str(table), "review", "stars", None, 0)
    assert (probe.texts, probe.labels) == (["great", "poor"], ["good", "bad"])
    assert load_probe(str(table), "review", "label", None, 0).labels is None  # no such column


def test_a_text_sample_is_the_transfer_text_distill_reads(tmp_path):
    """What berth-client and the served tokenizer sample, `distill --unlabelled-file`
    reads back text for text: newlines, non-ASCII and U+2028 included."""
    from berth_core.traffic_sample import SampleConfig, TextSample

    path = tmp_path / "texts.jsonl"
    texts = ["a gripping film", "two\nlines", "naïve café ✓ 🎬", "split\u2028here"]
    TextSample(SampleConfig(str(path), rate=1.0)).offer([*texts, "a gripping film"])
    config = DistillConfig(unlabelled_file=[str(path)], offline_unlabelled=False)
    assert unlabelled_texts(config, None) == [(str(path), texts)]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"texts\.jsonl: no texts in it \(the file is empty\)"),
        (b"\n  \n", r"no texts in it"),
        (b'{"text": "fine"}\n\x00\x01\x02', r"texts\.jsonl line 2: a NUL byte, so binary data"),
        ('{"text": "fine"}\n{"text": "café"}\n'.encode("latin-1"), r"line 2: not UTF-8 text"),
        (b'{"text": "fine"}\n{"body": "no text"}\n', r"line 2: no 'text' field"),
        (b'{"review": "a"}\n{"review": "b"}\n', r"no column 'text'.*--text-column"),
        (b'{"text": "fine"}\n["not an object"]\n', r"line 2: expected a JSON object"),
    ],
    ids=["empty", "blank", "binary", "latin-1", "no-text-field", "other-field", "not-object"],
)
def test_a_bad_unlabelled_file_says_what_is_wrong_and_where(tmp_path, content, message):
    path = tmp_path / "texts.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        unlabelled_texts(DistillConfig(unlabelled_file=[str(path)]), None)


def test_a_text_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes("fine\nalso fine\ncafé\n".encode("cp1252"))
    with pytest.raises(DataError, match=r"texts\.txt line 3: not UTF-8 text \(byte 0xe9\)"):
        unlabelled_texts(DistillConfig(unlabelled_file=[str(path)]), None)


def test_the_packaged_corpora_resolve_by_name():
    rows = offline_rows("bbc_news").rows
    probe = load_probe("bbc_news", "ignored", "ignored", 4, 0)
    assert len(probe.texts) == 4 and set(probe.labels) <= {r["label"] for _, r in rows}
    assert all(text in {r["text"] for _, r in rows} for text in probe.texts)


def test_an_outside_corpus_says_how_to_write_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("imdb_test").kind == "corpus" and not CORPORA["imdb_test"].offline
    with pytest.raises(
        DataError, match=r"imdb_test\.jsonl: .* `python -m loadtest\.outside_texts`"
    ):
        load_probe("imdb_test", "text", "label", None, 0)
