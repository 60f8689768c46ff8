"""Where :func:`attnzoo.insert` puts a module and what it reads from the model: the recognised residual blocks
(the table in :mod:`attnzoo.integrations.surgery`), the wrapper :class:`InsertedAttention`, and the channels and
spatial rank of a layer's output (from its attributes or measured on an example input)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

__all__ = ["InsertedAttention", "out_channels", "recognised_block", "spatial_rank"]


class InsertedAttention(nn.Module):
    """``attn(module(x))``: an existing layer followed by an inserted attention module.

    Children are ``module`` (the original layer, unchanged) and ``attn``.  Loading a state dict that still
    has the original layer's keys (``...bn2.weight`` rather than ``...bn2.module.weight``) works: the old
    keys are mapped to ``module.*`` on load.
    """

    def __init__(self, module: nn.Module, attn: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.module(x))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Keys written by the unmodified model (prefix + "weight", prefix + "running_mean", ...) belong to `module`.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix) :]
            if not rest.startswith(("module.", "attn.")):
                new = prefix + "module." + rest
                if new not in state_dict:
                    state_dict[new] = state_dict.pop(key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


# ----------------------------------------------------------------------------------------------------------------
# recognised blocks


def _last_child(seq_name: str) -> Callable[[nn.Module], str]:
    def pick(block: nn.Module) -> str:
        seq = getattr(block, seq_name)
        return f"{seq_name}.{len(seq) - 1}"

    return pick


def _monai_residual_unit(block: nn.Module) -> str | None:
    """The last unit of a MONAI ``ResidualUnit``'s ``conv`` branch; ``None`` for an output head (a bare last conv,
    ``last_conv_only=True``: its output is the network's logits)."""
    seq = getattr(block, "conv")
    name, last = list(seq.named_children())[-1]
    return f"conv.{name}" if hasattr(last, "adn") else None


#: (module of the class, class name) -> ("after", child path or function of the block) or ("slot", attribute, norm).
_BLOCKS: dict[tuple[str, str], tuple[str, Any, str]] = {
    ("torchvision.models.resnet", "BasicBlock"): ("after", "bn2", "bn2"),
    ("torchvision.models.resnet", "Bottleneck"): ("after", "bn3", "bn3"),
    ("timm.models.resnet", "BasicBlock"): ("slot", "se", "bn2"),
    ("timm.models.resnet", "Bottleneck"): ("slot", "se", "bn3"),
    ("timm.models._efficientnet_blocks", "InvertedResidual"): ("after", "bn3", "bn3"),
    ("timm.models._efficientnet_blocks", "CondConvResidual"): ("after", "bn3", "bn3"),
    ("timm.models._efficientnet_blocks", "DepthwiseSeparableConv"): ("after", "bn2", "bn2"),
    ("timm.models._efficientnet_blocks", "EdgeResidual"): ("after", "bn2", "bn2"),
    ("torchvision.models.mobilenetv2", "InvertedResidual"): ("after", _last_child("conv"), ""),
    ("torchvision.models.mobilenetv3", "InvertedResidual"): ("after", _last_child("block"), ""),
    ("torchvision.models.efficientnet", "MBConv"): ("after", _last_child("block"), ""),
    ("torchvision.models.efficientnet", "FusedMBConv"): ("after", _last_child("block"), ""),
    ("torchvision.models.video.resnet", "BasicBlock"): ("after", "conv2.1", ""),
    ("torchvision.models.video.resnet", "Bottleneck"): ("after", "conv3.1", ""),
    ("monai.networks.blocks.convolutions", "ResidualUnit"): ("after", _monai_residual_unit, ""),
    ("monai.networks.nets.basic_unet", "TwoConv"): ("after", "conv_1", ""),
}


def recognised_block(module: nn.Module) -> tuple[str, str, str] | None:
    """``(kind, child, norm)`` if ``module`` is (a subclass of) a block :func:`insert` knows, else ``None``.

    ``kind`` is ``"after"`` (the module goes after the child ``child``) or ``"slot"`` (the block's attribute
    ``child`` is an attention slot applied after its norm ``norm``).
    """
    for cls in type(module).__mro__:
        entry = _BLOCKS.get((cls.__module__, cls.__name__))
        if entry is not None:
            kind, child, norm = entry
            child = child(module) if callable(child) else child
            return None if child is None else (kind, child, norm or child)
    return None


# ----------------------------------------------------------------------------------------------------------------
# channel inference


def out_channels(module: nn.Module) -> int | None:
    """Output channels of a layer, read from its attributes: a norm's ``num_features`` / ``num_channels``, a
    conv's (or any layer's) integer ``out_channels``; for containers the last child that tells.  ``None``
    when nothing tells (then :func:`insert` needs ``channels=`` or ``example_input=``)."""
    if isinstance(module, InsertedAttention):
        return out_channels(module.module)
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return int(module.num_features)
    if isinstance(module, nn.GroupNorm):
        return int(module.num_channels)
    if isinstance(module, nn.LayerNorm) and type(module).__name__.endswith("2d") and len(module.normalized_shape) == 1:
        return int(module.normalized_shape[0])  # timm LayerNorm2d: channels-first
    value = getattr(module, "out_channels", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    for child in reversed(list(module.children())):
        value = out_channels(child)
        if value is not None:
            return value
    return None


def spatial_rank(module: nn.Module) -> int | None:
    """Spatial rank of a layer's output (1 for B×C×L, 2 for B×C×H×W, 3 for B×C×D×H×W), read from the layer: a
    convolution's kernel, a torch layer named ``...1d`` / ``2d`` / ``3d`` (``BatchNorm3d``, ``InstanceNorm1d``,
    ``MaxPool3d``), for containers the last child that tells.  ``None`` when nothing tells."""
    if isinstance(module, InsertedAttention):
        return spatial_rank(module.module)
    if isinstance(module, nn.modules.conv._ConvNd):
        return len(module.kernel_size)
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.") and cls.__name__[-2:] in ("1d", "2d", "3d"):
            return int(cls.__name__[-2])
    for child in reversed(list(module.children())):
        rank = spatial_rank(child)
        if rank is not None:
            return rank
    return None


def measure_outputs(model: nn.Module, targets: Sequence[nn.Module], example_input: Any) -> dict[int, tuple[int, int]]:
    """(channels, spatial rank) of each target's output measured on one forward of ``example_input`` (eval
    mode, no grad)."""
    seen: dict[int, tuple[int, int]] = {}

    def hook(mod: nn.Module, args: Any, out: Any) -> None:
        # a 3-D output is B×C×L only where the layer says so (else it may be B×N×C tokens)
        if isinstance(out, torch.Tensor) and (out.dim() in (4, 5) or (out.dim() == 3 and spatial_rank(mod) == 1)):
            seen.setdefault(id(mod), (int(out.shape[1]), out.dim() - 2))

    handles = [t.register_forward_hook(hook) for t in targets]
    training = [m.training for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
        for m, t in zip(model.modules(), training):
            m.training = t
    return seen
