"""The PyTorch reference predictor: the ground truth export's ONNX models and the served
ensemble are checked against.

    python -m training.predict runs/sentiment/model "a gripping, funny film"
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from berth_args import option, parse_config
from berth_core.checkpoint import BerthConfig
from berth_core.encoding import Windows, aggregate, encode, load_tokenizer_and_pad, pad
from berth_core.errors import run_command
from berth_core.rule import decide, probabilities


def first_token_states(hidden_states: tuple) -> torch.Tensor:
    """[batch, layers, hidden]: the first token's state after every layer, from a model's
    `hidden_states` (embeddings first, dropped)."""
    return torch.stack([h[:, 0] for h in hidden_states[1:]], dim=1)


@torch.inference_mode()
def model_window_outputs(
    model, encoded: list[list[int]], pad_id: int, batch_size: int = 32, cls_states: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """`Predictor.window_outputs` for any sequence-classification model (a student being
    trained, in eval mode). Batches are formed in length order, so that they carry
    little padding."""
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = np.zeros((len(encoded), model.config.num_labels), dtype=np.float32)
    states = None
    if cls_states:
        layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
        states = np.zeros((len(encoded), layers, hidden), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, mask = pad([encoded[i] for i in rows], pad_id)
        result = model(
            input_ids=torch.from_numpy(ids).to(device),
            attention_mask=torch.from_numpy(mask).to(device),
            output_hidden_states=cls_states,
        )
        out[rows] = result.logits.float().cpu().numpy()
        if cls_states:
            states[rows] = first_token_states(result.hidden_states).float().cpu().numpy()
    return out, states


class Predictor:
    """Runs a berth checkpoint in PyTorch, eager, fp32, reading long texts as its
    `berth.json` says (one window, or windows whose logits are aggregated). `config`
    replaces that berth.json (export serving a checkpoint with other window settings)."""

    def __init__(
        self, checkpoint: str | Path, device: str = "cpu", config: BerthConfig | None = None
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.config = config or BerthConfig.load(self.checkpoint)
        self.tokenizer, self.pad_id = load_tokenizer_and_pad(
            str(self.checkpoint / "tokenizer.json")
        )
        self.device = torch.device(device)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.checkpoint, use_safetensors=True
        ).to(self.device)
        self.model.eval()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """One row per text: the text cut to its first window (by `truncation`)."""
        cfg = self.config
        return encode(self.tokenizer, texts, cfg.max_length, cfg.truncation, cfg.head_tokens)

    def windows(self, texts: Sequence[str]) -> Windows:
        """Every window the model scores (one per text without window mode)."""
        return self.config.encode_windows(self.tokenizer, texts)

    def logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Logits in input order, one row per text: its windows' logits aggregated."""
        windows = self.windows(texts)
        c = self.config
        rows = self.window_logits(windows.ids, batch_size)
        return aggregate(rows, windows.text, windows.weight, c.aggregation, c.multi_label)

    def window_logits(self, encoded: list[list[int]], batch_size: int = 32) -> np.ndarray:
        """Logits of token-id rows, in order."""
        return self.window_outputs(encoded, batch_size)[0]

    def window_outputs(
        self, encoded: list[list[int]], batch_size: int = 32, cls_states: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits of token-id rows, in order, and with `cls_states` each row's first-token
        state after every layer (rows × layers × hidden: what a distilled student's
        intermediate layers copy)."""
        return model_window_outputs(self.model, encoded, self.pad_id, batch_size, cls_states)

    def probabilities(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return probabilities(self.logits(texts, batch_size), self.config.multi_label)

    def predict(self, texts: str | Sequence[str], batch_size: int = 32) -> list[dict]:
        if isinstance(texts, str):
            texts = [texts]
        return decide(self.probabilities(list(texts), batch_size), self.config)


@dataclass
class PredictConfig:
    checkpoint: str = option(
        help="a berth checkpoint directory (runs/<run>/model)", positional=True
    )
    texts: list[str] = option(help="texts to classify", positional=True)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(
        PredictConfig, argv, "python -m training.predict", "Classify texts with a checkpoint."
    )

    def predict() -> None:
        for record in Predictor(cfg.checkpoint).predict(cfg.texts):
            print(json.dumps(record))

    return run_command(predict)


if __name__ == "__main__":
    sys.exit(main())
