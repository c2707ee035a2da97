"""The transformers trainer's optimizer: parameter groups (layer-wise decay, no decay on
norms and biases), the torch optimizer, the shared schedule as a `LambdaLR` factor, precision."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from components.spec import ModelSpec
from components.train.recipe import NESTEROV, schedule_for, weight_decay

# Parameter names kept out of weight decay besides biases and 1-d (norm) weights.
NO_DECAY = ("position_embeddings", "cls_token", "mask_token", "distillation_token", ".grn.")
# `<stack>.<index>.` segments that number the backbone's blocks (ViT layers.N, ConvNeXt
# stages.S.layers.N, Swin layers.S.blocks.N).
BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|stage|stages|block|blocks)\.(\d+)(?=\.)")


def layer_ids(names: Iterable[str]) -> tuple[dict[str, int], int]:
    """Parameter name -> depth for layer-wise decay: 0 for embeddings, 1.. for backbone blocks
    in order, `top` for the rest (final norm, head). A stage's own layers (downsampling) go
    with its first block."""
    names = list(names)
    keys = {name: tuple(int(i) for i in BLOCK.findall(name)) for name in names}
    depth = max((len(k) for k in keys.values()), default=0)
    padded = {name: key + (0,) * (depth - len(key)) for name, key in keys.items() if key}
    order = {key: index + 1 for index, key in enumerate(sorted(set(padded.values())))}
    top = len(order) + 1
    ids = {}
    for name in names:
        if name in padded:
            ids[name] = order[padded[name]]
        elif "embeddings" in name.split(".") or ".embeddings." in f".{name}":
            ids[name] = 0
        else:
            ids[name] = top
    return ids, top


def parameter_groups(model: Any, spec: ModelSpec) -> list[dict[str, Any]]:
    """Optimizer groups by (layer, decay): the learning rate scaled by layer_decay ** (top -
    layer), the spec's weight decay (0: none) except on biases, norms, position embeddings
    and tokens, which never decay."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ids, top = layer_ids(n for n, _ in named)
    o = spec.optimizer
    decay = weight_decay(o)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in named:
        layer = ids[name] if spec.layer_decay else top
        no_decay = parameter.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY)
        scale = spec.layer_decay ** (top - layer) if spec.layer_decay else 1.0
        group = groups.setdefault(
            (layer, no_decay),
            {
                "params": [],
                "lr": o.learning_rate * scale,
                "weight_decay": 0.0 if no_decay else decay,
                "layer_id": layer,
            },
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def make_optimizer(spec: ModelSpec, groups: list[dict[str, Any]]) -> Any:
    """The spec's torch optimizer over `groups` (each group carries its own weight decay)."""
    import torch

    o = spec.optimizer
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.learning_rate)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.learning_rate)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.learning_rate, momentum=o.momentum, nesterov=NESTEROV)
    return torch.optim.RMSprop(groups, lr=o.learning_rate, momentum=o.momentum)


def schedule(spec: ModelSpec, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate factor per optimizer step: the shared recipe's schedule over all epochs."""
    return schedule_for(spec.optimizer, spec.epochs, steps_per_epoch).factor


def precision(spec: ModelSpec, device: Any) -> str:
    import torch

    if spec.mixed_precision == "off" or device.type != "cuda":
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
