"""Atomic publishing into a Triton model repository.

A publish adds one new version directory to every model of the set (all with the same
number) and replaces the config files:

1. each version is staged in `<model>/.staging-<id>/` (same filesystem as its target),
   each config in a temp file next to its target;
2. only then are the staged directories `os.rename`d to `<model>/<version>/` (a new
   name: a live version is never touched) and the configs `os.replace`d;
3. any error before the end removes what was staged and rolls back renamed versions,
   so the repository is left exactly as it was;
4. versions beyond `keep_versions` (oldest first) are pruned afterwards.

Python files of a staged version are byte-compiled before the rename. The Python
backend's stub embeds an isolated interpreter (it ignores PYTHONDONTWRITEBYTECODE), so it
would otherwise write `__pycache__/` into the live version directory when it loads
`model.py`, and a server in `--model-control-mode poll` would see that as a change and
reload the model once after start. The `.pyc` files are for this interpreter's version,
which is the stub's version under `python -m serving` (a container whose Python differs
writes its own once).
"""

from __future__ import annotations

import compileall
import contextlib
import dataclasses
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

STAGING_PREFIX = ".staging-"


def numeric_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(repository: Path, models: list[str]) -> int:
    """One number above every existing version of every model in the set."""
    return 1 + max((v for m in models for v in numeric_versions(repository / m)), default=0)


def _write_temp(target: Path, text: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{STAGING_PREFIX}{target.name}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def publish(
    repository: Path,
    versions: Mapping[str, Path],
    configs: Mapping[str, str],
    keep_versions: int = 2,
) -> int:
    """Publish `versions` (model name → a directory whose content becomes the new
    version) and `configs` (path relative to the repository → text). Returns the new
    version number."""
    repository = Path(repository)
    repository.mkdir(parents=True, exist_ok=True)
    version = next_version(repository, list(versions))
    publishing = _Publishing(repository, uuid.uuid4().hex[:8])
    try:
        publishing.stage(versions, configs, version)
        publishing.commit()
    except BaseException:
        publishing.roll_back()
        raise
    for model in versions:
        prune(repository / model, keep_versions)
    return version


@dataclasses.dataclass
class _Publishing:
    """What one publish has written so far, so that a failure can undo all of it."""

    repository: Path
    token: str
    created_dirs: list[Path] = dataclasses.field(default_factory=list)
    staged: list[tuple[Path, Path]] = dataclasses.field(default_factory=list)
    temp_configs: list[tuple[Path, Path]] = dataclasses.field(default_factory=list)
    renamed: list[Path] = dataclasses.field(default_factory=list)

    def stage(self, versions: Mapping[str, Path], configs: Mapping[str, str], version: int):
        """Copy each version under a staging name and write each config to a temp file."""
        for model, source in versions.items():
            model_dir = self.repository / model
            if not model_dir.exists():
                model_dir.mkdir(parents=True)
                self.created_dirs.append(model_dir)
            tmp = model_dir / f"{STAGING_PREFIX}{self.token}"
            shutil.copytree(source, tmp)
            compileall.compile_dir(tmp, quiet=2)
            self.staged.append((tmp, model_dir / str(version)))
        for rel, text in configs.items():
            target = self.repository / rel
            for parent in reversed(target.parents):
                if parent.is_relative_to(self.repository) and not parent.exists():
                    parent.mkdir()
                    self.created_dirs.append(parent)
            self.temp_configs.append((_write_temp(target, text), target))

    def commit(self) -> None:
        """New names only, then config replacements."""
        for tmp, final in self.staged:
            if final.exists():
                raise FileExistsError(f"{final} already exists; refusing to overwrite it")
            os.rename(tmp, final)
            self.renamed.append(final)
        for tmp, target in self.temp_configs:
            os.replace(tmp, target)

    def roll_back(self) -> None:
        for final in self.renamed:
            shutil.rmtree(final, ignore_errors=True)
        for tmp, _ in self.staged:
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp, _ in self.temp_configs:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        for directory in reversed(self.created_dirs):
            shutil.rmtree(directory, ignore_errors=True)


def prune(model_dir: Path, keep_versions: int) -> list[int]:
    """Remove the oldest version directories beyond `keep_versions` (0 = keep all)."""
    if keep_versions <= 0:
        return []
    old = numeric_versions(model_dir)[:-keep_versions]
    for v in old:
        trash = model_dir / f"{STAGING_PREFIX}trash-{v}-{uuid.uuid4().hex[:6]}"
        os.rename(model_dir / str(v), trash)  # out of Triton's sight first
        shutil.rmtree(trash, ignore_errors=True)
    return old
