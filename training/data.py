"""Labelled text data for training: validation, label mapping and splits.

Where the rows come from (a Hugging Face dataset, local files: `--train-file`, optional
`--validation-file` / `--test-file`, or a corpus berth knows by name) is decided by
`training.sources.resolve`; this module checks them, maps the labels and carves the
splits.

Every problem with the data raises `DataError` with a message that names the file, the
row and the fix.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from berth_args import groups, option
from berth_core.errors import DataError
from berth_core.names import MULTI_LABEL, SINGLE_LABEL
from training.sources import (
    RawRows,
    Source,
    SourceTexts,
    corpus_listing,
    file_format,
    offline_corpora,
    resolve,
)

# re-exported for the stages and tests that import these readers from here
from training.sources import hub_rows as hub_rows
from training.sources import package_dir as package_dir
from training.sources import read_rows as read_rows

# the corpora that ship with the installation (CLIs list them); the registry is CORPORA
OFFLINE_CORPORA = offline_corpora()
DEFAULT_LABEL_DELIMITER = "|"
PROBLEM_CHOICES = ("auto", "binary", "multi_class", "multi_label")


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


def offline_rows(name: str) -> RawRows:
    """A corpus's labelled rows by name (CORPORA): columns `text` and `label` (a name)."""
    return resolve(name, ("corpus",)).raw_splits()["train"]


@groups({"dataset": "data", "trust_remote_code": "model", "seed": "run"})
@dataclass
class DataSpec:
    """The data flags every training stage shares and what `load_data` needs:
    `TrainConfig` (and with it `DistillConfig`) is a DataSpec."""

    dataset: str | None = option(
        "rotten_tomatoes",
        "Hugging Face dataset name (e.g. imdb), a local data file, or a corpus: "
        f"{corpus_listing()}. Ignored when --train-file is given",
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


def data_source(spec) -> Source:
    """Where `spec`'s data comes from: --train-file, else --dataset (a file, a corpus or
    a Hub dataset)."""
    if spec.train_file:
        return resolve(spec.train_file, ("file",))
    if spec.dataset:
        return resolve(
            spec.dataset, config=spec.dataset_config, trust_remote_code=spec.trust_remote_code
        )
    raise DataError("no data: pass --dataset NAME or --train-file PATH")


def dataset_name(spec: DataSpec) -> str:
    if not (spec.train_file or spec.dataset):
        return "data"
    source = data_source(spec)
    if source.kind == "file":
        return Path(source.name).name.split(".")[0] or "data"
    return source.name.rstrip("/").split("/")[-1]


def load_data(spec) -> LabelledData:
    """Load, check and split labelled data as `spec` (a DataSpec or TrainConfig) says."""
    check_fractions(spec)
    # the split can stay fixed while --seed varies (seed studies compare like with like)
    split_seed = spec.seed if spec.split_seed is None else spec.split_seed
    source = data_source(spec)
    raw = raw_splits(spec, source)
    columns = source.columns(spec.text_column, spec.label_column)
    forced = forced_multi_label(spec.problem_type)
    train = to_split(raw["train"], spec, forced, columns)
    multi = forced
    if multi is None:
        multi = any(isinstance(label, list) for label in train.labels)
    if multi:
        train.labels = [lab if isinstance(lab, list) else [lab] for lab in train.labels]
    labels = label_order([train], spec.labels or raw["train"].class_names, multi)
    problem = resolve_problem_type(spec.problem_type, multi, labels)
    if spec.labels:
        check_labels(train, labels, multi, "add it to --labels or fix the row")
    splits = {"train": train, **given_splits(raw, spec, labels, multi, columns)}
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


def raw_splits(spec, source: Source | None = None) -> dict[str, RawRows]:
    """The rows of the splits the source has: "train", and "validation" and "test" when
    it has them (the others are carved from train); a data file's come from
    --validation-file and --test-file."""
    source = source or data_source(spec)
    raw = source.raw_splits(spec.label_column)
    if source.kind == "file":
        given = {"validation": spec.validation_file, "test": spec.test_file}
        raw.update({key: read_rows(path) for key, path in given.items() if path})
    return raw


def to_split(
    raw: RawRows, spec, multi_label: bool | None, columns: tuple[str, str | None]
) -> Split:
    """Checked rows of one split, from the `columns` (text, label) the source has."""
    return raw_to_split(raw, *columns, spec.label_delimiter, multi_label)


def given_splits(
    raw: dict[str, RawRows], spec, labels: list[str], multi: bool, columns: tuple[str, str | None]
) -> dict:
    """The validation and test splits the source has, their labels checked against train's."""
    splits: dict[str, Split] = {}
    for key in ("validation", "test"):
        if key in raw:
            split = to_split(raw[key], spec, multi, columns)
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


def texts_column(source: Source, raw: RawRows, column: str, any_column: bool) -> str:
    """The column of `raw` that holds the texts: `column`, or with `any_column` a table's
    first column when it has no `column`; never a JSON file's, whose records name their
    fields (its first could be an id: a line without the field is an error)."""
    if not raw.rows:
        raise DataError(
            f"{raw.source}: no texts in it (the file is empty); write one text per line "
            '(.txt) or one {"text": "..."} object per line (.jsonl), or leave the file out '
            "(a text sample is empty until sampled traffic has been served)"
        )
    keyed = source.kind == "file" and file_format(Path(source.name)) in ("json", "jsonl")
    if any_column and column not in raw.columns and not keyed:
        return raw.columns[0]
    return column


def source_texts(source: Source, text_column: str, any_column: bool = False) -> SourceTexts:
    """A source's texts, labels dropped (masked-LM pretraining, distillation): every table
    it has, a Hub dataset's every split. `any_column`: a table without `text_column`
    gives its first column (a plain list of texts)."""
    column, _ = source.columns(text_column, None)
    tables = source.tables()
    texts = []
    for raw in tables:
        texts.extend(raw_to_split(raw, texts_column(source, raw, column, any_column), None).texts)
    # a corpus is named by the file it was read from, as its rows' origins are
    return SourceTexts(tables[0].source if source.kind == "corpus" else source.name, texts)


def source_split(source: Source, text_column: str, label_column: str | None) -> Split:
    """A source's rows as one split to score models on (an agreement probe): its test
    split where it has one, else all it has; labelled when it has `label_column`, else
    its labels are None."""
    text_column, label_column = source.columns(text_column, label_column)
    splits = source.raw_splits(label_column)
    raw = splits.get("test", splits["train"])
    labelled = label_column is not None and label_column in raw.columns
    return raw_to_split(raw, text_column, label_column if labelled else None)


def load_texts(spec) -> SourceTexts:
    """Unlabelled texts for masked-LM pretraining."""
    return source_texts(data_source(spec), spec.text_column)
