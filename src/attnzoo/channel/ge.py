"""Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks (Hu, Shen, Albanie, Sun, Vedaldi;
NeurIPS 2018).  Paper: https://arxiv.org/abs/1810.12348"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import tracing
from ..capture import record
from ..functional.gating import SPATIAL_MEAN_FORM, spatial_mean
from ..layers import (
    TABLE_BOUND,
    ActLayer,
    Gate,
    SizeBound,
    check_arg,
    check_choice,
    check_nchw,
    fx_leaf,
    get_act,
    hidden_width,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["GatherExcite"]


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm that uses its running statistics when a training batch has one value per channel (B·H·W = 1),
    where batch statistics are undefined (PyTorch raises a bare error there)."""
    if bn.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


class _ConvMlp(nn.Module):
    """1×1 conv → act → 1×1 conv, both with bias (timm's ``ConvMlp`` names: ``fc1``, ``fc2``)."""

    def __init__(self, channels: int, hidden: int, act: ActLayer, owner: str) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = get_act(act, owner)
        self.fc2 = nn.Conv2d(hidden, channels, 1)


@fx_leaf
def _check_feat_size(x: torch.Tensor, feat_size: tuple[int, int], owner: str) -> torch.Tensor:
    if not tracing.is_tracing() and tuple(x.shape[-2:]) != tuple(feat_size):
        raise ValueError(
            f"{owner}: with extent=0 and extra_params=True the input must be "
            f"{feat_size[0]}×{feat_size[1]} (feat_size), got shape {tuple(x.shape)}"
        )
    return x


def _upsample_nearest(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour resize of the gathered map to ``like``'s H×W (``F.interpolate(size=...)``, as timm)."""
    return F.interpolate(g, size=like.shape[-2:], mode="nearest")


@register(
    "ge",
    family="channel",
    paper="Gather-Excite: Exploiting Feature Context in Convolutional Neural Networks (Hu et al.; NeurIPS 2018)",
    url="https://arxiv.org/abs/1810.12348",
    complexity="O(N)",
    summary="Gather context over an extent (global or stride 2/4/8, pooled or depthwise-strided) → excite: resize + sigmoid gate.",
    maps=("gate",),
    test_kwargs={"extent": 4, "extra_params": True},
    forms=(
        replace(
            SPATIAL_MEAN_FORM,
            cases=({"extent": 0, "extra_params": False}, {"extent": 0, "extra_params": False, "use_mlp": False}),
        ),
    ),
)
class GatherExcite(Gate):
    """Gather-Excite gate; B×C×H×W → B×C×H×W.

    Gather ξ_G: ``extent=0`` global average (``extra_params``: a depthwise conv over the whole ``feat_size`` map +
    BN); ``extent=e ∈ {2, 4, 8}`` average pooling of kernel 2e−1, stride e, padding e−1 (excluding padding), or
    with ``extra_params`` log₂e depthwise 3×3 stride-2 convs, each followed by BN, ReLU between them.  Optional
    MLP (1×1 conv C→C/r, ReLU, 1×1 conv, both with bias), then excite ξ_E: nearest resize to H×W and sigmoid;
    ``y = x · σ(resize(g))``.  The paper's GE-θ⁻ is ``extra_params=False, use_mlp=False``, GE-θ is
    ``extra_params=True, use_mlp=False``, GE-θ⁺ is ``extra_params=True, use_mlp=True``.  Defaults and layer names
    follow timm's ``GatherExcite`` (whose weights load as they are).  Any H×W: the strided gathers keep partial
    windows (output ⌈H/e⌉), a map smaller than the extent gathers to 1×1.

    Args:
        channels: C.  extent: 0, 2, 4 or 8.  extra_params: depthwise-conv gather.  use_mlp: excite MLP.
        reduction / hidden_channels / min_hidden: MLP width.  feat_size: (H, W) of the input, needed only for
        ``extent=0, extra_params=True`` (a full-map depthwise conv).  act: activation.

    Captured map: ``"gate"`` B×C×h×w (before the resize).  See docs/provenance/ge.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "feat_size": SizeBound(TABLE_BOUND, "side of the whole-map depthwise kernel"),
    }

    def __init__(
        self,
        channels: int,
        extent: int = 0,
        extra_params: bool = False,
        use_mlp: bool = True,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 1,
        feat_size: tuple[int, int] | None = None,
        act: ActLayer = "relu",
    ) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels, min_hidden, self.owner)
        check_choice(extent, (0, 2, 4, 8), self.owner, "extent")
        check_arg(isinstance(extra_params, bool), self.owner, "extra_params", "a bool", extra_params)
        check_arg(isinstance(use_mlp, bool), self.owner, "use_mlp", "a bool", use_mlp)
        self.channels, self.extent, self.extra_params, self.use_mlp = channels, extent, extra_params, use_mlp
        self.feat_size: tuple[int, int] | None = None
        self.gather: nn.Sequential | None = None
        if extra_params:
            self.gather = nn.Sequential()
            if extent == 0:
                ok = (
                    isinstance(feat_size, (tuple, list))
                    and len(feat_size) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in feat_size)
                )
                check_arg(
                    ok,
                    self.owner,
                    "feat_size",
                    "(H, W) of the input (positive ints) when extent=0 and "
                    "extra_params=True (the gather is a depthwise conv over the whole map)",
                    feat_size,
                )
                self.feat_size = (int(feat_size[0]), int(feat_size[1]))  # type: ignore[index]
                self.gather.add_module(
                    "conv1", nn.Conv2d(channels, channels, self.feat_size, groups=channels, bias=False)
                )
                self.gather.add_module("norm1", PooledBatchNorm2d(channels))
            else:
                steps = extent.bit_length() - 1
                for i in range(steps):
                    self.gather.add_module(
                        f"conv{i + 1}", nn.Conv2d(channels, channels, 3, 2, 1, groups=channels, bias=False)
                    )
                    self.gather.add_module(f"norm{i + 1}", PooledBatchNorm2d(channels))
                    if i != steps - 1:
                        self.gather.add_module(f"act{i + 1}", get_act(act, self.owner))
        self.mlp = _ConvMlp(channels, hidden, act, self.owner) if use_mlp else None

    def gathered(self, x: torch.Tensor) -> torch.Tensor:
        """ξ_G(x) followed by the MLP: B×C×h×w (1×1 for the global extent)."""
        if self.gather is not None:
            if self.feat_size is not None:
                x = _check_feat_size(x, self.feat_size, self.owner)
            g = x
            for layer in self.gather:
                g = _bn(g, layer) if isinstance(layer, nn.BatchNorm2d) else layer(g)
        elif self.extent == 0:
            g = spatial_mean(x)[:, :, None, None]
        else:
            e = self.extent
            g = F.avg_pool2d(x, 2 * e - 1, e, e - 1, count_include_pad=False)
        if self.mlp is not None:
            fc1, fc2 = self.mlp.fc1, self.mlp.fc2
            if self.extent == 0:  # a B×C×1×1 context: the 1×1 convs as F.linear on the vector
                v = self.mlp.act(F.linear(g.flatten(1), fc1.weight.flatten(1), fc1.bias))
                g = F.linear(v, fc2.weight.flatten(1), fc2.bias)[:, :, None, None]
            else:
                g = fc2(self.mlp.act(fc1(g)))
        return g

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate before the resize, B×C×h×w (sigmoid commutes with the nearest resize)."""
        return torch.sigmoid(self.gathered(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        gate = self.gate_map(x)
        record(self, "gate", gate)
        if self.extent == 0:  # a B×C×1×1 gate broadcasts
            return x * gate
        return x * _upsample_nearest(gate, x)
