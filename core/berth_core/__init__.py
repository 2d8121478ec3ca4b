"""berth's runtime contract, shared by training, export, the served models and the client.

- `checkpoint`: `berth.json` (`BerthConfig`), what a checkpoint adds to `save_pretrained`.
- `encoding`: text → token ids, windows for long texts, window logits → text logits.
- `names`: model, tensor and file names of the published Triton repository.
- `rule`: softmax/sigmoid and the decision rule (probabilities → prediction records).
- `errors`: the error hierarchy and the exit code of each kind of error.
- `traffic_sample`: the opt-in sample of served texts that a next student distils on.
- `admission`: the opt-in token bucket the tokenizer refuses overload with, before
  tokenizing.

It depends on the standard library and numpy (`tokenizers` to load a tokenizer), and on
no other part of berth: export copies this package next to each Python-backend
`model.py` of a published repository, where the Triton stub imports it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def copy_to(directory: str | Path) -> Path:
    """Copy this package's modules to `directory/berth_core` (a published model's version
    directory, the stand-in backend's directory), where the Triton stub imports them."""
    target = Path(directory) / PACKAGE_DIR.name
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(PACKAGE_DIR.glob("*.py")):
        shutil.copy2(source, target / source.name)
    return target
