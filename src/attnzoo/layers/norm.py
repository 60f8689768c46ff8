"""Normalisation factory, ``ConvNormAct`` and weight initialisation."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import torch
import torch.nn as nn

from .batchnorm import PooledBatchNorm2d
from .create_act import ActLayer, get_act
from .nd import batch_norm_nd, conv_nd

__all__ = ["NormLayer", "group_norm_groups", "make_norm", "ConvNormAct", "ConvBN", "zero_bn", "conv1x1", "init_weights"]

#: A normalisation: ``None``, ``"bn"`` (BatchNorm2d), ``"gn"`` (GroupNorm, 32 groups or the largest divisor of
#: the channels below 32, as Detectron's ``get_group_gn``) or a callable ``norm(channels) -> nn.Module``
#: (torchvision's ``norm_layer`` convention, e.g. ``nn.BatchNorm2d``).
NormLayer = Union[str, Callable[[int], nn.Module], None]


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups`` (32 groups for 256 channels)."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def make_norm(norm: NormLayer, channels: int, owner: str) -> nn.Module | None:
    """Build the normalisation layer ``norm`` for ``channels`` channels (``None`` → no layer)."""
    if norm is None:
        return None
    if isinstance(norm, str):
        key = norm.lower()
        if key in ("bn", "batchnorm", "batch_norm"):
            return PooledBatchNorm2d(channels)
        if key in ("gn", "groupnorm", "group_norm"):
            return nn.GroupNorm(group_norm_groups(channels), channels)
        raise ValueError(f"{owner}: norm must be None, 'bn', 'gn' or a callable norm(channels), got {norm!r}")
    if isinstance(norm, nn.Module) or not callable(norm):
        raise ValueError(f"{owner}: norm must be None, 'bn', 'gn' or a callable norm(channels), got {norm!r}")
    return norm(channels)


def init_weights(module: nn.Module, inits: Mapping[type[nn.Module], Callable[[Any], object]]) -> None:
    """One pass over ``module.modules()`` in order: a submodule of a type in ``inits`` (the first that matches) gets
    that type's function applied to it (which sets its weight) and its bias, when it has one, zeroed."""
    for m in module.modules():
        for kind, init in inits.items():
            if isinstance(m, kind):
                init(m)
                bias = getattr(m, "bias", None)
                if bias is not None:
                    nn.init.zeros_(bias)
                break


def zero_bn(channels: int, dims: int = 2) -> nn.BatchNorm2d:
    """A BatchNorm2d with weight and bias 0: the zero-init that makes a residual block the identity at init
    (its 1-D / 3-D sibling for maps of spatial rank ``dims``, :func:`attnzoo.layers.nd.batch_norm_nd`)."""
    bn = batch_norm_nd(dims)(channels)
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)
    return bn


def conv1x1(cin: int, cout: int, bias: bool, std: float | None = None, groups: int = 1, dims: int = 2) -> nn.Conv2d:
    """A 1×1 conv (1×…×1 of spatial rank ``dims``: Conv1d / Conv2d / Conv3d); with ``std``, the N(0, std) weight /
    zero bias init of the Non-local, CGNL and CNL code."""
    conv = conv_nd(dims)(cin, cout, 1, bias=bias, groups=groups)
    if std is not None:
        nn.init.normal_(conv.weight, 0.0, std)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return conv


class ConvNormAct(nn.Sequential):
    """``Conv2d(k, stride, dilation, groups, 'same' padding) → norm → act`` (``conv``, optional ``norm``, ``act``).

    The conv has a bias only without a norm (as torchvision's ``Conv2dNormActivation``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        norm: NormLayer = None,
        act: ActLayer = None,
        owner: str = "ConvNormAct",
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        norm_layer = make_norm(norm, out_channels, owner)
        padding = dilation * (kernel_size - 1) // 2
        self.add_module(
            "conv",
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=norm_layer is None,
            ),
        )
        if norm_layer is not None:
            self.add_module("norm", norm_layer)
        if act is not None:
            self.add_module("act", get_act(act, owner))


class ConvBN(nn.Module):
    """The convolution block of the YOLO family: ``Conv2d(bias=False, padding d·(k−1)/2) → BatchNorm2d → SiLU``.

    Children ``conv``, ``bn``, ``act`` (the state-dict keys of the YOLO ``Conv`` block, so its weights load as
    they are).  ``act=False`` (or ``None``) leaves the activation out; ``act`` may also name another activation.
    ``bn_weight_init`` sets the BatchNorm weight (0 makes the block output 0 at init, as the output projections
    of EfficientViT and SHViT).  The BatchNorm keeps working in training on one value per channel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: bool | ActLayer = True,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=False
        )
        self.bn = PooledBatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        self.act = nn.SiLU() if act is True else get_act(None if act is False else act, type(self).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
