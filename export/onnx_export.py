"""Checkpoint → ONNX: fp32 (optionally fused), fp16, dynamic int8.

The graph has two outputs: `logits` and `probabilities` (softmax for single-label,
sigmoid for multi-label, computed inside the graph), so the served ensemble gets its
PROBABILITIES from the classifier on any backend (the native onnxruntime backend in the
NVIDIA container cannot run extra Python code after the model).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from berth_core.checkpoint import BerthConfig
from berth_core.names import ATTENTION_MASK, INPUT_IDS, ONNX_LOGITS, ONNX_PROBABILITIES


class ClassifierWithProbabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, multi_label: bool) -> None:
        super().__init__()
        self.model = model
        self.multi_label = multi_label

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return logits, probs


def export_fp32(checkpoint: Path, path: Path, berth: BerthConfig, opset: int = 17) -> Path:
    """TorchScript-based `torch.onnx.export` (single file, the graph shape the
    onnxruntime.transformers optimizer knows) with dynamic batch and sequence axes.
    `berth`: the checkpoint's berth.json, as the command read it."""
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, use_safetensors=True, attn_implementation="eager"
    ).eval()
    wrapper = ClassifierWithProbabilities(model, berth.multi_label).eval()
    ids = torch.full((2, 8), 101, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(path),
            input_names=[INPUT_IDS, ATTENTION_MASK],
            output_names=[ONNX_LOGITS, ONNX_PROBABILITIES],
            dynamic_axes={
                INPUT_IDS: axes,
                ATTENTION_MASK: axes,
                ONNX_LOGITS: {0: "batch"},
                ONNX_PROBABILITIES: {0: "batch"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def _heads_and_hidden(checkpoint: Path) -> tuple[int, int]:
    config = AutoConfig.from_pretrained(checkpoint)
    return int(getattr(config, "num_attention_heads", 0)), int(getattr(config, "hidden_size", 0))


def fuse(checkpoint: Path, src: Path, dst: Path) -> Path:
    """onnxruntime.transformers' BERT fusions (attention, layer norm, GELU, …), graph
    optimisation level 0 in the tool so the file stays portable (CPU and GPU)."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = _heads_and_hidden(checkpoint)
    optimized = optimize_model(
        str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0
    )
    optimized.save_model_to_file(str(dst))
    return dst


def to_fp16(src: Path, dst: Path) -> Path:
    """float16 weights and compute, float32 inputs/outputs (`keep_io_types`); for GPUs."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
    return dst


def to_int8(src: Path, dst: Path, fused: bool) -> Path:
    """onnxruntime dynamic quantization: per-channel QInt8 weights, activations
    quantized at run time. A fused graph needs `DefaultTensorType`: without it the
    quantizer cannot type the fused ops' outputs."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if fused else {}
    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options=extra,
    )
    return dst
