"""AdamW parameter groups: no weight decay on biases and LayerNorm weights, optional
layer-wise learning-rate decay (LLRD).

With LLRD factor `d` and `L` encoder layers, layer `i` (0 = closest to the embeddings)
trains at `lr * d ** (L - i)`, the embeddings at `lr * d ** (L + 1)`, and everything
above the encoder (pooler, classifier head) at `lr`.
"""

from __future__ import annotations

import re

import torch
from torch import nn

NO_DECAY_PATTERN = re.compile(r"(^|\.)(bias|[A-Za-z_]*norm[A-Za-z_]*)(\.|$)", re.IGNORECASE)
LAYER_PATTERN = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
EMBEDDING_PATTERN = re.compile(r"embed", re.IGNORECASE)
# Where torch.optim.AdamW(fused=True) runs (PyTorch 2.4 and later).
FUSED_DEVICES = ("cpu", "cuda")


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameter names that get no weight decay: biases and normalisation weights."""
    names = set()
    for module_name, module in model.named_modules():
        is_norm = (
            isinstance(module, (nn.LayerNorm, nn.GroupNorm))
            or "norm" in type(module).__name__.lower()
        )
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param_name == "bias" or NO_DECAY_PATTERN.search(full):
                names.add(full)
    return names


def num_layers(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    if count:
        return int(count)
    found = [int(m.group(1)) for n, _ in model.named_parameters() if (m := LAYER_PATTERN.search(n))]
    return max(found) + 1 if found else 0


def layer_depth(name: str, layers: int) -> int:
    """How many decay steps below the head a parameter sits (0 = full lr)."""
    match = LAYER_PATTERN.search(name)
    if match:
        return layers - int(match.group(1))
    if EMBEDDING_PATTERN.search(name):
        return layers + 1
    return 0


def parameter_groups(
    model: nn.Module, lr: float, weight_decay: float, layer_lr_decay: float = 1.0
) -> list[dict]:
    """AdamW param groups (`params`, `lr`, `weight_decay`, and `names` for inspection)."""
    skip_decay = no_decay_names(model)
    layers = num_layers(model)
    groups: dict[tuple[float, float], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, layers) if layer_lr_decay != 1.0 else 0
        group_lr = lr * layer_lr_decay**depth
        decay = 0.0 if name in skip_decay else weight_decay
        group = groups.setdefault(
            (group_lr, decay), {"params": [], "names": [], "lr": group_lr, "weight_decay": decay}
        )
        group["params"].append(param)
        group["names"].append(name)
    return sorted(groups.values(), key=lambda g: (-g["lr"], -g["weight_decay"]))


def optimizer_groups(
    model: nn.Module, lr: float, weight_decay: float, layer_lr_decay: float = 1.0
) -> list[dict]:
    """`parameter_groups` as torch.optim takes them (without the names)."""
    return [
        {k: v for k, v in g.items() if k != "names"}
        for g in parameter_groups(model, lr, weight_decay, layer_lr_decay)
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    layer_lr_decay: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `optimizer_groups`, with PyTorch's fused kernel where every parameter
    can take it: on 2 CPU cores the default per-tensor loop took ~140 ms a step for
    MiniLM's 23M parameters, the fused kernel ~25 ms (a step on 32 snippets: ~0.7 s)."""
    groups = optimizer_groups(model, lr, weight_decay, layer_lr_decay)
    fused = all(
        p.device.type in FUSED_DEVICES and p.is_floating_point()
        for g in groups
        for p in g["params"]
    )
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)
