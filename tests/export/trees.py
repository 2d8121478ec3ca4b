"""A directory tree's fingerprint: did an operation leave a repository unchanged?"""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_hash(root: Path) -> str:
    """Every path, file content and directory under `root`."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()
