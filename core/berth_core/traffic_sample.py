"""An opt-in sample of the texts a served model classifies, to distil the next student on.

Two producers write it: berth-client (`sample_file=`, `berth-client predict
--sample-texts`) and the served tokenizer (`python -m serving --sample-texts`, or the
`BERTH_SAMPLE_*` variables of `berth_core.names` in the stock container). The consumer
is `python -m training distill --unlabelled-file FILE.jsonl`. What it keeps, and why:

- JSON Lines, one `{"text": ...}` object per line: a text holding newlines stays one row.
  Nothing else: no label, time, address, request id or count.
- Off unless a path is given; then a share `rate` of the texts, drawn at random.
- Each distinct text once, across every process appending to the file (Triton runs one
  tokenizer process per instance): under the lock each writer first reads what the
  others appended, and remembers a 16-byte digest per line (at most `max_texts` of them).
- At most `max_texts` lines and `max_bytes` bytes, re-checked under the lock: writing
  then stops for good. Nothing is rotated, truncated or overwritten.
- Created with mode 0600 (an existing file keeps its mode); appends serialised by
  `fcntl.flock` (where there is none, as on Windows, use one process per file).
- A writing error never fails the request: it is logged once and sampling stops.

Standard library only: export copies `berth_core` next to the tokenizer's model.py,
where the Triton stub imports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from berth_core.errors import InputError
from berth_core.names import (
    SAMPLE_MAX_BYTES_ENV,
    SAMPLE_MAX_TEXTS_ENV,
    SAMPLE_RATE_ENV,
    SAMPLE_TEXTS_ENV,
)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

LOG = logging.getLogger("berth.traffic_sample")
DEFAULT_RATE = 0.1
DEFAULT_MAX_TEXTS = 10_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
FILE_MODE = 0o600
# what `distill --unlabelled-file` reads as JSON Lines (training.sources.file_format)
SUFFIXES = (".jsonl", ".ndjson")
CHUNK = 1 << 20


@dataclass(frozen=True)
class SampleConfig:
    """Where to sample to and how much. `seed`: a reproducible draw (tests); None draws
    from the OS, so that each process samples differently."""

    path: str
    rate: float = DEFAULT_RATE
    max_texts: int = DEFAULT_MAX_TEXTS
    max_bytes: int = DEFAULT_MAX_BYTES
    seed: int | None = None

    def __post_init__(self) -> None:
        if Path(self.path).suffix.lower() not in SUFFIXES:
            raise InputError(
                f"sample file {self.path}: name it *.jsonl (JSON Lines, which "
                "`python -m training distill --unlabelled-file` reads by that extension)"
            )
        if not 0 < self.rate <= 1:
            raise InputError(
                f"sample rate {self.rate} (--sample-rate, {SAMPLE_RATE_ENV}): use a share "
                "of the texts in (0, 1], e.g. 0.1"
            )
        if self.max_texts < 1 or self.max_bytes < 1:
            raise InputError(
                f"sample cap {self.max_texts} texts, {self.max_bytes} bytes "
                f"(--sample-max-texts, {SAMPLE_MAX_TEXTS_ENV}, {SAMPLE_MAX_BYTES_ENV}): "
                "use at least 1"
            )

    def check_path(self) -> None:
        """Refuse at start-up a path that can never be written (a missing directory)."""
        path = Path(self.path)
        if not path.parent.is_dir() or path.is_dir():
            raise InputError(
                f"sample file {self.path}: its directory {path.parent} does not exist, or "
                "the path is a directory; create the directory or choose another path"
            )

    def environment(self) -> dict[str, str]:
        """The variables that carry these settings to another process (the server's
        stubs); the path made absolute, as their working directory may differ."""
        return {
            SAMPLE_TEXTS_ENV: os.path.abspath(self.path),
            SAMPLE_RATE_ENV: repr(self.rate),
            SAMPLE_MAX_TEXTS_ENV: str(self.max_texts),
            SAMPLE_MAX_BYTES_ENV: str(self.max_bytes),
        }

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> SampleConfig | None:
        """The settings `environment()` wrote (None: BERTH_SAMPLE_TEXTS unset, sampling off)."""
        path = environ.get(SAMPLE_TEXTS_ENV, "").strip()
        if not path:
            return None
        return cls(
            path,
            _number(environ, SAMPLE_RATE_ENV, float, DEFAULT_RATE),
            _number(environ, SAMPLE_MAX_TEXTS_ENV, int, DEFAULT_MAX_TEXTS),
            _number(environ, SAMPLE_MAX_BYTES_ENV, int, DEFAULT_MAX_BYTES),
        )


def _number(environ: Mapping[str, str], name: str, kind: type, default):
    value = environ.get(name, "").strip()
    try:
        return kind(value) if value else default
    except ValueError:
        raise InputError(f"{name}={value!r}: not a {kind.__name__}") from None


def from_environment(environ: Mapping[str, str] | None = None) -> TextSample | None:
    """The served tokenizer's sample, or None when BERTH_SAMPLE_TEXTS is unset. Bad
    settings are logged, not raised: the model serves on without a sample."""
    try:
        config = SampleConfig.from_environment(os.environ if environ is None else environ)
    except InputError as exc:
        LOG.warning("berth: text sampling is off: %s", exc)
        return None
    return TextSample(config) if config else None


def _line(text: str) -> bytes | None:
    """A text's JSON line (no newline); None for what distill would not read: an empty
    text, or one that is not valid Unicode (lone surrogates)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None


def _digest(line: bytes) -> bytes:
    return hashlib.blake2b(line, digest_size=16).digest()


class TextSample:
    """Appends a random share of the texts it is offered to `config.path`; one per
    process (or per client), safe to share between threads."""

    def __init__(self, config: SampleConfig) -> None:
        self.config = config
        self.stopped: str | None = None  # why sampling stopped (the cap, an error)
        self._random = random.Random(config.seed)
        self._guard = threading.Lock()
        self._seen: set[bytes] = set()  # digests of the lines read or written so far
        self._file: tuple[int, int] | None = None  # (device, inode) those lines are in
        self._offset = 0  # bytes of the file read: whole lines
        self._lines = 0

    def offer(self, texts: Iterable[str]) -> int:
        """Sample from `texts`; → how many were written. Never raises."""
        if self.stopped is not None:
            return 0
        rate = self.config.rate
        picked = [text for text in texts if self._random.random() < rate]
        if not picked:
            return 0
        with self._guard:
            try:
                return self._append(picked)
            except Exception as exc:  # the caller's request must not fail for a sample
                self._stop(f"cannot write the text sample {self.config.path} ({exc})")
                return 0

    def _stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            LOG.warning("berth: %s; sampling stopped", reason)

    def _append(self, texts: list[str]) -> int:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.config.path, flags, FILE_MODE)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            size = self._catch_up(fd)
            torn = b"\n" if self._offset < size else b""  # ends a line a crash cut short
            lines, full = self._fitting(texts, size + len(torn))
            if lines:
                _write(fd, torn + b"".join(line + b"\n" for line in lines), size)
        finally:
            os.close(fd)
        if full:
            cap = f"{self.config.max_texts} texts or {self.config.max_bytes} bytes"
            self._stop(f"the text sample {self.config.path} reached its cap ({cap})")
        return len(lines)

    def _catch_up(self, fd: int) -> int:
        """Read the lines appended since the last call (by any process); → the file's size.
        A different or shorter file than last time (removed, replaced) starts afresh."""
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) != self._file or stat.st_size < self._offset:
            self._file, self._offset, self._lines = (stat.st_dev, stat.st_ino), 0, 0
            self._seen.clear()
        if stat.st_size < self.config.max_bytes:  # else full: nothing more to learn
            self._read_lines(fd, stat.st_size)
        return stat.st_size

    def _read_lines(self, fd: int, size: int) -> None:
        os.lseek(fd, self._offset, os.SEEK_SET)
        rest = b""
        while self._offset + len(rest) < size and self._lines < self.config.max_texts:
            chunk = os.read(fd, min(CHUNK, size - self._offset - len(rest)))
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                self._seen.add(_digest(line))
                self._offset += len(line) + 1
                self._lines += 1

    def _fitting(self, texts: list[str], used: int) -> tuple[list[bytes], bool]:
        """The new lines that fit under the cap after `used` bytes, and whether the cap
        is reached."""
        out: list[bytes] = []
        for line in filter(None, map(_line, texts)):
            key = _digest(line)
            if key in self._seen:
                continue
            if self._lines + len(out) >= self.config.max_texts:
                return out, True
            if used + len(line) + 1 > self.config.max_bytes:
                return out, True
            self._seen.add(key)
            out.append(line)
            used += len(line) + 1
        return out, self._lines + len(out) >= self.config.max_texts


def _write(fd: int, data: bytes, size: int) -> None:
    """Append `data` whole, or leave the file as it was (a full disk cuts a write short:
    a torn line would make the whole sample unreadable)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise
